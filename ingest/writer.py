"""The LeRobot v2.1 writer: stage an episode (workers), publish it (driver), rebuild meta from disk.

Lifecycle of one episode:
1. `stage_episode` (a Ray worker): frames Parquet, videos and `staged.json` in a private staging folder,
   written to `<dir>.tmp` and renamed, so a staging folder is complete or absent.
2. `publish_episode` (the driver, which owns the episode numbering): adds the index columns, moves the
   videos into place, then writes the episode Parquet last. Its presence means "published"; its footer
   carries everything the meta files need (`ei_forge` key-value metadata).
3. `finalize_meta`: rebuilds every `meta/` file from the Parquet footers alone, so a resumed or repaired
   dataset gets the same meta as a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from ingest import video
from ingest.errors import EpisodeError
from schemas.atomic import atomic_path, write_text_atomic
from schemas.camera import ASPECT_TOLERANCE, CAMERAS_PATH, CameraModel, CameraRecord
from schemas.canonical import VECTOR_DIM, dimension_names
from schemas.card import DatasetCard
from schemas.episode import ANNOTATION_PREFIX, FPS, CanonicalEpisode, EpisodeMeta
from schemas.lerobot import (
    CAMERA_NAMES,
    CARD_PATH,
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
    ModalitySlice,
    TaskRecord,
    VideoInfo,
    data_path,
    dimension_groups,
    episode_chunk,
    modality_json,
    video_path,
)
from schemas.pipelines import PIPELINE_VERSION, SourceConfig, VideoConfig, config_sha256
from schemas.reject import RejectRecord
from schemas.stats import merge_moments

FRAMES_FILE = "frames.parquet"
STAGED_FILE = "staged.json"
FOOTER_KEY = b"ei_forge"
VECTOR_FEATURES = {  # name -> (CanonicalEpisode attribute, dtype)
    "observation.state": ("state", "float32"),
    "action": ("action", "float32"),
    "observation.state_mask": ("state_mask", "bool"),
    "action_mask": ("action_mask", "bool"),
}
MASK_OF = {"observation.state": "observation.state_mask", "action": "action_mask"}  # True = valid
INDEX_DTYPES = {
    "timestamp": "float32",
    "frame_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "task_index": "int64",
}


class StagedEpisode(BaseModel):
    """`staged.json`: one episode written by a worker, not yet numbered."""

    model_config = ConfigDict(extra="forbid")
    meta: EpisodeMeta
    length: int
    stats: dict[str, FeatureStats]
    videos: dict[str, VideoInfo]
    valid_state_dims: list[bool]
    valid_action_dims: list[bool]
    extra: dict[str, list[str]] = {}  # extra float32 column -> its dimension names
    annotations: list[str] = []  # `annotation.*` text columns, numbered into tasks.jsonl at publish
    cameras: list[CameraModel] = []  # at the published video's size
    content_sha256: str = ""  # of the frames and videos (not the ids): finds an episode copied twice


class PublishedEpisode(BaseModel):
    """What the footer of a published episode Parquet carries: everything `finalize_meta` needs."""

    model_config = ConfigDict(extra="forbid")
    record: EpisodeRecord
    stats: dict[str, FeatureStats]
    videos: dict[str, VideoInfo]
    valid_state_dims: list[bool]
    valid_action_dims: list[bool]
    extra: dict[str, list[str]] = {}
    annotations: list[str] = []  # int64 columns holding tasks.jsonl rows
    task_rows: dict[int, str] = {}  # the tasks.jsonl rows this file's annotation columns use
    cameras: list[CameraModel] = []  # -> meta/cameras.jsonl
    content_sha256: str = ""  # the staged episode's (`StagedEpisode.content_sha256`)


# ---------------------------------------------------------------------------------------------------------
# Stats (lerobot's compute_episode_stats / aggregate_stats)


def array_stats(x: np.ndarray, mask: np.ndarray | None = None) -> FeatureStats:
    """min/max/mean/std over time (axis 0) -> shape (D,); a 1-D array gives shape (1,); count [T].

    Non-finite values, and with a `mask` ([T, D], True = valid) every masked value, are left out; a
    dimension with no value left gets 0 for every statistic. With a mask, `valid_count` [D] counts the
    values each dimension's statistics are over.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x.reshape(len(x), -1)
    valid = np.isfinite(x) if mask is None else np.isfinite(x) & np.asarray(mask, bool).reshape(x.shape)
    if valid.all():
        mn, mx, mean, std = x.min(0), x.max(0), x.mean(0), x.std(0)
    else:
        x = np.where(valid, x, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mn, mx, mean, std = (
                np.nan_to_num(f(x, axis=0)) for f in (np.nanmin, np.nanmax, np.nanmean, np.nanstd)
            )
    return FeatureStats(
        min=mn.tolist(), max=mx.tolist(), mean=mean.tolist(), std=std.tolist(), count=[len(x)],
        valid_count=None if mask is None else valid.sum(0).tolist(),
    )  # fmt: skip


def vector_stats(columns: dict[str, np.ndarray]) -> dict[str, FeatureStats]:
    """`array_stats` of canonical vector columns (`VECTOR_FEATURES` names): state and action over their
    valid values only (the mask columns given beside them), with `valid_count`."""
    return {name: array_stats(v, columns.get(MASK_OF[name]) if name in MASK_OF else None)
            for name, v in columns.items()}  # fmt: skip


def merge_stats(parts: Sequence[FeatureStats]) -> FeatureStats:
    """Count-weighted merge with the parallel-variance formula (`schemas.stats.merge_moments`; lerobot's
    `aggregate_feature_stats`). Parts with `valid_count` weigh each dimension by it, and a part without a
    valid value of a dimension gives it no min / max; the merge then has `valid_count` too."""
    if any(p.valid_count is not None for p in parts):
        return _merge_valid(parts)
    stds = np.array([p.std for p in parts], dtype=np.float64)
    counts = np.array([p.count[0] for p in parts], dtype=np.float64)
    total, mean, variance = merge_moments(counts, [p.mean for p in parts], stds**2)
    return FeatureStats(
        min=np.min([p.min for p in parts], axis=0).tolist(),
        max=np.max([p.max for p in parts], axis=0).tolist(),
        mean=mean.tolist(),
        std=np.sqrt(variance).tolist(),
        count=[int(total.flat[0])],
    )


def _merge_valid(parts: Sequence[FeatureStats]) -> FeatureStats:
    counts = np.array([p.valid_count or [p.count[0]] * len(p.mean) for p in parts], dtype=np.float64)
    stds = np.array([p.std for p in parts], dtype=np.float64)
    total, mean, variance = merge_moments(counts, [p.mean for p in parts], stds**2)
    has, some = counts > 0, total > 0
    mn = np.where(some, np.where(has, [p.min for p in parts], np.inf).min(0), 0.0)
    mx = np.where(some, np.where(has, [p.max for p in parts], -np.inf).max(0), 0.0)
    return FeatureStats(
        min=mn.tolist(), max=mx.tolist(), mean=mean.tolist(), std=np.sqrt(variance).tolist(),
        count=[sum(p.count[0] for p in parts)], valid_count=total.astype(np.int64).tolist(),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Stage (worker)


def fixed_list(arr: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(arr).reshape(-1)), arr.shape[1])


def _frames_table(ep: CanonicalEpisode) -> pa.Table:
    t = ep.length
    columns = {name: fixed_list(getattr(ep, attr)) for name, (attr, _) in VECTOR_FEATURES.items()}
    for name, col in ep.extra.items():
        columns[name] = fixed_list(col.values)
    for name, texts in ep.annotations.items():
        columns[name] = pa.array(texts, pa.string())
    columns["timestamp"] = pa.array((np.arange(t) / FPS).astype(np.float32))
    columns["frame_index"] = pa.array(np.arange(t, dtype=np.int64))
    return pa.table(columns)


def _frame_stats(ep: CanonicalEpisode, table: pa.Table) -> dict[str, FeatureStats]:
    stats = vector_stats({name: getattr(ep, attr) for name, (attr, _) in VECTOR_FEATURES.items()})
    stats.update({name: array_stats(col.values) for name, col in ep.extra.items()})
    for name in ("timestamp", "frame_index"):
        stats[name] = array_stats(table[name].to_numpy())
    return stats


def published_camera(cam: CameraModel, result: video.VideoResult, src: Path) -> CameraModel:
    """The camera model at the published video's size. Raises EpisodeError when the source video's
    aspect ratio is not that of the size the intrinsics are given at."""
    aspect = (cam.width / cam.height) / (result.source_width / result.source_height)
    if abs(aspect - 1) > ASPECT_TOLERANCE:
        msg = (
            f"intrinsics of {cam.width}x{cam.height} for a {result.source_width}x{result.source_height} video"
        )
        raise EpisodeError(src, "cameras", msg, stage="video")
    x, y, w, h = result.picture or (0, 0, result.info.width, result.info.height)
    return cam.scaled(w, h).shifted(x, y, result.info.width, result.info.height)


def _stage_into(ep: CanonicalEpisode, folder: Path, cfg: VideoConfig) -> StagedEpisode:
    folder.mkdir(parents=True)
    table = _frames_table(ep)
    pq.write_table(table, folder / FRAMES_FILE)
    stats = _frame_stats(ep, table)
    infos: dict[str, VideoInfo] = {}
    models = {cam.camera: cam for cam in ep.cameras}
    cameras = []
    for key, src in ep.videos.items():
        dst = folder / "videos" / f"{key}.mp4"
        result = video.transcode(src.path, src.frame_indices, dst, cfg, images=src.images)
        stats[key], infos[key] = result.stats, result.info
        if key in models:
            cameras.append(published_camera(models[key], result, src.path))
    staged = StagedEpisode(
        meta=ep.meta,
        length=ep.length,
        stats=stats,
        videos=infos,
        valid_state_dims=ep.state_mask.any(axis=0).tolist(),
        valid_action_dims=ep.action_mask.any(axis=0).tolist(),
        extra={name: col.names for name, col in ep.extra.items()},
        annotations=list(ep.annotations),
        cameras=cameras,
        content_sha256=content_sha256(folder, sorted(infos)),
    )
    (folder / STAGED_FILE).write_text(staged.model_dump_json(by_alias=True))
    return staged


def content_sha256(folder: Path, video_keys: list[str]) -> str:
    """sha256 of a staged episode's frames Parquet and videos: equal for the same content under two ids."""
    digest = hashlib.sha256()
    for path in [folder / FRAMES_FILE, *(folder / "videos" / f"{k}.mp4" for k in video_keys)]:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def stage_episode(ep: CanonicalEpisode, staging_dir: Path, video_cfg: VideoConfig) -> StagedEpisode:
    """Write one episode's frames, videos and stats into `staging_dir` (complete or absent).

    Raises EpisodeError: from the video stage as is, anything else as stage "write".
    """
    source_id = ep.meta.source_episode_id
    try:
        ep.check()
    except ValueError as e:
        raise EpisodeError(source_id, "episode", str(e), stage="write") from e
    tmp = staging_dir.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        staged = _stage_into(ep, tmp, video_cfg)
        shutil.rmtree(staging_dir, ignore_errors=True)
        os.rename(tmp, staging_dir)
    except EpisodeError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EpisodeError(source_id, "write", f"{type(e).__name__}: {e}", stage="write") from e
    return staged


def is_staged(staging_dir: Path) -> bool:
    """True when `staging_dir` holds a completely staged episode (staging is complete or absent)."""
    return (staging_dir / STAGED_FILE).is_file() and (staging_dir / FRAMES_FILE).is_file()


def read_staged(staging_dir: Path) -> StagedEpisode:
    return StagedEpisode.model_validate_json((staging_dir / STAGED_FILE).read_text())


# ---------------------------------------------------------------------------------------------------------
# Publish (driver)


def _text_rows(texts: Sequence[str], tasks: dict[str, int]) -> np.ndarray:
    """Per-frame texts as int64 rows of the task table `tasks` (new texts appended to it)."""
    return np.array([tasks.setdefault(x, len(tasks)) for x in texts], dtype=np.int64)


def _number_annotations(table: pa.Table, names: list[str], tasks: dict[str, int]) -> dict[str, np.ndarray]:
    """Each annotation text column as int64 rows of the task table (new texts appended to it)."""
    return {name: _text_rows(table[name].to_pylist(), tasks) for name in names}


def _episode_tasks(caption: str, annotations: Sequence[list[str]]) -> list[str]:
    """The episode's tasks: its caption, then its annotation texts in first-appearance order."""
    return list(dict.fromkeys([caption] + [x for texts in annotations for x in texts]))


def _index_columns(
    length: int, episode_index: int, index_start: int, task_index: int
) -> dict[str, np.ndarray]:
    return {
        "episode_index": np.full(length, episode_index, dtype=np.int64),
        "index": np.arange(index_start, index_start + length, dtype=np.int64),
        "task_index": np.full(length, task_index, dtype=np.int64),
    }


def _ordered_stats(stats: dict[str, FeatureStats]) -> dict[str, FeatureStats]:
    """Vectors, cameras, then the 5 index columns (the order of `info.json` features)."""
    first = [k for k in VECTOR_FEATURES if k in stats]
    last = [k for k in INDEX_DTYPES if k in stats]
    middle = sorted(k for k in stats if k not in first and k not in last)
    return {k: stats[k] for k in first + middle + last}


def _unpublish(root: Path, episode_index: int, keep: set[str]) -> None:
    """Unpublish this index (Parquet first) and drop its videos of cameras not in `keep`."""
    (root / data_path(episode_index)).unlink(missing_ok=True)
    chunk_dir = root / "videos" / f"chunk-{episode_chunk(episode_index):03d}"
    for old in chunk_dir.glob(f"*/episode_{episode_index:06d}.mp4"):
        if old.parent.name not in keep:
            old.unlink()


def _place_video(staging_dir: Path, root: Path, episode_index: int, key: str) -> None:
    """Move a staged video into place. A staging folder is complete when written, so a missing staged
    video was already moved by an interrupted publish of this same folder: the placed one is kept."""
    src, dst = staging_dir / "videos" / f"{key}.mp4", root / video_path(episode_index, key)
    if src.is_file():
        _move_file(src, dst)
    elif not dst.is_file():
        raise FileNotFoundError(f"{src}: staged video missing and not yet published")


def _move_file(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.move(src, tmp)  # a rename on the same filesystem, a copy across filesystems


def _write_parquet_atomic(table: pa.Table, path: Path, footer: PublishedEpisode) -> None:
    metadata = {**(table.schema.metadata or {}), FOOTER_KEY: footer.model_dump_json(by_alias=True).encode()}
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(metadata), tmp)


def publish_episode(
    staging_dir: Path, root: Path, episode_index: int, index_start: int, tasks: dict[str, int]
) -> PublishedEpisode:
    """Number a staged episode and move it into the dataset at `root`; the Parquet is written last.

    `tasks` is the dataset's task table so far (text -> tasks.jsonl row); the episode's caption and
    annotation texts are added to it in first-appearance order."""
    staged = read_staged(staging_dir)
    table = pq.read_table(staging_dir / FRAMES_FILE)
    if table.num_rows != staged.length:
        raise ValueError(
            f"{staging_dir}: {FRAMES_FILE} has {table.num_rows} rows, staged length {staged.length}"
        )
    stats = dict(staged.stats)
    meta = staged.meta.model_dump()
    episode_tasks = _episode_tasks(meta["caption"], [table[n].to_pylist() for n in staged.annotations])
    task_index = tasks.setdefault(meta["caption"], len(tasks))
    for name, values in _number_annotations(table, staged.annotations, tasks).items():
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values))
        stats[name] = array_stats(values)
    for name, values in _index_columns(staged.length, episode_index, index_start, task_index).items():
        table = table.append_column(name, pa.array(values))
        stats[name] = array_stats(values)
    record = EpisodeRecord(**meta, episode_index=episode_index, tasks=episode_tasks, length=staged.length)
    published = PublishedEpisode(
        record=record,
        stats=_ordered_stats(stats),
        videos=staged.videos,
        valid_state_dims=staged.valid_state_dims,
        valid_action_dims=staged.valid_action_dims,
        extra=staged.extra,
        annotations=staged.annotations,
        task_rows={tasks[t]: t for t in episode_tasks} if staged.annotations else {},
        cameras=staged.cameras,
        content_sha256=staged.content_sha256,
    )
    _unpublish(root, episode_index, keep=set(staged.videos))
    for key in staged.videos:
        _place_video(staging_dir, root, episode_index, key)
    try:
        _write_parquet_atomic(table, root / data_path(episode_index), published)
    except BaseException:  # a full disk, a signal: the videos go back to staging, the dataset stays valid
        for key in staged.videos:
            _unplace_video(staging_dir, root, episode_index, key)
        raise
    shutil.rmtree(staging_dir)
    return published


