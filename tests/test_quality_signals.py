"""Robot quality signals (`quality.robot_signals`) on hand-built 10 Hz trajectories, answers by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tests.fixtures.rlds as rlds_fx
from ingest.sources import oxe
from ingest.stages import quality
from ingest.stages.quality import robot_signals
from schemas.sources_oxe import OxeConfig

FPS = 10
POS, GRIP = slice(73, 76), 82  # side `right`: wrist position, gripper (schemas/canonical.py)
KEYS = {"idle_ratio", "path_over_displacement", "regrasps", "jerk_rms"}


def arrays(pos: np.ndarray, grip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`[T, 146]` state and mask with the right wrist at `pos` ([T, 3]) and gripper `grip` (default 1)."""
    t = len(pos)
    state, mask = np.zeros((t, 146)), np.zeros((t, 146), dtype=bool)
    state[:, POS] = pos
    state[:, GRIP] = 1.0 if grip is None else grip
    mask[:, 73:83] = True
    return state, mask


def line(t: int, step: np.ndarray) -> np.ndarray:
    return np.arange(t)[:, None] * step[None, :]


def test_straight_line_constant_speed() -> None:
    # 0.02 m per frame along (3, 4, 0)/5: 0.2 m/s, path 19 * 0.02 = displacement.
    state, mask = arrays(line(20, 0.02 * np.array([0.6, 0.8, 0.0])))
    sig = robot_signals(state, mask, ["right"], fps=FPS)
    assert set(sig) == KEYS
    assert sig["idle_ratio"] == 0.0
    assert sig["path_over_displacement"] == pytest.approx(1.0, abs=1e-12)
    assert sig["jerk_rms"] == pytest.approx(0.0, abs=1e-9)
    assert sig["regrasps"] == 0.0


def test_pause_of_known_length() -> None:
    # 6 frames moving 0.05 m/frame along x (5 moving pairs), then 4 more frames still (4 idle pairs).
    x = np.concatenate([0.05 * np.arange(6), np.full(4, 0.25)])
    state, mask = arrays(np.stack([x, 0 * x, 0 * x], axis=1))
    sig = robot_signals(state, mask, ["right"], fps=FPS)
    assert sig["idle_ratio"] == pytest.approx(4 / 9)
    assert sig["path_over_displacement"] == pytest.approx(1.0)


def test_slow_drift_counts_as_idle() -> None:
    # 0.0005 m/frame = 0.005 m/s < 0.01 m/s: every pair idle.
    state, mask = arrays(line(8, np.array([0.0005, 0.0, 0.0])))
    assert robot_signals(state, mask, ["right"], fps=FPS)["idle_ratio"] == 1.0


def test_out_and_back_path_over_displacement() -> None:
    # 0 -> 0.3 m -> 0.1 m along x: path 0.3 + 0.2 = 0.5, displacement 0.1 -> 5.
    x = np.concatenate([0.1 * np.arange(4), [0.2, 0.1]])
    state, mask = arrays(np.stack([x, 0 * x, 0 * x], axis=1))
    assert robot_signals(state, mask, ["right"], fps=FPS)["path_over_displacement"] == pytest.approx(5.0)


def test_round_trip_uses_displacement_floor() -> None:
    # 0 -> 0.1 -> 0 along x: path 0.2 m, displacement 0 floored at 1e-3 m -> 200.
    x = np.array([0.0, 0.1, 0.0])
    state, mask = arrays(np.stack([x, 0 * x, 0 * x], axis=1))
    assert robot_signals(state, mask, ["right"], fps=FPS)["path_over_displacement"] == pytest.approx(200.0)


def test_three_closings_are_two_regrasps() -> None:
    # open, close, open, close, open, close: three falls through 0.5 from above; 0.5 exactly counts as closed.
    grip = np.array([1.0, 0.9, 0.5, 0.1, 0.8, 0.2, 0.0, 0.7, 1.0, 0.3])
    state, mask = arrays(line(len(grip), np.array([0.01, 0.0, 0.0])), grip)
    assert robot_signals(state, mask, ["right"], fps=FPS)["regrasps"] == 2.0
    # starting closed and opening once is no closing at all
    state, mask = arrays(line(4, np.array([0.01, 0.0, 0.0])), np.array([0.0, 0.2, 0.9, 1.0]))
    assert robot_signals(state, mask, ["right"], fps=FPS)["regrasps"] == 0.0


def test_cubic_trajectory_jerk() -> None:
    # x(t) = a t^3 (t in s): third derivative 6a, and the third difference of a cubic is exact.
    a = 0.5
    t = np.arange(15) / FPS
    x = a * t**3
    state, mask = arrays(np.stack([x, 0 * x, 0 * x], axis=1))
    assert robot_signals(state, mask, ["right"], fps=FPS)["jerk_rms"] == pytest.approx(6 * a, rel=1e-9)
    # on two axes at once: |(6a, 6b)|
    b = 0.2
    state, mask = arrays(np.stack([x, b * t**3, 0 * x], axis=1))
    want = np.hypot(6 * a, 6 * b)
    assert robot_signals(state, mask, ["right"], fps=FPS)["jerk_rms"] == pytest.approx(want, rel=1e-9)


def test_masked_steps_ignored() -> None:
    # A straight line with two frames replaced by garbage and masked out: still a straight line.
    pos = line(12, np.array([0.02, 0.0, 0.0]))
    grip = np.ones(12)
    pos[5] = [9.0, -9.0, 9.0]
    pos[6] = [-9.0, 9.0, -9.0]
    grip[5] = 0.0  # a masked "closing" is no closing
    state, mask = arrays(pos, grip)
    mask[5:7, 73:83] = False
    sig = robot_signals(state, mask, ["right"], fps=FPS)
    # valid pairs: (0..4) -> 4 pairs, (7..11) -> 4 pairs; path 8 * 0.02, displacement 11 * 0.02
    assert sig["idle_ratio"] == 0.0
    assert sig["path_over_displacement"] == pytest.approx(8 / 11)
    assert sig["jerk_rms"] == pytest.approx(0.0, abs=1e-9)
    assert sig["regrasps"] == 0.0
    # the left side (all masked, zeros) is not looked at unless asked for
    assert robot_signals(state, mask, ["right"], fps=FPS) == sig


def test_no_valid_frames() -> None:
    state, mask = arrays(line(5, np.array([0.1, 0.0, 0.0])))
    mask[:] = False
    sig = robot_signals(state, mask, ["right"], fps=FPS)
    assert sig == {"idle_ratio": 0.0, "path_over_displacement": 0.0, "regrasps": 0.0, "jerk_rms": 0.0}


def test_oxe_fixture_episode_carries_signals(tmp_path: Path) -> None:
    cfg = OxeConfig(
        format="oxe", source_version="1.0.0", license="CC-BY-4.0", embodiment="widowx",
        embodiment_kind="real_robot", reference_frame="base", native_fps=5, gripper_range=(0.1, 1.1),
    )  # fmt: skip
    fx = rlds_fx.write_rlds_dataset(tmp_path, num_steps=6)
    refs = oxe.SOURCE.discover(fx.root, cfg)
    episodes = [ep for ref in refs for ep in oxe.SOURCE.convert(ref, cfg)]
    assert episodes
    for ep in episodes:
        m = quality.stage(ep, cfg).meta.quality_metrics
        assert set(m) >= KEYS
        assert all(np.isfinite(m[k]) for k in KEYS)
        assert set(m) >= {"valid_fraction", "wrist_speed_p99", "duration_s", "frames"}
