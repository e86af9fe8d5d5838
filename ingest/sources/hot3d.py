"""HOT3D (Meta, 2024): MANO hand annotations and headset poses per timestamp (source-formats.md 6.1).

One sequence folder (`<headset>/<recording>/`) is one source episode:
- `mano_hand_pose_trajectory.jsonl`: per `timestamp_ns`, `hand_poses` `"0"` (left) / `"1"` (right), each
  `pose` (15 MANO PCA coefficients), `betas` (10) and `wrist_xform` (`t_xyz`, `q_wxyz`: world from wrist);
- `headset_trajectory.csv`: `T_world_device` per timestamp (`t_wo_*`, `q_wo_*`);
- `metadata.json` (`headset`: Aria | Quest3), the device-from-camera calibration of the kept stream
  (`camera_models.json` by `stream_id`, else Aria's `mps/slam/online_calibration.jsonl` by label);
- the kept stream's images as `<stream>.mp4` (exported from `recording.vrs`), frame i being the stream's
  i-th timestamp in `masks/mask_hand_pose_available.csv`.

Keypoints: smplx's MANO layer (ingest/convert/mano.py) with `global_orient` = the wrist rotation and
`transl` = `t_xyz`, as HOT3D's own loader does. The canonical wrist pose is that rotation at MANO joint 0;
the 21 keypoints are expressed in it. The reference frame is the kept camera,
`T_world_camera = T_world_device @ T_device_camera`, and actions are camera-motion decoupled
(ingest/convert/hands.py). Samples are the kept stream's timestamps that have both a MANO line and a
headset pose; a hand missing from a line is masked there.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest.convert import eef, hands, mano, resample
from ingest.convert.camera import pose_rows
from ingest.convert.geometry import quaternion_to_matrix
from ingest.errors import EpisodeError
from ingest.sources.base import SourceEpisodeRef, assemble_episode
from ingest.video import frame_size
from schemas.camera import POSE_NAMES, CameraModel, pose_column
from schemas.canonical import N_KEYPOINTS, SIDES, Side
from schemas.episode import FPS, MAX_EPISODE_SECONDS, CanonicalEpisode, ExtraColumn, VideoSource
from schemas.pipelines import Hot3dConfig, SourceConfig

MAX_FRAMES = int(MAX_EPISODE_SECONDS * FPS)
MANO_JSONL = "mano_hand_pose_trajectory.jsonl"
HEADSET_CSV = "headset_trajectory.csv"
METADATA = "metadata.json"
STREAM_CSV = "masks/mask_hand_pose_available.csv"
CAMERA_MODELS = "camera_models.json"
ONLINE_CALIBRATION = "mps/slam/online_calibration.jsonl"
HAND_KEYS: dict[Side, str] = {"left": "0", "right": "1"}
ARIA_LABELS = {"214-1": "camera-rgb", "1201-1": "camera-slam-left", "1201-2": "camera-slam-right"}
HEADSET_COLUMNS = (
    "timestamp[ns]",
    "t_wo_x[m]",
    "t_wo_y[m]",
    "t_wo_z[m]",
    "q_wo_w",
    "q_wo_x",
    "q_wo_y",
    "q_wo_z",
)
PRESENT = 0.5  # per-sample hand presence (0 / 1), resampled by minimum; below this the hand is masked
DEFAULT_CAPTION = "manipulate objects with the hands"

Vec3 = Annotated[list[float], Field(min_length=3, max_length=3)]
Vec4 = Annotated[list[float], Field(min_length=4, max_length=4)]


class WristXform(BaseModel):
    t_xyz: Vec3
    q_wxyz: Vec4


class ManoHand(BaseModel):
    pose: list[float]
    betas: list[float]
    wrist_xform: WristXform


class ManoLine(BaseModel):
    timestamp_ns: int
    hand_poses: dict[str, ManoHand]


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    headset: str


class Pose7(BaseModel):
    """`T_Device_Camera` of `camera_models.json`."""

    quaternion_wxyz: Vec4
    translation_xyz: Vec3


class StreamCalibration(BaseModel):
    """One entry of Quest3 `camera_models.json`."""

    model_config = ConfigDict(extra="allow")
    stream_id: str
    T_Device_Camera: Pose7  # noqa: N815 - the file's key
    projectionModelType: str = ""  # noqa: N815 - e.g. CameraModelType.FISHEYE624
    projectionParams: list[float] = []  # noqa: N815 - fx, fy, cx, cy, then the distortion coefficients
    imageWidth: int = 0  # noqa: N815
    imageHeight: int = 0  # noqa: N815


# ------------------------------------------------------------------------------------------- reading


def _pose(q_wxyz: np.ndarray, t: np.ndarray) -> np.ndarray:
    out = np.zeros(q_wxyz.shape[:-1] + (4, 4))
    out[..., :3, :3] = quaternion_to_matrix(q_wxyz)
    out[..., :3, 3] = t
    out[..., 3, 3] = 1.0
    return out


def _check_quaternions(path: Path, field: str, q: np.ndarray) -> None:
    norm = np.linalg.norm(q, axis=-1)
    bad = ~np.isfinite(q).all(axis=-1) | (np.abs(norm - 1.0) > 1e-2)
    if bad.any():
        i = int(np.argmax(bad))
        raise EpisodeError(path, field, f"row {i}: not a unit quaternion (norm {norm[i]:.4g})")


def read_metadata(path: Path) -> str:
    """The headset name of a sequence."""
    try:
        return Metadata.model_validate_json(path.read_bytes()).headset
    except OSError as e:
        raise EpisodeError(path, "metadata", f"unreadable: {e}", stage="read") from e
    except ValidationError as e:
        raise EpisodeError(path, "headset", f"invalid metadata: {e.errors()[0]['msg']}") from e


@dataclass
class ManoTrack:
    """MANO annotations at their own timestamps; a hand absent from a line has `present` False there."""

    timestamps: np.ndarray  # int64 [N], strictly increasing
    present: dict[Side, np.ndarray]  # bool [N]
    pose: dict[Side, np.ndarray]  # [N, P]
    betas: dict[Side, np.ndarray]  # [N, 10]
    wrist: dict[Side, np.ndarray]  # [N, 4, 4] world from wrist (HOT3D's wrist_xform)


def _parse_line(path: Path, n: int, text: str) -> ManoLine:
    try:
        return ManoLine.model_validate_json(text)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise EpisodeError(path, f"line {n}: {loc}", err["msg"]) from e


def _check_widths(path: Path, n: int, key: str, hand: ManoHand, num_pca: int) -> None:
    for name, got, want in (("pose", len(hand.pose), num_pca), ("betas", len(hand.betas), mano.N_BETAS)):
        if got != want:
            field = f"line {n}: hand_poses.{key}.{name}"
            raise EpisodeError(path, field, f"expected {want} MANO values, got {got}")


def read_mano(path: Path, num_pca: int) -> ManoTrack:
    """Parse and validate the MANO JSONL (one line per timestamp). Raises EpisodeError naming the field."""
    try:
        lines = [(n, t) for n, t in enumerate(path.read_text().splitlines(), start=1) if t.strip()]
    except OSError as e:
        raise EpisodeError(path, "mano", f"unreadable: {e}", stage="read") from e
    parsed = [_parse_line(path, n, text) for n, text in lines]
    if not parsed:
        raise EpisodeError(path, "timestamp_ns", "no MANO annotation lines")
    ts = np.array([p.timestamp_ns for p in parsed], dtype=np.int64)
    if len(ts) > 1 and not (np.diff(ts) > 0).all():
        i = int(np.argmax(np.diff(ts) <= 0)) + 1
        raise EpisodeError(path, f"line {lines[i][0]}: timestamp_ns", "timestamps must strictly increase")
    track = ManoTrack(ts, {}, {}, {}, {})
    for side, key in HAND_KEYS.items():
        present = np.array([key in p.hand_poses for p in parsed])
        pose, betas = np.zeros((len(ts), num_pca)), np.zeros((len(ts), mano.N_BETAS))
        t, q = np.zeros((len(ts), 3)), np.tile([1.0, 0.0, 0.0, 0.0], (len(ts), 1))
        for i, (n, _) in enumerate(lines):
            if (hand := parsed[i].hand_poses.get(key)) is not None:
                _check_widths(path, n, key, hand, num_pca)
                pose[i], betas[i] = hand.pose, hand.betas
                t[i], q[i] = hand.wrist_xform.t_xyz, hand.wrist_xform.q_wxyz
        _check_quaternions(path, f"hand_poses.{key}.wrist_xform.q_wxyz", q)
        if not (np.isfinite(pose).all() and np.isfinite(betas).all() and np.isfinite(t).all()):
            raise EpisodeError(path, f"hand_poses.{key}", "non-finite MANO value (NaN/inf)")
        track.present[side], track.pose[side], track.betas[side] = present, pose, betas
        track.wrist[side] = _pose(q, t)
    return track


def _csv_rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise EpisodeError(path, missing[0], "column is missing")
            return list(reader)
    except OSError as e:
        raise EpisodeError(path, "csv", f"unreadable: {e}", stage="read") from e


def read_headset(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps int64 [M], T_world_device [M, 4, 4]) of `headset_trajectory.csv`."""
    rows = _csv_rows(path, HEADSET_COLUMNS)
    try:
        ts = np.array([int(r[HEADSET_COLUMNS[0]]) for r in rows], dtype=np.int64)
        vals = np.array([[float(r[c]) for c in HEADSET_COLUMNS[1:]] for r in rows]).reshape(-1, 7)
    except (TypeError, ValueError) as e:
        raise EpisodeError(path, "headset pose", f"not a number: {e}") from e
    _check_quaternions(path, "q_wo", vals[:, 3:])
    if not np.isfinite(vals[:, :3]).all():
        raise EpisodeError(path, "t_wo", "non-finite value (NaN/inf)")
    return ts, _pose(vals[:, 3:], vals[:, :3])