def _unplace_video(staging_dir: Path, root: Path, episode_index: int, key: str) -> None:
    """Undo `_place_video` (a rename, so it needs no space): the staging folder is complete again."""
    src, dst = root / video_path(episode_index, key), staging_dir / "videos" / f"{key}.mp4"
    if src.is_file() and not dst.exists():
        os.replace(src, dst)


def _read_footer(path: Path) -> PublishedEpisode:
    metadata = pq.read_schema(path).metadata or {}
    if FOOTER_KEY not in metadata:
        raise ValueError(f"{path}: no {FOOTER_KEY.decode()!r} key in the Parquet footer")
    episode = PublishedEpisode.model_validate_json(metadata[FOOTER_KEY])
    if path.name != Path(data_path(episode.record.episode_index)).name:
        raise ValueError(f"{path}: footer says episode_index {episode.record.episode_index}")
    return episode


def read_published(root: Path) -> list[PublishedEpisode]:
    """Every published episode under `root`, from Parquet footers only, sorted by episode_index."""
    paths = sorted((root / "data").glob("chunk-*/episode_*.parquet"))
    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(paths))) as pool:
        episodes = list(pool.map(_read_footer, paths))
    return sorted(episodes, key=lambda e: e.record.episode_index)


# ---------------------------------------------------------------------------------------------------------
# Re-label a published dataset (`ingest label`, `ingest caption`)


