"""Something-Something v2 (20BN / Qualcomm): one episode per clip, captioned by its filled-in label.

Input: a folder holding, anywhere below it, the section's `annotation_files` (`something-something-v2-
train.json`, `-validation.json`: lists of `{"id", "label", "template", "placeholders"}`; `label` is the
template filled in, lower case), the `labels_file` (`{"<template without brackets>": "<class id>"}`) and
the clips `<id>.webm` (found by file stem, any folder). A clip whose folder matches `class_folder_pattern`
(`task<N>`, the Human2Bot / DVD demo layout: clips of class N with no SSv2 id) is an episode too, captioned
by its class's template (`task_original` the template). `class_id` goes to
`quality_metrics`. Each clip is one episode from its first to its last frame; the test split has no labels
and is left out. No intrinsics: `ingest hands` assumes the section's field of view.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest.errors import EpisodeError
from ingest.sources import clips
from ingest.sources.clips import ClipSpec
from schemas.sources_human import Ssv2Config


class Ssv2Record(BaseModel):
    """One labelled clip of a split JSON."""

    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1)
    label: str
    template: str


def plain_template(template: str) -> str:
    """`Putting [something] on [something]` -> `Putting something on something` (the labels file's key)."""
    return template.replace("[", "").replace("]", "")


def _read_json(path: Path, field: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EpisodeError(path, field, f"cannot read JSON: {e}", stage="discover") from e


def read_labels(path: Path | None) -> dict[str, int]:
    """Class template -> class id; empty when there is no labels file."""
    if path is None:
        return {}
    raw = _read_json(path, "labels")
    if not isinstance(raw, dict):
        raise EpisodeError(path, "labels", "expected an object {template: id}", stage="discover")
    try:
        return {str(k): int(v) for k, v in raw.items()}
    except (TypeError, ValueError) as e:
        raise EpisodeError(path, "labels", f"a class id is not an integer: {e}", stage="discover") from e


def _clip(clip_id: str, video: Path | None, annotation: Path, where: str, text: str, class_id: int | None):
    metrics = {} if class_id is None else {"class_id": float(class_id)}
    return ClipSpec(clip_id=clip_id, video_id=clip_id, video=str(video) if video else None,
                    annotation=str(annotation), where=where, start_s=0.0, end_s=None, text=text,
                    metrics=metrics)  # fmt: skip


def annotation_specs(path: Path, labels: dict[str, int], videos: dict[str, Path]) -> list[ClipSpec]:
    raw = _read_json(path, "records")
    if not isinstance(raw, list):
        raise EpisodeError(path, "records", "expected a list of clips", stage="discover")
    specs = []
    for n, item in enumerate(raw):
        try:
            rec = Ssv2Record.model_validate(item)
        except ValidationError as e:
            name = str(item.get("id", n)) if isinstance(item, dict) else str(n)
            specs.append(clips.invalid_record(name, name, path, f"[{n}]", e))
            continue
        class_id = labels.get(plain_template(rec.template))
        specs.append(_clip(rec.id, videos.get(rec.id), path, f"[{n}] id {rec.id}", rec.label, class_id))
    return specs


def class_folder_specs(root: Path, cfg: Ssv2Config, labels: dict[str, int]) -> list[ClipSpec]:
    """Clips in `task<N>` folders: captioned by class N's template."""
    pattern = re.compile(cfg.class_folder_pattern)
    by_id = {v: k for k, v in labels.items()}
    exts = {e.lower() for e in cfg.video_extensions}
    specs = []
    for path in sorted(root.rglob("*")):
        m = pattern.match(path.parent.name)
        if m is None or path.suffix.lower() not in exts or not path.is_file() or path.name.startswith("."):
            continue
        rel = path.relative_to(root).as_posix()
        class_id = int(m.group(1))
        spec = _clip(rel, path, path.parent, rel, by_id.get(class_id, ""), class_id)
        if class_id not in by_id:
            spec = spec.model_copy(
                update={"problem": ("class_id", f"class {class_id} is not in {cfg.labels_file}")}
            )
        specs.append(spec)
    return specs


@lru_cache(maxsize=2)
def clip_index(root: str, cfg_json: str) -> dict[str, ClipSpec]:
    """Every clip of the input by id (parsed once, where discovery runs: the refs carry their clips)."""
    cfg = Ssv2Config.model_validate_json(cfg_json)
    path = Path(root)
    labels = read_labels(clips.find_file(path, cfg.labels_file))
    pattern = re.compile(cfg.class_folder_pattern)
    videos = {stem: p for stem, p in clips.find_videos(path, cfg.video_extensions).items()
              if not pattern.match(p.parent.name)}  # fmt: skip
    files = [f for name in cfg.annotation_files if (f := clips.find_file(path, name)) is not None]
    specs = [s for f in files for s in annotation_specs(f, labels, videos)]
    specs += class_folder_specs(path, cfg, labels)
    if not specs:
        msg = f"none of {cfg.annotation_files} found, and no class folder"
        raise EpisodeError(path, "annotation_files", msg, stage="discover")
    return clips.select(specs, cfg.missing_videos)


SOURCE = clips.ClipSource(
    "ssv2", Ssv2Config, clip_index,
    "something-something-v2-*.json with <id>.webm clips, or task<class id>/ folders of clips",
)  # fmt: skip