def read_stream_timestamps(path: Path, stream: str) -> np.ndarray:
    """The kept stream's frame timestamps (sorted, unique): frame i of its video is the i-th."""
    rows = _csv_rows(path, ("timestamp[ns]", "stream_id"))
    try:
        ts = np.unique([int(r["timestamp[ns]"]) for r in rows if r["stream_id"] == stream]).astype(np.int64)
    except ValueError as e:
        raise EpisodeError(path, "timestamp[ns]", f"not an integer: {e}") from e
    if ts.size == 0:
        raise EpisodeError(path, "stream_id", f"no timestamp of stream {stream}")
    return ts


def _aria_calibration(path: Path, stream: str) -> np.ndarray:
    label = ARIA_LABELS.get(stream)
    try:
        first = json.loads(path.read_text().splitlines()[0])
        cal = next(c for c in first["CameraCalibrations"] if c["Label"] == label)["T_Device_Camera"]
        q = np.array([cal["UnitQuaternion"][0], *cal["UnitQuaternion"][1]], dtype=np.float64)
        return _pose(q, np.array(cal["Translation"], dtype=np.float64))
    except (OSError, IndexError, ValueError, KeyError, TypeError, StopIteration) as e:
        raise EpisodeError(path, f"CameraCalibrations.{label}", f"no usable calibration: {e!r}") from e


