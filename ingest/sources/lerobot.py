"""LeRobot v2.0 / v2.1 / v3.0 input datasets (GR00T demo data, InternData-A1 buckets, LDA sim data, ...).

`--input` is one dataset root or a folder of them (InternData-A1 nests its buckets at varying depth); the
mapping's `robot_types` picks the roots it is for. `meta/` is read by lerobot_meta.py (v3.0: lerobot_v3.py)
and the mapping is checked against `info.json` / `modality.json` before anything converts: a key the
dataset does not declare is refused by name. One source episode per episode of `meta/`; its rows are read
with pyarrow (v3.0: its rows of a shared file). Source times are the `timestamp` column (else
`frame_index / fps`, else row / fps) minus the first one (GR00T's demo starts at 0.05 s); timestamps within
LeRobot's tolerance (1e-4 s) of the `1 / fps` grid are snapped to it, so float32 timestamps do not drop the
last 10 Hz sample. Everything is resampled to 10 Hz without extrapolation (ingest/convert/resample.py).

The key mapping (schemas/sources_lerobot.py) says where each side's end-effector pose and gripper are. With a
pose, the canonical state and action follow CONTRACT.md section 4 in the robot base frame. A joint-only robot
with a `kinematics` model (GR00T's GR1) gets both hands by forward kinematics (ingest/convert/kinematics.py),
in its head camera's frame; without one the wrist dimensions stay masked. Mapped joints are kept in
`observation.joints` either way.
The source's own action is kept unchanged (nearest source frame) in `action.native`; integer
`annotation.*` columns (GR00T: rows of the task table) are carried over as text (nearest source frame).
Video frames are the nearest source frames, offset by the episode's window in the MP4 (v3.0 concatenates
episodes); a video with fewer frames than the episode has rows is a named reject.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.convert import hands, kinematics, resample
from ingest.convert.camera import pose_rows
from ingest.convert.geometry import invert_pose, values_to_rotation
from ingest.convert.robot import eef_poses, gripper_to_unit, offset_transform, robot_side
from ingest.errors import EpisodeError
from ingest.sources import lda_sim, lerobot_v3
from ingest.sources.base import SourceEpisodeRef, assemble_episode
from ingest.sources.lerobot_meta import (
    DatasetMeta,
    check_mapping,
    column_values,
    find_roots,
    load_meta,
    read_field,
    read_fields,
)
from ingest.sources.lerobot_models import EpisodeEntry, VideoWindow
from ingest.video import declared_frames
from schemas.camera import POSE_NAMES, CameraModel, pose_column
from schemas.canonical import SIDES, Side
from schemas.episode import (
    ANNOTATION_PREFIX,
    FPS,
    MAX_EPISODE_SECONDS,
    CanonicalEpisode,
    ExtraColumn,
    VideoSource,
)
from schemas.pipelines import SourceConfig
from schemas.sources_lerobot import ArmMapping, CameraSpec, KinematicsMapping, LeRobotInputConfig

MAX_FRAMES = int(MAX_EPISODE_SECONDS * FPS)
TIMESTAMP_TOL_S = 1e-4  # lerobot's default tolerance_s


def _episode_index(ref: SourceEpisodeRef) -> int:
    return int(ref.source_episode_id.rsplit("_", 1)[-1])


# ---------------------------------------------------------------------------------------------- columns


def native_action_specs(cfg: LeRobotInputConfig, table: pa.Table) -> list[str]:
    """The mapping's `native_action`, else `action`, else every `action.*` / `actions.*` column in order."""
    if cfg.native_action is not None:
        return list(cfg.native_action)
    if "action" in table.column_names:
        return ["action"]
    return [c for c in table.column_names if c.startswith(("action.", "actions."))]


# ---------------------------------------------------------------------------------------------- time


