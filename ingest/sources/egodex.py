"""EgoDex (Apple, 2025): `<split>/<task>/<k>.hdf5` + `<k>.mp4`, 30 Hz, poses in an ARKit world frame.

Reads the camera, both wrists (`{s}Hand`) and the 20 MANO-21 finger joints per side
(source-formats.md 1.7; the `*Metacarpal` joints are dropped), expresses the keypoints in the wrist
frame, resamples to 10 Hz and builds the canonical vectors in the camera frame (ingest/convert/hands.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ingest.convert import eef, hands, resample
from ingest.convert.camera import pose_rows
from ingest.convert.geometry import orthonormality_error
from ingest.errors import EpisodeError
from ingest.sources.base import SourceEpisodeRef, assemble_episode, natural_key
from schemas.camera import POSE_NAMES, CameraModel, pose_column
from schemas.canonical import SIDES, Side
from schemas.episode import FPS, MAX_EPISODE_SECONDS, CanonicalEpisode, ExtraColumn, VideoSource
from schemas.pipelines import EgoDexConfig, SourceConfig

MAX_FRAMES = int(MAX_EPISODE_SECONDS * FPS)  # longer 10 Hz episodes are cut into parts `<id>#<part>`
ORTHONORMAL_TOL = 1e-3
IMAGE_SIZE = (1920, 1080)  # the size `camera/intrinsic` is given at (source-formats.md 1.2)
_FINGERS = ("Thumb", "IndexFinger", "MiddleFinger", "RingFinger", "LittleFinger")
_SEGMENTS = ("Knuckle", "IntermediateBase", "IntermediateTip", "Tip")


def mano_joint_names(side: Side) -> list[str]:
    """The 21 EgoDex transform names of one side in MANO-21 (OpenPose) order; index 0 is the wrist."""
    return [f"{side}Hand"] + [f"{side}{f}{s}" for f in _FINGERS for s in _SEGMENTS]


def _decode(value: Any) -> str | None:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes | np.bytes_):
        value = value.decode("utf-8", errors="replace")
    return str(value) if isinstance(value, str | np.str_) else None


def _text(value: Any) -> str | None:
    """A usable description, or None for absent / empty / the literal 'None' the release writes."""
    text = _decode(value)
    if text is None or not text.strip() or text.strip() == "None":
        return None
    return text.strip()


def select_instruction(attrs: Mapping[str, Any]) -> str | None:
    """Apple's rule: reversible tasks use `llm_description` iff `which_llm_description == '1'`, else
    `llm_description2`; other tasks use `llm_description`. None when the chosen text is missing/empty."""
    if _decode(attrs.get("llm_type")) == "reversible":
        key = "llm_description" if _decode(attrs.get("which_llm_description")) == "1" else "llm_description2"
        return _text(attrs.get(key))
    return _text(attrs.get("llm_description"))


@dataclass
class RawEpisode:
    """The datasets EgoDex conversion needs, as float64 at the native rate."""

    camera: np.ndarray  # [N, 4, 4] world_from_camera
    joints: dict[Side, np.ndarray]  # [N, 21, 4, 4] world poses in MANO-21 order
    confidence: dict[Side, np.ndarray] | None  # [N, 21]; None when the file has no confidences
    attrs: dict[str, Any]
    intrinsic: np.ndarray | None = None  # [3, 3] at IMAGE_SIZE; None when the file has none


def _read_dataset(f: h5py.File, path: Path, key: str) -> np.ndarray:
    if key not in f:
        raise EpisodeError(path, key, "dataset is missing")
    try:
        return np.asarray(f[key][()], dtype=np.float64)
    except (OSError, ValueError, TypeError) as e:
        raise EpisodeError(path, key, f"unreadable: {e}", stage="read") from e


def _check_pose(path: Path, key: str, T: np.ndarray, n: int, rotation: bool) -> None:
    if T.shape != (n, 4, 4):
        raise EpisodeError(path, key, f"expected shape ({n}, 4, 4), got {T.shape}")
    bad = ~np.isfinite(T).all(axis=(1, 2))
    if bad.any():
        raise EpisodeError(path, key, f"non-finite value (NaN/inf) at frame {int(np.argmax(bad))}")
    if rotation:
        err = orthonormality_error(T[:, :3, :3])
        if (err > ORTHONORMAL_TOL).any():
            i = int(np.argmax(err))
            raise EpisodeError(path, key, f"rotation not orthonormal at frame {i} (error {err[i]:.3g})")


def _read_confidence(f: h5py.File, path: Path, names: list[str], n: int) -> np.ndarray:
    out = np.empty((n, len(names)))
    for j, name in enumerate(names):
        c = _read_dataset(f, path, f"confidences/{name}")
        if c.shape != (n,):
            raise EpisodeError(path, f"confidences/{name}", f"expected shape ({n},), got {c.shape}")
        out[:, j] = c
    return out


def read_hdf5(path: Path) -> RawEpisode:
    """Read and validate one EgoDex HDF5 (each dataset once). Raises EpisodeError naming the field."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise EpisodeError(path, "hdf5", f"cannot open HDF5: {e}", stage="read") from e
    with f:
        camera = _read_dataset(f, path, "transforms/camera")
        n = camera.shape[0] if camera.ndim == 3 else -1
        if n == 0:
            raise EpisodeError(path, "transforms/camera", "zero-length episode (0 frames)")
        _check_pose(path, "transforms/camera", camera, n, rotation=True)
        joints: dict[Side, np.ndarray] = {}
        for side in SIDES:
            poses = []
            for j, name in enumerate(mano_joint_names(side)):
                T = _read_dataset(f, path, f"transforms/{name}")
                _check_pose(path, f"transforms/{name}", T, n, rotation=j == 0)
                poses.append(T)
            joints[side] = np.stack(poses, axis=1)
        confidence = None
        if "confidences" in f:
            confidence = {s: _read_confidence(f, path, mano_joint_names(s), n) for s in SIDES}
        attrs = {k: f.attrs[k] for k in f.attrs}
        intrinsic = _read_intrinsic(f, path) if "camera/intrinsic" in f else None
    return RawEpisode(camera, joints, confidence, attrs, intrinsic)


