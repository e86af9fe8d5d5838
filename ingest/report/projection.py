"""Where a published hand lands in a published video: the camera's pose in the episode's reference frame
(`meta/cameras.jsonl`, docs/CONTRACT.md "Camera models") and its projection, the source's distortion model
included (`opencv`: k1 k2 p1 p2 [k3 [k4 k5 k6]]; `fisheye624`: Project Aria's FisheyeRadTanThinPrism,
k0..k5 p0 p1 s0..s3). Pixel centres at integers, OpenCV camera axes."""

from __future__ import annotations

import numpy as np

from ingest.convert.camera import poses_from_rows
from ingest.convert.geometry import invert_pose, rotation_from_6d, transform_points
from schemas.camera import CameraModel
from schemas.canonical import N_KEYPOINTS, part_slice
from schemas.card import ReferenceFrame

EGO_SUFFIX = ".ego"


def reference_camera(cams: list[CameraModel]) -> CameraModel | None:
    """The egocentric camera defining a `camera` reference frame: `*.ego` if there is one, else the first."""
    return next((c for c in cams if c.camera.endswith(EGO_SUFFIX)), cams[0] if cams else None)


def poses(cam: CameraModel, cols: dict[str, np.ndarray], length: int) -> np.ndarray | None:
    """`<pose_frame>_from_camera` per frame `[T, 4, 4]`, or None when the camera has no pose."""
    if cam.pose is not None:
        return np.repeat(np.asarray(cam.pose, dtype=np.float64)[None], length, axis=0)
    if cam.pose_column and cam.pose_column in cols:
        return poses_from_rows(cols[cam.pose_column])
    return None


def camera_from_reference(
    cam: CameraModel, cams: list[CameraModel], cols: dict[str, np.ndarray], frame: ReferenceFrame, length: int
) -> np.ndarray | None:
    """`camera_from_reference` per frame `[T, 4, 4]`, or None when the data cannot say where the camera is."""
    if frame == "base":
        mine = poses(cam, cols, length) if cam.pose_frame == "base" else None
        return None if mine is None else invert_pose(mine)
    ref = reference_camera(cams)
    if ref is None:
        return None
    if cam.camera == ref.camera:
        return np.repeat(np.eye(4)[None], length, axis=0)
    mine, theirs = poses(cam, cols, length), poses(ref, cols, length)
    if mine is None or theirs is None or cam.pose_frame != ref.pose_frame:
        return None
    return invert_pose(mine) @ theirs


def _opencv(xy: np.ndarray, c: list[float]) -> np.ndarray:
    k1, k2, p1, p2, k3, k4, k5, k6 = (list(c) + [0.0] * 8)[:8]
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([x * radial + dx, y * radial + dy], axis=-1)


def _fisheye624(xy: np.ndarray, c: list[float]) -> np.ndarray:
    k, (p0, p1), s = c[:6], c[6:8], c[8:12]
    r = np.linalg.norm(xy, axis=-1)
    theta = np.arctan(r)
    t2 = theta * theta
    poly = sum(ki * t2 ** (i + 1) for i, ki in enumerate(k))
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(r > 1e-12, theta * (1 + poly) / r, 1.0)
    u = xy * scale[..., None]
    x, y = u[..., 0], u[..., 1]
    r2 = x * x + y * y
    dx = p0 * (r2 + 2 * x * x) + 2 * p1 * x * y + s[0] * r2 + s[1] * r2 * r2
    dy = p1 * (r2 + 2 * y * y) + 2 * p0 * x * y + s[2] * r2 + s[3] * r2 * r2
    return np.stack([x + dx, y + dy], axis=-1)


DISTORTIONS = {"opencv": _opencv, "fisheye624": _fisheye624}


def pixels(cam: CameraModel, points_cam: np.ndarray) -> np.ndarray:
    """Pixels `[..., 2]` of points `[..., 3]` in the camera frame; at or behind the camera: NaN. An unknown
    distortion model projects as a pinhole (`distortion_known` says so)."""
    p = np.asarray(points_cam, dtype=np.float64)
    z = p[..., 2:3]
    with np.errstate(invalid="ignore", divide="ignore"):
        xy = p[..., :2] / z
    fn = DISTORTIONS.get(cam.distortion_model or "")
    if fn is not None and cam.distortion:
        xy = fn(xy, cam.distortion)
    uv = xy * [cam.fx, cam.fy] + [cam.cx, cam.cy]
    return np.where(z > 1e-6, uv, np.nan)


def distortion_known(cam: CameraModel) -> bool:
    return cam.distortion_model is None or cam.distortion_model in DISTORTIONS


def wrist_pose(state: np.ndarray, side: str) -> np.ndarray:
    """reference_from_wrist `[4, 4]` of one 146-wide state row."""
    T = np.eye(4)
    T[:3, :3] = rotation_from_6d(np.asarray(state[part_slice(side, "rotation")], dtype=np.float64))
    T[:3, 3] = state[part_slice(side, "position")]
    return T


def keypoints(state: np.ndarray, side: str) -> np.ndarray:
    """The 21 keypoints `[21, 3]` in the reference frame (they are stored in the wrist frame)."""
    kps = np.asarray(state[part_slice(side, "keypoints")], dtype=np.float64).reshape(N_KEYPOINTS, 3)
    return transform_points(wrist_pose(state, side), kps)
