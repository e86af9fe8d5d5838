"""The captioner interface: a batch of requests in, one result per request out, in order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from schemas.captions import CaptionResult


@dataclass
class CaptionRequest:
    """One episode to caption: its source text, its current caption and (for the VLM) a few frames."""

    source_episode_id: str
    task_original: str  # the source's own text (may be "")
    caption: str  # the episode's current caption, kept when a captioner has nothing for it
    caption_source: str
    frames: np.ndarray | None = None  # uint8 [N, H, W, 3], in time order; only the VLM needs them


class Captioner(Protocol):
    """Writes `caption_source` `template`, `cached` or `vlm:<model>` (its `name`)."""

    name: str
    needs_frames: bool

    def caption(self, batch: list[CaptionRequest]) -> list[CaptionResult]: ...


def kept(req: CaptionRequest) -> CaptionResult:
    """The request's current caption, unchanged (a captioner had nothing for it)."""
    return CaptionResult(source_episode_id=req.source_episode_id, caption=req.caption,
                         caption_source=req.caption_source, fallback=True)  # fmt: skip