def source_times(table: pa.Table, fps: float, path: Path) -> np.ndarray:
    """Seconds from the first frame, strictly increasing; snapped to the 1/fps grid within tolerance."""
    n = table.num_rows
    if n == 0:
        raise EpisodeError(path, "timestamp", "zero-length episode (0 frames)")
    if "timestamp" in table.column_names:
        t, key = column_values(table, "timestamp", path)[:, 0], "timestamp"
    elif "frame_index" in table.column_names:
        t, key = column_values(table, "frame_index", path)[:, 0] / fps, "frame_index"
    else:
        t, key = np.arange(n) / fps, "timestamp"
    if not np.isfinite(t).all():
        raise EpisodeError(path, key, "non-finite timestamp")
    t = t - t[0]
    if n > 1 and not np.all(np.diff(t) > 0):
        raise EpisodeError(path, key, f"not strictly increasing (first at row {int(np.argmin(np.diff(t)))})")
    grid = np.round(t * fps) / fps
    return grid if np.all(np.abs(grid - t) <= TIMESTAMP_TOL_S) else t


# ---------------------------------------------------------------------------------------------- rotations


def to_rotation_matrix(values: np.ndarray, arm: ArmMapping, spec: str, path: Path) -> np.ndarray:
    """Source rotation values `[N, D]` in the mapping's convention -> `[N, 3, 3]` (rotations, checked)."""
    try:
        return values_to_rotation(values, arm.rotation_convention, arm.euler_order)
    except ValueError as e:
        raise EpisodeError(path, spec, str(e)) from e


# ---------------------------------------------------------------------------------------------- one side


@dataclass
class ArmTrack:
    """One side at the source rate: base-frame EEF pose (canonical frame), gripper opening in [0, 1]."""

    pose: np.ndarray | None  # [N, 4, 4]
    gripper: np.ndarray | None  # [N]


def _finite_rows(path: Path, spec: str, values: np.ndarray) -> None:
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise EpisodeError(path, spec, f"non-finite value (NaN/inf) at row {int(np.argmax(bad))}")


def read_arm(arm: ArmMapping, table: pa.Table, meta: DatasetMeta, path: Path) -> ArmTrack:
    pose = gripper = None
    if arm.position is not None and arm.rotation is not None:
        p, _ = read_field(arm.position, table, meta, path)
        r, _ = read_field(arm.rotation, table, meta, path)
        if p.shape[1] != 3:
            raise EpisodeError(path, arm.position, f"position needs 3 values, got {p.shape[1]}")
        _finite_rows(path, arm.position, p)
        _finite_rows(path, arm.rotation, r)
        R = to_rotation_matrix(r, arm, arm.rotation, path)
        pose = eef_poses(R, p, offset_transform(arm.eef_offset.quat_wxyz, arm.eef_offset.translation))
    if arm.gripper is not None:
        g, _ = read_field(arm.gripper, table, meta, path)
        if g.shape[1] != 1:
            raise EpisodeError(path, arm.gripper, f"gripper needs 1 value, got {g.shape[1]}")
        _finite_rows(path, arm.gripper, g)
        gripper = gripper_to_unit(g[:, 0], arm.gripper_closed, arm.gripper_open)
    return ArmTrack(pose, gripper)


def resample_arm(track: ArmTrack, plan: resample.ResamplePlan) -> hands.SideArrays:
    pose = None if track.pose is None else resample.resample_poses(plan, track.pose)
    grip = None if track.gripper is None else resample.resample_linear(plan, track.gripper)
    return robot_side(pose, grip, plan.length)


# ---------------------------------------------------------------------------------------------- kinematics


def read_joint_groups(
    kin: KinematicsMapping, table: pa.Table, meta: DatasetMeta, path: Path
) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """The model's joints `[N, D]` (source rate) and their layout: modality group -> (start, end)."""
    values, layout, start = [], {}, 0
    for spec in kin.joints:
        v, _ = read_field(spec, table, meta, path)
        _finite_rows(path, spec, v)
        layout[spec.removeprefix("modality:state.")] = (start, start + v.shape[1])
        values.append(v)
        start += v.shape[1]
    return np.concatenate(values, axis=1), layout


