"""Draw one state row's hands on a video frame: the canonical wrist axes (x red, y green, z blue) and the 21
keypoints with their bones, each side in its colour; a masked value is drawn grey and hollow, never hidden."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ingest.convert.camera import AXIS_COLOURS
from ingest.report.projection import keypoints, pixels, wrist_pose
from schemas.camera import CameraModel
from schemas.canonical import N_KEYPOINTS, SIDES, Side, keypoint_slice, part_slice

SIDE_COLOURS = {"left": (255, 140, 0), "right": (0, 200, 255)}
MASKED = (150, 150, 150)
AXIS_M = 0.05
FINGERS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
BONES = [(a, b) for f in FINGERS for a, b in zip((0, *f[:-1]), f, strict=True)]


def side_present(state: np.ndarray, mask: np.ndarray, side: Side) -> bool:
    """A side is drawn when some value of it is valid, or it holds a measured (masked) wrist rotation."""
    rot = state[part_slice(side, "rotation")]
    return bool(mask[part_slice(side, "position")].any() or np.linalg.norm(rot[:3]) > 0.5)


def keypoint_valid(mask: np.ndarray, side: Side) -> np.ndarray:
    return np.array([mask[keypoint_slice(side, k)].all() for k in range(N_KEYPOINTS)])


def _dot(draw: ImageDraw.ImageDraw, uv: np.ndarray, colour: tuple, valid: bool, r: float) -> None:
    box = [uv[0] - r, uv[1] - r, uv[0] + r, uv[1] + r]
    draw.ellipse(box, fill=colour if valid else None, outline=colour if valid else MASKED)


def draw_hand(
    draw: ImageDraw.ImageDraw,
    cam: CameraModel,
    cam_from_ref: np.ndarray,
    state: np.ndarray,
    mask: np.ndarray,
    side: Side,
) -> None:
    uv = pixels(cam, (cam_from_ref[:3, :3] @ keypoints(state, side).T).T + cam_from_ref[:3, 3])
    ok, colour = keypoint_valid(mask, side), SIDE_COLOURS[side]
    stored = np.asarray(state[part_slice(side, "keypoints")]).reshape(N_KEYPOINTS, 3)
    uv[~ok & ~np.any(stored != 0, axis=1)] = np.nan  # absent (a gripper's): zeros and masked, not drawn
    r = max(1.5, cam.width / 320)
    for a, b in BONES:
        if np.isfinite(uv[[a, b]]).all():
            draw.line([tuple(uv[a]), tuple(uv[b])], fill=colour if ok[a] and ok[b] else MASKED, width=1)
    for k in range(N_KEYPOINTS):
        if np.isfinite(uv[k]).all():
            _dot(draw, uv[k], colour, bool(ok[k]), r)


def draw_axes(
    draw: ImageDraw.ImageDraw,
    cam: CameraModel,
    cam_from_ref: np.ndarray,
    state: np.ndarray,
    mask: np.ndarray,
    side: Side,
) -> None:
    pose = cam_from_ref @ wrist_pose(state, side)
    ends = pose[:3, :3] @ np.vstack([np.zeros(3), np.eye(3) * AXIS_M]).T + pose[:3, 3:4]
    uv = pixels(cam, ends.T)
    valid = bool(mask[part_slice(side, "position")].all() and mask[part_slice(side, "rotation")].all())
    width = max(2, round(cam.width / 200))
    if not np.isfinite(uv[0]).all():
        return
    for tip, colour in zip(uv[1:], AXIS_COLOURS, strict=True):
        if np.isfinite(tip).all():
            draw.line([tuple(uv[0]), tuple(tip)], fill=colour if valid else MASKED, width=width)


def overlay(
    image: np.ndarray, cam: CameraModel, cam_from_ref: np.ndarray, state: np.ndarray, mask: np.ndarray
) -> Image.Image:
    """The frame `[H, W, 3]` (at the camera model's size) with both hands drawn from one state row."""
    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    state, mask = np.asarray(state, dtype=np.float64), np.asarray(mask, dtype=bool)
    for side in SIDES:
        if side_present(state, mask, side):
            with np.errstate(invalid="ignore"):
                draw_hand(draw, cam, cam_from_ref, state, mask, side)
                draw_axes(draw, cam, cam_from_ref, state, mask, side)
    return img
