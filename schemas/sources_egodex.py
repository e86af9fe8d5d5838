"""The `pipelines.yaml` section of an EgoDex source (reader: ingest/sources/egodex.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.source_config import SourceConfig


class EgoDexConfig(SourceConfig):
    format: Literal["egodex"]
    camera_key: str = "observation.images.ego"
    confidence_threshold: float = Field(0.2, ge=0, le=1, description="per-joint ARKit confidence to trust")
