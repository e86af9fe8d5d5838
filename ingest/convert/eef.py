"""The canonical end-effector frame (docs/CONTRACT.md "The canonical end-effector frame").

One right-handed frame for every end effector, human or robot, left or right:
- origin: the wrist (hands: MANO keypoint 0) or the gripper centre (parallel grippers: the point midway
  between the fingertip pads, on the approach axis);
- +z, approach: the direction the end effector grasps toward. Parallel grippers: flange -> fingertips.
  Hands: the palm normal, out of the palm (a palm-down grasp approaches along it, and the fingers curl
  toward it);
- +x, closing direction: the line a grasp closes along. Parallel grippers: the axis the fingers move
  along. Hands: wrist -> middle-finger MCP (a pinch closes thumb tip against index tip along it);
- +y = z x x: grippers, along the finger pads' width; hands, across the palm (a right hand: toward the
  little finger; a left hand: toward the thumb).

Human hands get it from their 21 keypoints (`hand_frame`), so every tracker's wrist follows the same
rule; robots map their own EEF frame onto it with a rigid offset (`robot.offset_transform`) or get it by
forward kinematics of their own model.
"""

from __future__ import annotations

import numpy as np

from ingest.convert.geometry import invert_pose, transform_points
from schemas.canonical import Side

WRIST, INDEX_MCP, MIDDLE_MCP, LITTLE_MCP = 0, 5, 9, 17


def _unit(v: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)


def hand_frame(points: np.ndarray, side: Side) -> np.ndarray:
    """Canonical rotations `[..., 3, 3]` (columns x, y, z in the points' frame) from 21 keypoints
    `[..., 21, 3]` of a `side` hand: z = the palm normal out of the palm, `(index MCP - wrist) x
    (little MCP - wrist)` for a right hand, the reverse for a left; x = wrist -> middle MCP made
    orthogonal to z; y = z x x. Degenerate input (coincident points) gives NaN, which callers check."""
    p = np.asarray(points, dtype=np.float64)
    wrist = p[..., WRIST, :]
    normal = np.cross(p[..., INDEX_MCP, :] - wrist, p[..., LITTLE_MCP, :] - wrist)
    z = _unit(normal if side == "right" else -normal)
    forward = p[..., MIDDLE_MCP, :] - wrist
    x = _unit(forward - np.sum(forward * z, axis=-1, keepdims=True) * z)
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
