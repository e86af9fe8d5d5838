"""`pipelines.yaml`: one validated section per source."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from schemas.card import EmbodimentKind, ReferenceFrame
from schemas.latents import LatentsConfig

PIPELINE_VERSION = "0.1.0"


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
    model_config = ConfigDict(extra="forbid")
    source_version: str
    license: str
    embodiment: str
    embodiment_kind: EmbodimentKind
    reference_frame: ReferenceFrame
    native_fps: float = Field(gt=0)
    video: VideoConfig = VideoConfig()
    quality: QualityConfig = QualityConfig()


class EgoDexConfig(SourceConfig):
    format: Literal["egodex"]
    camera_key: str = "observation.images.ego"
    confidence_threshold: float = Field(0.2, ge=0, le=1)


AnySourceConfig = Annotated[EgoDexConfig, Field(discriminator="format")]


class PipelinesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: dict[str, AnySourceConfig]
    latents: LatentsConfig = LatentsConfig()

    @classmethod
    def load(cls, path: Path) -> PipelinesFile:
        with open(path) as f:
            return cls.model_validate(yaml.safe_load(f))

    def source(self, name: str) -> AnySourceConfig:
        if name not in self.sources:
            raise KeyError(f"pipelines.yaml has no section {name!r}; known: {sorted(self.sources)}")
        return self.sources[name]


def config_sha256(cfg: BaseModel) -> str:
    """Hash of a validated section, stable across key order and YAML formatting."""
    blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()
