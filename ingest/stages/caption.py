"""The caption stage of `ingest run`: each episode gets the template caption before it is staged
(ingest/captions/template.py, docs/CAPTIONS.md); `ingest caption` may replace it later."""

from __future__ import annotations

from collections import Counter

from ingest.captions.template import template_meta
from ingest.stages.base import Stage
from schemas.episode import CanonicalEpisode
from schemas.source_config import SourceConfig


def caption(ep: CanonicalEpisode, cfg: SourceConfig, counts: Counter[str]) -> CanonicalEpisode:
    """The template caption; `template`: episodes it captioned, `kept`: those whose text it left as it was
    (no source text the template keeps)."""
    meta = template_meta(ep.meta)
    counts["template" if meta is not ep.meta else "kept"] += 1
    ep.meta = meta
    return ep


STAGE = Stage("caption", caption)