def _renumber_tasks(
    table: pa.Table, ep: PublishedEpisode, meta: EpisodeMeta, tasks: dict[str, int]
) -> tuple[pa.Table, PublishedEpisode]:
    """The episode with new meta: caption and annotation texts numbered in the new task table."""
    texts = {name: [ep.task_rows[k] for k in table[name].to_pylist()] for name in ep.annotations}
    stats = dict(ep.stats)
    task_index = tasks.setdefault(meta.caption, len(tasks))
    columns = {"task_index": np.full(table.num_rows, task_index, dtype=np.int64)}
    columns.update({name: _text_rows(rows, tasks) for name, rows in texts.items()})
    for name, values in columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values))
        stats[name] = array_stats(values)
    episode_tasks = _episode_tasks(meta.caption, list(texts.values()))
    record = ep.record.model_copy(update={**meta.model_dump(), "tasks": episode_tasks})
    rows = {tasks[t]: t for t in episode_tasks} if ep.annotations else {}
    return table, ep.model_copy(update={"record": record, "stats": _ordered_stats(stats), "task_rows": rows})


def rewrite_episode_meta(root: Path, update: Callable[[PublishedEpisode], EpisodeMeta]) -> int:
    """Give every published episode the meta `update` returns (tier, caption, ...), renumbering
    tasks.jsonl rows in `task_index` and `annotation.*`; returns how many Parquet files changed.

    Each file is rewritten atomically and only when it changes; its footer's `task_rows` decode its
    annotation columns, so a killed run leaves files `finalize_meta` refuses and a re-run with the same
    `update` completes them. Call `finalize_meta` afterwards."""
    tasks: dict[str, int] = {}
    changed = 0
    for ep in read_published(root):
        path = root / data_path(ep.record.episode_index)
        meta = EpisodeMeta.model_validate(update(ep).model_dump(include=set(EpisodeMeta.model_fields)))
        table, new = _renumber_tasks(pq.read_table(path), ep, meta, tasks)
        if new != ep:
            _write_parquet_atomic(table.replace_schema_metadata(None), path, new)
            changed += 1
    return changed