def kinematic_sides(
    cfg: LeRobotInputConfig, table: pa.Table, meta: DatasetMeta, plan: resample.ResamplePlan, path: Path
) -> tuple[dict[Side, hands.SideArrays], kinematics.CameraModel]:
    """Both hands by forward kinematics of the 10 Hz joints (linear), and the head camera model."""
    kin = cfg.kinematics
    joints, layout = read_joint_groups(kin, table, meta, path)
    try:
        fk = kinematics.gr1_model().forward(resample.resample_linear(plan, joints), layout)
    except FileNotFoundError as e:
        raise EpisodeError(path, "kinematics", str(e), stage="read") from e
    except (ValueError, KeyError) as e:
        raise EpisodeError(path, "kinematics.joints", str(e)) from e
    return kinematics.hand_sides(fk, cfg.reference_frame == "camera"), fk.camera


# ---------------------------------------------------------------------------------------------- videos


def video_start(window: VideoWindow, key: str, fps: float, rows: int) -> int:
    """The episode's first frame in the MP4; a window or file with fewer frames than `rows` is refused."""
    start = round(window.from_s * fps)
    if window.to_s is not None and round((window.to_s - window.from_s) * fps) < rows:
        span = f"{window.from_s:.3f}-{window.to_s:.3f} s"
        raise EpisodeError(
            window.path, key, f"video shorter than the episode: window {span} for {rows} rows", stage="read"
        )
    n = declared_frames(window.path)
    if n < start + rows:
        raise EpisodeError(
            window.path, key, f"video shorter than the episode: {n} frames, needs {start + rows} "
            f"({rows} rows from frame {start})", stage="read",
        )  # fmt: skip
    return start


def plan_videos(
    entry: EpisodeEntry, meta: DatasetMeta, cfg: LeRobotInputConfig, nearest: np.ndarray, rows: int
) -> dict[str, VideoSource]:
    """`observation.images.<last part of the key>` -> nearest source frame per 10 Hz step."""
    videos: dict[str, VideoSource] = {}
    for key in cfg.cameras if cfg.cameras is not None else meta.cameras:
        window = entry.videos.get(key)
        if window is None or not window.path.is_file():
            if key in cfg.optional_cameras:
                continue
            raise EpisodeError(window.path if window else entry.data_file, key, "video missing", stage="read")
        start = video_start(window, key, meta.fps, rows)
        out_key = f"observation.images.{key.rsplit('.', 1)[-1]}"
        videos[out_key] = VideoSource(path=window.path, frame_indices=(start + nearest).astype(np.int64))
    return videos


def camera_model(entry: EpisodeEntry, key: str, spec: CameraSpec, out_key: str) -> CameraModel:
    """The intrinsics of source camera `key` from the section's spec (no distortion, no pose yet)."""
    if spec.camera_data is not None:
        where = f"task_data.camera_data.{spec.camera_data}.camera_params"
        params = entry.camera_data.get(spec.camera_data, {}).get("camera_params")
        provenance = spec.provenance or f"meta/episodes.jsonl {where} of episode {entry.index}"
    else:
        where, params, provenance = "camera_models.intrinsics", spec.intrinsics, spec.provenance or "section"
    try:
        fx, fy, cx, cy, width, height = (float(x) for x in params)
        return CameraModel(camera=out_key, width=int(width), height=int(height), fx=fx, fy=fy, cx=cx, cy=cy,
                           provenance=provenance)  # fmt: skip
    except (TypeError, ValueError) as e:
        raise EpisodeError(
            entry.data_file, where, f"expected [fx, fy, cx, cy, width, height], got {params!r}"
        ) from e


def _with_pose(model: CameraModel, poses: np.ndarray) -> tuple[CameraModel, ExtraColumn]:
    """The model with a per-frame `base_from_camera` column (10 Hz poses `[T, 4, 4]`, OpenCV axes)."""
    column = pose_column(model.camera)
    return (model.model_copy(update={"pose_frame": "base", "pose_column": column}),
            ExtraColumn(pose_rows(poses), list(POSE_NAMES)))  # fmt: skip


