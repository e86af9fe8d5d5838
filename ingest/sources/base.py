"""What every source module provides: discover source episodes, convert one of them."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from schemas.episode import CanonicalEpisode
from schemas.pipelines import SourceConfig


class SourceEpisodeRef(BaseModel):
    """One source episode: a stable id (path relative to the input root) and its files."""

    model_config = ConfigDict(frozen=True)
    source_episode_id: str
    files: dict[str, str]  # role ("hdf5", "mp4", ...) -> absolute path


class Source(Protocol):
    name: str

    def discover(self, root: Path, cfg: SourceConfig) -> list[SourceEpisodeRef]:
        """All episodes under `root`, sorted by `source_episode_id` (the dataset's episode order)."""
        ...

    def convert(self, ref: SourceEpisodeRef, cfg: SourceConfig) -> list[CanonicalEpisode]:
        """Canonical 10 Hz episodes (several when a recording is cut). Raises EpisodeError."""
        ...
