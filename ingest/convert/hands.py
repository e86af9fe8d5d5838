"""One side's 73 state and action values from 10 Hz poses (CONTRACT.md sections 3 and 4).

Inputs per 10 Hz frame t: camera pose `T_cam[t]` (world_from_camera), wrist pose `T_wrist[t]` (world),
21 keypoints in the wrist frame and optional per-keypoint confidences (index 0 = the wrist itself).

- state: wrist pose in the camera frame at t, `inv(T_cam[t]) @ T_wrist[t]` (position, 6D rotation),
  gripper `clip(|kp[4] - kp[8]| / 0.10, 0, 1)`, keypoints flattened.
- action (t < T-1): `p'[t+1] - p[t]` with `p'[t+1]` the wrist at t+1 in the camera frame AT t;
  rotation `R[t]^T R'[t+1]` (6D); gripper and keypoints of t+1. Last frame: zero motion, identity
  rotation, gripper and keypoints of T-1.
- masks: wrist valid iff its confidence >= threshold; keypoint j valid iff its confidence >= threshold
  and the wrist is valid; gripper valid iff thumb tip and index tip are valid. action mask at t < T-1 is
  `state_mask[t] & state_mask[t+1]` for position/rotation and `state_mask[t+1]` for gripper/keypoints;
  last frame: `state_mask[T-1]`. No confidences: everything is valid.
- A masked value keeps what the source measured (low confidence is not absence; nothing is invented):
  the mask alone says not to train on it. Only a side the source does not have is zeros (`assemble`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.convert.geometry import IDENTITY_6D, invert_pose, rotation_to_6d
from schemas.canonical import (
    INDEX_TIP,
    N_KEYPOINTS,
    SIDE_DIM,
    SIDES,
    THUMB_TIP,
    VECTOR_DIM,
    Side,
    side_offset,
)

GRIPPER_FULL_OPEN_M = 0.10
POS, ROT, GRIP, KPS = slice(0, 3), slice(3, 9), slice(9, 10), slice(10, 73)


@dataclass
class SideArrays:
    """One side at 10 Hz: float32 values and bool masks, each `[T, 73]`."""

    state: np.ndarray
    action: np.ndarray
    state_mask: np.ndarray
    action_mask: np.ndarray


def gripper_opening(keypoints: np.ndarray) -> np.ndarray:
    """`[T, 21, 3]` -> `[T]`: thumb-tip to index-tip distance / 0.10 m, clipped to [0, 1]."""
    dist = np.linalg.norm(keypoints[:, THUMB_TIP] - keypoints[:, INDEX_TIP], axis=-1)
    return np.clip(dist / GRIPPER_FULL_OPEN_M, 0.0, 1.0)


def state_mask(confidence: np.ndarray | None, threshold: float, t: int) -> np.ndarray:
    """`[T, 73]` bool state mask from per-keypoint confidences `[T, 21]` (None: all valid)."""
    if confidence is None:
        return np.ones((t, SIDE_DIM), dtype=bool)
    ok = np.asarray(confidence) >= threshold  # NaN compares False: not confident
    wrist = ok[:, 0]
    kp = ok & wrist[:, None]
    mask = np.zeros((t, SIDE_DIM), dtype=bool)
    mask[:, POS] = wrist[:, None]
    mask[:, ROT] = wrist[:, None]
    mask[:, GRIP] = (kp[:, THUMB_TIP] & kp[:, INDEX_TIP])[:, None]
    mask[:, KPS] = np.repeat(kp, 3, axis=1)
    return mask


def action_mask(smask: np.ndarray) -> np.ndarray:
    """Action mask `[T, 73]` from the state mask (see the module docstring)."""
    amask = smask.copy()
    amask[:-1, :9] = smask[:-1, :9] & smask[1:, :9]
    amask[:-1, GRIP] = smask[1:, GRIP]
    amask[:-1, KPS] = smask[1:, KPS]
    return amask


def _state_values(rel: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    t = rel.shape[0]
    state = np.zeros((t, SIDE_DIM), dtype=np.float64)
    state[:, POS] = rel[:, :3, 3]
    state[:, ROT] = rotation_to_6d(rel[:, :3, :3])
    state[:, GRIP] = gripper_opening(keypoints)[:, None]
    state[:, KPS] = keypoints.reshape(t, N_KEYPOINTS * 3)
    return state


def _action_values(cam_inv: np.ndarray, wrist: np.ndarray, state: np.ndarray) -> np.ndarray:
    t = state.shape[0]
    action = np.zeros((t, SIDE_DIM), dtype=np.float64)
    rel_now = cam_inv[:-1] @ wrist[:-1]  # wrist at t, camera frame at t
    rel_next = cam_inv[:-1] @ wrist[1:]  # wrist at t+1, camera frame at t
    action[:-1, POS] = rel_next[:, :3, 3] - rel_now[:, :3, 3]
    delta = np.swapaxes(rel_now[:, :3, :3], -1, -2) @ rel_next[:, :3, :3]
    action[:-1, ROT] = rotation_to_6d(delta)
    action[:-1, GRIP] = state[1:, GRIP]
    action[:-1, KPS] = state[1:, KPS]
    action[-1, ROT] = IDENTITY_6D
    action[-1, GRIP] = state[-1, GRIP]
    action[-1, KPS] = state[-1, KPS]
    return action


def build_side(
    cam: np.ndarray,
    wrist: np.ndarray,
    keypoints: np.ndarray,
    confidence: np.ndarray | None,
    threshold: float,
) -> SideArrays:
    """State/action/masks of one side from `cam [T,4,4]`, `wrist [T,4,4]` (world), `keypoints [T,21,3]`
    (wrist frame) and `confidence [T,21]` or None."""
    cam, wrist = np.asarray(cam, dtype=np.float64), np.asarray(wrist, dtype=np.float64)
    kps = np.asarray(keypoints, dtype=np.float64)
    t = cam.shape[0]
    if t == 0 or wrist.shape != (t, 4, 4) or kps.shape != (t, N_KEYPOINTS, 3):
        raise ValueError(f"build_side: shapes cam {cam.shape}, wrist {wrist.shape}, keypoints {kps.shape}")
    cam_inv = invert_pose(cam)
    state = _state_values(cam_inv @ wrist, kps)
    action = _action_values(cam_inv, wrist, state)
    smask = state_mask(confidence, threshold, t)
    amask = action_mask(smask)
    return SideArrays(
        state=state.astype(np.float32),
        action=action.astype(np.float32),
        state_mask=smask,
        action_mask=amask,
    )


def assemble(sides: dict[Side, SideArrays], t: int) -> SideArrays:
    """The 146-wide arrays; a side missing from `sides` is all zeros and fully masked."""
    out = SideArrays(
        state=np.zeros((t, VECTOR_DIM), dtype=np.float32),
        action=np.zeros((t, VECTOR_DIM), dtype=np.float32),
        state_mask=np.zeros((t, VECTOR_DIM), dtype=bool),
        action_mask=np.zeros((t, VECTOR_DIM), dtype=bool),
    )
    for side in SIDES:
        if side in sides:
            cols = slice(side_offset(side), side_offset(side) + SIDE_DIM)
            for name in ("state", "action", "state_mask", "action_mask"):
                getattr(out, name)[:, cols] = getattr(sides[side], name)
    return out