def wrist_camera_poses(
    entry: EpisodeEntry, track: ArmTrack, arm: ArmMapping, plan: resample.ResamplePlan
) -> np.ndarray:
    """10 Hz base_from_camera of a camera on an arm's end effector: the source EEF pose (the canonical one
    with the offset undone) times the camera's mount (ingest/sources/lda_sim.py)."""
    mount = lda_sim.wrist_camera({"camera_data": entry.camera_data}, entry.data_file)
    offset = offset_transform(arm.eef_offset.quat_wxyz, arm.eef_offset.translation)
    source = track.pose @ invert_pose(offset)
    return resample.resample_poses(plan, lda_sim.base_from_camera(source, mount))


def head_camera(cam: kinematics.CameraModel, model: str, out_key: str) -> CameraModel:
    """The published model of a kinematic model's head camera (intrinsics at its render size)."""
    (fx, _, cx), (_, fy, cy) = cam.K[0], cam.K[1]
    # published in meta/cameras.jsonl and the Parquet footer: the old module path is kept so that datasets
    # written before the toolkit moved to ingest/convert/ re-run to the same bytes
    why = f"forward kinematics: {model} camera {cam.name}, fovy {cam.fovy_deg} deg (ingest/stages/kinematics)"
    return CameraModel(camera=out_key, width=cam.width, height=cam.height, fx=fx, fy=fy, cx=cx, cy=cy,
                       provenance=why)  # fmt: skip


def plan_cameras(
    entry: EpisodeEntry, cfg: LeRobotInputConfig, videos: dict[str, VideoSource], plan: resample.ResamplePlan,
    tracks: dict[Side, ArmTrack], fk_camera: kinematics.CameraModel | None,
) -> tuple[list[CameraModel], dict[str, ExtraColumn]]:  # fmt: skip
    """Camera models of the kept videos the section gives one for, with a per-frame base_from_camera
    column where the pose is known: a wrist camera (`wrist_of`) or the head camera of a kinematic model."""
    models, extra = [], {}
    for key, spec in cfg.camera_models.items():
        out_key = f"observation.images.{key.rsplit('.', 1)[-1]}"
        if out_key not in videos:
            continue
        model = camera_model(entry, key, spec, out_key)
        track = tracks.get(spec.wrist_of) if spec.wrist_of else None
        if track is not None and track.pose is not None:
            arm = cfg.left if spec.wrist_of == "left" else cfg.right
            poses = wrist_camera_poses(entry, track, arm, plan)
            model, extra[pose_column(out_key)] = _with_pose(model, poses)
        models.append(model)
    kin = cfg.kinematics
    if fk_camera is not None and kin is not None and kin.video is not None:
        out_key = f"observation.images.{kin.video.rsplit('.', 1)[-1]}"
        if out_key in videos:
            model, extra[pose_column(out_key)] = _with_pose(head_camera(fk_camera, kin.model, out_key),
                                                            fk_camera.base_from_camera)  # fmt: skip
            models.append(model)
    return models, extra


# ---------------------------------------------------------------------------------------------- text


def episode_task(
    entry: EpisodeEntry, table: pa.Table, meta: DatasetMeta, cfg: LeRobotInputConfig, path: Path
) -> str:
    """The first task of the episode (task_index column, else meta/episodes) that is an instruction."""
    candidates: list[str] = []
    if "task_index" in table.column_names:
        indices = column_values(table, "task_index", path)[:, 0].astype(np.int64)
        candidates += [meta.tasks[i] for i in dict.fromkeys(indices.tolist()) if i in meta.tasks]
    candidates += entry.tasks
    for text in candidates:
        if text.strip() and text.strip() not in cfg.invalid_tasks:
            return text
    raise EpisodeError(path, "task_index", "episode has no task text in the task table")


