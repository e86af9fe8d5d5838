"""The stages `ingest run` can chain, by name; a new stage is registered here (docs/ARCHITECTURE.md)."""

from __future__ import annotations

from ingest.stages import caption, quality
from ingest.stages.base import Stage
from schemas.source_config import SourceConfig

STAGES: dict[str, Stage] = {s.name: s for s in (quality.STAGE, caption.STAGE)}


def chain(cfg: SourceConfig) -> list[Stage]:
    """The section's stages in order: `stages:` of its pipelines.yaml section, else DEFAULT_STAGES."""
    return [STAGES[name] for name in cfg.stage_names]
