"""Pinhole projection of canonical frames and keypoints into a camera image (OpenCV axes: +x right,
+y down, +z forward), and drawing them on a frame, for proofs on real video and for reports."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ingest.convert.geometry import matrix_to_quaternion, quaternion_to_matrix, transform_points

AXIS_COLOURS = ((230, 40, 40), (40, 200, 40), (40, 90, 255))  # x red, y green, z blue


def intrinsic_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def pose_rows(T: np.ndarray) -> np.ndarray:
    """Poses `[N, 4, 4]` -> float32 `[N, 7]` rows `[x, y, z, qw, qx, qy, qz]` (a camera pose column)."""
    T = np.asarray(T, dtype=np.float64)
    return np.concatenate([T[:, :3, 3], matrix_to_quaternion(T[:, :3, :3])], axis=1).astype(np.float32)


def poses_from_rows(rows: np.ndarray) -> np.ndarray:
    """Rows `[N, 7]` `[x, y, z, qw, qx, qy, qz]` -> poses `[N, 4, 4]` (the inverse of `pose_rows`)."""
    rows = np.asarray(rows, dtype=np.float64)
    T = np.tile(np.eye(4), (len(rows), 1, 1))
    T[:, :3, :3], T[:, :3, 3] = quaternion_to_matrix(rows[:, 3:7]), rows[:, :3]
    return T


def project(K: np.ndarray, points_cam: np.ndarray) -> np.ndarray:
    """Pixels `[..., 2]` of points `[..., 3]` in the camera frame; points at or behind the camera are NaN."""
    p = np.asarray(points_cam, dtype=np.float64)
    z = p[..., 2:3]
    with np.errstate(invalid="ignore", divide="ignore"):
        uv = (p[..., :2] / z) @ np.asarray(K)[:2, :2].T + np.asarray(K)[:2, 2]
    return np.where(z > 1e-6, uv, np.nan)


def frame_points(pose_cam: np.ndarray, length: float) -> np.ndarray:
    """`[4, 3]` origin and x, y, z axis tips of a pose `[4, 4]` (in the camera frame), `length` metres."""
    return transform_points(pose_cam, np.vstack([np.zeros(3), np.eye(3) * length]))


def draw_frame(draw: ImageDraw.ImageDraw, K: np.ndarray, pose_cam: np.ndarray, length: float = 0.05) -> None:
    """Draw a pose's axes (x red, y green, z blue) and a ring at its origin."""
    uv = project(K, frame_points(pose_cam, length))
    if np.isnan(uv[0]).any():
        return
    o = tuple(uv[0])
    for tip, colour in zip(uv[1:], AXIS_COLOURS, strict=True):
        if not np.isnan(tip).any():
            draw.line([o, tuple(tip)], fill=colour, width=3)
    draw.ellipse([o[0] - 5, o[1] - 5, o[0] + 5, o[1] + 5], outline=(255, 255, 0), width=2)


def draw_points(draw: ImageDraw.ImageDraw, K: np.ndarray, points_cam: np.ndarray, colour=(255, 220, 0)):
    """Draw keypoints `[P, 3]` (camera frame) as dots."""
    for u, v in project(K, points_cam):
        if np.isfinite(u) and np.isfinite(v):
            draw.ellipse([u - 2.5, v - 2.5, u + 2.5, v + 2.5], fill=colour)


def overlay(image: np.ndarray, K: np.ndarray, poses_cam: list[np.ndarray], keypoints_cam: list[np.ndarray],
            length: float = 0.05) -> Image.Image:  # fmt: skip
    """An RGB frame `[H, W, 3]` with every pose's axes and every keypoint set drawn on it."""
    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    for pts in keypoints_cam:
        draw_points(draw, K, pts)
    for pose in poses_cam:
        draw_frame(draw, K, pose, length)
    return img
