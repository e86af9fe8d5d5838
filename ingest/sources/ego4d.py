"""Ego4D (source-formats.md 4): `<video_uid>.mp4` videos with their annotations, action-free.

Input: a folder holding, anywhere below it, the videos (`v2/full_scale/<video_uid>.mp4`, found by file
stem), optionally `ego4d.json` (its `videos[].video_uid` are the known ids), and the annotations the
section asks for:
- `narration.json`: `{video_uid: {narration_pass_<n>: {narrations: [{timestamp_sec, narration_text}]}}}`;
  narrations are instants, so each becomes the window `[t - window_before_s, t + window_after_s]`,
  clipped to the video; a narration past the video's end is rejected. Id `<uid>/<pass>/<i>`.
- Goal-Step `goalstep*.json`: `{videos: [{video_uid, start_time, end_time, goal_description,
  segments: [{start_time, end_time, step_description, segments: [substeps]}]}]}`; `goalstep_level`
  picks the goal, its steps, or their substeps. Id `<uid>/<file stem>/<step>[.<substep>]` (or `/goal`).
A video_uid missing from `ego4d.json` (when there is one) is rejected as unknown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest.errors import EpisodeError
from ingest.sources import clips
from ingest.sources.clips import ClipSpec
from schemas.sources_human import Ego4DConfig

_WS = re.compile(r"[ \t\n\r]*")


class Narration(BaseModel):
    model_config = ConfigDict(extra="ignore")
    timestamp_sec: float
    narration_text: str


class GoalStepSegment(BaseModel):
    model_config = ConfigDict(extra="ignore")
    start_time: float
    end_time: float
    step_description: str = ""
    step_category: str = ""
    segments: list[GoalStepSegment] = Field(default_factory=list)


class GoalStepVideo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    video_uid: str
    start_time: float | None = None
    end_time: float | None = None
    goal_description: str = ""
    segments: list[GoalStepSegment] = Field(default_factory=list)


class Ego4DVideo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    video_uid: str


class Ego4DMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore")
    videos: list[Ego4DVideo]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EpisodeError(path, "json", f"cannot read: {e}", stage="discover") from e


def _first_error(e: ValidationError) -> tuple[str, str]:
    err = e.errors()[0]
    return ".".join(str(x) for x in err["loc"]) or "record", err["msg"]


def known_uids(root: Path) -> set[str] | None:
    """The video_uids of `ego4d.json`, or None when the input has none."""
    path = clips.find_file(root, "ego4d.json")
    if path is None:
        return None
    try:
        return {v.video_uid for v in Ego4DMetadata.model_validate(_read_json(path)).videos}
    except ValidationError as e:
        raise EpisodeError(path, _first_error(e)[0], _first_error(e)[1], stage="discover") from e


# ------------------------------------------------------------------------------------------ narrations


def _narration_spec(uid: str, pass_name: str, i: int, raw: Any, path: Path, cfg: Ego4DConfig) -> ClipSpec:
    clip_id, where = f"{uid}/{pass_name}/{i}", f"{uid}/{pass_name}[{i}]"
    try:
        n = Narration.model_validate(raw)
    except ValidationError as e:
        return clips.invalid_record(clip_id, uid, path, where, e)
    base = {"clip_id": clip_id, "video_id": uid, "video": None, "annotation": str(path), "where": where}
    t = n.timestamp_sec
    return ClipSpec(
        **base, start_s=t - cfg.window_before_s, end_s=t + cfg.window_after_s, text=n.narration_text,
        anchor_s=t, metrics={"timestamp_s": t},
    )  # fmt: skip


def _object_items(path: Path) -> Iterator[tuple[str, Any]]:
    """The members of the JSON object in `path`, one at a time: only one video's narrations are ever
    decoded at once (the whole tree of Ego4D's ~0.8 GB `narration.json` would take ~3 GB more)."""
    try:
        text = path.read_text()
    except (OSError, ValueError) as e:
        raise EpisodeError(path, "json", f"cannot read: {e}", stage="discover") from e
    decoder, pos = json.JSONDecoder(), _WS.match(text, 0).end()
    if not text.startswith("{", pos):
        raise EpisodeError(path, "json", "expected an object keyed by video_uid", stage="discover")
    pos = _WS.match(text, pos + 1).end()
    try:
        while not text.startswith("}", pos):
            key, pos = decoder.raw_decode(text, pos)
            pos = _WS.match(text, pos).end()
            if not isinstance(key, str) or not text.startswith(":", pos):
                raise ValueError(f"expected a video_uid and ':' at char {pos}")
            value, pos = decoder.raw_decode(text, _WS.match(text, pos + 1).end())
            yield key, value
            pos = _WS.match(text, pos).end()
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()
            elif not text.startswith("}", pos):
                raise ValueError(f"expected ',' or '}}' at char {pos}")
    except ValueError as e:
        raise EpisodeError(path, "json", f"cannot read: {e}", stage="discover") from e


def narration_specs(path: Path, cfg: Ego4DConfig) -> list[ClipSpec]:
    specs = []
    for uid, video in _object_items(path):
        for pass_name in cfg.narration_passes:
            block = video.get(pass_name) if isinstance(video, dict) else None
            narrations = block.get("narrations", []) if isinstance(block, dict) else []
            specs += [_narration_spec(uid, pass_name, i, raw, path, cfg) for i, raw in enumerate(narrations)]
    return specs


# ------------------------------------------------------------------------------------------- goal-step


def _step_specs(video: GoalStepVideo, base: dict[str, Any], level: str) -> list[ClipSpec]:
    """`base` holds video_id, video, annotation and `prefix` (`<uid>/<file stem>`, the clip ids' stem)."""
    if level == "goal":
        if video.start_time is None or video.end_time is None:
            return []
        segments = [("goal", video.start_time, video.end_time, video.goal_description)]
    else:
        steps = [(f"{k}", s) for k, s in enumerate(video.segments)]
        if level == "substep":
            steps = [(f"{k}.{j}", sub) for k, step in steps for j, sub in enumerate(step.segments)]
        segments = [(key, s.start_time, s.end_time, s.step_description) for key, s in steps]
    fields = {k: v for k, v in base.items() if k != "prefix"}
    return [
        ClipSpec(**fields, clip_id=f"{base['prefix']}/{key}", where=f"{base['prefix']}/{key}",
                 start_s=start, end_s=end, text=text)
        for key, start, end, text in segments
    ]  # fmt: skip


def goalstep_specs(path: Path, cfg: Ego4DConfig) -> list[ClipSpec]:
    data = _read_json(path)
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, list):
        raise EpisodeError(path, "videos", "expected a Goal-Step file with a `videos` list", stage="discover")
    specs = []
    for i, raw in enumerate(videos):
        uid = str(raw.get("video_uid", f"videos[{i}]")) if isinstance(raw, dict) else f"videos[{i}]"
        base = {"video_id": uid, "video": None, "annotation": str(path), "prefix": f"{uid}/{path.stem}"}
        try:
            video = GoalStepVideo.model_validate(raw)
        except ValidationError as e:
            specs.append(clips.invalid_record(base["prefix"], uid, path, base["prefix"], e))
            continue
        specs += _step_specs(video, base, cfg.goalstep_level)
    return specs


