"""What every source's `pipelines.yaml` section shares: output video, tier rules, provenance."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.card import EmbodimentKind, ReferenceFrame
from schemas.tiers import DEFAULT_TIERS, QualityConfig, TiersConfig


class VideoConfig(BaseModel):
    """Output video: size box, codec and encoder settings. H.264 decodes everywhere (NVDEC too).

    `width` x `height` bounds the published size: a source is scaled by one factor, never up, to fit
    inside, keeping its aspect ratio (ingest/video.py:output_size)."""

    model_config = ConfigDict(extra="forbid")
    width: int = Field(640, gt=0, multiple_of=2)
    height: int = Field(360, gt=0, multiple_of=2)
    codec: Literal["h264", "av1"] = "h264"
    crf: int = Field(23, ge=0, le=63)
    preset: str = "veryfast"
    gop: int = Field(10, gt=0)
    threads: int = Field(0, ge=0, description="codec threads per conversion; 0 lets FFmpeg choose")


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
    # The tier rules of this section's category: filled from the top-level `tiers:` block by
    # `PipelinesFile` (a section never sets them; docs/TIERS.md), else the built-in defaults.
    quality: QualityConfig = QualityConfig()

    @model_validator(mode="before")
    @classmethod
    def _category_rules(cls, data: Any) -> Any:
        kind = data.get("embodiment_kind") if isinstance(data, dict) else None
        if kind in TiersConfig.model_fields and "quality" not in data:
            return {**data, "quality": DEFAULT_TIERS.for_kind(data["embodiment_kind"])}
        return data
