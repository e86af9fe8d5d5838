"""Any folder of videos (a user's own footage), with an optional CSV of segments and captions.

Input: a folder; every file below it with one of `video_extensions` is a video, named by its path
relative to the folder. The optional CSV `captions_csv` (default `captions.csv`, at the folder's top)
has a header and the columns

    video    the video's relative path (or its file name / stem when that is unique), required
    start    seconds from the video's start; empty = 0
    end      seconds; empty = the video's end
    caption  free text, cleaned like every caption; empty = the file name as a template caption

one row per episode (id `<video>@row<N>`, N counting data rows from 1). A video without any row is one
episode from start to end (id `<video>`, caption from its file name, `caption_source: template`), cut
into parts of at most `max_episode_s`. Rows naming no video of the folder, reversed segments, segments
past the video's end and (with `overlap: reject`, the default here) overlapping rows are rejected.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ingest.errors import EpisodeError
from ingest.sources import clips
from ingest.sources.clips import ClipSpec
from schemas.sources_human import VideosConfig

CSV_COLUMNS = ("video", "start", "end", "caption")


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


OptionalSeconds = Annotated[float | None, BeforeValidator(_blank_is_none)]


class CaptionRow(BaseModel):
    """One row of the captions CSV."""

    model_config = ConfigDict(extra="forbid")
    video: str = Field(min_length=1)
    start: OptionalSeconds = None
    end: OptionalSeconds = None
    caption: str = ""


def list_videos(root: Path, cfg: VideosConfig) -> dict[str, Path]:
    """The videos under `root` by relative path."""
    exts = {e.lower() for e in cfg.video_extensions}
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.suffix.lower() in exts and not p.name.startswith(".") and p.is_file()
    }


def resolve_video(name: str, videos: dict[str, Path]) -> str | None:
    """The relative path a CSV `video` cell means: exact path, else a unique file name, else a unique stem."""
    name = name.strip().lstrip("./")
    if name in videos:
        return name
    for key in (lambda rel: Path(rel).name, lambda rel: Path(rel).stem):
        hits = [rel for rel in videos if key(rel) == name]
        if len(hits) == 1:
            return hits[0]
    return None


def read_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise EpisodeError(path, "csv", f"cannot read: {e}", stage="discover") from e
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if "video" not in header or unknown:
        msg = f"expected columns {list(CSV_COLUMNS)} (video required), got {header}"
        raise EpisodeError(path, "header", msg, stage="discover")
    return rows


def _row_spec(n: int, raw: dict[str, str], path: Path, videos: dict[str, Path]) -> ClipSpec:
    where = f"row {n}"
    try:
        row = CaptionRow.model_validate({k: v for k, v in raw.items() if k is not None})
    except ValidationError as e:
        name = raw.get("video") or "?"
        return clips.invalid_record(f"{name}@row{n}", name, path, where, e)
    rel = resolve_video(row.video, videos)
    video_id = rel or row.video
    spec = ClipSpec(
        clip_id=f"{video_id}@row{n}", video_id=video_id, video=str(videos[rel]) if rel else None,
        annotation=str(path), where=where, start_s=row.start or 0.0, end_s=row.end, text=row.caption,
        template=Path(video_id).stem,
    )  # fmt: skip
    if rel is None:
        return clips.mark_unknown(spec, "video", f"no video {row.video!r} in the input folder")
    return spec


def _whole_video(rel: str, path: Path) -> ClipSpec:
    return ClipSpec(clip_id=rel, video_id=rel, video=str(path), annotation=str(path), where=rel,
                    start_s=0.0, end_s=None, text="", template=path.stem)  # fmt: skip


@lru_cache(maxsize=2)
def clip_index(root: str, cfg_json: str) -> dict[str, ClipSpec]:
    """Every clip of the input by id (parsed once, where discovery runs: the refs carry their clips)."""
    cfg = VideosConfig.model_validate_json(cfg_json)
    folder = Path(root)
    videos = list_videos(folder, cfg)
    table = folder / cfg.captions_csv
    rows = read_rows(table) if table.is_file() else []
    specs = [_row_spec(n, raw, table, videos) for n, raw in enumerate(rows, start=1)]
    listed = {s.video_id for s in specs}
    specs += [_whole_video(rel, p) for rel, p in videos.items() if rel not in listed]
    return clips.select(clips.mark_overlaps(specs, cfg.overlap), cfg.missing_videos)


SOURCE = clips.ClipSource(
    "videos", VideosConfig, clip_index, "videos (video_extensions) under the folder, optional captions.csv"
)
