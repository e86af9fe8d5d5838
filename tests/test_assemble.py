"""ingest/sources/base.py:assemble_episode, the one way every source builds its canonical episode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.sources.base import Absent, assemble_episode
from schemas.canonical import VECTOR_DIM
from schemas.episode import VideoSource
from schemas.pipelines import PipelinesFile, SourceConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cfg() -> SourceConfig:
    return PipelinesFile.load(ROOT / "pipelines.yaml").source("oxe")


def _vectors(t: int, valid_from: int) -> Absent:
    """State everywhere; actions valid from frame `valid_from` on."""
    state = np.arange(t * VECTOR_DIM, dtype=np.float32).reshape(t, VECTOR_DIM)
    action_mask = np.zeros((t, VECTOR_DIM), bool)
    action_mask[valid_from:, :3] = True
    return Absent(state, state.copy(), np.ones((t, VECTOR_DIM), bool), action_mask)


def test_rows_cut_every_per_frame_field_and_decide_has_action(cfg: SourceConfig) -> None:
    vectors = _vectors(10, valid_from=6)
    video = {"cam": VideoSource(path=Path("x.mp4"), frame_indices=np.arange(100, 110))}
    early = assemble_episode("a#0", cfg, vectors, ("pick", "source", "Pick"), rows=slice(0, 5), videos=video)
    late = assemble_episode("a#1", cfg, vectors, ("pick", "source", "Pick"), rows=slice(5, 10), videos=video)
    assert (early.meta.has_action, early.meta.quality_tier) == (False, "actionless")
    assert (late.meta.has_action, late.meta.quality_tier) == (True, "low")
    assert late.state[0, 0] == 5 * VECTOR_DIM and late.videos["cam"].frame_indices.tolist() == [
        105,
        106,
        107,
        108,
        109,
    ]
    assert (late.meta.embodiment, late.meta.caption, late.meta.task_original) == ("widowx", "pick", "Pick")


def test_a_broken_episode_is_refused_naming_the_field(cfg: SourceConfig) -> None:
    vectors = Absent.of_length(4)
    bad = Absent(vectors.state[:, :10], vectors.action, vectors.state_mask, vectors.action_mask)
    with pytest.raises(ValueError, match="state"):
        assemble_episode("b", cfg, bad, ("x", "template", ""))