@dataclass
class Intrinsics:
    """The kept stream's projection as the source gives it; (0, 0) size: the video's."""

    fx: float
    fy: float
    cx: float
    cy: float
    model: str  # fisheye624: Project Aria's FisheyeRadTanThinPrism (k0..k5, p0, p1, s0..s3)
    coefficients: list[float]
    size: tuple[int, int]


def _aria_intrinsics(path: Path, stream: str) -> Intrinsics:
    """Aria `FisheyeRadTanThinPrism` params [f, cx, cy, k0..k5, p0, p1, s0..s3] (one focal length)."""
    label = ARIA_LABELS.get(stream)
    try:
        first = json.loads(path.read_text().splitlines()[0])
        proj = next(c for c in first["CameraCalibrations"] if c["Label"] == label)["Projection"]
        f, cx, cy, *rest = (float(x) for x in proj["Params"])
        name = "fisheye624" if proj["Name"] == "FisheyeRadTanThinPrism" else str(proj["Name"])
        return Intrinsics(f, f, cx, cy, name, rest, (0, 0))
    except (OSError, IndexError, ValueError, KeyError, TypeError, StopIteration) as e:
        raise EpisodeError(
            path, f"CameraCalibrations.{label}.Projection", f"no usable projection: {e!r}"
        ) from e


