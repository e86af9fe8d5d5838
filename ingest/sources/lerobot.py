"""LeRobot v2.0 / v2.1 input datasets (GR00T demo data, InternData-A1 v2.1 buckets, LDA sim data, ...).

One source episode per line of `meta/episodes.jsonl`; its Parquet is read with pyarrow. Source times are the
`timestamp` column (else `frame_index / fps`, else row / fps) minus the first one (GR00T's demo starts at
0.05 s); timestamps within LeRobot's tolerance (1e-4 s) of the `1 / fps` grid are snapped to it, so float32
timestamps do not drop the last 10 Hz sample. Everything is resampled to 10 Hz without extrapolation
(ingest/stages/resample.py).

The key mapping (schemas/sources_lerobot.py) says where each side's end-effector pose and gripper are. With a
pose, the canonical state and action follow CONTRACT.md section 4 in the robot base frame; without one
(joint-only robots) the wrist dimensions stay masked and the mapped joints are kept in `observation.joints`.
The source's own action is kept unchanged (nearest source frame) in `action.native`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.errors import EpisodeError
from ingest.sources.base import SourceEpisodeRef
from ingest.stages import hands, quality, resample
from ingest.stages.geometry import (
    IDENTITY_6D,
    orthonormality_error,
    quaternion_to_matrix,
    rotation_from_6d,
    rotation_to_6d,
)
from schemas.canonical import SIDE_DIM, SIDES, Side
from schemas.episode import FPS, MAX_EPISODE_SECONDS, CanonicalEpisode, EpisodeMeta, ExtraColumn, VideoSource
from schemas.pipelines import SourceConfig
from schemas.sources_lerobot import ArmMapping, LeRobotInputConfig

MAX_FRAMES = int(MAX_EPISODE_SECONDS * FPS)
TIMESTAMP_TOL_S = 1e-4  # lerobot's default tolerance_s
ORTHONORMAL_TOL = 1e-3
SUPPORTED_VERSIONS = ("v2.0", "v2.1")
_SLICE = re.compile(r"^(?P<col>[^\[\]]+)\[(?P<a>\d+):(?P<b>\d+)\]$")
POS, ROT, GRIP = slice(0, 3), slice(3, 9), 9


# ---------------------------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class DatasetMeta:
    """What `meta/` says about the input dataset."""

    root: Path
    version: str
    fps: float
    chunks_size: int
    data_path: str
    video_path: str
    features: dict[str, Any]
    tasks: dict[int, str]
    episodes: dict[int, dict[str, Any]]
    modality: dict[str, Any] | None

    @property
    def cameras(self) -> list[str]:
        return [k for k, f in self.features.items() if isinstance(f, dict) and f.get("dtype") == "video"]

    def data_file(self, ep: int) -> Path:
        return self.root / self.data_path.format(episode_chunk=ep // self.chunks_size, episode_index=ep)

    def video_file(self, ep: int, key: str) -> Path:
        chunk = ep // self.chunks_size
        return self.root / self.video_path.format(episode_chunk=chunk, video_key=key, episode_index=ep)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise EpisodeError(path, path.name, "file missing", stage="discover") from e
    except (OSError, json.JSONDecodeError) as e:
        raise EpisodeError(path, path.name, f"unreadable JSON: {e}", stage="discover") from e


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise EpisodeError(path, path.name, "file missing", stage="discover")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise EpisodeError(path, f"line {n}", f"bad JSON: {e}", stage="discover") from e
    return rows


def _check_version(path: Path, info: dict[str, Any]) -> str:
    version = str(info.get("codebase_version", ""))
    if version.startswith("v3"):
        raise EpisodeError(
            path,
            "codebase_version",
            f"LeRobot {version} is not supported yet (v2.0/v2.1 only)",
            stage="discover",
        )
    if version not in SUPPORTED_VERSIONS:
        raise EpisodeError(path, "codebase_version", f"unknown LeRobot version {version!r}", stage="discover")
    return version


@lru_cache(maxsize=16)
def load_meta(root: Path) -> DatasetMeta:
    """Read `meta/info.json`, `episodes.jsonl`, `tasks.jsonl` and (GR00T) `modality.json` of `root`."""
    meta = root / "meta"
    info = _read_json(meta / "info.json")
    version = _check_version(meta / "info.json", info)
    tasks = {int(r["task_index"]): str(r["task"]) for r in _read_jsonl(meta / "tasks.jsonl")}
    episodes = {int(r["episode_index"]): r for r in _read_jsonl(meta / "episodes.jsonl")}
    modality = _read_json(meta / "modality.json") if (meta / "modality.json").is_file() else None
    return DatasetMeta(
        root=root, version=version, fps=float(info["fps"]), chunks_size=int(info.get("chunks_size") or 1000),
        data_path=info["data_path"], video_path=info.get("video_path") or "",
        features=info.get("features", {}),
        tasks=tasks, episodes=episodes, modality=modality,
    )  # fmt: skip


def _dataset_root(ref: SourceEpisodeRef) -> Path:
    return Path(ref.files["root"])


def _episode_index(ref: SourceEpisodeRef) -> int:
    return int(ref.source_episode_id.rsplit("_", 1)[-1])


# ---------------------------------------------------------------------------------------------- columns


def _feature_names(meta: DatasetMeta, column: str, dim: int) -> list[str]:
    """Dimension names from info.json (flattening unitree's nested `[[...]]`), else `<column>.<i>`."""
    names = (
        meta.features.get(column, {}).get("names") if isinstance(meta.features.get(column), dict) else None
    )
    if isinstance(names, dict):  # lerobot's {"motors": [...]} form
        names = next(iter(names.values()), None)
    while isinstance(names, list) and len(names) == 1 and isinstance(names[0], list):
        names = names[0]
    if isinstance(names, list) and len(names) == dim and all(isinstance(n, str) for n in names):
        return list(names)
    return [f"{column}.{i}" for i in range(dim)]


def column_values(table: pa.Table, column: str, path: Path) -> np.ndarray:
    """A numeric column as float64 `[N, D]` (scalar columns give D = 1). Raises EpisodeError naming it."""
    if column not in table.column_names:
        raise EpisodeError(path, column, "unknown key: no such column in the episode Parquet")
    col = table.column(column).combine_chunks()
    if col.null_count:
        raise EpisodeError(path, column, f"{col.null_count} null value(s)")
    n = len(col)
    try:
        if (
            pa.types.is_list(col.type)
            or pa.types.is_large_list(col.type)
            or pa.types.is_fixed_size_list(col.type)
        ):
            flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
            if n and flat.size % n:
                raise EpisodeError(path, column, "rows of different lengths")
            return flat.reshape(n, -1 if n else 0)
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64).reshape(n, 1)
    except (pa.ArrowInvalid, TypeError, ValueError) as e:
        raise EpisodeError(path, column, f"not numeric ({col.type}): {e}") from e


