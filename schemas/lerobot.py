"""LeRobot v2.1 meta files (reference/lerobot-v21.md): info.json, episodes, tasks, stats."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.episode import EpisodeMeta

CODEBASE_VERSION = "v2.1"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
CAMERA_NAMES = ["height", "width", "channels"]
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
INFO_PATH = "meta/info.json"
EPISODES_PATH = "meta/episodes.jsonl"
TASKS_PATH = "meta/tasks.jsonl"
EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
REJECTS_PATH = "meta/rejects.jsonl"
CARD_PATH = "meta/dataset_card.json"
STATS_PATH = "meta/stats.json"  # GR00T's global stats (Gr00tFeatureStats); lerobot v2.1 ignores it


def episode_chunk(episode_index: int, chunks_size: int = CHUNKS_SIZE) -> int:
    return episode_index // chunks_size


def data_path(episode_index: int) -> str:
    return DATA_PATH.format(episode_chunk=episode_chunk(episode_index), episode_index=episode_index)


def video_path(episode_index: int, video_key: str) -> str:
    return VIDEO_PATH.format(
        episode_chunk=episode_chunk(episode_index), video_key=video_key, episode_index=episode_index
    )


class VideoInfo(BaseModel):
    """The `info` dict of a video feature, as lerobot's `get_video_info` writes it."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    fps: float = Field(alias="video.fps")
    height: int = Field(alias="video.height")
    width: int = Field(alias="video.width")
    channels: int = Field(3, alias="video.channels")
    codec: str = Field(alias="video.codec")
    pix_fmt: str = Field(alias="video.pix_fmt")
    is_depth_map: bool = Field(False, alias="video.is_depth_map")
    has_audio: bool = False


class Feature(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dtype: str
    shape: list[int]
    names: list[str] | dict[str, list[str]] | None = None
    info: VideoInfo | None = None

    @field_validator("shape")
    @classmethod
    def _non_empty(cls, v: list[int]) -> list[int]:
        if not v or any(d <= 0 for d in v):
            raise ValueError(f"shape must be a non-empty list of positive ints, got {v}")
        return v


class InfoJson(BaseModel):
    model_config = ConfigDict(extra="forbid")
    codebase_version: Literal["v2.1"] = CODEBASE_VERSION
    robot_type: str | None = None
    total_episodes: int
    total_frames: int
    total_tasks: int
    total_videos: int
    total_chunks: int
    chunks_size: int = CHUNKS_SIZE
    fps: int
    splits: dict[str, str]
    data_path: str = DATA_PATH
    video_path: str | None = VIDEO_PATH
    features: dict[str, Feature]

    @field_validator("features")
    @classmethod
    def _feature_names(cls, v: dict[str, Feature]) -> dict[str, Feature]:
        for name, feat in v.items():
            if "/" in name:
                raise ValueError(f"feature name {name!r} contains '/'")
            if feat.dtype == "video" and feat.names != CAMERA_NAMES:
                raise ValueError(f"camera {name!r} names must be {CAMERA_NAMES}, got {feat.names}")
            if feat.dtype != "video" and "image" in name:
                raise ValueError(f"non-camera feature {name!r} must not contain 'image'")
        return v

    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.dtype == "video"]


class EpisodeRecord(EpisodeMeta):
    """One line of `meta/episodes.jsonl`: lerobot's keys plus the contract's extra keys."""

    episode_index: int = Field(ge=0)
    tasks: list[str]
    length: int = Field(gt=0)


class TaskRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task_index: int = Field(ge=0)
    task: str


class FeatureStats(BaseModel):
    """min/max/mean/std as nested lists (shape (D,) or (3,1,1) for cameras), count as [n] (frames).

    `valid_count` [D] (state and action, whose masks mark what is real): per dimension, the number of valid
    values the statistics are over; masked values are left out. lerobot 0.3.3 reads min/max/mean/std/count
    and only asserts that every key is a list of at least one dimension, so the extra key loads."""

    model_config = ConfigDict(extra="forbid")
    min: list[Any]
    max: list[Any]
    mean: list[Any]
    std: list[Any]
    count: list[int] = Field(min_length=1, max_length=1)
    valid_count: list[int] | None = Field(None, exclude_if=lambda v: v is None)