def _read_intrinsic(f: h5py.File, path: Path) -> np.ndarray:
    K = _read_dataset(f, path, "camera/intrinsic")
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise EpisodeError(path, "camera/intrinsic", f"not a pinhole matrix: {K.tolist()}")
    return K


def camera_model(K: np.ndarray, key: str) -> CameraModel:
    """The EgoDex camera: `camera/intrinsic` at 1920x1080, no distortion given, per-frame pose
    `world_from_camera` (`transforms/camera`, whose axes are OpenCV's: source-formats.md 1.4)."""
    return CameraModel(
        camera=key, width=IMAGE_SIZE[0], height=IMAGE_SIZE[1],
        fx=float(K[0, 0]), fy=float(K[1, 1]), cx=float(K[0, 2]), cy=float(K[1, 2]),
        pose_frame="world", pose_column=pose_column(key),
        provenance="EgoDex HDF5 camera/intrinsic (at 1920x1080) and transforms/camera (ARKit world)",
    )  # fmt: skip


def _caption(attrs: Mapping[str, Any], task_folder: str) -> tuple[str, str, str]:
    """(caption, caption_source, task_original)."""
    text = select_instruction(attrs)
    if text is not None:
        return text, "source", text
    return task_folder.replace("_", " ").strip(), "template", task_folder


@dataclass
class Resampled:
    """10 Hz inputs of hands.build_side plus the source frame kept for each 10 Hz step."""

    camera: np.ndarray  # [T, 4, 4]
    wrist: dict[Side, np.ndarray]  # [T, 4, 4] world
    keypoints: dict[Side, np.ndarray]  # [T, 21, 3] wrist frame
    confidence: dict[Side, np.ndarray] | None  # [T, 21]
    frames: np.ndarray  # int64 [T], nearest source (video) frame