def _modality_slice(spec: str, meta: DatasetMeta, path: Path) -> tuple[str, int, int, str]:
    group, _, name = spec.removeprefix("modality:").partition(".")
    entry = (meta.modality or {}).get(group, {}).get(name)
    if not isinstance(entry, dict) or "start" not in entry or "end" not in entry:
        where = "meta/modality.json is missing" if meta.modality is None else "no such modality.json entry"
        raise EpisodeError(path, spec, f"unknown key: {where}")
    default = "observation.state" if group == "state" else "action"
    return str(entry.get("original_key", default)), int(entry["start"]), int(entry["end"]), f"{group}.{name}"


def read_field(spec: str, table: pa.Table, meta: DatasetMeta, path: Path) -> tuple[np.ndarray, list[str]]:
    """Values `[N, D]` and names of one mapping field (forms in schemas/sources_lerobot.py)."""
    if spec.startswith("modality:"):
        column, a, b, label = _modality_slice(spec, meta, path)
        names = [f"{label}.{i}" for i in range(b - a)]
    elif m := _SLICE.match(spec):
        column, a, b = m["col"], int(m["a"]), int(m["b"])
        names = None
    else:
        values = column_values(table, spec, path)
        return values, _feature_names(meta, spec, values.shape[1])
    values = column_values(table, column, path)
    if not 0 <= a < b <= values.shape[1]:
        raise EpisodeError(path, spec, f"slice [{a}:{b}] outside the {values.shape[1]} values of {column}")
    return values[:, a:b], names or _feature_names(meta, column, values.shape[1])[a:b]


