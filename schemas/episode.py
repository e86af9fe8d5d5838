"""One canonical episode in memory: what a source + the shared stages hand to the writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from schemas.camera import POSE_NAMES, CameraModel
from schemas.canonical import VECTOR_DIM
from schemas.hands import HandsSource

FPS = 10
MAX_EPISODE_SECONDS = 15 * 60
QualityTier = Literal["high", "low", "actionless"]
Embodiment = str  # e.g. "human_ego", "franka", "widowx", "agibot_g1"


class EpisodeMeta(BaseModel):
    """The contract's extra keys of `meta/episodes.jsonl` (CONTRACT.md section 5)."""

    model_config = ConfigDict(extra="forbid")
    source_episode_id: str
    embodiment: Embodiment
    has_action: bool
    quality_tier: QualityTier
    quality_metrics: dict[str, float] = Field(default_factory=dict)
    # What decided the tier (docs/TIERS.md): the failing rule (`jerk_rms <= 30`), `interaction`,
    # `no_action`, `override` or `all_passed`; and a sentence naming the measured values.
    tier_rule: str = ""
    tier_reason: str = ""
    caption: str
    caption_source: str = Field(pattern=r"^(source|template|cached|vlm:.+)$")
    task_original: str
    # `estimated` when the hands come from video (ingest/hands/), not from the source; absent otherwise
    hands_source: HandsSource | None = Field(None, exclude_if=lambda v: v is None)


@dataclass
class VideoSource:
    """How to build one output camera stream: output frame k is source frame `frame_indices[k]`, taken
    from the video file `path`, or from `images` (encoded JPEG/PNG frames, e.g. RLDS) when given."""

    path: Path
    frame_indices: np.ndarray  # int64 [T]
    images: list[bytes] | None = None


@dataclass
class ExtraColumn:
    """A per-frame float32 column beside the canonical vectors, e.g. `action.native` (the source's own
    commanded action, unchanged) or `observation.joints`; `names` names its dimensions."""

    values: np.ndarray  # float32 [T, D]
    names: list[str]


ANNOTATION_PREFIX = "annotation."
RESERVED_COLUMNS = ("observation.state", "action", "observation.state_mask", "action_mask",
                    "timestamp", "frame_index", "episode_index", "index", "task_index")  # fmt: skip


@dataclass
class CanonicalEpisode:
    """Canonical vectors at 10 Hz plus what the writer needs to publish them."""

    meta: EpisodeMeta
    state: np.ndarray  # float32 [T, 146]
    action: np.ndarray  # float32 [T, 146]
    state_mask: np.ndarray  # bool [T, 146]
    action_mask: np.ndarray  # bool [T, 146]
    videos: dict[str, VideoSource] = field(default_factory=dict)  # feature key -> source
    extra: dict[str, ExtraColumn] = field(default_factory=dict)  # column name -> values
    # `annotation.<name>` -> per-frame text (e.g. a sub-skill); written as int64 rows of tasks.jsonl,
    # the way GR00T's `annotation.human.*` columns are
    annotations: dict[str, list[str]] = field(default_factory=dict)
    # the camera model of some `videos` (intrinsics at the source's size; the writer scales them to the
    # published size); a per-frame pose is the `extra` column its `pose_column` names
    cameras: list[CameraModel] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.state.shape[0])

    def frames(self, rows: slice) -> CanonicalEpisode:
        """The same episode restricted to frames `rows`: every per-frame field alike, meta unchanged."""
        return CanonicalEpisode(
            meta=self.meta,
            state=self.state[rows],
            action=self.action[rows],
            state_mask=self.state_mask[rows],
            action_mask=self.action_mask[rows],
            videos={k: VideoSource(v.path, v.frame_indices[rows], v.images) for k, v in self.videos.items()},
            extra={k: ExtraColumn(c.values[rows], c.names) for k, c in self.extra.items()},
            annotations={k: texts[rows] for k, texts in self.annotations.items()},
            cameras=list(self.cameras),
        )

    def check(self) -> None:
        """Raise ValueError naming the field when the arrays break the contract."""
        t = self.length
        if t == 0:
            raise ValueError("episode has zero frames")
        if t > MAX_EPISODE_SECONDS * FPS:
            raise ValueError(f"episode has {t} frames, more than {MAX_EPISODE_SECONDS} s at {FPS} Hz")
        for name, dtype in (("state", np.float32), ("action", np.float32),
                            ("state_mask", np.bool_), ("action_mask", np.bool_)):  # fmt: skip
            arr = getattr(self, name)
            if arr.shape != (t, VECTOR_DIM) or arr.dtype != dtype:
                want = f"{np.dtype(dtype)}[{t}, {VECTOR_DIM}]"
                raise ValueError(f"{name}: expected {want}, got {arr.dtype}{list(arr.shape)}")
        for name in ("state", "action"):
            arr, mask = getattr(self, name), getattr(self, f"{name}_mask")
            if not np.isfinite(arr[mask]).all():
                raise ValueError(f"{name}: non-finite value where {name}_mask is true")
        for key, video in self.videos.items():
            if len(video.frame_indices) != t:
                raise ValueError(f"{key}: {len(video.frame_indices)} video frames planned for {t} rows")
        for key, col in self.extra.items():
            _check_extra(key, col, t)
        for key, texts in self.annotations.items():
            _check_annotation(key, texts, t)
        for cam in self.cameras:
            _check_camera(cam, self.videos, self.extra)
        if len({cam.camera for cam in self.cameras}) != len(self.cameras):
            raise ValueError("cameras: two camera models for one video")


def _check_extra(key: str, col: ExtraColumn, t: int) -> None:
    if key in RESERVED_COLUMNS or "/" in key or "image" in key or key.startswith(ANNOTATION_PREFIX):
        raise ValueError(f"{key}: not a valid extra column name")
    if col.values.dtype != np.float32 or col.values.ndim != 2 or col.values.shape[0] != t:
        raise ValueError(f"{key}: expected float32[{t}, D], got {col.values.dtype}{list(col.values.shape)}")
    if len(col.names) != col.values.shape[1]:
        raise ValueError(f"{key}: {len(col.names)} names for {col.values.shape[1]} dimensions")


def _check_annotation(key: str, texts: list[str], t: int) -> None:
    if not key.startswith(ANNOTATION_PREFIX) or key == ANNOTATION_PREFIX or "/" in key:
        raise ValueError(f"{key}: annotation columns are named {ANNOTATION_PREFIX}<name>")
    if len(texts) != t or not all(isinstance(x, str) for x in texts):
        raise ValueError(f"{key}: expected {t} strings, got {len(texts)}")


def _check_camera(cam: CameraModel, videos: dict[str, VideoSource], extra: dict[str, ExtraColumn]) -> None:
    if cam.camera not in videos:
        raise ValueError(f"cameras: {cam.camera} is not one of the episode's videos {sorted(videos)}")
    if cam.pose_column is not None and (
        cam.pose_column not in extra or extra[cam.pose_column].names != POSE_NAMES
    ):
        raise ValueError(
            f"cameras: {cam.camera}'s pose column {cam.pose_column} is not an extra column {POSE_NAMES}"
        )