def rewrite_episode(root: Path, table: pa.Table, episode: PublishedEpisode) -> None:
    """Replace a published episode's Parquet (frames and footer) atomically (`ingest hands`); its videos
    and numbering stay. Call `finalize_meta` afterwards."""
    path = root / data_path(episode.record.episode_index)
    _write_parquet_atomic(table.replace_schema_metadata(None), path, episode)


# ---------------------------------------------------------------------------------------------------------
# Meta (driver)


def task_table(published: Sequence[PublishedEpisode]) -> dict[str, int]:
    """Distinct task strings in first-appearance order -> task_index (what publish must be given)."""
    table: dict[str, int] = {}
    for ep in published:
        for task in ep.record.tasks:
            table.setdefault(task, len(table))
    return table


def check_numbering(published: Sequence[PublishedEpisode]) -> None:
    """Raise ValueError unless episodes are 0..N-1, `index` is contiguous from 0 and every episode's
    task_index column is its task's row in the first-appearance task table (what meta will claim)."""
    tasks = task_table(published)
    start = 0
    for pos, ep in enumerate(published):
        i, stats = ep.record.episode_index, ep.stats
        if i != pos:
            raise ValueError(f"published episodes are not 0..N-1: position {pos} holds episode {i}")
        if stats["index"].min != [start]:
            raise ValueError(f"episode {i}: index starts at {int(stats['index'].min[0])}, expected {start}")
        want = float(tasks[ep.record.tasks[0]])
        if stats["task_index"].min != [want] or stats["task_index"].max != [want]:
            raise ValueError(
                f"episode {i}: task_index {stats['task_index'].min} but tasks.jsonl row {int(want)}"
            )
        start += ep.record.length


