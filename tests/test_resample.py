"""Resampling to 10 Hz: counts, nearest frames, linear / SLERP / minimum values."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.convert import resample as rs


def rz(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    c, s, z, o = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


@pytest.mark.parametrize(("n", "k"), [(1, 1), (2, 1), (3, 1), (4, 2), (94, 32), (95, 32), (96, 32), (97, 33)])
def test_counts_at_30hz(n: int, k: int) -> None:
    plan = rs.make_plan(np.arange(n) / 30.0)
    assert plan.length == k
    assert k == (n - 1) // 3 + 1


def test_30hz_picks_every_third_frame_exactly() -> None:
    plan = rs.make_plan(np.arange(94) / 30.0)
    assert plan.nearest.tolist() == [3 * k for k in range(32)]
    np.testing.assert_allclose(plan.times, np.arange(32) / 10, atol=0)
    values = np.random.default_rng(0).normal(size=(94, 5))
    assert np.array_equal(rs.resample_linear(plan, values), values[::3])
    R = rz(np.random.default_rng(1).uniform(-3, 3, 94))
    assert np.array_equal(rs.resample_rotations(plan, R), R[::3])


def test_5hz_upsampling_is_linear_between_samples() -> None:
    src = np.arange(5) / 5.0  # 0 .. 0.8 s
    plan = rs.make_plan(src)
    assert plan.length == 9  # 0.0 .. 0.8, never past the last sample
    values = np.stack([2 * src + 1, -src], -1)
    out = rs.resample_linear(plan, values)
    t = np.arange(9) / 10
    np.testing.assert_allclose(out, np.stack([2 * t + 1, -t], -1), atol=1e-12)
    assert plan.nearest[::2].tolist() == [0, 1, 2, 3, 4]  # even steps coincide with source samples


def test_3hz_nearest_and_count() -> None:
    plan = rs.make_plan(np.arange(10) / 3.0)  # 0 .. 3.0 s
    assert plan.length == 31
    # t = 0.1 -> 0.3 of the way from sample 0 to 1; t = 0.2 -> 0.6: nearer sample 1.
    assert plan.nearest[:5].tolist() == [0, 0, 1, 1, 1]
    np.testing.assert_allclose(plan.weight[1:3], [0.3, 0.6], atol=1e-9)


def test_irregular_timestamps_and_offset_start() -> None:
    src = 7.0 + np.array([0.0, 0.07, 0.31, 0.4])  # starts at 7 s: output times count from the first sample
    vals = np.array([0.0, 7.0, 31.0, 40.0])  # 100 * (t - 7): linear in time
    plan = rs.make_plan(src)
    assert plan.length == 5
    np.testing.assert_allclose(rs.resample_linear(plan, vals), [0, 10, 20, 30, 40], atol=1e-9)
    assert plan.nearest.tolist() == [0, 1, 2, 2, 3]  # 0.2 s is nearer 0.31 than 0.07


def test_rotations_slerp_at_constant_angular_velocity() -> None:
    src = np.arange(6) / 5.0
    plan = rs.make_plan(src)
    out = rs.resample_rotations(plan, rz(1.5 * src))
    np.testing.assert_allclose(out, rz(1.5 * plan.times), atol=1e-12)
    poses = np.tile(np.eye(4), (6, 1, 1))
    poses[:, :3, :3], poses[:, :3, 3] = rz(1.5 * src), np.stack([src, 2 * src, 0 * src], -1)
    out = rs.resample_poses(plan, poses)
    np.testing.assert_allclose(out[:, :3, 3], np.stack([plan.times, 2 * plan.times, 0 * plan.times], -1))
    np.testing.assert_allclose(out[:, 3], np.tile([0, 0, 0, 1.0], (plan.length, 1)))


def test_confidence_is_the_minimum_of_contributing_samples() -> None:
    plan = rs.make_plan(np.arange(3) / 5.0)  # samples at 0, 0.2, 0.4 s
    conf = np.array([0.9, 0.1, 0.8])
    # t=0 -> sample 0 only; 0.1 -> min(0.9, 0.1); 0.2 -> sample 1; 0.3 -> min(0.1, 0.8); 0.4 -> sample 2.
    np.testing.assert_allclose(rs.resample_min(plan, conf), [0.9, 0.1, 0.1, 0.1, 0.8])
    conf = np.array([0.9, 0.5, np.nan])
    out = rs.resample_min(plan, conf)
    assert out[:3].tolist() == [0.9, 0.5, 0.5] and np.isnan(out[3:]).all()  # NaN is never confident


def test_rejects_bad_timestamps() -> None:
    with pytest.raises(ValueError):
        rs.make_plan(np.array([0.0, 0.1, 0.1]))
    with pytest.raises(ValueError):
        rs.make_plan(np.array([]))


def test_chunk_ranges() -> None:
    assert rs.chunk_ranges(25, 10) == [(0, 10), (10, 20), (20, 25)]
    assert rs.chunk_ranges(9000, 9000) == [(0, 9000)]
    assert rs.chunk_ranges(9001, 9000) == [(0, 9000), (9000, 9001)]
