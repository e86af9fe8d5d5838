"""A source episode that was not converted (`meta/rejects.jsonl`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Stage = Literal["discover", "read", "convert", "video", "write", "publish", "latents", "duplicate", "hands"]


class RejectRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source_path: str
    stage: Stage
    error: str