def camera_infos(published: Sequence[PublishedEpisode]) -> dict[str, VideoInfo]:
    """Camera key -> VideoInfo of the first episode that has it, in first-appearance order: only the
    cameras every published episode has (a dataset's features are the same for every episode; a camera
    some source records lack, e.g. a Bridge camera flagged absent, is not published)."""
    infos: dict[str, VideoInfo] = {}
    for ep in published:
        for key, info in ep.videos.items():
            infos.setdefault(key, info)
    return {k: v for k, v in infos.items() if all(k in ep.videos for ep in published)}


def drop_unshared_videos(root: Path, published: Sequence[PublishedEpisode], cameras: set[str]) -> None:
    """Remove the published videos of cameras that are not dataset features (see `camera_infos`)."""
    for ep in published:
        for key in set(ep.videos) - cameras:
            (root / video_path(ep.record.episode_index, key)).unlink(missing_ok=True)
    folders = [*sorted((root / "videos").glob("chunk-*/*")), *sorted((root / "videos").glob("chunk-*"))]
    for folder in [*folders, root / "videos"]:  # cameras, then chunks, then videos/, each once empty
        if folder.is_dir() and folder.name not in cameras and not any(folder.iterdir()):
            folder.rmdir()


def build_features(published: Sequence[PublishedEpisode]) -> dict[str, Feature]:
    names = dimension_names()
    features = {
        name: Feature(dtype=dtype, shape=[VECTOR_DIM], names=names)
        for name, (_, dtype) in VECTOR_FEATURES.items()
    }
    for ep in published:
        for name, dims in ep.extra.items():
            features.setdefault(name, Feature(dtype="float32", shape=[len(dims)], names=dims))
        for name in ep.annotations:
            features.setdefault(name, Feature(dtype="int64", shape=[1], names=None))
    for key, info in camera_infos(published).items():
        features[key] = Feature(
            dtype="video", shape=[info.height, info.width, 3], names=CAMERA_NAMES, info=info
        )
    for name, dtype in INDEX_DTYPES.items():
        features[name] = Feature(dtype=dtype, shape=[1], names=None)
    return features