# ---------------------------------------------------------------------------------------------- index


def _annotation_specs(root: Path, cfg: Ego4DConfig) -> list[ClipSpec]:
    specs: list[ClipSpec] = []
    found = False
    if "narration" in cfg.annotations and (path := clips.find_file(root, "narration.json")) is not None:
        specs, found = specs + narration_specs(path, cfg), True
    if "goalstep" in cfg.annotations:
        for path in sorted(p for p in root.rglob("goalstep*.json") if p.is_file()):
            specs, found = specs + goalstep_specs(path, cfg), True
    if not found:
        raise EpisodeError(root, "annotations", f"no {' or '.join(cfg.annotations)} annotation file found",
                           stage="discover")  # fmt: skip
    return specs


def _resolve(spec: ClipSpec, videos: dict[str, Path], known: set[str] | None) -> ClipSpec:
    spec = spec.model_copy(update={"video": str(videos[spec.video_id]) if spec.video_id in videos else None})
    if known is not None and spec.video_id not in known:
        return clips.mark_unknown(
            spec, "video_uid", f"unknown video id {spec.video_id!r} (not in ego4d.json)"
        )
    return spec


@lru_cache(maxsize=2)
def clip_index(root: str, cfg_json: str) -> dict[str, ClipSpec]:
    """Every clip of the input by id (parsed once, where discovery runs: the refs carry their clips)."""
    cfg = Ego4DConfig.model_validate_json(cfg_json)
    path = Path(root)
    videos, known = clips.find_videos(path, cfg.video_extensions), known_uids(path)
    specs = [_resolve(s, videos, known) for s in _annotation_specs(path, cfg)]
    specs = clips.mark_overlaps(specs, cfg.overlap)
    return clips.select(specs, cfg.missing_videos)


SOURCE = clips.ClipSource(
    "ego4d", Ego4DConfig, clip_index, "<video_uid>.mp4 videos with narration.json / goalstep*.json"
)
