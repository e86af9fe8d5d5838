"""Validator for a written dataset: the contract (CONTRACT.md section 1) and what lerobot 0.3.3 checks.

`validate_dataset(root)` returns a list of Problems (empty = valid); each names the file (relative to the
dataset root), the field and, for per-episode problems, the episode.

`sample` (`ingest validate --sample N`, or a fraction) keeps every check of `meta/`, of every Parquet file
(columns, values, the global index) and of every file's presence, but decodes the videos and reads the
latents of only a random, seeded sample of episodes; the other latents files have their header and
frame indices checked. The full check (the default) decodes everything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, ValidationError

from ingest import video
from schemas.camera import CAMERAS_PATH, POSE_NAMES, CameraRecord
from schemas.canonical import VECTOR_DIM, dimension_names
from schemas.card import DatasetCard
from schemas.episode import ANNOTATION_PREFIX, FPS, MAX_EPISODE_SECONDS
from schemas.errors import Refused
from schemas.latents import FRAME_INDEX_KEY, LATENTS_KEY, LATENTS_META_PATH, LatentsMeta
from schemas.lerobot import (
    CAMERA_NAMES,
    CARD_PATH,
    CHUNKS_SIZE,
    DATA_PATH,
    EPISODES_PATH,
    EPISODES_STATS_PATH,
    INFO_PATH,
    MODALITY_PATH,
    REJECTS_PATH,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_PATH,
    EpisodeRecord,
    EpisodeStatsRecord,
    Feature,
    FeatureStats,
    Gr00tFeatureStats,
    InfoJson,
    ModalityJson,
    TaskRecord,
    data_path,
    episode_chunk,
    video_path,
)
from schemas.reject import RejectRecord

TOLERANCE_S = 1e-4  # lerobot's default tolerance_s
INDEX_DTYPES = {
    "timestamp": "float32",
    "frame_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "task_index": "int64",
}
VECTOR_DTYPES = {
    "observation.state": "float32",
    "action": "float32",
    "observation.state_mask": "bool",
    "action_mask": "bool",
}
MASKS = {"observation.state": "observation.state_mask", "action": "action_mask"}
M = TypeVar("M", bound=BaseModel)


class Problem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str
    field: str
    message: str
    episode_index: int | None = None

    def __str__(self) -> str:
        where = f" (episode {self.episode_index})" if self.episode_index is not None else ""
        return f"{self.file}: {self.field}: {self.message}{where}"


Report = list[Problem]


def _add(report: Report, file: str, field: str, message: str, ep: int | None = None) -> None:
    report.append(Problem(file=file, field=field, message=message, episode_index=ep))


def _loc(err: dict) -> str:
    return ".".join(str(x) for x in err["loc"]) or "(root)"


# ---------------------------------------------------------------------------------------------------------
# Meta files


def _read_json(root: Path, rel: str, report: Report) -> object | None:
    path = root / rel
    if not path.is_file():
        _add(report, rel, "(file)", "missing")
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        _add(report, rel, "(file)", f"not JSON: {e}")
        return None


def _parse(model: type[M], data: object, rel: str, report: Report, prefix: str = "") -> M | None:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        for err in e.errors():
            _add(report, rel, _loc(err), f"{prefix}{err['msg']}")
        return None


class _Episode(BaseModel):
    """The keys of an episodes.jsonl line that the data checks need (the full line is an EpisodeRecord)."""

    model_config = ConfigDict(extra="allow")
    episode_index: int
    tasks: list[str]
    length: int
    has_action: bool | None = None
    quality_tier: str | None = None


def _load_jsonl(
    root: Path, rel: str, model: type[M], report: Report, lenient: type[BaseModel] | None = None
) -> list[M] | None:
    """Every line parsed through `model` (problems reported); a line that fails is kept when it still
    parses through `lenient` (so one bad key does not hide the episode), else left out."""
    path = root / rel
    if not path.is_file():
        _add(report, rel, "(file)", "missing")
        return None
    rows: list[M] = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            _add(report, rel, "(line)", f"line {n}: not JSON: {e}")
            continue
        row = _parse(model, data, rel, report, prefix=f"line {n}: ")
        if row is None and lenient is not None:
            row = _parse(lenient, data, rel, [])  # type: ignore[assignment]  # duck-typed subset of model
        if row is not None:
            rows.append(row)
    return rows


def _load_info(root: Path, report: Report) -> InfoJson | None:
    raw = _read_json(root, INFO_PATH, report)
    features = raw.get("features") if isinstance(raw, dict) else None
    for key, feat in (features or {}).items():
        if isinstance(feat, dict) and feat.get("dtype") == "video" and feat.get("names") != CAMERA_NAMES:
            _add(
                report, INFO_PATH, f"features.{key}.names", f"must be {CAMERA_NAMES}, got {feat.get('names')}"
            )
            feat["names"] = CAMERA_NAMES  # reported once; go on checking the rest
    return None if raw is None else _parse(InfoJson, raw, INFO_PATH, report)


def _check_feature(report: Report, key: str, feat: Feature | None, dtype: str, shape: list[int]) -> None:
    if feat is None:
        _add(report, INFO_PATH, f"features.{key}", "missing")
        return
    if feat.dtype != dtype:
        _add(report, INFO_PATH, f"features.{key}.dtype", f"expected {dtype}, got {feat.dtype}")
    if feat.shape != shape:
        _add(report, INFO_PATH, f"features.{key}.shape", f"expected {shape}, got {feat.shape}")


def _check_camera(report: Report, key: str, feat: Feature, fps: int) -> None:
    if feat.info is None:
        _add(report, INFO_PATH, f"features.{key}.info", "missing")
        return
    if feat.shape != [feat.info.height, feat.info.width, 3]:
        _add(report, INFO_PATH, f"features.{key}.shape", f"{feat.shape} disagrees with info {feat.info}")
    if feat.info.fps != fps:
        _add(report, INFO_PATH, f"features.{key}.info.video.fps", f"{feat.info.fps} != dataset fps {fps}")
    if feat.info.pix_fmt != "yuv420p":
        _add(
            report,
            INFO_PATH,
            f"features.{key}.info.video.pix_fmt",
            f"expected yuv420p, got {feat.info.pix_fmt}",
        )


def _check_info(info: InfoJson, report: Report) -> None:
    if info.fps != FPS:
        _add(report, INFO_PATH, "fps", f"expected {FPS}, got {info.fps}")
    if info.chunks_size != CHUNKS_SIZE:
        _add(report, INFO_PATH, "chunks_size", f"expected {CHUNKS_SIZE}, got {info.chunks_size}")
    if info.data_path != DATA_PATH:
        _add(report, INFO_PATH, "data_path", f"expected {DATA_PATH!r}, got {info.data_path!r}")
    cameras = info.video_keys()
    want_video_path = VIDEO_PATH if cameras else None
    if info.video_path != want_video_path:
        _add(report, INFO_PATH, "video_path", f"expected {want_video_path!r}, got {info.video_path!r}")
    for key, dtype in INDEX_DTYPES.items():
        _check_feature(report, key, info.features.get(key), dtype, [1])
    for key, dtype in VECTOR_DTYPES.items():
        _check_feature(report, key, info.features.get(key), dtype, [VECTOR_DIM])
        names = info.features[key].names if key in info.features else None
        if isinstance(names, list) and names != dimension_names():
            _add(report, INFO_PATH, f"features.{key}.names", "not the 146 canonical dimension names")
    for key in cameras:
        _check_camera(report, key, info.features[key], info.fps)


def _check_totals(info: InfoJson, episodes: list[_Episode], tasks: list[TaskRecord], report: Report) -> None:
    n = len(episodes)
    want = {
        "total_episodes": n,
        "total_frames": sum(e.length for e in episodes),
        "total_tasks": len(tasks),
        "total_videos": n * len(info.video_keys()),
        "total_chunks": len({episode_chunk(e.episode_index) for e in episodes}),
    }
    for field, value in want.items():
        if getattr(info, field) != value:
            _add(report, INFO_PATH, field, f"{getattr(info, field)} but the meta files give {value}")
    if info.splits != {"train": f"0:{n}"}:
        _add(report, INFO_PATH, "splits", f"expected {{'train': '0:{n}'}}, got {info.splits}")


def max_episode_length(fps: int = FPS) -> int:
    """Longest episode (frames) that the contract and float32 timestamps at `fps` allow."""
    n = MAX_EPISODE_SECONDS * fps
    while n > 1 and np.spacing(np.float32((n - 1) / fps)) >= TOLERANCE_S:
        n -= 1
    return n


def _check_episode_records(episodes: list[_Episode], tasks: list[TaskRecord], report: Report) -> None:
    known = {t.task for t in tasks}
    limit = max_episode_length()
    for pos, ep in enumerate(episodes):
        i = ep.episode_index
        if i != pos:
            _add(
                report,
                EPISODES_PATH,
                "episode_index",
                f"line {pos + 1} has episode_index {i}, expected {pos}",
                i,
            )
        if ep.has_action is not None and (ep.quality_tier == "actionless") == ep.has_action:
            msg = f"quality_tier {ep.quality_tier!r} with has_action={ep.has_action}"
            _add(report, EPISODES_PATH, "quality_tier", msg, i)
        if ep.length > limit:
            _add(report, EPISODES_PATH, "length", f"{ep.length} frames, longer than {limit} allowed", i)
        for task in ep.tasks:
            if task not in known:
                _add(report, EPISODES_PATH, "tasks", f"{task!r} is not in {TASKS_PATH}", i)


def _check_tasks(tasks: list[TaskRecord], report: Report) -> None:
    for pos, t in enumerate(tasks):
        if t.task_index != pos:
            _add(
                report,
                TASKS_PATH,
                "task_index",
                f"line {pos + 1} has task_index {t.task_index}, expected {pos}",
            )
    if len({t.task for t in tasks}) != len(tasks):
        _add(report, TASKS_PATH, "task", "duplicate task strings")


def _stats_shape(feat: Feature) -> tuple[int, ...]:
    return (3, 1, 1) if feat.dtype == "video" else (math.prod(feat.shape),)


def _check_one_stats(
    report: Report, key: str, feat: Feature, stats: FeatureStats, length: int, i: int
) -> None:
    field = f"stats.{key}"
    shape = _stats_shape(feat)
    for name in ("min", "max", "mean", "std"):
        arr = np.asarray(getattr(stats, name), dtype=np.float64)
        if arr.shape != shape:
            _add(report, EPISODES_STATS_PATH, f"{field}.{name}", f"shape {arr.shape}, expected {shape}", i)
        elif not np.isfinite(arr).all():
            _add(report, EPISODES_STATS_PATH, f"{field}.{name}", "non-finite value", i)
        elif feat.dtype == "video" and ((arr < 0).any() or (arr > 1).any()):
            _add(report, EPISODES_STATS_PATH, f"{field}.{name}", "camera stats must lie in [0, 1]", i)
    valid = stats.valid_count
    if valid is not None and (
        len(valid) != shape[0] or min(valid, default=0) < 0 or max(valid, default=0) > length
    ):
        _add(
            report, EPISODES_STATS_PATH, f"{field}.valid_count", f"not {shape[0]} counts in [0, {length}]", i
        )
    count = stats.count[0]
    ok = 0 < count <= length if feat.dtype == "video" else count == length
    if not ok:
        _add(
            report,
            EPISODES_STATS_PATH,
            f"{field}.count",
            f"{stats.count} for an episode of {length} frames",
            i,
        )


def _check_stats(
    info: InfoJson, episodes: list[_Episode], records: list[EpisodeStatsRecord], report: Report
) -> None:
    by_index = {r.episode_index: r for r in records}
    if [r.episode_index for r in records] != [e.episode_index for e in episodes]:
        _add(
            report,
            EPISODES_STATS_PATH,
            "episode_index",
            "episodes differ from or are ordered unlike episodes.jsonl",
        )
    for ep in episodes:
        rec = by_index.get(ep.episode_index)
        if rec is None:
            continue
        for key, feat in info.features.items():
            if feat.dtype == "string":
                continue
            if key not in rec.stats:
                _add(report, EPISODES_STATS_PATH, f"stats.{key}", "missing", ep.episode_index)
                continue
            _check_one_stats(report, key, feat, rec.stats[key], ep.length, ep.episode_index)


def _check_card(
    card: DatasetCard, info: InfoJson, episodes: list[_Episode], n_rejects: int | None, report: Report
) -> None:
    frames = sum(e.length for e in episodes)
    want = {"episodes": len(episodes), "frames": frames, "fps": info.fps}
    if n_rejects is not None:
        want["rejects"] = n_rejects
    for field, value in want.items():
        if getattr(card, field) != value:
            _add(report, CARD_PATH, field, f"{getattr(card, field)} but the dataset has {value}")
    if not math.isclose(card.hours, frames / info.fps / 3600, rel_tol=1e-6, abs_tol=1e-9):
        _add(report, CARD_PATH, "hours", f"{card.hours} but {frames} frames at {info.fps} fps")
    names = set(dimension_names())
    for field in ("valid_state_dims", "valid_action_dims"):
        unknown = [d for d in getattr(card, field) if d not in names]
        if unknown:
            _add(report, CARD_PATH, field, f"unknown dimension names {unknown[:3]}")


# ---------------------------------------------------------------------------------------------------------
# Per-episode files


class _EpisodeResult(BaseModel):
    problems: list[Problem] = []
    first_index: int | None = None
    last_index: int | None = None


def _arrow_type(dtype: str) -> pa.DataType:
    return pa.from_numpy_dtype(np.dtype(dtype))


def _column_type_ok(col: pa.ChunkedArray, feat: Feature) -> bool:
    value_type = _arrow_type(feat.dtype)
    if feat.shape == [1]:
        return col.type == value_type
    width = math.prod(feat.shape)
    if pa.types.is_fixed_size_list(col.type):
        return col.type.value_type == value_type and col.type.list_size == width
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        return col.type.value_type == value_type and bool((lengths == width).all())
    return False


def _check_columns(table: pa.Table, info: InfoJson, rel: str, report: Report, i: int) -> bool:
    """The 5 index columns and the 4 vectors with exact types, every other non-video feature with its
    declared dtype/shape, and no undeclared column."""
    expected = {k: f for k, f in info.features.items() if f.dtype != "video"}
    expected.update({k: Feature(dtype=d, shape=[1]) for k, d in INDEX_DTYPES.items()})
    expected.update({k: Feature(dtype=d, shape=[VECTOR_DIM]) for k, d in VECTOR_DTYPES.items()})
    ok = True
    for key, feat in expected.items():
        if key not in table.column_names:
            _add(report, rel, key, "column missing", i)
            ok = False
        elif not _column_type_ok(table[key], feat):
            _add(report, rel, key, f"column type {table[key].type}, declared {feat.dtype}{feat.shape}", i)
            ok = False
    for key in table.column_names:
        if key not in info.features:
            _add(report, rel, key, "column not declared in info.json features", i)
    return ok


def _vector(table: pa.Table, key: str) -> np.ndarray:
    col = table[key].combine_chunks()
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1)


def _check_values(
    table: pa.Table, ep: _Episode, tasks: list[str], fps: int, rel: str, report: Report
) -> None:
    i, n = ep.episode_index, table.num_rows
    frame_index = table["frame_index"].to_numpy()
    if not np.array_equal(frame_index, np.arange(n)):
        _add(report, rel, "frame_index", f"not 0..{n - 1}", i)
    ts = table["timestamp"].to_numpy().astype(np.float64)
    if n and np.abs(ts - frame_index / fps).max() > TOLERANCE_S:
        _add(report, rel, "timestamp", f"differs from frame_index / {fps} by more than {TOLERANCE_S} s", i)
    if n > 1 and np.abs(np.diff(ts) - 1 / fps).max() > TOLERANCE_S:
        _add(report, rel, "timestamp", f"consecutive differences off 1/{fps} by more than {TOLERANCE_S} s", i)
    if not (table["episode_index"].to_numpy() == i).all():
        _add(report, rel, "episode_index", f"not constant {i}", i)
    if n > 1 and not (np.diff(table["index"].to_numpy()) == 1).all():
        _add(report, rel, "index", "not contiguous within the episode", i)
    _check_task_rows(table, ep, tasks, rel, report)
    for key, mask_key in MASKS.items():
        values, mask = _vector(table, key), _vector(table, mask_key).astype(bool)
        if values.shape == mask.shape and not np.isfinite(values[mask]).all():
            _add(report, rel, key, f"non-finite value where {mask_key} is true", i)


def _check_task_rows(table: pa.Table, ep: _Episode, tasks: list[str], rel: str, report: Report) -> None:
    """task_index and every `annotation.*` column hold rows of tasks.jsonl; together they use exactly
    the episode's tasks in episodes.jsonl, and task_index is its first (the caption)."""
    i, used = ep.episode_index, set()
    for key in ["task_index", *(k for k in table.column_names if k.startswith(ANNOTATION_PREFIX))]:
        rows = np.unique(table[key].to_numpy())
        if ((rows < 0) | (rows >= len(tasks))).any():
            _add(report, rel, key, f"values {rows.tolist()} not all in {TASKS_PATH}", i)
            return
        used |= {tasks[t] for t in rows}
        if key == "task_index" and ep.tasks and [tasks[t] for t in rows] != ep.tasks[:1]:
            msg = f"tasks {[tasks[t] for t in rows]} but episodes.jsonl says {ep.tasks} (caption first)"
            _add(report, rel, key, msg, i)
            return
    if used != set(ep.tasks):
        _add(report, rel, "task_index", f"tasks {sorted(used)} but episodes.jsonl says {ep.tasks}", i)