def build_info(published: Sequence[PublishedEpisode], robot_type: str) -> InfoJson:
    features = build_features(published)
    n_cameras = sum(f.dtype == "video" for f in features.values())
    n = len(published)
    return InfoJson(
        robot_type=robot_type,
        total_episodes=n,
        total_frames=sum(ep.record.length for ep in published),
        total_tasks=len(task_table(published)),
        total_videos=n * n_cameras,
        total_chunks=len({episode_chunk(ep.record.episode_index) for ep in published}),
        fps=FPS,
        splits={"train": f"0:{n}"},
        video_path=VIDEO_PATH if n_cameras else None,
        features=features,
    )


def episode_stats(ep: PublishedEpisode, features: dict[str, Feature]) -> dict[str, FeatureStats]:
    """An episode's stats of the dataset's features (a camera that is not published has none)."""
    return {k: v for k, v in ep.stats.items() if k in features}


def global_stats(published: Sequence[PublishedEpisode]) -> dict[str, FeatureStats]:
    """Per-feature merge over all episodes (`meta/episodes_stats.jsonl` merged, as lerobot does)."""
    keys = list(dict.fromkeys(k for ep in published for k in ep.stats))
    return {k: merge_stats([ep.stats[k] for ep in published if k in ep.stats]) for k in keys}


