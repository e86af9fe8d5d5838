"""`pipelines.yaml`: one validated section per source."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.captions import CaptionsConfig
from schemas.latents import LatentsConfig
from schemas.source_config import QualityConfig, SourceConfig, VideoConfig
from schemas.sources_agibot import AgibotConfig
from schemas.sources_egodex import EgoDexConfig
from schemas.sources_hot3d import Hot3dConfig
from schemas.sources_human import Ego4DConfig, EpicConfig, Ssv2Config, VideosConfig
from schemas.sources_lerobot import LeRobotInputConfig
from schemas.sources_oxe import OxeConfig
from schemas.tiers import TiersConfig

PIPELINE_VERSION = "0.1.0"
__all__ = [  # the section models live beside their source's config; this module is the one import place
    "PIPELINE_VERSION",
    "AgibotConfig",
    "AnySourceConfig",
    "Ego4DConfig",
    "EgoDexConfig",
    "EpicConfig",
    "Hot3dConfig",
    "LeRobotInputConfig",
    "OxeConfig",
    "PipelinesFile",
    "QualityConfig",
    "SourceConfig",
    "Ssv2Config",
    "TiersConfig",
    "VideoConfig",
    "VideosConfig",
    "config_sha256",
]


AnySourceConfig = Annotated[
    EgoDexConfig
    | OxeConfig
    | LeRobotInputConfig
    | Hot3dConfig
    | AgibotConfig
    | Ego4DConfig
    | EpicConfig
    | Ssv2Config
    | VideosConfig,
    Field(discriminator="format"),
]


class PipelinesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: dict[str, AnySourceConfig]
    latents: LatentsConfig = LatentsConfig()
    tiers: TiersConfig = TiersConfig()
    captions: CaptionsConfig = CaptionsConfig()

    @model_validator(mode="before")
    @classmethod
    def _category_rules(cls, data: Any) -> Any:
        """Give each section its category's rules from `tiers:` (a resolved section keeps its own)."""
        if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
            return data
        tiers = TiersConfig.model_validate(data.get("tiers") or {})
        sources = {name: _with_rules(section, tiers) for name, section in data["sources"].items()}
        return {**data, "sources": sources}

    @classmethod
    def load(cls, path: Path) -> PipelinesFile:
        with open(path) as f:
            raw = yaml.safe_load(f)
        for name, section in (raw.get("sources") or {}).items() if isinstance(raw, dict) else ():
            if isinstance(section, dict) and "quality" in section:
                raise ValueError(
                    f"{path}: sources.{name}.quality: tier thresholds live in the top-level `tiers:` block, "
                    "per category (docs/TIERS.md); remove the section's `quality` key"
                )
        return cls.model_validate(raw)

    def source(self, name: str) -> AnySourceConfig:
        if name not in self.sources:
            raise KeyError(f"pipelines.yaml has no section {name!r}; known: {sorted(self.sources)}")
        return self.sources[name]


def _with_rules(section: Any, tiers: TiersConfig) -> Any:
    kind = section.get("embodiment_kind") if isinstance(section, dict) else None
    if kind not in TiersConfig.model_fields or "quality" in section:
        return section
    return {**section, "quality": tiers.for_kind(kind)}


def config_sha256(cfg: BaseModel) -> str:
    """Hash of a validated section, stable across key order and YAML formatting. A section that keeps the
    default stage chain (`stages` unset) hashes as it did before sections could name their stages."""
    data = cfg.model_dump(mode="json")
    if data.get("stages", 0) is None:
        del data["stages"]
    blob = json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()