def annotation_columns(meta: DatasetMeta, cfg: LeRobotInputConfig) -> list[str]:
    """The mapping's `annotations`, else every integer `annotation.*` feature (GR00T's task-table rows)."""
    if cfg.annotations is not None:
        return list(cfg.annotations)
    return [
        key for key, f in meta.features.items()
        if key.startswith(ANNOTATION_PREFIX) and "/" not in key and isinstance(f, dict)
        and str(f.get("dtype", "")).startswith(("int", "uint"))
    ]  # fmt: skip


def read_annotation(
    column: str, table: pa.Table, meta: DatasetMeta, nearest: np.ndarray, path: Path
) -> list[str]:
    """One `annotation.*` column of task-table rows -> the text at each 10 Hz step (nearest source frame)."""
    if column not in table.column_names:
        raise EpisodeError(path, column, "unknown key: no such column in the episode Parquet")
    col = table.column(column).combine_chunks()
    if not pa.types.is_integer(col.type) or col.null_count:
        raise EpisodeError(path, column, f"expected task indices, got {col.type} ({col.null_count} null)")
    rows = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)
    unknown = sorted(set(rows.tolist()) - meta.tasks.keys())
    if unknown:
        raise EpisodeError(path, column, f"task index {unknown[0]} is not in the task table")
    return [meta.tasks[i] for i in rows[nearest].tolist()]


# ---------------------------------------------------------------------------------------------- episode


def read_table(entry: EpisodeEntry) -> pa.Table:
    """The episode's rows: its own Parquet (v2.x) or its rows of a shared one (v3.0)."""
    if entry.rows is not None:
        return lerobot_v3.read_rows(entry)
    path = entry.data_file
    if not path.is_file():
        raise EpisodeError(path, "parquet", "episode Parquet missing", stage="read")
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise EpisodeError(path, "parquet", f"unreadable Parquet: {e}", stage="read") from e


def _check_length(entry: EpisodeEntry, table: pa.Table, path: Path) -> None:
    if entry.length is not None and entry.length != table.num_rows:
        raise EpisodeError(
            path, "length", f"meta/episodes says {entry.length} frames, Parquet has {table.num_rows}"
        )


@dataclass
class Converted:
    """The whole recording at 10 Hz, before cutting into <= 15 min episodes."""

    arrays: hands.SideArrays
    sides: list[Side]
    extra: dict[str, ExtraColumn]
    videos: dict[str, VideoSource]
    annotations: dict[str, list[str]]
    task: str
    cameras: list[CameraModel]


def _extras(
    table: pa.Table, meta: DatasetMeta, cfg: LeRobotInputConfig, plan: resample.ResamplePlan, path: Path
) -> dict[str, ExtraColumn]:
    extra: dict[str, ExtraColumn] = {}
    specs = native_action_specs(cfg, table)
    if specs:
        values, names = read_fields(specs, table, meta, path)
        extra["action.native"] = ExtraColumn(values[plan.nearest].astype(np.float32), names)
    if cfg.joints:
        values, names = read_fields(cfg.joints, table, meta, path)
        extra["observation.joints"] = ExtraColumn(
            resample.resample_linear(plan, values).astype(np.float32), names
        )
    return extra


def _entry(meta: DatasetMeta, ep: int) -> EpisodeEntry:
    if ep not in meta.episodes:
        raise EpisodeError(meta.root / "meta", "episode_index", f"episode {ep} is not in meta/", stage="read")
    return meta.episodes[ep]