def _check_parquet(root: Path, info: InfoJson, ep: _Episode, tasks: list[str], out: _EpisodeResult) -> None:
    rel, i = data_path(ep.episode_index), ep.episode_index
    if not (root / rel).is_file():
        _add(out.problems, rel, "(file)", "missing", i)
        return
    try:
        table = pq.read_table(root / rel)
    except (pa.ArrowException, OSError) as e:
        _add(out.problems, rel, "(file)", f"unreadable: {e}", i)
        return
    if table.num_rows != ep.length:
        _add(out.problems, EPISODES_PATH, "length", f"{ep.length} but {rel} has {table.num_rows} rows", i)
    if not _check_columns(table, info, rel, out.problems, i) or table.num_rows == 0:
        return
    _check_values(table, ep, tasks, info.fps, rel, out.problems)
    index = table["index"].to_numpy()
    out.first_index, out.last_index = int(index[0]), int(index[-1])


def _check_video(root: Path, info: InfoJson, ep: _Episode, key: str, report: Report) -> None:
    rel, i = video_path(ep.episode_index, key), ep.episode_index
    if not (root / rel).is_file():
        _add(report, rel, "(file)", "missing", i)
        return
    try:
        p = video.probe(root / rel, fps=info.fps)
    except Exception as e:  # any decoder failure is a finding, not a crash
        _add(report, rel, "(file)", f"cannot decode: {type(e).__name__}: {e}", i)
        return
    if p.n_frames != ep.length:
        _add(report, rel, "frames", f"{p.n_frames} frames, episode length {ep.length}", i)
    if p.first_pts_s is not None and abs(p.first_pts_s) > TOLERANCE_S:
        _add(report, rel, "pts", f"first frame at {p.first_pts_s} s, not 0", i)
    if not p.cfr_ok or p.max_time_error_s > TOLERANCE_S:
        _add(
            report, rel, "pts", f"frame times are not k/{info.fps} (max error {p.max_time_error_s:.2g} s)", i
        )
    want = info.features[key].info
    if want is None:
        return
    for field in ("codec", "pix_fmt", "width", "height"):
        got, expected = getattr(p, field), getattr(want, field)
        if got != expected:
            _add(report, rel, field, f"{got!r} but info.json says {expected!r}", i)


