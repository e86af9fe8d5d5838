"""One module per source. Register a new source here and give it a `pipelines.yaml` section."""

from __future__ import annotations

import importlib

from ingest.sources.base import Source

SOURCE_MODULES: dict[str, str] = {
    "egodex": "ingest.sources.egodex",
    "oxe": "ingest.sources.oxe",
    "lerobot": "ingest.sources.lerobot",
    "hot3d": "ingest.sources.hot3d",
    "agibot": "ingest.sources.agibot",
    "ego4d": "ingest.sources.ego4d",
    "epic": "ingest.sources.epic",
    "ssv2": "ingest.sources.ssv2",
    "videos": "ingest.sources.videos",
}


def get_source(name: str) -> Source:
    if name not in SOURCE_MODULES:
        raise KeyError(f"unknown source {name!r}; known: {sorted(SOURCE_MODULES)}")
    return importlib.import_module(SOURCE_MODULES[name]).SOURCE