QUANTILE_SAMPLE_ROWS = 200_000  # GR00T's q01 / q99 are estimated from at most about this many frames


def quantile_sample(root: Path, published: Sequence[PublishedEpisode]) -> dict[str, np.ndarray]:
    """Numeric columns of every k-th published episode, k chosen so that about `QUANTILE_SAMPLE_ROWS`
    frames are read (every episode of a small dataset): column -> float64 [rows, D]."""
    total = sum(ep.record.length for ep in published)
    step = max(1, -(-total // QUANTILE_SAMPLE_ROWS))
    parts: dict[str, list[np.ndarray]] = {}
    for ep in published[::step]:
        table = pq.read_table(root / data_path(ep.record.episode_index))
        for name in table.column_names:
            col = table[name].combine_chunks()
            flat = col.flatten() if pa.types.is_fixed_size_list(col.type) else col
            values = flat.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(col), -1)
            parts.setdefault(name, []).append(values)
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def quantiles(values: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-dimension 1st and 99th percentiles over the finite values (0 for a dimension with none)."""
    x = np.where(np.isfinite(values), values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q = np.nan_to_num(np.nanquantile(x, [0.01, 0.99], axis=0))
    return q[0].tolist(), q[1].tolist()


def gr00t_stats(
    root: Path, published: Sequence[PublishedEpisode], info: InfoJson
) -> dict[str, Gr00tFeatureStats]:
    """`meta/stats.json` as GR00T reads it: for every numeric feature the merged mean / std / min / max
    and `q01` / `q99` estimated from `quantile_sample`; no `count`, no cameras (Gr00tFeatureStats). State
    and action: over valid values only, with `valid_count`."""
    merged, sample = global_stats(published), quantile_sample(root, published)
    out = {}
    for name, st in merged.items():
        feat = info.features.get(name)
        if feat is None or feat.dtype in ("video", "string") or name not in sample:
            continue
        values = sample[name]
        if st.valid_count is not None and MASK_OF[name] in sample:  # quantiles of the valid values only
            values = np.where(sample[MASK_OF[name]] > 0, values, np.nan)
        q01, q99 = quantiles(values)
        out[name] = Gr00tFeatureStats(mean=st.mean, std=st.std, min=st.min, max=st.max, q01=q01, q99=q99,
                                      valid_count=st.valid_count)  # fmt: skip
    return out


def build_card(
    published: Sequence[PublishedEpisode], source_name: str, cfg: SourceConfig, n_rejects: int
) -> DatasetCard:
    names = dimension_names()
    frames = sum(ep.record.length for ep in published)

    def valid(attr: str) -> list[str]:
        flags = np.zeros(VECTOR_DIM, dtype=bool)
        for ep in published:
            flags |= np.asarray(getattr(ep, attr), dtype=bool)
        return [name for name, ok in zip(names, flags, strict=True) if ok]

    estimated = [ep for ep in published if ep.record.hands_source == "estimated"]
    kind = cfg.embodiment_kind
    if estimated and kind == "human_actionless" and all(ep.record.has_action for ep in published):
        kind = "human_action"  # every episode got hands from `ingest hands`
    return DatasetCard(
        source=source_name,
        source_version=cfg.source_version,
        license=cfg.license,
        embodiment_kind=kind,
        reference_frame=cfg.reference_frame,
        native_fps=cfg.native_fps,
        fps=FPS,
        hours=frames / FPS / 3600,
        episodes=len(published),
        frames=frames,
        rejects=n_rejects,
        valid_state_dims=valid("valid_state_dims"),
        valid_action_dims=valid("valid_action_dims"),
        pipeline_version=PIPELINE_VERSION,
        pipeline_config_sha256=config_sha256(cfg),
        hands_source=f"estimated in {len(estimated)} of {len(published)} episodes" if estimated else None,
        camera_motion=_camera_motion(estimated) if estimated else None,
    )


def _camera_motion(estimated: Sequence[PublishedEpisode]) -> str:
    """What the estimated episodes know of their camera's motion (their `camera_*_known` metrics)."""
    given = sum(ep.record.quality_metrics.get("camera_translation_known", 0.0) > 0 for ep in estimated)
    rot = sum(ep.record.quality_metrics.get("camera_rotation_known", 0.0) > 0 for ep in estimated) - given
    none = len(estimated) - given - rot
    return (
        f"of {len(estimated)} estimated episodes: camera poses from the source in {given}, rotation "
        f"estimated from video in {rot} (translation unknown), none in {none}"
    )


NATIVE_STATE, NATIVE_ACTION = "observation.joints", "action.native"


def native_groups(info: InfoJson, key: str) -> dict[str, ModalitySlice] | None:
    """GR00T groups of a native column (`dimension_groups` of its names), for a dataset whose canonical
    state (or action) is masked everywhere (a joint-only robot); None when the dataset has no such column."""
    feat = info.features.get(key)
    if feat is None or not isinstance(feat.names, list):
        return None
    return dimension_groups(feat.names, key)


def info_json_text(info: InfoJson) -> str:
    """`info.json` as lerobot writes it: video `info` dicts with `video.*` keys, no `info` key elsewhere."""
    data = info.model_dump(mode="json", by_alias=True)
    for feature in data["features"].values():
        if feature.get("info") is None:
            feature.pop("info", None)
    return json.dumps(data, indent=2) + "\n"


def camera_records(published: Sequence[PublishedEpisode]) -> list[CameraRecord]:
    """`meta/cameras.jsonl`: one line per published episode and camera model, by episode."""
    return [
        CameraRecord(episode_index=ep.record.episode_index, **cam.model_dump())
        for ep in published
        for cam in ep.cameras
    ]


def _jsonl(models: Sequence[BaseModel]) -> str:
    return "".join(m.model_dump_json(by_alias=True) + "\n" for m in models)


def finalize_meta(root: Path, source_name: str, cfg: SourceConfig, rejects: list[RejectRecord]) -> InfoJson:
    """Rebuild every `meta/` file from the published Parquet footers (each written atomically).

    Raises ValueError when the published numbering is inconsistent (see `check_numbering`)."""
    published = read_published(root)
    check_numbering(published)
    info = build_info(published, robot_type=cfg.embodiment)
    tasks = [TaskRecord(task_index=i, task=t) for t, i in task_table(published).items()]
    drop_unshared_videos(root, published, set(info.video_keys()))
    ep_stats = [
        EpisodeStatsRecord(episode_index=ep.record.episode_index, stats=episode_stats(ep, info.features))
        for ep in published
    ]
    stats = gr00t_stats(root, published, info)
    write_text_atomic(root / INFO_PATH, info_json_text(info))
    write_text_atomic(root / EPISODES_PATH, _jsonl([ep.record for ep in published]))
    write_text_atomic(root / TASKS_PATH, _jsonl(tasks))
    write_text_atomic(root / EPISODES_STATS_PATH, _jsonl(ep_stats))
    stats_json = {k: v.model_dump() for k, v in stats.items()}
    write_text_atomic(root / STATS_PATH, json.dumps(stats_json, indent=2) + "\n")
    card = build_card(published, source_name, cfg, len(rejects))
    write_text_atomic(root / CARD_PATH, card.model_dump_json(indent=2) + "\n")
    write_text_atomic(root / REJECTS_PATH, _jsonl(rejects))
    write_text_atomic(root / CAMERAS_PATH, _jsonl(camera_records(published)))
    annotations = [k for k in info.features if k.startswith(ANNOTATION_PREFIX)]
    state = native_groups(info, NATIVE_STATE) if published and not card.valid_state_dims else None
    action = native_groups(info, NATIVE_ACTION) if published and not card.valid_action_dims else None
    modality = modality_json(info.video_keys(), annotations, state, action)
    write_text_atomic(root / MODALITY_PATH, modality.model_dump_json(indent=2, exclude_none=True) + "\n")
    return info


def rewrite_rejects(root: Path, rejects: list[RejectRecord]) -> None:
    """Replace `meta/rejects.jsonl` and keep the dataset card's reject count in step with it."""
    write_text_atomic(root / REJECTS_PATH, _jsonl(rejects))
    if (root / CARD_PATH).exists():
        card = DatasetCard.model_validate_json((root / CARD_PATH).read_text())
        card.rejects = len(rejects)
        write_text_atomic(root / CARD_PATH, card.model_dump_json(indent=2) + "\n")