def _check_episode_files(
    root: Path, info: InfoJson, ep: _Episode, tasks: list[str], decode: bool
) -> _EpisodeResult:
    out = _EpisodeResult()
    _check_parquet(root, info, ep, tasks, out)
    for key in info.video_keys():
        if decode:
            _check_video(root, info, ep, key, out.problems)
        elif not (root / video_path(ep.episode_index, key)).is_file():
            _add(out.problems, video_path(ep.episode_index, key), "(file)", "missing", ep.episode_index)
    return out


def _check_index_contiguity(episodes: list[_Episode], results: list[_EpisodeResult], report: Report) -> None:
    expected = 0
    for ep, res in zip(episodes, results, strict=True):
        if res.first_index is None:  # missing or unreadable Parquet: place the next one by length
            expected += ep.length
            continue
        if res.first_index != expected:
            msg = f"starts at {res.first_index}, expected {expected} (contiguous across episodes)"
            _add(report, data_path(ep.episode_index), "index", msg, ep.episode_index)
        expected = res.last_index + 1


def _check_stray_data(root: Path, episodes: list[_Episode], report: Report) -> None:
    """lerobot loads every Parquet under data/: one not listed in episodes.jsonl shifts all boundaries."""
    listed = {data_path(ep.episode_index) for ep in episodes}
    for path in sorted((root / "data").rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not path.name.startswith((".", "_")) and rel not in listed:
            _add(report, rel, "(file)", f"not an episode listed in {EPISODES_PATH}")


def _check_half_published(root: Path, episodes: list[_Episode], report: Report) -> None:
    """A video whose episode has no Parquet: a run stopped while publishing it (the re-run finishes it)."""
    listed = {ep.episode_index for ep in episodes}
    for path in sorted((root / "videos").glob("chunk-*/*/episode_*.mp4")):
        index = int(path.stem.removeprefix("episode_")) if path.stem[8:].isdigit() else None
        if index is not None and index not in listed and not (root / data_path(index)).is_file():
            _add(report, path.relative_to(root).as_posix(), "(file)",
                 f"half-published episode {index}: a video without its Parquet; run `ingest run` again to "
                 "finish it")  # fmt: skip


def _parse_gr00t_stats(data: object, report: Report) -> dict[str, Gr00tFeatureStats] | None:
    """`meta/stats.json` entry by entry (a bad entry is named; the others are still checked)."""
    if not isinstance(data, dict):
        _add(report, STATS_PATH, "(file)", "not a JSON object")
        return None
    out = {}
    for key, entry in data.items():
        try:
            out[key] = Gr00tFeatureStats.model_validate(entry)
        except ValidationError as e:
            for err in e.errors():
                _add(report, STATS_PATH, f"{key}.{_loc(err)}".rstrip("."), err["msg"])
    return out


def _check_stray_videos(root: Path, info: InfoJson, report: Report) -> None:
    """Every camera folder under videos/ is a camera feature of info.json (and the other way round, per
    episode, in `_check_episode_files`)."""
    cameras = set(info.video_keys())
    for folder in sorted((root / "videos").glob("chunk-*/*")):
        if folder.is_dir() and folder.name not in cameras:
            _add(report, folder.relative_to(root).as_posix(), "(folder)", "not a camera feature of info.json")


def _check_quantiles(
    info: InfoJson, stats: dict[str, Gr00tFeatureStats], present: set[str], report: Report
) -> None:
    """Every numeric feature has GR00T's stats of its width, with min <= q01 <= q99 <= max; nothing
    else has an entry (`present`: the file's keys, including entries that did not parse)."""
    for key in sorted(present - set(info.features)):
        _add(report, STATS_PATH, key, "not a feature of info.json")
    for key, feat in info.features.items():
        if feat.dtype in ("video", "string"):
            if key in present:
                _add(report, STATS_PATH, key, f"a {feat.dtype} feature has no GR00T stats")
            continue
        if key not in present:
            _add(report, STATS_PATH, key, "missing (GR00T normalises with mean/std/min/max/q01/q99)")
            continue
        if key not in stats:  # named by _parse_gr00t_stats
            continue
        entry, width = stats[key], math.prod(feat.shape)
        q01, q99 = np.asarray(entry.q01, dtype=np.float64), np.asarray(entry.q99, dtype=np.float64)
        lo, hi = np.asarray(entry.min, dtype=np.float64), np.asarray(entry.max, dtype=np.float64)
        if q01.shape != (width,):
            _add(report, STATS_PATH, f"{key}.q01", f"width {q01.shape[0]}, expected {width}")
        elif not (lo - 1e-6 <= q01).all() or not (q01 <= q99 + 1e-9).all() or not (q99 <= hi + 1e-6).all():
            _add(report, STATS_PATH, f"{key}.q01", "not min <= q01 <= q99 <= max")


def _check_gr00t_files(root: Path, info: InfoJson, report: Report) -> None:
    """`meta/stats.json` and `meta/modality.json` are optional for lerobot v2.1 (GR00T reads them);
    when present they must parse, and the modality slices must stay inside the vectors."""
    if (root / STATS_PATH).is_file():
        data = _read_json(root, STATS_PATH, report)
        stats = None if data is None else _parse_gr00t_stats(data, report)
        if stats is not None:
            _check_quantiles(info, stats, set(data), report)
    if (root / MODALITY_PATH).is_file():
        data = _read_json(root, MODALITY_PATH, report)
        modality = None if data is None else _parse(ModalityJson, data, MODALITY_PATH, report)
        for group, default in (("state", "observation.state"), ("action", "action")):
            for name, sl in (getattr(modality, group) if modality else {}).items():
                key = sl.original_key or default
                width = math.prod(info.features[key].shape) if key in info.features else 0
                if not 0 <= sl.start < sl.end <= width:
                    _add(
                        report, MODALITY_PATH, f"{group}.{name}", f"slice {sl.start}:{sl.end} outside {width}"
                    )
        for name, cam in (modality.video if modality else {}).items():
            if cam.get("original_key") not in info.video_keys():
                _add(report, MODALITY_PATH, f"video.{name}", f"{cam.get('original_key')} is not a camera")


# ---------------------------------------------------------------------------------------------------------
# Camera models (meta/cameras.jsonl)

UNIT_TOLERANCE = 1e-3  # quaternion norms and rotation orthonormality


def _check_intrinsics(cam: CameraRecord, info: InfoJson, report: Report) -> None:
    i, want = cam.episode_index, info.features[cam.camera].info
    if want is not None and (cam.width, cam.height) != (want.width, want.height):
        msg = f"{cam.width}x{cam.height} but the video is {want.width}x{want.height}"
        _add(report, CAMERAS_PATH, f"{cam.camera}.width", msg, i)
    if not (cam.fx > 0 and cam.fy > 0):
        _add(report, CAMERAS_PATH, f"{cam.camera}.fx", f"focal lengths {cam.fx}, {cam.fy} not positive", i)
    if not (0 <= cam.cx <= cam.width and 0 <= cam.cy <= cam.height):
        msg = f"principal point ({cam.cx}, {cam.cy}) outside the image"
        _add(report, CAMERAS_PATH, f"{cam.camera}.cx", msg, i)


def _rigid_error(pose: list[list[float]]) -> str:
    """Why a static pose is not a rigid 4x4 transform; "" when it is."""
    try:
        T = np.asarray(pose, dtype=np.float64)
    except ValueError:
        return "not a 4x4 matrix"
    if T.shape != (4, 4) or not np.isfinite(T).all():
        return f"not a finite 4x4 matrix: shape {T.shape}"
    R = T[:3, :3]
    err = np.abs(R.T @ R - np.eye(3)).max()
    if err > UNIT_TOLERANCE or np.linalg.det(R) < 0 or not np.allclose(T[3], [0, 0, 0, 1]):
        return f"not rigid (orthonormality error {err:.3g})"
    return ""


def _check_pose_column(root: Path, cam: CameraRecord, info: InfoJson, length: int, report: Report) -> None:
    i, col, rel = cam.episode_index, cam.pose_column or "", data_path(cam.episode_index)
    feat = info.features.get(col)
    if feat is None or feat.shape != [len(POSE_NAMES)] or feat.names != POSE_NAMES:
        msg = f"{col} is not a float32[7] {POSE_NAMES} feature"
        _add(report, CAMERAS_PATH, f"{cam.camera}.pose_column", msg, i)
        return
    if not (root / rel).is_file():
        return  # reported as a missing Parquet
    try:
        rows = _vector(pq.read_table(root / rel, columns=[col]), col).astype(np.float64)
    except (pa.ArrowException, OSError, KeyError) as e:
        _add(report, rel, col, f"pose column unreadable: {e}", i)
        return
    if rows.shape != (length, len(POSE_NAMES)):
        _add(report, rel, col, f"shape {list(rows.shape)}, expected [{length}, 7]", i)
        return
    norm = np.linalg.norm(rows[:, 3:7], axis=1)
    bad = ~np.isfinite(rows).all(axis=1) | (np.abs(norm - 1) > UNIT_TOLERANCE)
    if bad.any():
        _add(report, rel, col, f"non-finite value or non-unit quaternion at row {int(np.argmax(bad))}", i)


def _check_cameras(root: Path, info: InfoJson, episodes: list[_Episode], report: Report) -> None:
    """When `meta/cameras.jsonl` exists: every line is a published episode's camera with intrinsics at
    the video's size inside the image, and a rigid static pose or a per-frame pose column of unit
    quaternions with the episode's length."""
    if not (root / CAMERAS_PATH).is_file():
        return
    lengths = {ep.episode_index: ep.length for ep in episodes}
    seen: set[tuple[int, str]] = set()
    for cam in _load_jsonl(root, CAMERAS_PATH, CameraRecord, report) or []:
        i = cam.episode_index
        if i not in lengths or cam.camera not in info.video_keys():
            _add(report, CAMERAS_PATH, "camera", f"{cam.camera} of episode {i} is not a published video", i)
            continue
        if (i, cam.camera) in seen:
            _add(report, CAMERAS_PATH, "camera", f"{cam.camera} listed twice", i)
        seen.add((i, cam.camera))
        _check_intrinsics(cam, info, report)
        if cam.pose is not None and (why := _rigid_error(cam.pose)):
            _add(report, CAMERAS_PATH, f"{cam.camera}.pose", why, i)
        if cam.pose_column is not None:
            _check_pose_column(root, cam, info, lengths[i], report)


# ---------------------------------------------------------------------------------------------------------
# Cached latents (CONTRACT.md section 7)


def _read_latents(path: Path, decode: bool) -> tuple[str, tuple[int, ...], np.ndarray | None, np.ndarray]:
    """(dtype, shape, the latents when `decode`, frame indices): without `decode`, only the header and the
    small frame-index tensor are read."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        frames = f.get_tensor(FRAME_INDEX_KEY)
        if decode:
            latents = f.get_tensor(LATENTS_KEY)
            return str(latents.dtype), latents.shape, latents, frames
        header = f.get_slice(LATENTS_KEY)
        dtype = {"F16": "float16", "F32": "float32", "BF16": "bfloat16"}.get(
            header.get_dtype(), header.get_dtype()
        )
        return dtype, tuple(header.get_shape()), None, frames


def _check_latent_file(
    root: Path, rel: str, meta: LatentsMeta, length: int, report: Report, i: int, decode: bool = True
) -> None:
    if not (root / rel).is_file():
        _add(report, rel, "file", "latents file missing", i)
        return
    try:
        dtype, shape, latents, frames = _read_latents(root / rel, decode)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one problem
        _add(report, rel, "file", f"unreadable safetensors: {e}", i)
        return
    want = (len(range(0, length, meta.stride)), meta.n_tokens, meta.dim)
    if dtype != "float16" or shape != want:
        _add(report, rel, LATENTS_KEY, f"expected float16{list(want)}, got {dtype}{list(shape)}", i)
    elif latents is not None and not np.isfinite(latents).all():
        _add(report, rel, LATENTS_KEY, "NaN or inf in the latents", i)
    if not np.array_equal(frames, np.arange(0, length, meta.stride)):
        _add(report, rel, FRAME_INDEX_KEY, f"expected every {meta.stride}th frame of {length}", i)


def _check_latents(
    root: Path, info: InfoJson, episodes: list[_Episode], decode: set[int] | None, report: Report
) -> None:
    """When a latents cache exists: its meta parses and covers every episode and camera, shapes agree; the
    latents of the episodes in `decode` (all when None) are read and must be finite."""
    if not (root / LATENTS_META_PATH).exists():
        if (root / "latents").exists():
            _add(report, LATENTS_META_PATH, "file", "latents/ exists but meta/latents.json is missing")
        return
    data = _read_json(root, LATENTS_META_PATH, report)
    meta = None if data is None else _parse(LatentsMeta, data, LATENTS_META_PATH, report)
    if meta is None:
        return
    if sorted(meta.cameras) != sorted(info.video_keys()):
        _add(report, LATENTS_META_PATH, "cameras", f"{meta.cameras} != cameras {info.video_keys()}")
    for pos, ep in enumerate(episodes):
        for cam in info.video_keys():
            rel = meta.file_path(ep.episode_index, cam)
            full = decode is None or pos in decode
            _check_latent_file(root, rel, meta, ep.length, report, ep.episode_index, full)


def _map(fn: Callable, items: list, workers: int) -> list:
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


# ---------------------------------------------------------------------------------------------------------
# Entry point


def check_sample(sample: float | None) -> None:
    if sample is not None and (sample <= 0 or (sample >= 1 and sample != int(sample))):
        raise Refused(f"--sample {sample:g} is neither a number of episodes nor a fraction",
                      "give a whole number of episodes (1, 2, ...) or a fraction in (0, 1)")  # fmt: skip


def sample_positions(n: int, sample: float | None, seed: int = 0) -> set[int] | None:
    """Which of `n` episodes (positions in episodes.jsonl) have their videos and latents decoded: all
    (None) without `sample`; else `sample` of them (a whole number >= 1) or that fraction of them (0 < sample
    < 1, at least one), drawn at random with `seed`."""
    if sample is None:
        return None
    check_sample(sample)
    k = int(sample) if sample >= 1 else math.ceil(sample * n)
    return set(np.random.default_rng(seed).choice(n, size=min(n, k), replace=False).tolist())


def validate_dataset(
    root: Path, check_videos: bool = True, workers: int = 8, sample: float | None = None, seed: int = 0
) -> list[Problem]:
    """Check a dataset folder against the contract; [] means valid.

    `check_videos=False` only checks that every MP4 exists (no decoding). `sample` decodes the videos and
    latents of a random sample of episodes only (`sample_positions`); every other check stays whole.
    """
    check_sample(sample)
    report: Report = []
    info = _load_info(root, report)
    episodes = _load_jsonl(root, EPISODES_PATH, EpisodeRecord, report, lenient=_Episode)
    tasks = _load_jsonl(root, TASKS_PATH, TaskRecord, report)
    stats = _load_jsonl(root, EPISODES_STATS_PATH, EpisodeStatsRecord, report)
    rejects = _load_jsonl(root, REJECTS_PATH, RejectRecord, report)
    card_raw = _read_json(root, CARD_PATH, report)
    card = None if card_raw is None else _parse(DatasetCard, card_raw, CARD_PATH, report)
    if info is None or episodes is None or tasks is None:
        return report
    if not episodes:
        _add(report, EPISODES_PATH, "(file)", "no episodes (a dataset has at least one)")
    _check_info(info, report)
    _check_tasks(tasks, report)
    _check_totals(info, episodes, tasks, report)
    _check_episode_records(episodes, tasks, report)
    if stats is not None:
        _check_stats(info, episodes, stats, report)
    if card is not None:
        _check_card(card, info, episodes, None if rejects is None else len(rejects), report)
    task_strings = [t.task for t in tasks]
    decode = sample_positions(len(episodes), sample, seed)
    results = _map(
        lambda pos_ep: _check_episode_files(
            root, info, pos_ep[1], task_strings, check_videos and (decode is None or pos_ep[0] in decode)
        ),
        list(enumerate(episodes)),
        workers,
    )
    for res in results:
        report.extend(res.problems)
    _check_index_contiguity(episodes, results, report)
    _check_stray_data(root, episodes, report)
    _check_stray_videos(root, info, report)
    _check_half_published(root, episodes, report)
    _check_gr00t_files(root, info, report)
    _check_cameras(root, info, episodes, report)
    _check_latents(root, info, episodes, decode, report)
    return report
