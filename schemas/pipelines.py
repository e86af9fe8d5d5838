"""`pipelines.yaml`: one validated section per source."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field

from schemas.latents import LatentsConfig
from schemas.source_config import QualityConfig, SourceConfig, VideoConfig
from schemas.sources_egodex import EgoDexConfig
from schemas.sources_lerobot import LeRobotInputConfig
from schemas.sources_oxe import OxeConfig

PIPELINE_VERSION = "0.1.0"
__all__ = [  # the section models live beside their source's config; this module is the one import place
    "PIPELINE_VERSION",
    "AnySourceConfig",
    "EgoDexConfig",
    "LeRobotInputConfig",
    "OxeConfig",
    "PipelinesFile",
    "QualityConfig",
    "SourceConfig",
    "VideoConfig",
    "config_sha256",
]


AnySourceConfig = Annotated[EgoDexConfig | OxeConfig | LeRobotInputConfig, Field(discriminator="format")]


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