class Gr00tFeatureStats(BaseModel):
    """A numeric feature's entry in `meta/stats.json`, exactly GR00T's `DatasetStatisticalValues`
    (Isaac-GR00T `gr00t/data/schema.py`: max, min, mean, std, q01, q99, each a list of the feature's
    width). GR00T slices every key of an entry by the modality.json ranges, so an entry holds only lists of
    the feature's width (no `count`), and cameras have none (lerobot v2.1 reads `episodes_stats.jsonl`, not
    this file). State and action add `valid_count` (per dimension, the valid values every statistic is over;
    masked values are left out): as wide as the others, so it slices the same, and GR00T's pydantic model
    ignores a key it does not declare."""

    model_config = ConfigDict(extra="forbid")
    mean: list[float]
    std: list[float]
    min: list[float]
    max: list[float]
    q01: list[float]
    q99: list[float]
    valid_count: list[int] | None = Field(None, exclude_if=lambda v: v is None)

    @model_validator(mode="after")
    def _same_width(self) -> Gr00tFeatureStats:
        widths = {len(v) for v in (self.mean, self.std, self.min, self.max, self.q01, self.q99)}
        if len(widths) != 1 or 0 in widths:
            raise ValueError(f"mean/std/min/max/q01/q99 must be non-empty lists of one width, got {widths}")
        return self


class EpisodeStatsRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    episode_index: int = Field(ge=0)
    stats: dict[str, FeatureStats]


# --------------------------------------------------------------------------- GR00T `meta/modality.json`

MODALITY_PATH = "meta/modality.json"


class ModalitySlice(BaseModel):
    """A named `[start, end)` slice of `observation.state` or `action` (GR00T's modality.json), or of
    the column `original_key` names."""

    model_config = ConfigDict(extra="forbid")
    start: int = Field(ge=0)
    end: int = Field(gt=0)
    absolute: bool = True
    rotation_type: str | None = None
    original_key: str | None = None


class ModalityJson(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: dict[str, ModalitySlice]
    action: dict[str, ModalitySlice]
    video: dict[str, dict[str, str]]
    annotation: dict[str, dict[str, str]]


def _group_name(name: str) -> str:
    """A dimension's group: `state.left_arm.3` -> `left_arm`, `left_arm_joint1` -> `left_arm_joint`,
    `joint_position.0` -> `joint_position` (dots become `_`: GR00T splits keys at the first dot)."""
    for prefix in ("state.", "action.", "observation."):
        name = name.removeprefix(prefix)
    return re.sub(r"[._]?\d+$", "", name).replace(".", "_") or "joints"


def dimension_groups(names: Sequence[str], original_key: str) -> dict[str, ModalitySlice]:
    """Consecutive dimensions of one group (`_group_name`) as one named slice of `original_key`; a name
    that comes back later gets `_2`, `_3`, ..."""
    groups: dict[str, ModalitySlice] = {}
    start = 0
    for i in range(1, len(names) + 1):
        if i < len(names) and _group_name(names[i]) == _group_name(names[start]):
            continue
        base, n = _group_name(names[start]), 2
        key = base
        while key in groups:
            key, n = f"{base}_{n}", n + 1
        groups[key] = ModalitySlice(start=start, end=i, original_key=original_key)
        start = i
    return groups


def modality_json(
    video_keys: list[str],
    annotation_keys: Sequence[str] = (),
    state: dict[str, ModalitySlice] | None = None,
    action: dict[str, ModalitySlice] | None = None,
) -> ModalityJson:
    """The canonical vector's parts as GR00T modality slices; cameras renamed to their last key part.
    `state` / `action` replace the canonical groups (a joint-only dataset: its native joint groups).

    Action position and rotation are deltas (`absolute: false`); gripper and keypoints are targets."""
    from schemas.canonical import PARTS, SIDES, part_slice

    rotation = {"rotation": "rotation_6d"}
    state_groups, action_groups = {}, {}
    for side in SIDES:
        for part in PARTS:
            sl = part_slice(side, part)
            key = f"{side}_{part}"
            rot = rotation.get(part)
            state_groups[key] = ModalitySlice(start=sl.start, end=sl.stop, rotation_type=rot)
            delta = part in ("position", "rotation")
            action_groups[key] = ModalitySlice(
                start=sl.start, end=sl.stop, absolute=not delta, rotation_type=rot
            )
    video = {k.removeprefix("observation.images."): {"original_key": k} for k in video_keys}
    annotation = {"human.task_description": {"original_key": "task_index"}}
    annotation.update({k.removeprefix("annotation."): {"original_key": k} for k in annotation_keys})
    return ModalityJson(
        state=state_groups if state is None else state,
        action=action_groups if action is None else action,
        video=video,
        annotation=annotation,
    )
