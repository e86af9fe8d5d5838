"""`pipelines.yaml` sections of the action-free human video sources (readers: ingest/sources/ego4d.py,
epic.py, videos.py; the clip they all build: ingest/sources/clips.py).

Every episode of these sources is a clip of a video file between two timestamps with a caption: no state
and no action (`has_action: false`, every mask false, tier `actionless`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.episode import MAX_EPISODE_SECONDS
from schemas.hands import HandsConfig
from schemas.source_config import SourceConfig

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
Overlap = Literal["allow", "reject"]
MissingVideos = Literal["skip", "reject"]


class ClipSourceConfig(SourceConfig):
    """What the three clip sources share."""

    camera_key: str = "observation.images.ego"
    max_episode_s: float = Field(
        MAX_EPISODE_SECONDS, gt=0, le=MAX_EPISODE_SECONDS, description="longer clips are cut into parts"
    )
    end_tolerance_s: float = Field(
        0.5, ge=0, description="a segment ending at most this far past the video's end is clipped to it"
    )
    overlap: Overlap = Field("allow", description="a segment overlapping an earlier one of its video")
    missing_videos: MissingVideos = Field(
        "skip", description="annotations of a known video whose file is not under the input"
    )
    video_extensions: list[str] = Field(default_factory=lambda: list(VIDEO_EXTENSIONS))
    hands: HandsConfig = Field(default_factory=HandsConfig, description="`ingest hands`: estimated hands")


class Ego4DConfig(ClipSourceConfig):
    """Ego4D: `narration.json` (point timestamps, windowed) and/or Goal-Step JSON (timed segments)."""

    format: Literal["ego4d"]
    annotations: list[Literal["narration", "goalstep"]] = Field(
        default_factory=lambda: ["narration", "goalstep"], min_length=1
    )
    narration_passes: list[Literal["narration_pass_1", "narration_pass_2"]] = Field(
        default_factory=lambda: ["narration_pass_1"], min_length=1
    )
    window_before_s: float = Field(2.0, ge=0, description="clip start = narration time minus this")
    window_after_s: float = Field(2.0, ge=0, description="clip end = narration time plus this")
    goalstep_level: Literal["goal", "step", "substep"] = "step"

    @model_validator(mode="after")
    def _window(self) -> Ego4DConfig:
        if self.window_before_s + self.window_after_s <= 0:
            raise ValueError("window_before_s + window_after_s must be positive")
        return self


class EpicConfig(ClipSourceConfig):
    """EPIC-KITCHENS-100: one episode per action segment of the annotation CSVs."""

    format: Literal["epic"]
    annotation_files: list[str] = Field(
        default_factory=lambda: ["EPIC_100_train.csv", "EPIC_100_validation.csv"], min_length=1
    )
    video_info_file: str = "EPIC_100_video_info.csv"
    merge_below_s: float = Field(0.0, ge=0, description="a segment shorter than this takes in the next one")
    merge_gap_s: float = Field(0.5, ge=0, description="...when the next one starts at most this much later")


class Ssv2Config(ClipSourceConfig):
    """Something-Something v2: label JSONs over `<id>.webm` clips, and class folders of demo clips."""

    format: Literal["ssv2"]
    annotation_files: list[str] = Field(
        default_factory=lambda: [
            "something-something-v2-train.json",
            "something-something-v2-validation.json",
        ],
        min_length=1,
        description="lists of {id, label, template, placeholders}; the test split has no labels",
    )
    labels_file: str = "something-something-v2-labels.json"
    class_folder_pattern: str = Field(
        r"^task(\d+)$",
        description="a folder whose name matches holds clips of that class id (Human2Bot, DVD)",
    )


class VideosConfig(ClipSourceConfig):
    """Any folder of videos, with an optional CSV `video,start,end,caption` of segments."""

    format: Literal["videos"]
    captions_csv: str = "captions.csv"
    overlap: Overlap = "reject"
