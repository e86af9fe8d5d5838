"""What every source's `pipelines.yaml` section shares: output video, tier rules, provenance."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.card import EmbodimentKind, ReferenceFrame
from schemas.tiers import DEFAULT_TIERS, QualityConfig, TiersConfig


class VideoConfig(BaseModel):
    """Output video: size box, codec and encoder settings. H.264 decodes everywhere (NVDEC too).

    `width` x `height` bounds the published size: a source is scaled by one factor, never up, to fit
    inside, keeping its aspect ratio (ingest/video.py:output_size). `fit: pad` publishes exactly the box
    instead, the picture scaled to fit inside it (up or down) and centred on black bars: for a section
    whose sources differ in aspect ratio (HOT3D's Aria and Quest3), since a dataset's camera has one size."""

    model_config = ConfigDict(extra="forbid")
    width: int = Field(640, gt=0, multiple_of=2)
    height: int = Field(360, gt=0, multiple_of=2)
    codec: Literal["h264", "av1"] = "h264"
    crf: int = Field(23, ge=0, le=63)
    preset: str = "veryfast"
    gop: int = Field(10, gt=0)
    threads: int = Field(0, ge=0, description="codec threads per conversion; 0 lets FFmpeg choose")
    fit: Literal["shrink", "pad"] = "shrink"


Vec3 = tuple[float, float, float]
# The episode stages `ingest run` applies after a source's `convert`, in this order (ingest/stages/chain.py).
StageName = Literal["quality", "caption"]
DEFAULT_STAGES: tuple[StageName, ...] = ("quality", "caption")


class EefOffset(BaseModel):
    """Rigid `T_offset` from a robot's source EEF frame to the canonical gripper-centre frame
    (docs/CONTRACT.md, last section): `T_canonical = T_eef @ T_offset`, the translation in metres in the
    source EEF frame. The one declaration of an offset for every robot reader (oxe, lerobot, agibot).
    `provenance` says where the numbers come from (model file and link names, vendor documentation, or
    how they were measured); it is required whenever the offset is not the identity."""

    model_config = ConfigDict(extra="forbid")
    translation: Vec3 = (0.0, 0.0, 0.0)
    quat_wxyz: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    provenance: str = ""

    @model_validator(mode="after")
    def _explained(self) -> EefOffset:
        norm = sum(v * v for v in self.quat_wxyz) ** 0.5
        if abs(norm - 1.0) > 1e-3:
            raise ValueError(f"quat_wxyz {self.quat_wxyz}: not a unit quaternion (norm {norm:.4f})")
        if not self.is_identity and not self.provenance.strip():
            raise ValueError("a non-identity eef_offset needs its provenance")
        return self

    @property
    def is_identity(self) -> bool:
        return max(abs(v) for v in self.translation) == 0.0 and abs(abs(self.quat_wxyz[0]) - 1.0) < 1e-12


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
    # The stages this section runs (docs/ARCHITECTURE.md): None runs DEFAULT_STAGES; a list leaves some out
    # (`[quality]`: keep the source's caption as it is), never reorders them.
    stages: list[StageName] | None = None

    @field_validator("stages")
    @classmethod
    def _default_order(cls, v: list[StageName] | None) -> list[StageName] | None:
        if v is not None and v != [s for s in DEFAULT_STAGES if s in v]:
            raise ValueError(f"stages {v}: each at most once, in the order {list(DEFAULT_STAGES)}")
        return v

    @property
    def stage_names(self) -> tuple[StageName, ...]:
        return DEFAULT_STAGES if self.stages is None else tuple(self.stages)

    @model_validator(mode="before")
    @classmethod
    def _category_rules(cls, data: Any) -> Any:
        kind = data.get("embodiment_kind") if isinstance(data, dict) else None
        if kind in TiersConfig.model_fields and "quality" not in data:
            return {**data, "quality": DEFAULT_TIERS.for_kind(data["embodiment_kind"])}
        return data