def read_intrinsics(seq: Path, stream: str) -> Intrinsics:
    """The kept stream's intrinsics: Quest3 `camera_models.json` (`projectionParams` [fx, fy, cx, cy,
    k0..k5, p0, p1, s0..s3] at `imageWidth` x `imageHeight`), else Aria's online calibration."""
    models = seq / CAMERA_MODELS
    if not models.is_file():
        return _aria_intrinsics(seq / ONLINE_CALIBRATION, stream)
    try:
        c = next(
            StreamCalibration.model_validate(c)
            for c in json.loads(models.read_text())
            if c["stream_id"] == stream
        )
        fx, fy, cx, cy, *rest = c.projectionParams
    except (OSError, ValueError, TypeError, KeyError, StopIteration) as e:
        raise EpisodeError(
            models, "projectionParams", f"no usable projection for stream {stream}: {e!r}"
        ) from e
    name = c.projectionModelType.removeprefix("CameraModelType.").lower()
    return Intrinsics(fx, fy, cx, cy, name, rest, (c.imageWidth, c.imageHeight))


def camera_model(k: Intrinsics, key: str, mp4: Path, sizes: dict[str, tuple[int, int]]) -> CameraModel:
    """The published camera: the stream's projection (at its calibration size: the file's, else the
    section's `calibration_sizes`, else the video's), its per-frame pose `world_from_camera` in the column
    `observation.camera_pose.<name>`."""
    width, height = k.size if all(k.size) else sizes.get(mp4.stem) or frame_size(mp4)
    return CameraModel(
        camera=key, width=width, height=height, fx=k.fx, fy=k.fy, cx=k.cx, cy=k.cy,
        distortion_model=k.model, distortion=k.coefficients, pose_frame="world", pose_column=pose_column(key),
        provenance=f"HOT3D calibration of stream {mp4.stem} and T_world_device @ T_device_camera",
    )  # fmt: skip


def read_device_from_camera(seq: Path, stream: str) -> np.ndarray:
    """`T_device_camera` [4, 4] of the kept stream."""
    models = seq / CAMERA_MODELS
    if not models.is_file():
        return _aria_calibration(seq / ONLINE_CALIBRATION, stream)
    try:
        entries = [StreamCalibration.model_validate(c) for c in json.loads(models.read_text())]
    except (OSError, ValueError, TypeError) as e:
        raise EpisodeError(models, "T_Device_Camera", f"invalid camera models: {e}") from e
    for c in entries:
        if c.stream_id == stream:
            T = c.T_Device_Camera
            return _pose(np.array(T.quaternion_wxyz), np.array(T.translation_xyz))
    raise EpisodeError(models, "stream_id", f"no camera model for stream {stream}")


# ------------------------------------------------------------------------------------------- geometry


@dataclass
class Samples:
    """The sequence at the kept stream's annotated timestamps."""

    timestamps: np.ndarray  # int64 [M]
    frames: np.ndarray  # int64 [M], video frame of each sample
    mano_rows: np.ndarray  # int64 [M], line of the MANO track
    camera: np.ndarray  # [M, 4, 4] world from camera


def align(track: ManoTrack, headset: tuple[np.ndarray, np.ndarray], frames_ts: np.ndarray,
          dev_cam: np.ndarray, path: Path) -> Samples:  # fmt: skip
    """Stream timestamps that have a MANO line and a headset pose."""
    head_ts, head_T = headset
    keep = np.isin(frames_ts, track.timestamps) & np.isin(frames_ts, head_ts)
    if not keep.any():
        raise EpisodeError(
            path, "timestamp_ns", "no stream timestamp has both a MANO line and a headset pose"
        )
    ts = frames_ts[keep]
    order = np.argsort(head_ts, kind="stable")
    head_rows = order[np.searchsorted(head_ts, ts, sorter=order)]
    rows = np.searchsorted(track.timestamps, ts)
    return Samples(ts, np.flatnonzero(keep).astype(np.int64), rows, head_T[head_rows] @ dev_cam)


