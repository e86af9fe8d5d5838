"""AgiBot World (Alpha / Beta; AgiBot G1, both arms, gripper or dexterous hand), source-formats.md section 3.

Two layouts, both found anywhere under --input (`LAYOUT`):
- the release: `proprio_stats/<task>/<episode>/proprio_stats.h5`, `observations/<task>/<episode>/videos/
  *.mp4`, `task_info/task_<task>.json`, `parameters/<task>/<episode>/camera/*.json`. One episode per
  `<task>/<episode>` folder found under `proprio_stats/` or `observations/` (either alone is a named
  reject, and so is a missing video or task file);
- an episode folder: any other folder holding `aligned_joints.h5` (A2D / Genie Sim raw "aligned"
  episodes, with `data_info.json`, `meta_info.json`, `parameters/camera/*.json`) or `proprio_stats.h5`
  (a lone Beta file), id = the folder's path under --input. Its task text is `data_info.json` when there
  is one, else a template from the embodiment (`caption_source: template`); its cameras are the
  `videos/<camera>.mp4` it has (the samples have none: the episode is published without cameras, which
  lerobot loads; the writer keeps only cameras every episode has). The h5 has the release's datasets;
  `aligned_joints.h5` end poses are in the Genie Sim world frame and are taken into the robot base frame
  with the base's world pose (`robot_base`: `state/robot/position`, `state/robot/orientation` wxyz).

- Time: the h5 `timestamp` (int64 / uint64 nanoseconds) minus the first, strictly increasing; every row is
  resampled to 10 Hz (ingest/convert/resample.py). Row i is video frame i of every camera: a video whose
  frame count differs from the row count is a reject naming the video.
- Sides (schemas/sources_agibot.py): each mapped flange pose (base frame, `T_flange @ T_offset`) and
  gripper (linear to [0, 1], 1 = open, clipped). With `reference_frame: camera` every pose is taken in the
  reference camera's frame at its own row and the action is camera-motion decoupled (CONTRACT.md 3): the
  wrist at t+1 is expressed in the camera frame at t. Keypoints are absent (masked).
- Kept beside it: `action.native` (the mapped commanded action at the nearest row, unchanged),
  `observation.joints` (linear), and for dexterous hands `observation.hand_joints` (linear) with
  `action.hand_joints` (those of t+1; the last frame repeats).
- Language: the episode's `task_name` (its English name where the file has one) is the caption; each
  `label_info.action_config` segment's text fills `annotation.subtask` on the 10 Hz frames whose nearest
  source row it covers ("" elsewhere). Segments are half-open `[start, end)` when one ends where the next
  starts, else inclusive `[start, end]` (the two conventions of section 3.2 / 3.5); on overlap the later
  segment wins. AgiBot has no success flag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import h5py
import numpy as np
from pydantic import TypeAdapter, ValidationError

from ingest.convert import hands, resample
from ingest.convert.camera import pose_rows
from ingest.convert.geometry import ORTHONORMAL_TOL, orthonormality_error, values_to_rotation
from ingest.convert.robot import eef_poses, gripper_to_unit, offset_transform, robot_side
from ingest.errors import EpisodeError
from ingest.sources.base import SourceEpisodeRef, assemble_episode, natural_key, parse_field
from ingest.video import declared_frames, frame_size
from schemas.camera import POSE_NAMES, CameraModel, pose_column
from schemas.canonical import SIDES, Side
from schemas.episode import FPS, MAX_EPISODE_SECONDS, CanonicalEpisode, ExtraColumn, VideoSource
from schemas.source_config import SourceConfig
from schemas.sources_agibot import (
    ActionSegment,
    AgibotConfig,
    ExtrinsicsFile,
    Intrinsic,
    IntrinsicsFile,
    TaskEpisode,
    TaskInfoFile,
)
from schemas.sources_lerobot import ArmMapping
from schemas.sources_oxe import NamedField

MAX_FRAMES = int(MAX_EPISODE_SECONDS * FPS)
Parsed = TypeVar("Parsed")
H5_NAMES = ("proprio_stats.h5", "proprio_states.h5")  # the DigitalWorld sim variant spells it "states"
FOLDER_H5_NAMES = ("aligned_joints.h5", *H5_NAMES)  # an episode folder's h5 (A2D raw: aligned_joints.h5)
RELEASE_TOPS = ("proprio_stats", "observations")
LAYOUT = (
    "proprio_stats/<task>/<episode>/proprio_stats.h5 (+ observations/, task_info/), or episode folders "
    "holding aligned_joints.h5 or proprio_stats.h5 (+ data_info.json, parameters/camera/)"
)
SUBTASK = "annotation.subtask"
_SIDE_EFFECTOR = re.compile(r"^(?P<group>.+)/(?P<side>left|right)_effector/(?P<leaf>.+)$")
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


# ---------------------------------------------------------------------------------------------- h5 fields


@dataclass
class Proprio:
    """An open `proprio_stats.h5` and its row times."""

    path: Path
    f: h5py.File
    times: np.ndarray  # float64 [N], seconds from the first row

    @property
    def rows(self) -> int:
        return int(self.times.shape[0])


def _dataset(f: h5py.File, path: Path, key: str) -> tuple[np.ndarray, slice | None]:
    """The dataset `key` as float64 `[N, D]`, or the half of a combined `*/effector/*` it stands for."""
    if key in f and isinstance(f[key], h5py.Dataset):
        return _numeric(f[key], path, key), None
    m = _SIDE_EFFECTOR.match(key)
    combined = f"{m['group']}/effector/{m['leaf']}" if m else None
    if combined is None or combined not in f:
        raise EpisodeError(path, key, "dataset is missing")
    values = _numeric(f[combined], path, combined)
    half = values.shape[1] // 2
    if values.shape[1] % 2:
        raise EpisodeError(path, combined, f"{values.shape[1]} values per row, not [left, right] halves")
    return values, slice(0, half) if m and m["side"] == "left" else slice(half, 2 * half)


def _numeric(ds: h5py.Dataset, path: Path, key: str) -> np.ndarray:
    if ds.shape == () or ds.shape[0] == 0:
        raise EpisodeError(path, key, f"empty dataset {ds.shape}")
    if ds.dtype.kind not in "fiub":
        raise EpisodeError(path, key, f"not numeric ({ds.dtype})")
    try:
        values = np.asarray(ds[()], dtype=np.float64)
    except (OSError, ValueError, TypeError) as e:
        raise EpisodeError(path, key, f"unreadable: {e}", stage="read") from e
    return values.reshape(values.shape[0], -1)


def read_field(p: Proprio, spec: str) -> np.ndarray:
    """A mapping field (schemas/sources_agibot.py) as finite float64 `[N, D]`. Raises EpisodeError."""
    try:
        key, sl = parse_field(spec)
    except ValueError as e:
        raise EpisodeError(p.path, spec, str(e)) from e
    values, half = _dataset(p.f, p.path, key)
    if values.shape[0] != p.rows:
        raise EpisodeError(p.path, key, f"{values.shape[0]} rows, timestamp has {p.rows}")
    values = values if half is None else values[:, half]
    if sl is not None:
        if not 0 <= sl.start < sl.stop <= values.shape[1]:
            msg = f"slice [{sl.start}:{sl.stop}] outside the {values.shape[1]} values"
            raise EpisodeError(p.path, spec, msg)
        values = values[:, sl]
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise EpisodeError(p.path, spec, f"non-finite value (NaN/inf) at row {int(np.argmax(bad))}")
    return values


def read_named(p: Proprio, fields: list[NamedField]) -> tuple[np.ndarray, list[str]]:
    """Fields side by side with their names (the mapping's, else `<key with dots>.<i>`)."""
    parts, names = [], []
    for nf in fields:
        values = read_field(p, nf.key)
        if nf.names is not None and len(nf.names) != values.shape[1]:
            raise EpisodeError(p.path, nf.key, f"{len(nf.names)} names for {values.shape[1]} values")
        stem = nf.key.replace("/", ".")
        parts.append(values)
        names += nf.names if nf.names is not None else [f"{stem}.{i}" for i in range(values.shape[1])]
    return np.concatenate(parts, axis=1), names


def row_times(f: h5py.File, path: Path) -> np.ndarray:
    """Seconds from the first row, from nanosecond `timestamp`; strictly increasing."""
    if "timestamp" not in f:
        raise EpisodeError(path, "timestamp", "dataset is missing")
    ds = f["timestamp"]
    if ds.ndim != 1 or ds.shape[0] == 0 or ds.dtype.kind not in "iu":
        raise EpisodeError(path, "timestamp", f"expected non-empty int nanoseconds, got {ds.dtype}{ds.shape}")
    ns = np.asarray(ds[()]).astype(np.int64)
    rel = ns - ns[0]
    if rel.size > 1 and not np.all(np.diff(rel) > 0):
        raise EpisodeError(path, "timestamp", f"not strictly increasing (row {int(np.argmin(np.diff(rel)))})")
    return rel.astype(np.float64) / 1e9


def open_proprio(path: Path) -> Proprio:
    if not path.is_file():
        raise EpisodeError(path, "proprio_stats.h5", "file missing", stage="read")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise EpisodeError(path, "hdf5", f"cannot open HDF5: {e}", stage="read") from e
    try:
        return Proprio(path, f, row_times(f, path))
    except EpisodeError:
        f.close()
        raise


# ---------------------------------------------------------------------------------------------- sides


def arm_pose(p: Proprio, arm: ArmMapping) -> np.ndarray | None:
    """`[N, 4, 4]` canonical wrist/gripper-centre pose in the base frame, or None (no pose mapped)."""
    if arm.position is None or arm.rotation is None:
        return None
    pos, rot = read_field(p, arm.position), read_field(p, arm.rotation)
    if pos.shape[1] != 3:
        raise EpisodeError(p.path, arm.position, f"position needs 3 values, got {pos.shape[1]}")
    try:
        R = values_to_rotation(rot, arm.rotation_convention, arm.euler_order)
    except ValueError as e:
        raise EpisodeError(p.path, arm.rotation, str(e)) from e
    return eef_poses(R, pos, offset_transform(arm.eef_offset.quat_wxyz, arm.eef_offset.translation))


def arm_gripper(p: Proprio, arm: ArmMapping) -> np.ndarray | None:
    """`[N]` opening in [0, 1] (1 = open), or None."""
    if arm.gripper is None:
        return None
    g = read_field(p, arm.gripper)
    if g.shape[1] != 1:
        raise EpisodeError(p.path, arm.gripper, f"gripper needs 1 value, got {g.shape[1]}")
    return gripper_to_unit(g[:, 0], arm.gripper_closed, arm.gripper_open)


# ---------------------------------------------------------------------------------------------- JSON files


def _load_json(path: Path, adapter: TypeAdapter[Parsed], what: str) -> Parsed:
    try:
        return adapter.validate_python(json.loads(path.read_text()))
    except FileNotFoundError as e:
        raise EpisodeError(path, what, "file missing", stage="read") from e
    except (OSError, json.JSONDecodeError) as e:
        raise EpisodeError(path, what, f"unreadable JSON: {e}", stage="read") from e
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or what
        raise EpisodeError(path, where, err["msg"], stage="read") from e


def camera_poses(path: Path, rows: int, convention: str) -> np.ndarray:
    """`[rows, 4, 4]` base_from_camera (OpenCV axes) from a per-row extrinsics list (extra rows ignored)."""
    entries = _load_json(path, ExtrinsicsFile, "extrinsic")
    if len(entries) < rows:
        raise EpisodeError(path, "extrinsic", f"{len(entries)} poses for {rows} rows")
    T = np.tile(np.eye(4), (rows, 1, 1))
    T[:, :3, :3] = [e.extrinsic.rotation_matrix for e in entries[:rows]]
    T[:, :3, 3] = [e.extrinsic.translation_vector for e in entries[:rows]]
    err = orthonormality_error(T[:, :3, :3])
    if not (err <= ORTHONORMAL_TOL).all():  # NaN fails too
        i = int(np.argmax(np.where(np.isnan(err), np.inf, err)))
        raise EpisodeError(path, f"{i}.extrinsic.rotation_matrix", "not a rotation")
    return T @ OPENGL_TO_OPENCV if convention == "opengl" else T


def task_episode(path: Path, episode_id: str) -> TaskEpisode:
    """The entry of `episode_id` in a task_info file (a list, or one A2D dict)."""
    parsed = _load_json(path, TaskInfoFile, "task_info")
    entries = parsed if isinstance(parsed, list) else [parsed]
    for entry in entries:
        if str(entry.episode_id) == episode_id:
            return entry
    raise EpisodeError(path, "episode_id", f"no entry for episode {episode_id}", stage="read")


def segment_ranges(segments: list[ActionSegment]) -> list[tuple[int, int, str]]:
    """`[start, stop)` source-frame ranges with their text, in start order (conventions: module doc)."""
    ordered = sorted(segments, key=lambda s: (s.start_frame, s.end_frame))
    half_open = any(a.end_frame == b.start_frame for a, b in zip(ordered, ordered[1:], strict=False))
    return [(s.start_frame, s.end_frame + (0 if half_open else 1), s.text) for s in ordered]


def subtask_texts(segments: list[ActionSegment], source_rows: np.ndarray) -> list[str]:
    """The sub-skill text of each 10 Hz frame, from the source row it was taken from."""
    texts = np.full(len(source_rows), "", dtype=object)
    for start, stop, text in segment_ranges(segments):
        texts[(source_rows >= start) & (source_rows < stop)] = text
    return [str(x) for x in texts]


# ---------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class EpisodeFiles:
    """Where one release episode's files are (`proprio_stats/<task>/<episode>`...)."""

    root: Path
    task: str
    episode: str
    videos_required = True  # the release ships videos: a missing one is a reject
    world_frame = False  # end poses in the arm base frame

    def proprio(self) -> Path:
        folder = self.root / "proprio_stats" / self.task / self.episode
        return next((folder / n for n in H5_NAMES if (folder / n).is_file()), folder / H5_NAMES[0])

    def video(self, camera: str) -> Path:
        return self.root / "observations" / self.task / self.episode / "videos" / f"{camera}.mp4"

    def task_info(self) -> Path | None:
        candidates = [
            self.root / "task_info" / f"task_{self.task}.json",
            self.root / f"task_info_{self.task}.json",
            self.root / "observations" / self.task / f"task_info_{self.task}.json",
        ]
        return next((c for c in candidates if c.is_file()), candidates[0])

    def extrinsics(self, camera: str) -> Path:
        return self.parameters(f"{camera}_extrinsic_params_aligned.json")

    def intrinsics(self, camera: str) -> Path:
        return self.parameters(f"{camera}_intrinsic_params.json")

    def parameters(self, name: str) -> Path:
        base = self.root / "parameters" / self.task / self.episode
        candidates = [base / "camera" / name, base / "parameters" / "camera" / name]  # Alpha tar nesting
        return next((c for c in candidates if c.is_file()), candidates[0])


@dataclass(frozen=True)
class FolderFiles:
    """Where one episode folder's files are (A2D raw `<task>/<robot>/<episode>/`, a lone Beta file)."""

    folder: Path
    videos_required = False  # the folder has the videos it has

    @property
    def world_frame(self) -> bool:
        """Genie Sim A2D `aligned_joints.h5` gives end poses in the sim world (the robot base at
        `state/robot/*`, the camera extrinsics in the base frame); a Beta file in the arm base frame."""
        return self.proprio().name == FOLDER_H5_NAMES[0]

    @property
    def episode(self) -> str:
        return self.folder.name

    def proprio(self) -> Path:
        names = FOLDER_H5_NAMES
        return next((self.folder / n for n in names if (self.folder / n).is_file()), self.folder / names[0])

    def video(self, camera: str) -> Path:
        return self.folder / "videos" / f"{camera}.mp4"

    def task_info(self) -> Path | None:
        path = self.folder / "data_info.json"
        return path if path.is_file() else None

    def extrinsics(self, camera: str) -> Path:
        return self.folder / "parameters" / "camera" / f"{camera}_extrinsic_params_aligned.json"

    def intrinsics(self, camera: str) -> Path:
        return self.folder / "parameters" / "camera" / f"{camera}_intrinsic_params.json"


Files = EpisodeFiles | FolderFiles


def _files(ref: SourceEpisodeRef) -> Files:
    if "folder" in ref.files:
        return FolderFiles(Path(ref.files["folder"]))
    task, episode = ref.source_episode_id.split("/")
    return EpisodeFiles(Path(ref.files["root"]), task, episode)


def plan_videos(files: Files, cfg: AgibotConfig, rows: int, nearest: np.ndarray) -> dict[str, VideoSource]:
    videos = {}
    for cam in cfg.cameras:
        mp4 = files.video(cam)
        if not mp4.is_file() and not files.videos_required:
            continue  # an episode folder without this camera
        if not mp4.is_file():
            raise EpisodeError(mp4, cam, "video missing", stage="read")
        n = declared_frames(mp4)
        if n != rows:
            raise EpisodeError(
                mp4, cam, f"video has {n} frames, proprio_stats.h5 has {rows} rows", stage="read"
            )
        videos[f"observation.images.{cam.removesuffix('_color')}"] = VideoSource(
            mp4, nearest.astype(np.int64)
        )
    return videos


def camera_model(
    key: str, k: Intrinsic, size: tuple[int, int], pose_col: str | None, src: Path
) -> CameraModel:
    """A camera from its intrinsics file, at its video's size; zero distortion coefficients are none."""
    coefficients = k.coefficients()
    distorted = any(c != 0.0 for c in coefficients)
    return CameraModel(
        camera=key, width=size[0], height=size[1], fx=k.fx, fy=k.fy, cx=k.ppx, cy=k.ppy,
        distortion_model=(k.distortion_model or "opencv") if distorted else None,
        distortion=coefficients if distorted else None,
        pose_frame="base" if pose_col else None, pose_column=pose_col,
        provenance=f"AgiBot {src.name} (at the video's size) and the per-row camera-to-base extrinsics",
    )  # fmt: skip


def plan_cameras(
    files: EpisodeFiles,
    cfg: AgibotConfig,
    rows: int,
    plan: resample.ResamplePlan,
    videos: dict[str, VideoSource],
) -> tuple[list[CameraModel], dict[str, ExtraColumn]]:
    """Camera models of the cameras whose intrinsics file exists, with a per-frame base_from_camera
    column (OpenCV axes) where the extrinsics file exists too."""
    models, extra = [], {}
    for cam in cfg.cameras:
        name, key = cam.removesuffix("_color"), f"observation.images.{cam.removesuffix('_color')}"
        path = files.intrinsics(name)
        if key not in videos or not path.is_file():  # a camera model describes a published video
            continue
        parsed = _load_json(path, IntrinsicsFile, "intrinsic")
        k = parsed if isinstance(parsed, Intrinsic) else parsed.intrinsic
        pose_col = None
        if files.extrinsics(name).is_file():
            poses = camera_poses(files.extrinsics(name), rows, cfg.camera_convention)
            pose_col = pose_column(key)
            extra[pose_col] = ExtraColumn(pose_rows(resample.resample_poses(plan, poses)), list(POSE_NAMES))
        models.append(camera_model(key, k, frame_size(videos[key].path), pose_col, path))
    return models, extra


# ---------------------------------------------------------------------------------------------- episode


@dataclass
class Converted:
    """The whole episode at 10 Hz, before cutting into <= 15 min parts."""

    arrays: hands.SideArrays
    sides: list[Side]
    extra: dict[str, ExtraColumn]
    videos: dict[str, VideoSource]
    subtasks: list[str]
    task: TaskEpisode | None  # None: the episode folder has no task text
    cameras: list[CameraModel]


def _extras(p: Proprio, cfg: AgibotConfig, plan: resample.ResamplePlan) -> dict[str, ExtraColumn]:
    extra: dict[str, ExtraColumn] = {}
    if cfg.native_action:
        values, names = read_named(p, cfg.native_action)
        extra["action.native"] = ExtraColumn(values[plan.nearest].astype(np.float32), names)
    if cfg.joints:
        values, names = read_named(p, cfg.joints)
        extra["observation.joints"] = ExtraColumn(
            resample.resample_linear(plan, values).astype(np.float32), names
        )
    if cfg.hand_joints:
        values, names = read_named(p, cfg.hand_joints)
        now = resample.resample_linear(plan, values).astype(np.float32)
        extra["observation.hand_joints"] = ExtraColumn(now, names)
        extra["action.hand_joints"] = ExtraColumn(np.concatenate([now[1:], now[-1:]]), names)
    return extra


def world_base(p: Proprio, cfg: AgibotConfig) -> np.ndarray:
    """`[N, 4, 4]` inverse of the robot base's world pose (`cfg.robot_base`), to take world poses into
    the base frame."""
    rb = cfg.robot_base
    try:
        R = values_to_rotation(read_field(p, rb.rotation), rb.rotation_convention, "xyz")
    except ValueError as e:
        raise EpisodeError(p.path, rb.rotation, str(e)) from e
    return np.linalg.inv(eef_poses(R, read_field(p, rb.position), np.eye(4)))


def _sides(
    p: Proprio, cfg: AgibotConfig, plan: resample.ResamplePlan, cam: np.ndarray | None, world: bool
) -> dict[Side, hands.SideArrays]:
    out: dict[Side, hands.SideArrays] = {}
    base_from_world = world_base(p, cfg) if world else None
    arms = cfg.aligned if world and cfg.aligned is not None else cfg
    for side, arm in (("left", arms.left), ("right", arms.right)):
        if arm is None:
            continue
        pose, grip = arm_pose(p, arm), arm_gripper(p, arm)
        if pose is not None and base_from_world is not None:
            pose = base_from_world @ pose
        pose10 = None if pose is None else resample.resample_poses(plan, pose)
        grip10 = None if grip is None else resample.resample_linear(plan, grip)
        out[side] = robot_side(pose10, grip10, plan.length, cam)
    return out


def read_task(files: Files) -> TaskEpisode | None:
    """The episode's task entry; None for an episode folder without `data_info.json` (whose one entry is
    the folder's, whatever its `episode_id`)."""
    path = files.task_info()
    if path is None:
        return None
    if isinstance(files, FolderFiles):
        parsed = _load_json(path, TaskInfoFile, "task_info")
        return parsed if not isinstance(parsed, list) else task_episode(path, files.episode)
    return task_episode(path, files.episode)


def convert_episode(files: Files, cfg: AgibotConfig) -> Converted:
    task = read_task(files)
    p = open_proprio(files.proprio())
    with p.f:
        plan = resample.make_plan(p.times)
        videos = plan_videos(files, cfg, p.rows, plan.nearest)
        cam = None
        if cfg.reference_frame == "camera":
            poses = camera_poses(files.extrinsics(cfg.reference_camera), p.rows, cfg.camera_convention)
            cam = resample.resample_poses(plan, poses)
        sides = _sides(p, cfg, plan, cam, world=files.world_frame)
        extra = _extras(p, cfg, plan)
        cameras, poses = plan_cameras(files, cfg, p.rows, plan, videos)
    return Converted(
        arrays=hands.assemble(sides, plan.length), sides=[s for s in SIDES if s in sides],
        extra=extra | poses, videos=videos, task=task, cameras=cameras,
        subtasks=subtask_texts(task.label_info.action_config if task else [], plan.nearest),
    )  # fmt: skip


def _part(ep_id: str, rec: Converted, rows: slice, cfg: AgibotConfig) -> CanonicalEpisode:
    text = (
        (rec.task.caption, "source", rec.task.task_name) if rec.task is not None
        else (cfg.embodiment.replace("_", " "), "template", "")
    )  # fmt: skip
    return assemble_episode(ep_id, cfg, rec.arrays, text, rows=rows, videos=rec.videos, extra=rec.extra,
                            annotations={SUBTASK: rec.subtasks}, cameras=rec.cameras)  # fmt: skip


def _episode_dirs(root: Path) -> Iterator[str]:
    for top in RELEASE_TOPS:
        for d in (root / top).glob("*/*"):
            if d.is_dir() and not d.name.startswith("."):
                yield f"{d.parent.name}/{d.name}"


def episode_folders(root: Path) -> list[Path]:
    """Folders holding an episode-folder h5 (FOLDER_H5_NAMES), outside the release's `proprio_stats/` and
    `observations/` trees and hidden folders."""
    found = {p.parent for name in FOLDER_H5_NAMES for p in root.rglob(name) if p.is_file()}
    skip = {root / top for top in RELEASE_TOPS}
    return [
        d for d in found
        if not any(s == d or s in d.parents for s in skip)
        and not any(part.startswith(".") for part in d.relative_to(root).parts)
    ]  # fmt: skip


def _release_ref(root: Path, ep_id: str, cfg: SourceConfig) -> SourceEpisodeRef:
    files = EpisodeFiles(root, *ep_id.split("/"))
    paths = {"root": str(root), "hdf5": str(files.proprio()), "task_info": str(files.task_info())}
    paths |= {f"video:{c}": str(files.video(c)) for c in getattr(cfg, "cameras", [])}
    return SourceEpisodeRef(source_episode_id=ep_id, files=paths)


def _folder_ref(root: Path, folder: Path) -> SourceEpisodeRef:
    paths = {"root": str(root), "folder": str(folder), "hdf5": str(FolderFiles(folder).proprio())}
    return SourceEpisodeRef(source_episode_id=folder.relative_to(root).as_posix(), files=paths)


class AgibotSource:
    """The AgiBot World `Source` (ingest/sources/base.py)."""

    name = "agibot"
    requires = ("h5py", "av")
    layout = LAYOUT

    def discover(self, root: Path, cfg: SourceConfig) -> list[SourceEpisodeRef]:
        root = Path(root).resolve()
        refs = [_release_ref(root, ep_id, cfg) for ep_id in set(_episode_dirs(root))]
        refs += [_folder_ref(root, folder) for folder in episode_folders(root)]
        return sorted(refs, key=lambda r: natural_key(r.source_episode_id))

    def convert(self, ref: SourceEpisodeRef, cfg: SourceConfig) -> list[CanonicalEpisode]:
        if not isinstance(cfg, AgibotConfig):
            raise TypeError(f"agibot needs an AgibotConfig, got {type(cfg).__name__}")
        rec = convert_episode(_files(ref), cfg)
        ranges = resample.chunk_ranges(rec.arrays.state.shape[0], MAX_FRAMES)
        base = ref.source_episode_id
        return [
            _part(base if len(ranges) == 1 else f"{base}#{i}", rec, slice(a, b), cfg)
            for i, (a, b) in enumerate(ranges)
        ]


SOURCE = AgibotSource()
