"""What every source module provides: discover source episodes, convert one of them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from ingest.errors import EpisodeError
from schemas.episode import CanonicalEpisode
from schemas.pipelines import SourceConfig


class SourceEpisodeRef(BaseModel):
    """One source episode: a stable id (path relative to the input root) and its files."""

    model_config = ConfigDict(frozen=True)
    source_episode_id: str
    files: dict[str, str]  # role ("hdf5", "mp4", ...) -> absolute path
    # The source's own record of this episode (JSON), when discovery has parsed it out of an index file
    # too big to parse again in every worker (Ego4D, EPIC-KITCHENS: `clips.ClipSpec`).
    record: str | None = None


@dataclass(frozen=True)
class PartReject:
    """One part of a source item that could not be converted while the rest of the item was (e.g. one
    corrupt record of an RLDS shard): the id its episode would have had, and why."""

    source_episode_id: str
    error: EpisodeError


class Source(Protocol):
    name: str
    layout: str  # what `discover` looks for under --input, one line (named when it finds nothing)
    # optional `requires: tuple[str, ...]`: modules the converter imports lazily; `ingest run` imports
    # them on the driver before Ray starts, so a missing one is refused once (not rejected per episode)

    def discover(self, root: Path, cfg: SourceConfig) -> list[SourceEpisodeRef]:
        """All episodes under `root`, sorted by `source_episode_id` (the dataset's episode order); [] when
        there is none (`ingest run` then fails, naming `layout`)."""
        ...

    def convert(self, ref: SourceEpisodeRef, cfg: SourceConfig) -> Sequence[CanonicalEpisode | PartReject]:
        """Canonical 10 Hz episodes (several when a recording is cut, or per record of a shard). Raises
        EpisodeError when the whole item is bad; a bad part of an item that holds several source episodes
        comes back as a `PartReject` in its place, and the good parts are still published."""
        ...


def natural_key(text: str) -> list[tuple[int, int | str]]:
    """Sort key in which digit runs compare as numbers (`ep_2` before `ep_10`): every source's order."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", text) if p]


FIELD = re.compile(r"^(?P<key>[^\[\]]+)(\[(?P<a>\d+):(?P<b>\d+)\])?$")


def parse_field(spec: str) -> tuple[str, slice | None]:
    """A mapping field of `pipelines.yaml`, `"<key>"` or `"<key>[a:b]"` -> (key, slice or None).
    Raises ValueError for anything else."""
    m = FIELD.match(spec)
    if m is None:
        raise ValueError(f"{spec!r}: not `<key>` or `<key>[a:b]`")
    return m["key"], None if m["a"] is None else slice(int(m["a"]), int(m["b"]))
