"""The canonical end-effector frame (docs/CONTRACT.md "The canonical end-effector frame").

One right-handed frame for every end effector, human or robot, left or right:
- origin: the wrist (hands: MANO keypoint 0) or the gripper centre (parallel grippers: the point midway
  between the fingertip pads, on the approach axis);
- +z, approach: from the wrist / flange toward the fingertips;
- +x, closing direction: hands, the palm normal, out of the palm (the side the fingers curl toward);
  parallel grippers, the axis along which the fingers move;
- +y = z x x: across the palm (a right hand: toward the thumb; a left hand: toward the little finger).

Human hands get it from their 21 keypoints (`hand_frame`), so every tracker's wrist follows the same
rule; robots map their own EEF frame onto it with a rigid offset (`robot.offset_transform`) or get it by
forward kinematics of their own model.
"""

from __future__ import annotations

import numpy as np

from ingest.stages.geometry import invert_pose, transform_points
from schemas.canonical import Side

WRIST, INDEX_MCP, MIDDLE_MCP, LITTLE_MCP = 0, 5, 9, 17


def _unit(v: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)


def hand_frame(points: np.ndarray, side: Side) -> np.ndarray:
    """Canonical rotations `[..., 3, 3]` (columns x, y, z in the points' frame) from 21 keypoints
    `[..., 21, 3]` of a `side` hand: z = wrist -> middle MCP; x = palm normal out of the palm,
    `(index MCP - wrist) x (little MCP - wrist)` for a right hand, the reverse for a left, made
    orthogonal to z; y = z x x. Degenerate input (coincident points) gives NaN, which callers check."""
    p = np.asarray(points, dtype=np.float64)
    wrist = p[..., WRIST, :]
    z = _unit(p[..., MIDDLE_MCP, :] - wrist)
    normal = np.cross(p[..., INDEX_MCP, :] - wrist, p[..., LITTLE_MCP, :] - wrist)
    normal = normal if side == "right" else -normal
    x = _unit(normal - np.sum(normal * z, axis=-1, keepdims=True) * z)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=-1)


def hand_pose(points: np.ndarray, side: Side) -> np.ndarray:
    """Canonical wrist poses `[..., 4, 4]` in the points' frame: `hand_frame` at keypoint 0."""
    p = np.asarray(points, dtype=np.float64)
    T = np.zeros(p.shape[:-2] + (4, 4))
    T[..., :3, :3] = hand_frame(p, side)
    T[..., :3, 3] = p[..., WRIST, :]
    T[..., 3, 3] = 1.0
    return T


def canonical_hand(points: np.ndarray, side: Side) -> tuple[np.ndarray, np.ndarray]:
    """(canonical wrist poses `[N, 4, 4]`, keypoints `[N, 21, 3]` in that frame, keypoint 0 exactly 0) from
    keypoints `[N, 21, 3]` in any frame. A degenerate hand (NaN frame) is a ValueError naming the first."""
    p = np.asarray(points, dtype=np.float64)
    T = hand_pose(p, side)
    bad = ~np.isfinite(T).all(axis=(-2, -1))
    if bad.any():
        first = int(np.argmax(bad))
        raise ValueError(f"degenerate {side} hand keypoints (coincident wrist/MCPs) at frame {first}")
    kps = transform_points(invert_pose(T), p)
    kps[:, WRIST] = 0.0
    return T, kps
