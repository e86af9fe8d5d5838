"""What every source module provides: discover source episodes, convert one of them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from ingest.errors import EpisodeError
from ingest.stages.quality import undecided_tier
from schemas.camera import CameraModel
from schemas.canonical import VECTOR_DIM
from schemas.episode import CanonicalEpisode, EpisodeMeta, ExtraColumn, VideoSource
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


class Vectors(Protocol):
    """The 146-wide state and action of an episode and their masks (`ingest.convert.hands.assemble`)."""

    state: np.ndarray  # float32 [T, 146]
    action: np.ndarray
    state_mask: np.ndarray  # bool [T, 146]
    action_mask: np.ndarray


@dataclass(frozen=True)
class Absent:
    """No state and no action: zeros, every value masked (action-free video)."""

    state: np.ndarray
    action: np.ndarray
    state_mask: np.ndarray
    action_mask: np.ndarray

    @classmethod
    def of_length(cls, t: int) -> Absent:
        zeros, masked = np.zeros((t, VECTOR_DIM), dtype=np.float32), np.zeros((t, VECTOR_DIM), dtype=bool)
        return cls(zeros, zeros.copy(), masked, masked.copy())


Text = tuple[str, str, str]  # (caption, caption_source, task_original)


def assemble_episode(
    ep_id: str,
    cfg: SourceConfig,
    vectors: Vectors,
    text: Text,
    *,
    rows: slice | None = None,
    has_action: bool | None = None,
    quality_metrics: dict[str, float] | None = None,
    videos: dict[str, VideoSource] | None = None,
    extra: dict[str, ExtraColumn] | None = None,
    annotations: dict[str, list[str]] | None = None,
    cameras: list[CameraModel] | None = None,
) -> CanonicalEpisode:
    """The one way a source builds its canonical episode: the metadata (id, the section's embodiment,
    `has_action`, the undecided tier, the caption triple, the source's own `quality_metrics`), the vectors
    and what rides with them, cut to `rows` when given (`CanonicalEpisode.frames`), then checked against
    the contract (ValueError naming the field). `has_action` defaults to: some action of `rows` is valid."""
    if has_action is None:
        has_action = bool((vectors.action_mask if rows is None else vectors.action_mask[rows]).any())
    meta = EpisodeMeta(
        source_episode_id=ep_id, embodiment=cfg.embodiment, has_action=has_action,
        quality_tier=undecided_tier(has_action), quality_metrics=quality_metrics or {},
        caption=text[0], caption_source=text[1], task_original=text[2],
    )  # fmt: skip
    ep = CanonicalEpisode(
        meta, vectors.state, vectors.action, vectors.state_mask, vectors.action_mask, videos=videos or {},
        extra=extra or {}, annotations=annotations or {}, cameras=cameras or [],
    )  # fmt: skip
    ep = ep if rows is None else ep.frames(rows)
    ep.check()
    return ep


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