def read_fields(
    specs: list[str], table: pa.Table, meta: DatasetMeta, path: Path
) -> tuple[np.ndarray, list[str]]:
    parts = [read_field(s, table, meta, path) for s in specs]
    return np.concatenate([p[0] for p in parts], axis=1), [n for p in parts for n in p[1]]


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


def _axis_rotation(axis: str, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(angle), np.zeros_like(angle)
    rows = {
        "x": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
        "y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
        "z": [[c, -s, zero], [s, c, zero], [zero, zero, one]],
    }[axis]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def euler_to_matrix(angles: np.ndarray, order: str) -> np.ndarray:
    """`[N, 3]` radians -> `[N, 3, 3]`. Lower case `xyz`: extrinsic (R = Rz Ry Rx); upper case: intrinsic."""
    mats = [_axis_rotation(a.lower(), angles[:, i]) for i, a in enumerate(order)]
    if order.islower():
        mats = mats[::-1]
    return mats[0] @ mats[1] @ mats[2]


def to_rotation_matrix(values: np.ndarray, arm: ArmMapping, spec: str, path: Path) -> np.ndarray:
    """Source rotation values `[N, D]` in the mapping's convention -> `[N, 3, 3]`."""
    want = {"quat_xyzw": 4, "quat_wxyz": 4, "euler": 3, "rot6d": 6}[arm.rotation_convention]
    if values.shape[1] != want:
        raise EpisodeError(
            path, spec, f"{arm.rotation_convention} needs {want} values, got {values.shape[1]}"
        )
    if arm.rotation_convention == "euler":
        return euler_to_matrix(values, arm.euler_order)
    if arm.rotation_convention == "rot6d":
        return rotation_from_6d(values)
    q = values if arm.rotation_convention == "quat_wxyz" else values[:, [3, 0, 1, 2]]
    norm = np.linalg.norm(q, axis=1)
    if (norm < 1e-6).any():
        raise EpisodeError(path, spec, f"zero quaternion at row {int(np.argmax(norm < 1e-6))}")
    return quaternion_to_matrix(q)


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


def _offset(arm: ArmMapping) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(np.asarray(arm.offset_quat_wxyz, dtype=np.float64))
    T[:3, 3] = arm.offset_position
    return T


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
        err = orthonormality_error(R)
        if (err > ORTHONORMAL_TOL).any():
            raise EpisodeError(path, arm.rotation, f"rotation not orthonormal at row {int(np.argmax(err))}")
        pose = np.tile(np.eye(4), (len(p), 1, 1))
        pose[:, :3, :3], pose[:, :3, 3] = R, p
        pose = pose @ _offset(arm)
    if arm.gripper is not None:
        g, _ = read_field(arm.gripper, table, meta, path)
        if g.shape[1] != 1:
            raise EpisodeError(path, arm.gripper, f"gripper needs 1 value, got {g.shape[1]}")
        _finite_rows(path, arm.gripper, g)
        gripper = np.clip((g[:, 0] - arm.gripper_closed) / (arm.gripper_open - arm.gripper_closed), 0.0, 1.0)
    return ArmTrack(pose, gripper)


def canonical_side(pose: np.ndarray | None, gripper: np.ndarray | None, t: int) -> hands.SideArrays:
    """One side's 73 state/action values at 10 Hz in the base frame (CONTRACT.md section 4); what the
    source lacks (the pose, the gripper, always the keypoints) is zero and masked."""
    state, smask = np.zeros((t, SIDE_DIM)), np.zeros((t, SIDE_DIM), dtype=bool)
    action = np.zeros((t, SIDE_DIM))
    if pose is not None:
        state[:, POS], state[:, ROT] = pose[:, :3, 3], rotation_to_6d(pose[:, :3, :3])
        smask[:, POS], smask[:, ROT] = True, True
        action[:-1, POS] = pose[1:, :3, 3] - pose[:-1, :3, 3]
        action[:-1, ROT] = rotation_to_6d(np.swapaxes(pose[:-1, :3, :3], -1, -2) @ pose[1:, :3, :3])
        action[-1, ROT] = IDENTITY_6D  # the last frame repeats a zero motion
    if gripper is not None:
        state[:, GRIP], smask[:, GRIP] = gripper, True
        action[:-1, GRIP], action[-1, GRIP] = gripper[1:], gripper[-1]
    return hands.SideArrays(
        state=state.astype(np.float32), action=action.astype(np.float32),
        state_mask=smask, action_mask=hands.action_mask(smask),
    )  # fmt: skip


def resample_arm(track: ArmTrack, plan: resample.ResamplePlan) -> hands.SideArrays:
    pose = None if track.pose is None else resample.resample_poses(plan, track.pose)
    grip = None if track.gripper is None else resample.resample_linear(plan, track.gripper)
    return canonical_side(pose, grip, plan.length)


# ---------------------------------------------------------------------------------------------- videos, text


def plan_videos(
    ep: int, meta: DatasetMeta, cfg: LeRobotInputConfig, nearest: np.ndarray, path: Path
) -> dict[str, VideoSource]:
    """`observation.images.<last part of the key>` -> nearest source frame per 10 Hz step."""
    declared = meta.cameras
    for key in (cfg.cameras or []) + cfg.optional_cameras:
        if key not in declared:
            raise EpisodeError(path, key, f"unknown key: not a video feature of info.json (has {declared})")
    videos: dict[str, VideoSource] = {}
    for key in cfg.cameras if cfg.cameras is not None else declared:
        mp4 = meta.video_file(ep, key)
        if not mp4.is_file():
            if key in cfg.optional_cameras:
                continue
            raise EpisodeError(mp4, key, "video missing", stage="read")
        out_key = f"observation.images.{key.rsplit('.', 1)[-1]}"
        videos[out_key] = VideoSource(path=mp4, frame_indices=nearest.astype(np.int64))
    return videos


def episode_task(ep: int, table: pa.Table, meta: DatasetMeta, cfg: LeRobotInputConfig, path: Path) -> str:
    """The first task of the episode (task_index column, else episodes.jsonl) that is an instruction."""
    candidates: list[str] = []
    if "task_index" in table.column_names:
        indices = column_values(table, "task_index", path)[:, 0].astype(np.int64)
        candidates += [meta.tasks[i] for i in dict.fromkeys(indices.tolist()) if i in meta.tasks]
    candidates += [str(t) for t in meta.episodes.get(ep, {}).get("tasks", [])]
    for text in candidates:
        if text.strip() and text.strip() not in cfg.invalid_tasks:
            return text
    raise EpisodeError(path, "task_index", "episode has no task text in meta/tasks.jsonl")


# ---------------------------------------------------------------------------------------------- episode


def _read_table(path: Path) -> pa.Table:
    if not path.is_file():
        raise EpisodeError(path, "parquet", "episode Parquet missing", stage="read")
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise EpisodeError(path, "parquet", f"unreadable Parquet: {e}", stage="read") from e


def _check_length(ep: int, table: pa.Table, meta: DatasetMeta, path: Path) -> None:
    declared = meta.episodes.get(ep, {}).get("length")
    if declared is not None and int(declared) != table.num_rows:
        raise EpisodeError(
            path, "length", f"episodes.jsonl says {declared} frames, Parquet has {table.num_rows}"
        )


@dataclass
class Converted:
    """The whole recording at 10 Hz, before cutting into <= 15 min episodes."""

    arrays: hands.SideArrays
    sides: list[Side]
    extra: dict[str, ExtraColumn]
    videos: dict[str, VideoSource]
    task: str


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


def convert_recording(ref: SourceEpisodeRef, cfg: LeRobotInputConfig) -> Converted:
    meta, ep = load_meta(_dataset_root(ref)), _episode_index(ref)
    path = meta.data_file(ep)
    table = _read_table(path)
    _check_length(ep, table, meta, path)
    plan = resample.make_plan(source_times(table, meta.fps, path))
    arms = {s: a for s, a in (("left", cfg.left), ("right", cfg.right)) if a is not None}
    sides = {s: resample_arm(read_arm(a, table, meta, path), plan) for s, a in arms.items()}
    return Converted(
        arrays=hands.assemble(sides, plan.length), sides=[s for s in SIDES if s in sides],
        extra=_extras(table, meta, cfg, plan, path), videos=plan_videos(ep, meta, cfg, plan.nearest, path),
        task=episode_task(ep, table, meta, cfg, path),
    )  # fmt: skip


def _part(ep_id: str, rec: Converted, rows: slice, cfg: LeRobotInputConfig) -> CanonicalEpisode:
    a = rec.arrays
    state, action, smask, amask = a.state[rows], a.action[rows], a.state_mask[rows], a.action_mask[rows]
    has_action = bool(amask.any())
    tier, metrics = quality.assess(smask, action, amask, rec.sides, cfg.quality)
    metrics.update(quality.robot_signals(state, smask, rec.sides))
    meta = EpisodeMeta(
        source_episode_id=ep_id, embodiment=cfg.embodiment, has_action=has_action,
        quality_tier=tier if has_action else "actionless", quality_metrics=metrics,
        caption=rec.task, caption_source="source", task_original=rec.task,
    )  # fmt: skip
    videos = {k: VideoSource(v.path, v.frame_indices[rows]) for k, v in rec.videos.items()}
    extra = {k: ExtraColumn(c.values[rows], c.names) for k, c in rec.extra.items()}
    ep = CanonicalEpisode(meta, state, action, smask, amask, videos=videos, extra=extra)
    ep.check()
    return ep


class LeRobotSource:
    """The LeRobot-input `Source` (ingest/sources/base.py)."""

    name = "lerobot"

    def discover(self, root: Path, cfg: SourceConfig) -> list[SourceEpisodeRef]:
        root = Path(root).resolve()
        meta = load_meta(root)
        refs = []
        for ep in sorted(meta.episodes):
            files = {"root": str(root), "parquet": str(meta.data_file(ep))}
            files |= {f"video:{k}": str(meta.video_file(ep, k)) for k in meta.cameras}
            refs.append(SourceEpisodeRef(source_episode_id=f"{root.name}/episode_{ep:06d}", files=files))
        return refs

    def convert(self, ref: SourceEpisodeRef, cfg: SourceConfig) -> list[CanonicalEpisode]:
        if not isinstance(cfg, LeRobotInputConfig):
            raise TypeError(f"lerobot needs a LeRobotInputConfig, got {type(cfg).__name__}")
        rec = convert_recording(ref, cfg)
        ranges = resample.chunk_ranges(rec.arrays.state.shape[0], MAX_FRAMES)
        base = ref.source_episode_id
        return [
            _part(base if len(ranges) == 1 else f"{base}#{i}", rec, slice(a, b), cfg)
            for i, (a, b) in enumerate(ranges)
        ]


SOURCE = LeRobotSource()
