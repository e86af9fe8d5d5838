"""Robot-arm steps shared by the robot sources (oxe.py, lerobot.py, agibot.py): the end-effector offset,
gripper readings to [0, 1], and one side's 73 state/action values from 10 Hz end-effector poses
(CONTRACT.md sections 3 and 4). Rotation conventions of source values are in geometry.py.
"""

from __future__ import annotations

import numpy as np

from ingest.convert import hands
from ingest.convert.geometry import IDENTITY_6D, invert_pose, quaternion_to_matrix, rotation_to_6d
from schemas.canonical import SIDE_DIM

POS, ROT, GRIP = slice(0, 3), slice(3, 9), 9


def offset_transform(
    quat_wxyz: tuple[float, ...] | np.ndarray, translation: tuple[float, ...] | np.ndarray
) -> np.ndarray:
    """`T_offset [4, 4]` (source EEF frame -> canonical wrist/gripper-centre frame) from a wxyz quaternion
    and a translation in metres; the canonical pose is `T_eef @ T_offset`."""
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(np.asarray(quat_wxyz, dtype=np.float64))
    T[:3, 3] = np.asarray(translation, dtype=np.float64)
    return T


def gripper_to_unit(values: np.ndarray, closed: float, opened: float) -> np.ndarray:
    """Source gripper readings -> [0, 1] opening (0 at `closed`, 1 at `opened`, either order), clipped."""
    if closed == opened:
        raise ValueError(f"gripper range: closed and open are both {closed}")
    return np.clip((np.asarray(values, dtype=np.float64) - closed) / (opened - closed), 0.0, 1.0)


def eef_poses(rotation: np.ndarray, position: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """`[N, 4, 4]` canonical wrist poses `[R | p] @ T_offset` from `rotation [N, 3, 3]`, `position [N, 3]`
    (base frame) and `offset [4, 4]` (offset_transform)."""
    T = np.tile(np.eye(4), (len(rotation), 1, 1))
    T[:, :3, :3], T[:, :3, 3] = rotation, position
    return T @ offset


def robot_side(
    pose: np.ndarray | None, grip: np.ndarray | None, t: int, cam: np.ndarray | None = None
) -> hands.SideArrays:
    """One side's 73 values from 10 Hz `pose [T, 4, 4]` (base frame) and `grip [T]`, in the frame of
    `cam [T, 4, 4]` (base_from_camera; None: the base frame).

    State at t: `inv(cam[t]) @ pose[t]`. Action at t < T-1: `p'[t+1] - p[t]`, `R[t]^T R'[t+1]` (6D) with
    `inv(cam[t]) @ pose[t+1]` (camera motion decoupled), gripper of t+1; last frame: zero motion,
    identity, same gripper. What is None, and always the keypoints, is zero and masked."""
    state, action = np.zeros((t, SIDE_DIM)), np.zeros((t, SIDE_DIM))
    mask = np.zeros((t, SIDE_DIM), dtype=bool)
    if pose is not None:
        pose = np.asarray(pose, dtype=np.float64)
        if cam is None:
            now, nxt = pose, pose[1:]
        else:
            cam_inv = invert_pose(cam)
            now, nxt = cam_inv @ pose, cam_inv[:-1] @ pose[1:]
        state[:, POS], state[:, ROT], mask[:, :9] = now[:, :3, 3], rotation_to_6d(now[:, :3, :3]), True
        action[:-1, POS] = nxt[:, :3, 3] - now[:-1, :3, 3]
        action[:-1, ROT] = rotation_to_6d(np.swapaxes(now[:-1, :3, :3], -1, -2) @ nxt[:, :3, :3])
        action[-1, ROT] = IDENTITY_6D
    if grip is not None:
        state[:, GRIP], mask[:, GRIP] = grip, True
        action[:-1, GRIP], action[-1, GRIP] = grip[1:], grip[-1]
    return hands.SideArrays(
        state.astype(np.float32), action.astype(np.float32), mask, hands.action_mask(mask)
    )