def _fill_absent(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Absent rows take the previous present row (the first present one before any)."""
    idx = np.where(present, np.arange(len(present)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = int(np.argmax(present))
    return values[idx]


def hand_in_wrist_frame(
    model: Any, track: ManoTrack, side: Side, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(T_world_wrist [M, 4, 4], keypoints [M, 21, 3] in the wrist frame) of the present rows.

    The wrist frame is the canonical one of the 21 MANO keypoints (eef.canonical_hand), origin at joint 0."""
    wrist = track.wrist[side][rows]
    world = mano.keypoints(
        model, track.pose[side][rows], track.betas[side][rows], wrist[:, :3, :3], wrist[:, :3, 3]
    )
    return eef.canonical_hand(world, side)


@dataclass
class Resampled:
    camera: np.ndarray  # [T, 4, 4]
    wrist: dict[Side, np.ndarray]  # [T, 4, 4]
    keypoints: dict[Side, np.ndarray]  # [T, 21, 3]
    present: dict[Side, np.ndarray]  # [T, 21], 0 / 1
    frames: np.ndarray  # int64 [T]
    timestamps: np.ndarray  # int64 [T], the sample nearest each 10 Hz step


def to_10hz(track: ManoTrack, samples: Samples, models: dict[Side, Any]) -> Resampled:
    plan = resample.make_plan((samples.timestamps - samples.timestamps[0]) / 1e9)
    out = Resampled(resample.resample_poses(plan, samples.camera), {}, {}, {},
                    samples.frames[plan.nearest], samples.timestamps[plan.nearest])  # fmt: skip
    for side in SIDES:
        present = track.present[side][samples.mano_rows]
        if not present.any():
            continue
        rows = samples.mano_rows[present]
        T, kps = hand_in_wrist_frame(models[side], track, side, rows)
        T, kps = _spread(T, present), _spread(kps, present)
        conf = np.repeat(present.astype(np.float64)[:, None], N_KEYPOINTS, axis=1)
        out.wrist[side] = resample.resample_poses(plan, T)
        out.keypoints[side] = resample.resample_linear(plan, kps)
        out.present[side] = resample.resample_min(plan, conf)
    return out


def _spread(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Values of the present rows placed at their rows; absent rows copy a present neighbour."""
    full = np.zeros((len(present),) + values.shape[1:])
    full[present] = values
    return _fill_absent(full, present)


# ------------------------------------------------------------------------------------------- episode


def check_video(mp4: Path, stream: str, frames: np.ndarray, timestamps: np.ndarray) -> None:
    """The kept stream's video exists, decodes, and holds every frame the episode needs."""
    import av

    if not mp4.is_file():
        raise EpisodeError(
            mp4, "video", f"missing: export stream {stream} of recording.vrs here", stage="read"
        )
    try:
        with av.open(str(mp4)) as container:
            stream_info = container.streams.video[0]
            n_frames = int(stream_info.frames or 0)
            next(container.decode(stream_info))
    except (av.FFmpegError, OSError, IndexError, StopIteration, ValueError) as e:
        raise EpisodeError(mp4, "video", f"cannot be decoded: {e!r}", stage="read") from e
    last = int(np.argmax(frames))
    if n_frames and frames[last] >= n_frames:
        raise EpisodeError(
            mp4, "timestamp_ns",
            f"timestamp {int(timestamps[last])} is frame {int(frames[last])} of stream {stream}, past the "
            f"video's end ({n_frames} frames)", stage="read",
        )  # fmt: skip


def caption(seq: Path) -> str:
    """A template instruction naming the sequence's objects (`dynamic_objects.csv` uids named by the
    nearest `object_library/instance.json` above the sequence), else a generic one."""
    library = next((p / "object_library" / "instance.json" for p in seq.parents[:3]
                    if (p / "object_library" / "instance.json").is_file()), None)  # fmt: skip
    objects = seq / "dynamic_objects.csv"
    if library is None or not objects.is_file():
        return DEFAULT_CAPTION
    try:
        names = {uid: v.get("instance_name", "") for uid, v in json.loads(library.read_text()).items()}
        with open(objects, newline="") as f:
            uids = {r.get("object_uid", "") for r in csv.DictReader(f)}
    except (OSError, ValueError, AttributeError):
        return DEFAULT_CAPTION
    found = sorted(names[u].replace("_", " ") for u in uids if names.get(u))
    if not found:
        return DEFAULT_CAPTION
    listed = found[0] if len(found) == 1 else f"{', '.join(found[:-1])} and {found[-1]}"
    return f"interact with the {listed}"


def _episode(
    ep_id: str, data: Resampled, rows: slice, mp4: Path, cfg: Hot3dConfig, text: str, cam: CameraModel
) -> CanonicalEpisode:
    sides = {
        s: hands.build_side(data.camera[rows], data.wrist[s][rows], data.keypoints[s][rows],
                            data.present[s][rows], PRESENT)
        for s in SIDES if s in data.wrist
    }  # fmt: skip
    video = VideoSource(path=mp4, frame_indices=data.frames[rows].astype(np.int64))
    return assemble_episode(
        ep_id, cfg, hands.assemble(sides, rows.stop - rows.start), (text, "template", ""), has_action=True,
        videos={cfg.camera_key: video}, cameras=[cam],
        extra={cam.pose_column: ExtraColumn(pose_rows(data.camera[rows]), list(POSE_NAMES))},
    )  # fmt: skip


class Hot3dSource:
    """The HOT3D `Source` (ingest/sources/base.py)."""

    name = "hot3d"
    requires = ("smplx", "torch", "av")  # imported lazily by the workers: checked on the driver first
    layout = "<headset>/<recording>/ sequence folders with mano_hand_pose_trajectory.jsonl"

    def discover(self, root: Path, cfg: SourceConfig) -> list[SourceEpisodeRef]:
        """Every sequence folder holding a MANO trajectory. Refuses (ManoModelMissing) without MANO files."""
        if not isinstance(cfg, Hot3dConfig):
            raise TypeError(f"hot3d needs a Hot3dConfig, got {type(cfg).__name__}")
        mano.mano_files(cfg.mano_dir)
        root = Path(root).resolve()
        refs = [
            SourceEpisodeRef(source_episode_id=p.parent.relative_to(root).as_posix(),
                             files={"sequence": str(p.parent), "mano": str(p)})
            for p in root.rglob(MANO_JSONL) if p.is_file() and not p.name.startswith(".")
        ]  # fmt: skip
        return sorted(refs, key=lambda r: r.source_episode_id)

    def convert(self, ref: SourceEpisodeRef, cfg: SourceConfig) -> list[CanonicalEpisode]:
        if not isinstance(cfg, Hot3dConfig):
            raise TypeError(f"hot3d needs a Hot3dConfig, got {type(cfg).__name__}")
        seq = Path(ref.files["sequence"])
        headset = read_metadata(seq / METADATA)
        if headset not in cfg.camera_streams:
            raise EpisodeError(seq / METADATA, "headset", f"{headset!r} has no entry in camera_streams")
        stream = cfg.camera_streams[headset]
        track = read_mano(seq / MANO_JSONL, cfg.num_pca_comps)
        frames_ts = read_stream_timestamps(seq / STREAM_CSV, stream)
        dev_cam = read_device_from_camera(seq, stream)
        samples = align(track, read_headset(seq / HEADSET_CSV), frames_ts, dev_cam, seq / MANO_JSONL)
        mp4 = seq / f"{stream}.mp4"
        check_video(mp4, stream, samples.frames, samples.timestamps)
        models = mano.load_models(str(cfg.mano_dir), cfg.num_pca_comps, cfg.flat_hand_mean)
        data = to_10hz(track, samples, models)
        ranges = resample.chunk_ranges(len(data.frames), MAX_FRAMES)
        text = caption(seq)
        cam = camera_model(read_intrinsics(seq, stream), cfg.camera_key, mp4, cfg.calibration_sizes)
        return [
            _episode(ref.source_episode_id if len(ranges) == 1 else f"{ref.source_episode_id}#{part}",
                     data, slice(start, stop), mp4, cfg, text, cam)
            for part, (start, stop) in enumerate(ranges)
        ]  # fmt: skip


SOURCE = Hot3dSource()
