"""An episode's filmstrip: a few frames of each camera, decoded at thumbnail size in the codec's scaler,
with the hands of the same step drawn by the camera model scaled to that size, saved as JPEG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from ingest.report.draw import overlay
from ingest.report.projection import camera_from_reference, distortion_known
from ingest.video import Decoder
from schemas.camera import CameraModel
from schemas.card import ReferenceFrame

JPEG_QUALITY = 80


@dataclass
class Strip:
    """One camera's row: the JPEG files (relative to the report folder), their frame indices, and what was
    drawn (`projected`: hands drawn; `note`: why not, or what is approximate)."""

    camera: str
    files: list[str]
    frames: list[int]
    projected: bool
    note: str = ""
    width: int = 320


def pick_frames(length: int, n: int) -> np.ndarray:
    """`n` frame indices spread over the episode, first and last included."""
    return np.unique(np.linspace(0, max(length - 1, 0), min(n, length)).round().astype(np.int64))


def decode(video: Path, frames: np.ndarray, width: int) -> list[np.ndarray]:
    """RGB frames scaled to `width` (aspect kept, even height) in the codec's scaler."""
    out = []
    try:
        for _, frame in Decoder(video).needed(frames):
            h = max(2, round(frame.height * width / frame.width / 2) * 2)
            out.append(frame.reformat(width, h, format="rgb24", interpolation="AREA").to_ndarray())
    except (av.FFmpegError, OSError):
        return out
    return out


def _note(cam: CameraModel | None, cam_from_ref: np.ndarray | None, frame: ReferenceFrame) -> str:
    if cam is None:
        return "no camera model in meta/cameras.jsonl: hands not drawn"
    if cam_from_ref is None:
        return f"no pose of this camera in the {frame} frame: hands not drawn"
    if not distortion_known(cam):
        return f"distortion model {cam.distortion_model} not applied (pinhole)"
    return ""


@dataclass
class StripInput:
    video: Path
    camera: str
    cam: CameraModel | None
    cams: list[CameraModel]
    frame: ReferenceFrame


def strip(inp: StripInput, cols: dict, out_dir: Path, prefix: str, n: int, width: int) -> Strip:
    """Decode, draw and save one camera's filmstrip; `prefix` names the files under `out_dir`."""
    length = len(cols["observation.state"])
    frames = pick_frames(length, n)
    images = decode(inp.video, frames, width)
    cam_from_ref = None
    if inp.cam is not None:
        cam_from_ref = camera_from_reference(inp.cam, inp.cams, cols, inp.frame, length)
    files = []
    for k, rgb in zip(frames, images, strict=False):
        img = Image.fromarray(rgb)
        if cam_from_ref is not None:
            cam = inp.cam.scaled(rgb.shape[1], rgb.shape[0])
            img = overlay(
                rgb, cam, cam_from_ref[k], cols["observation.state"][k], cols["observation.state_mask"][k]
            )
        name = f"{prefix}_{int(k):06d}.jpg"
        img.save(out_dir / name, quality=JPEG_QUALITY)
        files.append(name)
    note = _note(inp.cam, cam_from_ref, inp.frame)
    if len(images) < len(frames):
        note = f"video decoded {len(images)} of {len(frames)} frames; " + note
    done = [int(k) for k in frames[: len(images)]]
    return Strip(inp.camera, files, done, cam_from_ref is not None, note, width)
