"""The located episodes of a LeRobot input that both `meta/` readers fill: `lerobot_meta.py` (v2.0 / v2.1)
and `lerobot_v3.py` (v3.0)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class InputInfo(BaseModel):
    """The keys of `meta/info.json` the reader uses (others are ignored)."""

    model_config = ConfigDict(extra="ignore")
    codebase_version: str
    robot_type: str | None = None
    fps: float = Field(gt=0)
    chunks_size: int | None = Field(None, gt=0)
    data_path: str
    video_path: str | None = None
    features: dict[str, Any] = Field(default_factory=dict)


class VideoWindow(BaseModel):
    """One camera of one episode: the MP4 and where the episode lies in it (seconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: Path
    from_s: float = Field(0.0, ge=0)
    to_s: float | None = None


class EpisodeEntry(BaseModel):
    """One source episode, located."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    index: int = Field(ge=0)
    length: int | None = Field(None, ge=0)
    tasks: list[str] = Field(default_factory=list)
    data_file: Path
    rows: tuple[int, int] | None = None  # v3.0: dataset_from_index, dataset_to_index (global `index`)
    videos: dict[str, VideoWindow] = Field(default_factory=dict)
    camera_data: dict[str, Any] = Field(default_factory=dict)  # v2.x `task_data.camera_data` (LDA-1B sim)


def video_keys(info: InputInfo) -> list[str]:
    return [k for k, f in info.features.items() if isinstance(f, dict) and f.get("dtype") == "video"]
