"""What a LeRobot input dataset's `meta/` says: info.json, tasks, episodes (v2.0 / v2.1 JSONL here, v3.0
Parquet in lerobot_v3.py), GR00T's modality.json; where its roots are; whether a key mapping fits it;
a mapping field's values.

Every episode becomes an `EpisodeEntry` whatever the version: its data file (and, for v3.0, its rows in a
file shared with other episodes) and, per camera, its video file and the time window in that file (v3.0
concatenates episodes; v2.x windows start at 0).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest.errors import EpisodeError
from ingest.sources import lerobot_v3
from ingest.sources.base import parse_field
from ingest.sources.lerobot_models import EpisodeEntry, InputInfo, VideoWindow, video_keys
from schemas.sources_lerobot import LeRobotInputConfig

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
INFO = Path("meta/info.json")
M = TypeVar("M", bound=BaseModel)


# ---------------------------------------------------------------------------------------------- models


class _EpisodeLine(BaseModel):
    """A line of v2.x `meta/episodes.jsonl`."""

    model_config = ConfigDict(extra="ignore")
    episode_index: int = Field(ge=0)
    tasks: list[str] = Field(default_factory=list)
    length: int | None = Field(None, ge=0)
    task_data: dict[str, Any] = Field(default_factory=dict)

    def camera_data(self) -> dict[str, Any]:
        data = self.task_data.get("camera_data")
        return data if isinstance(data, dict) else {}


class _TaskLine(BaseModel):
    model_config = ConfigDict(extra="ignore")
    task_index: int
    task: str


@dataclass(frozen=True)
class DatasetMeta:
    """What `meta/` says about one input dataset (one root)."""

    root: Path
    info: InputInfo
    tasks: dict[int, str]
    episodes: dict[int, EpisodeEntry]
    modality: dict[str, Any] | None

    @property
    def version(self) -> str:
        return self.info.codebase_version

    @property
    def fps(self) -> float:
        return self.info.fps

    @property
    def features(self) -> dict[str, Any]:
        return self.info.features

    @property
    def cameras(self) -> list[str]:
        return video_keys(self.info)

    def feature_dim(self, column: str) -> int | None:
        """Values per row of a feature (product of its `shape`), None when info.json does not say."""
        feature = self.features.get(column)
        shape = feature.get("shape") if isinstance(feature, dict) else None
        if not isinstance(shape, list) or not all(isinstance(s, int) for s in shape):
            return None
        return math.prod(shape)


# ---------------------------------------------------------------------------------------------- files


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise EpisodeError(path, path.name, "file missing", stage="discover") from e
    except (OSError, json.JSONDecodeError) as e:
        raise EpisodeError(path, path.name, f"unreadable JSON: {e}", stage="discover") from e


def read_jsonl(path: Path, model: type[M]) -> list[M]:
    if not path.is_file():
        raise EpisodeError(path, path.name, "file missing", stage="discover")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(model.model_validate_json(line))
            except ValidationError as e:
                raise EpisodeError(path, f"line {n}", f"bad line: {e}", stage="discover") from e
    return rows


def read_info(root: Path) -> InputInfo:
    path = root / INFO
    try:
        info = InputInfo.model_validate(read_json(path))
    except ValidationError as e:
        field = ".".join(str(p) for p in e.errors()[0]["loc"])
        raise EpisodeError(path, field, f"bad info.json: {e.errors()[0]['msg']}", stage="discover") from e
    if info.codebase_version not in SUPPORTED_VERSIONS:
        raise EpisodeError(
            path,
            "codebase_version",
            f"unknown LeRobot version {info.codebase_version!r} (reads {', '.join(SUPPORTED_VERSIONS)})",
            stage="discover",
        )
    return info


def _v2_episodes(root: Path, info: InputInfo) -> dict[int, EpisodeEntry]:
    chunks, template = info.chunks_size or 1000, info.video_path or ""
    entries = {}
    for line in read_jsonl(root / "meta/episodes.jsonl", _EpisodeLine):
        ep, chunk = line.episode_index, line.episode_index // chunks
        data = root / info.data_path.format(episode_chunk=chunk, episode_index=ep)
        keys = video_keys(info) if template else []
        videos = {
            k: VideoWindow(path=root / template.format(episode_chunk=chunk, video_key=k, episode_index=ep))
            for k in keys
        }
        entries[ep] = EpisodeEntry(
            index=ep, length=line.length, tasks=line.tasks, data_file=data, videos=videos,
            camera_data=line.camera_data(),
        )  # fmt: skip
    return entries


@lru_cache(maxsize=16)
def load_meta(root: Path) -> DatasetMeta:
    """Read the `meta/` of one dataset root (v2.0, v2.1 or v3.0)."""
    info = read_info(root)
    try:
        if info.codebase_version.startswith("v3"):
            tasks, episodes = lerobot_v3.read_tasks(root), lerobot_v3.read_episodes(root, info)
        else:
            tasks = {t.task_index: t.task for t in read_jsonl(root / "meta/tasks.jsonl", _TaskLine)}
            episodes = _v2_episodes(root, info)
    except (KeyError, IndexError) as e:  # a path template of another version
        msg = f"path templates do not fit {info.codebase_version}: {e!r}"
        raise EpisodeError(root / INFO, "data_path", msg, stage="discover") from e
    modality_path = root / "meta/modality.json"
    modality = read_json(modality_path) if modality_path.is_file() else None
    return DatasetMeta(root=root, info=info, tasks=tasks, episodes=episodes, modality=modality)


def find_roots(folder: Path) -> list[Path]:
    """`folder` itself when it is a dataset, else every dataset below it (InternData-A1 nests its buckets at
    varying depth), sorted."""
    if (folder / INFO).is_file():
        return [folder]
    return sorted(p.parent.parent for p in folder.rglob(str(INFO)) if p.is_file())


# ---------------------------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class FieldRef:
    """A mapping field resolved against the dataset: its column and (optional) value range."""

    column: str
    start: int | None = None
    end: int | None = None
    label: str | None = None  # modality.json name, for dimension names


def resolve_field(spec: str, meta: DatasetMeta, path: Path) -> FieldRef:
    """Resolve a field (forms in schemas/sources_lerobot.py); a modality entry that is missing is an
    `unknown key` EpisodeError."""
    if spec.startswith("modality:"):
        group, _, name = spec.removeprefix("modality:").partition(".")
        entry = (meta.modality or {}).get(group, {}).get(name)
        if not isinstance(entry, dict) or "start" not in entry or "end" not in entry:
            where = (
                "meta/modality.json is missing" if meta.modality is None else "no such modality.json entry"
            )
            raise EpisodeError(path, spec, f"unknown key: {where}")
        default = "observation.state" if group == "state" else "action"
        column = str(entry.get("original_key", default))
        return FieldRef(column, int(entry["start"]), int(entry["end"]), f"{group}.{name}")
    try:
        column, sl = parse_field(spec)
    except ValueError as e:
        raise EpisodeError(path, spec, str(e)) from e
    return FieldRef(column) if sl is None else FieldRef(column, sl.start, sl.stop)


def _mapping_fields(cfg: LeRobotInputConfig) -> list[str]:
    fields = [
        f for arm in (cfg.right, cfg.left) if arm for f in (arm.position, arm.rotation, arm.gripper) if f
    ]
    kin = cfg.kinematics.joints if cfg.kinematics else []
    return fields + cfg.joints + kin + (cfg.native_action or [])


def check_mapping(meta: DatasetMeta, cfg: LeRobotInputConfig) -> None:
    """Refuse (EpisodeError, stage discover) a mapping that names a key the dataset does not declare."""
    path = meta.root / INFO
    for spec in _mapping_fields(cfg):
        ref = resolve_field(spec, meta, path)
        if ref.column not in meta.features:
            raise EpisodeError(
                path,
                spec,
                f"unknown key: {ref.column!r} is not a feature of meta/info.json",
                stage="discover",
            )
        dim = meta.feature_dim(ref.column)
        if ref.end is not None and dim is not None and not ref.start < ref.end <= dim:
            raise EpisodeError(
                path,
                spec,
                f"slice [{ref.start}:{ref.end}] outside the {dim} values of {ref.column}",
                stage="discover",
            )
    for key in (cfg.cameras or []) + cfg.optional_cameras:
        if key not in meta.cameras:
            raise EpisodeError(
                path,
                key,
                f"unknown key: not a video feature of info.json (has {meta.cameras})",
                stage="discover",
            )
    for key in cfg.annotations or []:
        if key not in meta.features:
            raise EpisodeError(path, key, "unknown key: not a feature of meta/info.json", stage="discover")


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


def modality_names(meta: DatasetMeta, column: str, dim: int) -> list[str] | None:
    """`<group>.<name>.<i>` names of a column the dataset's modality.json covers completely (GR00T: the
    `action` column as `action.left_arm.0`, ...), so that the groups survive into our own modality.json;
    None where it has no modality.json or leaves a value of the column out."""
    names: list[str | None] = [None] * dim
    for group, default in (("state", "observation.state"), ("action", "action")):
        for name, entry in ((meta.modality or {}).get(group) or {}).items():
            if not isinstance(entry, dict) or entry.get("original_key", default) != column:
                continue
            start, end = int(entry.get("start", 0)), int(entry.get("end", 0))
            for i in range(max(start, 0), min(end, dim)):
                names[i] = f"{group}.{name}.{i - start}"
    return [n for n in names if n is not None] if all(names) else None


def read_field(spec: str, table: pa.Table, meta: DatasetMeta, path: Path) -> tuple[np.ndarray, list[str]]:
    """Values `[N, D]` and names of one mapping field (forms in schemas/sources_lerobot.py)."""
    ref = resolve_field(spec, meta, path)
    values = column_values(table, ref.column, path)
    names = modality_names(meta, ref.column, values.shape[1]) or _feature_names(
        meta, ref.column, values.shape[1]
    )
    if ref.start is None or ref.end is None:
        return values, names
    a, b = ref.start, ref.end
    if not 0 <= a < b <= values.shape[1]:
        raise EpisodeError(
            path, spec, f"slice [{a}:{b}] outside the {values.shape[1]} values of {ref.column}"
        )
    labels = [f"{ref.label}.{i}" for i in range(b - a)] if ref.label else names[a:b]
    return values[:, a:b], labels


def read_fields(
    specs: list[str], table: pa.Table, meta: DatasetMeta, path: Path
) -> tuple[np.ndarray, list[str]]:
    parts = [read_field(s, table, meta, path) for s in specs]
    return np.concatenate([p[0] for p in parts], axis=1), [n for p in parts for n in p[1]]
