"""SE(3)/SO(3) helpers against rotations written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.convert import geometry as g


def rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def euler_batch(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    angles = rng.uniform(-np.pi, np.pi, size=(n, 3))
    return np.stack([rz(a) @ ry(b) @ rx(c) for a, b, c in angles])


def test_rotation_to_6d_is_first_then_second_column() -> None:
    # Rz(90 deg): columns (0, 1, 0) and (-1, 0, 0).
    np.testing.assert_allclose(g.rotation_to_6d(rz(np.pi / 2)), [0, 1, 0, -1, 0, 0], atol=1e-12)


def test_6d_round_trip() -> None:
    R = euler_batch(200)
    np.testing.assert_allclose(g.rotation_from_6d(g.rotation_to_6d(R)), R, atol=1e-12)


def test_6d_gram_schmidt_orthonormalises() -> None:
    # Columns (2, 0, 0) and (1, 3, 0): Gram-Schmidt gives x, y, and z = x cross y.
    np.testing.assert_allclose(g.rotation_from_6d(np.array([2.0, 0, 0, 1, 3, 0])), np.eye(3), atol=1e-12)


def test_quaternion_of_known_rotations() -> None:
    th = 0.8
    np.testing.assert_allclose(
        g.matrix_to_quaternion(rz(th)), [np.cos(th / 2), 0, 0, np.sin(th / 2)], atol=1e-12
    )
    # 180 deg about x: w = 0, the branch that trace-based formulas get wrong.
    np.testing.assert_allclose(np.abs(g.matrix_to_quaternion(rx(np.pi))), [0, 1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(
        g.quaternion_to_matrix(np.array([np.cos(0.4), 0, np.sin(0.4), 0])), ry(0.8), atol=1e-12
    )


def test_quaternion_round_trip_and_sign() -> None:
    R = euler_batch(300, seed=1)
    q = g.matrix_to_quaternion(R)
    assert (q[:, 0] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(g.quaternion_to_matrix(q), R, atol=1e-12)


def test_slerp_midpoint_is_half_angle() -> None:
    mid = g.slerp_rotation(np.eye(3), rz(np.pi / 2), 0.5)
    s = np.sqrt(0.5)
    np.testing.assert_allclose(mid, [[s, -s, 0], [s, s, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(g.slerp_rotation(rx(0.2), rx(1.0), 0.25), rx(0.4), atol=1e-12)


def test_slerp_takes_shortest_arc_and_is_exact_at_ends() -> None:
    # Rz(170 deg) -> Rz(-170 deg): the short way passes through 180 deg, not 0.
    np.testing.assert_allclose(
        g.slerp_rotation(rz(np.radians(170)), rz(np.radians(-170)), 0.5), rz(np.pi), atol=1e-9
    )
    R0, R1 = euler_batch(2, seed=3)
    assert np.array_equal(g.slerp_rotation(R0, R1, 0.0), R0)
    assert np.array_equal(g.slerp_rotation(R0, R1, 1.0), R1)
    q = g.slerp(np.array([1.0, 0, 0, 0]), -np.array([1.0, 0, 0, 0]), 0.3)  # same rotation, opposite sign
    np.testing.assert_allclose(np.abs(q), [1, 0, 0, 0], atol=1e-12)


def test_invert_pose_and_transform_points() -> None:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = rz(0.3) @ rx(-1.1), [0.5, -2.0, 1.5]
    np.testing.assert_allclose(g.invert_pose(T) @ T, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(g.invert_pose(T), np.linalg.inv(T), atol=1e-12)
    pts = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    want = pts @ T[:3, :3].T + T[:3, 3]
    np.testing.assert_allclose(g.transform_points(T, pts), want, atol=1e-12)


def test_orthonormality_worst_frame() -> None:
    R = euler_batch(10, seed=2)
    R[6] *= 1.01  # scaled: |R^T R - I| = 1.01^2 - 1, |det - 1| = 1.01^3 - 1 (the larger)
    R[2, 0, 1] += 0.001
    idx, err = g.worst_frame(R)
    assert idx == 6
    assert err == pytest.approx(1.01**3 - 1, rel=1e-9)
    R[4, 1, 1] = np.nan
    assert g.worst_frame(R)[0] == 4
    reflection = np.diag([1.0, 1.0, -1.0])  # orthogonal but det -1
    assert g.orthonormality_error(reflection) == pytest.approx(2.0)
