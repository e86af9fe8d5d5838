"""What every source's `pipelines.yaml` section shares: output video, quality rule, provenance."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.card import EmbodimentKind, ReferenceFrame


class VideoConfig(BaseModel):
    """Output video: size, codec and encoder settings. H.264 decodes everywhere (NVDEC too)."""

    model_config = ConfigDict(extra="forbid")
    width: int = Field(640, gt=0, multiple_of=2)
    height: int = Field(360, gt=0, multiple_of=2)
    codec: Literal["h264", "av1"] = "h264"
    crf: int = Field(23, ge=0, le=63)
    preset: str = "veryfast"
    gop: int = Field(10, gt=0)
    threads: int = Field(0, ge=0, description="codec threads per conversion; 0 lets FFmpeg choose")


class QualityConfig(BaseModel):
    """First tier rule: `high` when both thresholds hold, else `low` (docs/CONTRACT.md)."""

    model_config = ConfigDict(extra="forbid")
    min_valid_fraction: float = Field(0.8, ge=0, le=1)
    max_wrist_speed: float = Field(3.0, gt=0, description="metres per second, 99th percentile")


class SourceConfig(BaseModel):
    """Subclasses fix `format` to their source module's name (ingest/sources/<format>.py)."""

    model_config = ConfigDict(extra="forbid")
    format: str
    source_version: str
    license: str
    embodiment: str
    embodiment_kind: EmbodimentKind
    reference_frame: ReferenceFrame
    native_fps: float = Field(gt=0)
    video: VideoConfig = VideoConfig()
    quality: QualityConfig = QualityConfig()