def convert_recording(ref: SourceEpisodeRef, cfg: LeRobotInputConfig) -> Converted:
    meta = load_meta(Path(ref.files["root"]))
    entry = _entry(meta, _episode_index(ref))
    path, table = entry.data_file, read_table(entry)
    _check_length(entry, table, path)
    plan = resample.make_plan(source_times(table, meta.fps, path))
    camera, tracks = None, {}
    if cfg.kinematics is not None:
        sides, camera = kinematic_sides(cfg, table, meta, plan, path)
    else:
        arms = {s: a for s, a in (("left", cfg.left), ("right", cfg.right)) if a is not None}
        tracks = {s: read_arm(a, table, meta, path) for s, a in arms.items()}
        sides = {s: resample_arm(track, plan) for s, track in tracks.items()}
    notes = {c: read_annotation(c, table, meta, plan.nearest, path) for c in annotation_columns(meta, cfg)}
    videos = plan_videos(entry, meta, cfg, plan.nearest, table.num_rows)
    cameras, poses = plan_cameras(entry, cfg, videos, plan, tracks, camera)
    return Converted(
        arrays=hands.assemble(sides, plan.length), sides=[s for s in SIDES if s in sides],
        extra=_extras(table, meta, cfg, plan, path) | poses, videos=videos,
        annotations=notes, task=episode_task(entry, table, meta, cfg, path), cameras=cameras,
    )  # fmt: skip


def _part(ep_id: str, rec: Converted, rows: slice, cfg: LeRobotInputConfig) -> CanonicalEpisode:
    text = (rec.task, "source", rec.task)
    return assemble_episode(ep_id, cfg, rec.arrays, text, rows=rows, videos=rec.videos, extra=rec.extra,
                            annotations=rec.annotations, cameras=rec.cameras)  # fmt: skip


# ---------------------------------------------------------------------------------------------- source


def _as_config(cfg: SourceConfig) -> LeRobotInputConfig:
    if not isinstance(cfg, LeRobotInputConfig):
        raise TypeError(f"lerobot needs a LeRobotInputConfig, got {type(cfg).__name__}")
    return cfg


def select_datasets(folder: Path, cfg: LeRobotInputConfig) -> list[DatasetMeta]:
    """The dataset roots at or under `folder` whose `robot_type` the mapping is for; none is a refusal."""
    metas = [load_meta(root) for root in find_roots(folder)]
    if not metas:
        raise EpisodeError(folder, "meta/info.json", "no LeRobot dataset here or below", stage="discover")
    chosen = [m for m in metas if cfg.robot_types is None or m.info.robot_type in cfg.robot_types]
    if not chosen:
        found = sorted({str(m.info.robot_type) for m in metas})
        raise EpisodeError(
            folder,
            "robot_type",
            f"no dataset of robot_type {cfg.robot_types} (found {found})",
            stage="discover",
        )
    return chosen


def _ref(meta: DatasetMeta, entry: EpisodeEntry, name: str) -> SourceEpisodeRef:
    files = {"root": str(meta.root), "parquet": str(entry.data_file)}
    files |= {f"video:{k}": str(w.path) for k, w in entry.videos.items()}
    return SourceEpisodeRef(source_episode_id=f"{name}/episode_{entry.index:06d}", files=files)


class LeRobotSource:
    """The LeRobot-input `Source` (ingest/sources/base.py)."""

    name = "lerobot"
    requires = ("pyarrow", "av")
    layout = "a LeRobot dataset root (meta/info.json) or folders of them, of the section's robot_types"

    def discover(self, root: Path, cfg: SourceConfig) -> list[SourceEpisodeRef]:
        """Every episode of every selected dataset; ids are `<dataset folder>/episode_XXXXXX` (the folder
        relative to `root` when `root` holds several datasets)."""
        folder, mapping = Path(root).resolve(), _as_config(cfg)
        refs = []
        for meta in select_datasets(folder, mapping):
            check_mapping(meta, mapping)
            name = folder.name if meta.root == folder else meta.root.relative_to(folder).as_posix()
            refs += [_ref(meta, meta.episodes[ep], name) for ep in sorted(meta.episodes)]
        return refs

    def convert(self, ref: SourceEpisodeRef, cfg: SourceConfig) -> list[CanonicalEpisode]:
        rec = convert_recording(ref, _as_config(cfg))
        ranges = resample.chunk_ranges(rec.arrays.state.shape[0], MAX_FRAMES)
        base = ref.source_episode_id
        return [
            _part(base if len(ranges) == 1 else f"{base}#{i}", rec, slice(a, b), _as_config(cfg))
            for i, (a, b) in enumerate(ranges)
        ]


SOURCE = LeRobotSource()
