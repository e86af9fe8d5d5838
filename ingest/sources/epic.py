"""EPIC-KITCHENS-100 (source-formats.md 5): action segments of the annotation CSVs over their videos.

Input: a folder holding, anywhere below it, the section's `annotation_files` (`EPIC_100_train.csv`,
`EPIC_100_validation.csv`: `narration_id, participant_id, video_id, narration_timestamp, start_timestamp,
stop_timestamp, start_frame, stop_frame, narration, verb, verb_class, noun, noun_class, all_nouns,
all_noun_classes`, timestamps `HH:MM:SS.ss`), optionally `EPIC_100_video_info.csv` (the known video ids)
and the videos `<video_id>.MP4` (found by file stem, any folder).

One episode per action segment, from `start_timestamp` to `stop_timestamp`; the caption is the cleaned
`narration`, `verb_class` / `noun_class` go to `quality_metrics`. With `merge_below_s > 0`, a segment
shorter than that takes in the next segment of its video when that one starts at most `merge_gap_s`
after it ends (repeatedly, never past `max_episode_s`); the texts are joined with ", then ". Segments of
one video overlap in the real annotations (about a quarter of them): kept unless `overlap: reject`.
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from ingest.errors import EpisodeError
from ingest.sources import clips
from ingest.sources.base import natural_key
from ingest.sources.clips import ClipSpec
from schemas.sources_human import EpicConfig

_HMS = re.compile(r"^(\d+):([0-5]?\d):(\d+(?:\.\d*)?)$")
MERGE_JOIN = ", then "


def hms_seconds(value: Any) -> Any:
    """`HH:MM:SS.ss` -> seconds (other values are left to pydantic)."""
    if isinstance(value, str) and (m := _HMS.match(value.strip())):
        return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    if isinstance(value, str):
        raise ValueError(f"expected HH:MM:SS.ss, got {value!r}")
    return value


Seconds = Annotated[float, BeforeValidator(hms_seconds)]


class EpicRow(BaseModel):
    """One action segment (the columns we use)."""

    model_config = ConfigDict(extra="ignore")
    narration_id: str
    video_id: str
    start_timestamp: Seconds
    stop_timestamp: Seconds
    narration: str
    verb_class: int | None = None
    noun_class: int | None = None


class EpicVideoInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    video_id: str
    duration: float
    fps: float


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise EpisodeError(path, "csv", f"cannot read: {e}", stage="discover") from e


def known_videos(root: Path, cfg: EpicConfig) -> set[str] | None:
    """The video ids of the video-info CSV, or None when the input has none."""
    path = clips.find_file(root, cfg.video_info_file)
    if path is None:
        return None
    out = set()
    for i, raw in enumerate(_read_csv(path)):
        try:
            out.add(EpicVideoInfo.model_validate(raw).video_id)
        except ValidationError as e:
            raise EpisodeError(path, f"row {i + 1}", str(e.errors()[0]["msg"]), stage="discover") from e
    return out


# ------------------------------------------------------------------------------------------------ rows


def _group_spec(rows: list[EpicRow], path: Path) -> ClipSpec:
    ids = [r.narration_id for r in rows]
    metrics = {"segments": float(len(rows))}
    if len(rows) == 1:
        metrics |= {
            k: float(v) for k in ("verb_class", "noun_class") if (v := getattr(rows[0], k)) is not None
        }
    return ClipSpec(
        clip_id=f"{rows[0].video_id}/{'+'.join(ids)}", video_id=rows[0].video_id, video=None,
        annotation=str(path), where="+".join(ids), start_s=rows[0].start_timestamp,
        end_s=max(r.stop_timestamp for r in rows), text=MERGE_JOIN.join(r.narration for r in rows),
        metrics=metrics,
    )  # fmt: skip


def _can_merge(group: list[EpicRow], row: EpicRow, cfg: EpicConfig) -> bool:
    start, end = group[0].start_timestamp, max(r.stop_timestamp for r in group)
    return (
        end - start < cfg.merge_below_s
        and row.start_timestamp - end <= cfg.merge_gap_s
        and max(end, row.stop_timestamp) - start <= cfg.max_episode_s
    )


def merge_rows(rows: list[EpicRow], cfg: EpicConfig) -> list[list[EpicRow]]:
    """Greedy merge of short neighbours, per video in start order (reversed segments stay alone)."""
    groups: list[list[EpicRow]] = []
    growing: list[EpicRow] | None = None  # the group that may still take in its next neighbour
    for row in sorted(rows, key=lambda r: (r.video_id, r.start_timestamp, natural_key(r.narration_id))):
        good = row.stop_timestamp > row.start_timestamp
        if good and growing and growing[0].video_id == row.video_id and _can_merge(growing, row, cfg):
            growing.append(row)
            continue
        groups.append([row])
        growing = groups[-1] if good else None
    return groups


def annotation_specs(path: Path, cfg: EpicConfig) -> list[ClipSpec]:
    specs, rows = [], []
    for i, raw in enumerate(_read_csv(path)):
        try:
            rows.append(EpicRow.model_validate(raw))
        except ValidationError as e:
            nid, video_id = raw.get("narration_id") or f"row {i + 1}", raw.get("video_id") or "?"
            specs.append(clips.invalid_record(f"{video_id}/{nid}", video_id, path, nid, e))
    return specs + [_group_spec(g, path) for g in merge_rows(rows, cfg)]


# ---------------------------------------------------------------------------------------------- index


def _resolve(spec: ClipSpec, videos: dict[str, Path], known: set[str] | None) -> ClipSpec:
    spec = spec.model_copy(update={"video": str(videos[spec.video_id]) if spec.video_id in videos else None})
    if known is not None and spec.video_id not in known:
        return clips.mark_unknown(spec, "video_id", f"unknown video id {spec.video_id!r} (not in video info)")
    return spec


@lru_cache(maxsize=2)
def clip_index(root: str, cfg_json: str) -> dict[str, ClipSpec]:
    """Every clip of the input by id (parsed once, where discovery runs: the refs carry their clips)."""
    cfg = EpicConfig.model_validate_json(cfg_json)
    path = Path(root)
    files = [f for name in cfg.annotation_files if (f := clips.find_file(path, name)) is not None]
    if not files:
        raise EpisodeError(
            path, "annotation_files", f"none of {cfg.annotation_files} found", stage="discover"
        )
    videos, known = clips.find_videos(path, cfg.video_extensions), known_videos(path, cfg)
    specs = [_resolve(s, videos, known) for f in files for s in annotation_specs(f, cfg)]
    return clips.select(clips.mark_overlaps(specs, cfg.overlap), cfg.missing_videos)


SOURCE = clips.ClipSource(
    "epic", EpicConfig, clip_index, "EPIC_100_*.csv annotation files with their <video_id>.MP4 videos"
)
