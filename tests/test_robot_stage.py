"""The robot-arm helpers shared by oxe / lerobot / agibot (ingest/convert/robot.py and the source rotation
conventions in ingest/convert/geometry.py), against values written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.convert import geometry as g
from ingest.convert import robot
from schemas.canonical import SIDE_DIM

Q = np.pi / 2


def rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def pose(R: np.ndarray, p: tuple[float, float, float]) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, p
    return T


# ------------------------------------------------------------------------------------------- rotations


def test_euler_extrinsic_and_intrinsic_against_hand_built_products() -> None:
    rng = np.random.default_rng(3)
    angles = rng.uniform(-np.pi, np.pi, size=(8, 3))
    ext, intr = g.euler_to_matrix(angles, "xyz"), g.euler_to_matrix(angles, "ZYX")
    for (a, b, c), E, In in zip(angles, ext, intr, strict=True):
        np.testing.assert_allclose(E, rz(c) @ ry(b) @ rx(a), atol=1e-12)
        np.testing.assert_allclose(In, rz(a) @ ry(b) @ rx(c), atol=1e-12)
    # quarter turns about x then z: e_y -> e_z -> e_z (extrinsic); intrinsic Rx Rz: e_y -> -e_x -> -e_x
    turns = np.array([[Q, 0.0, Q]])
    np.testing.assert_allclose(g.euler_to_matrix(turns, "xyz")[0] @ [0, 1, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(g.euler_to_matrix(turns, "XYZ")[0] @ [0, 1, 0], [-1, 0, 0], atol=1e-12)


@pytest.mark.parametrize("order", ["xYz", "xy", "xyw"])
def test_euler_order_is_checked(order: str) -> None:
    with pytest.raises(ValueError, match="euler order"):
        g.euler_to_matrix(np.zeros((1, 3)), order)


def test_quaternion_orders_and_the_zero_quaternion() -> None:
    s = np.sin(Q / 2)
    xyzw = np.array([[0, 0, s, np.cos(Q / 2)], [s, 0, 0, np.cos(Q / 2)]])
    want = np.stack([rz(Q), rx(Q)])
    np.testing.assert_allclose(g.values_to_rotation(xyzw, "quat_xyzw"), want, atol=1e-12)
    np.testing.assert_allclose(g.values_to_rotation(xyzw[:, [3, 0, 1, 2]], "quat_wxyz"), want, atol=1e-12)
    bad = np.array([[0, 0, 0, 1.0], [0, 0, 0, 1.0], [0, 0, 1e-9, 0]])
    with pytest.raises(ValueError, match="zero quaternion at row 2"):
        g.values_to_rotation(bad, "quat_xyzw")
    with pytest.raises(ValueError, match="zero quaternion at step 2"):
        g.values_to_rotation(bad, "quat_wxyz", unit="step")


def test_rot6d_and_width_check() -> None:
    # scaled, non-orthogonal columns: Gram-Schmidt gives e_y, e_z, and their cross product e_x
    got = g.values_to_rotation(np.array([[0, 2.0, 0, 0, 1.0, 3.0]]), "rot6d")
    np.testing.assert_allclose(got[0], [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-12)
    np.testing.assert_allclose(g.values_to_rotation([[Q, 0, 0]], "euler", "zyx")[0], rz(Q), atol=1e-12)
    with pytest.raises(ValueError, match="euler needs 3 values, got 4"):
        g.values_to_rotation(np.zeros((2, 4)), "euler")
    degenerate = np.array([[1.0, 0, 0, 0, 1.0, 0], [1.0, 0, 0, 2.0, 0, 0]])  # row 1: parallel columns
    with pytest.raises(ValueError, match="not orthonormal at row 1"):
        g.values_to_rotation(degenerate, "rot6d")


# -------------------------------------------------------------------------------------- offset, gripper


def test_offset_transform_and_eef_poses() -> None:
    s = np.sin(Q / 2)
    off = robot.offset_transform((np.cos(Q / 2), 0, 0, s), (0.1, 0.0, 0.0))
    np.testing.assert_allclose(off, pose(rz(Q), (0.1, 0, 0)), atol=1e-12)
    got = robot.eef_poses(np.stack([rz(Q), np.eye(3)]), np.array([[1.0, 2, 3], [0, 0, 0]]), off)
    # the offset's 0.1 m along the EEF x axis is along base y once the EEF is turned a quarter about z
    np.testing.assert_allclose(got[0, :3, 3], [1.0, 2.1, 3.0], atol=1e-12)
    np.testing.assert_allclose(got[0, :3, :3], rz(np.pi), atol=1e-12)
    np.testing.assert_allclose(got[1], off, atol=1e-12)


def test_gripper_to_unit_either_order_clipped() -> None:
    raw = np.array([120.0, 60.0, 0.0, -10.0, 130.0, 90.0])
    np.testing.assert_allclose(robot.gripper_to_unit(raw, 120.0, 0.0), [0, 0.5, 1, 1, 0, 0.25])
    np.testing.assert_allclose(robot.gripper_to_unit(raw, 0.0, 120.0), [1, 0.5, 0, 0, 1, 0.75])
    with pytest.raises(ValueError, match="closed and open"):
        robot.gripper_to_unit(raw, 1.0, 1.0)


# ------------------------------------------------------------------------------------------- one side

CAM = np.stack([pose(np.eye(3), (0, 0, 0)), pose(np.eye(3), (1, 0, 0)), pose(rz(Q), (0, 0, 0))])
POSE = np.stack([pose(np.eye(3), (1, 0, 0)), pose(np.eye(3), (2, 0, 0)), pose(rz(Q), (2, 1, 0))])
GRIP = np.array([0.2, 0.5, 0.9])
SIX_I, SIX_RZ = [1, 0, 0, 0, 1, 0], [0, 1, 0, -1, 0, 0]


def test_camera_frame_side_by_hand() -> None:
    side = robot.robot_side(POSE, GRIP, 3, CAM)
    # state: inv(cam[t]) @ pose[t]; frame 2: Rz(-90) (2, 1, 0) = (1, -2, 0), rotation Rz(-90) Rz(90) = I
    np.testing.assert_allclose(side.state[:, :3], [[1, 0, 0], [1, 0, 0], [1, -2, 0]], atol=1e-6)
    np.testing.assert_allclose(side.state[:, 3:9], [SIX_I] * 3, atol=1e-6)
    # action: the wrist at t+1 in the camera at t; t=1: (2, 1, 0) - (1, 0, 0) in camera 1 -> (0, 1, 0)
    np.testing.assert_allclose(side.action[:, :3], [[1, 0, 0], [0, 1, 0], [0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(side.action[:, 3:9], [SIX_I, SIX_RZ, SIX_I], atol=1e-6)
    np.testing.assert_allclose(side.state[:, 9], GRIP, atol=1e-7)
    np.testing.assert_allclose(side.action[:, 9], [0.5, 0.9, 0.9], atol=1e-7)
    assert side.state_mask[:, :10].all() and not side.state_mask[:, 10:].any()
    assert side.action_mask[:, :10].all() and not side.action_mask[:, 10:].any()
    assert side.state.dtype == np.float32 and side.state.shape == (3, SIDE_DIM)


def test_base_frame_side_by_hand() -> None:
    side = robot.robot_side(POSE, GRIP, 3)
    np.testing.assert_allclose(side.state[:, :3], [[1, 0, 0], [2, 0, 0], [2, 1, 0]], atol=1e-6)
    np.testing.assert_allclose(side.state[:, 3:9], [SIX_I, SIX_I, SIX_RZ], atol=1e-6)
    np.testing.assert_allclose(side.action[:, :3], [[1, 0, 0], [0, 1, 0], [0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(side.action[:, 3:9], [SIX_I, SIX_RZ, SIX_I], atol=1e-6)


def test_missing_pose_or_gripper_stays_masked() -> None:
    grip_only = robot.robot_side(None, GRIP, 3)
    assert not grip_only.state_mask[:, :9].any() and grip_only.state_mask[:, 9].all()
    np.testing.assert_array_equal(grip_only.state[:, :9], 0.0)
    np.testing.assert_allclose(grip_only.action[:, 9], [0.5, 0.9, 0.9], atol=1e-7)
    pose_only = robot.robot_side(POSE, None, 3, CAM)
    assert pose_only.state_mask[:, :9].all() and not pose_only.state_mask[:, 9:].any()
    assert not pose_only.action_mask[:, 9].any()