def to_10hz(ep: RawEpisode, native_fps: float, path: Path) -> Resampled:
    """The canonical wrist frame from the 21 joint positions (eef.canonical_hand, not ARKit's wrist axes)
    and the keypoints in it at the native rate, then everything resampled to 10 Hz."""
    plan = resample.make_plan(np.arange(ep.camera.shape[0]) / native_fps)
    wrist, kps = {}, {}
    for side in SIDES:
        try:
            w, k = eef.canonical_hand(ep.joints[side][:, :, :3, 3], side)
        except ValueError as e:
            raise EpisodeError(path, f"transforms/{side}*", str(e)) from e
        wrist[side], kps[side] = resample.resample_poses(plan, w), resample.resample_linear(plan, k)
    conf = None
    if ep.confidence is not None:
        conf = {s: resample.resample_min(plan, c) for s, c in ep.confidence.items()}
    return Resampled(resample.resample_poses(plan, ep.camera), wrist, kps, conf, plan.nearest)


def _episode(
    ep_id: str,
    data: Resampled,
    rows: slice,
    mp4: Path,
    cfg: EgoDexConfig,
    text: tuple[str, str, str],
    intrinsic: np.ndarray | None,
) -> CanonicalEpisode:
    conf = data.confidence
    sides = {
        s: hands.build_side(data.camera[rows], data.wrist[s][rows], data.keypoints[s][rows],
                            None if conf is None else conf[s][rows], cfg.confidence_threshold)
        for s in SIDES
    }  # fmt: skip
    video = VideoSource(path=mp4, frame_indices=data.frames[rows].astype(np.int64))
    extra, cameras = {}, []
    if intrinsic is not None:
        cam = camera_model(intrinsic, cfg.camera_key)
        extra[cam.pose_column] = ExtraColumn(pose_rows(data.camera[rows]), list(POSE_NAMES))
        cameras.append(cam)
    return assemble_episode(
        ep_id, cfg, hands.assemble(sides, rows.stop - rows.start), text, has_action=True,
        videos={cfg.camera_key: video}, extra=extra, cameras=cameras,
    )  # fmt: skip


class EgoDexSource:
    """The EgoDex `Source` (ingest/sources/base.py)."""

    name = "egodex"
    requires = ("h5py", "av")
    layout = "<split>/<task>/<k>.hdf5 with <k>.mp4 beside it"

    def discover(self, root: Path, cfg: SourceConfig) -> list[SourceEpisodeRef]:
        root = Path(root).resolve()
        refs = []
        for h5 in root.rglob("*.hdf5"):
            if h5.name.startswith(".") or not h5.is_file():
                continue
            rel = h5.relative_to(root).with_suffix("").as_posix()
            files = {"hdf5": str(h5), "mp4": str(h5.with_suffix(".mp4"))}
            refs.append(SourceEpisodeRef(source_episode_id=rel, files=files))
        return sorted(refs, key=lambda r: natural_key(r.source_episode_id))

    def convert(self, ref: SourceEpisodeRef, cfg: SourceConfig) -> list[CanonicalEpisode]:
        if not isinstance(cfg, EgoDexConfig):
            raise TypeError(f"egodex needs an EgoDexConfig, got {type(cfg).__name__}")
        h5, mp4 = Path(ref.files["hdf5"]), Path(ref.files["mp4"])
        if not mp4.is_file():
            raise EpisodeError(mp4, "mp4", f"video file missing (expected next to {h5.name})", stage="read")
        raw = read_hdf5(h5)
        data = to_10hz(raw, cfg.native_fps, h5)
        text = _caption(raw.attrs, h5.parent.name)
        ranges = resample.chunk_ranges(len(data.frames), MAX_FRAMES)
        episodes = []
        for part, (start, stop) in enumerate(ranges):
            ep_id = ref.source_episode_id if len(ranges) == 1 else f"{ref.source_episode_id}#{part}"
            episodes.append(_episode(ep_id, data, slice(start, stop), mp4, cfg, text, raw.intrinsic))
        return episodes


SOURCE = EgoDexSource()
