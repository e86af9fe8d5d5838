"""`meta/dataset_card.json` (CONTRACT.md section 6)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EmbodimentKind = Literal["real_robot", "sim_robot", "human_action", "human_actionless"]
ReferenceFrame = Literal["camera", "base"]


class DatasetCard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str
    source_version: str
    license: str
    embodiment_kind: EmbodimentKind
    reference_frame: ReferenceFrame
    native_fps: float
    fps: int
    hours: float = Field(ge=0)
    episodes: int = Field(ge=0)
    frames: int = Field(ge=0)
    rejects: int = Field(ge=0)
    valid_state_dims: list[str]
    valid_action_dims: list[str]
    pipeline_version: str
    pipeline_config_sha256: str
    # `ingest hands` (docs/HANDS.md): how many episodes' hands were estimated from video, and what of the
    # camera's motion is known (head motion is in their actions unless camera poses were given)
    hands_source: str | None = Field(None, exclude_if=lambda v: v is None)
    camera_motion: str | None = Field(None, exclude_if=lambda v: v is None)
