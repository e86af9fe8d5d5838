"""LeRobot v3.0 input metadata and rows (lerobot >= 0.4; InternData-A1's `sim_updated_lerobotv30`).

v3.0 packs many episodes per file:

- `meta/episodes/chunk-XXX/file-XXX.parquet`: one row per episode with `episode_index`, `length`, `tasks`
  (list of strings), `data/chunk_index`, `data/file_index`, `dataset_from_index` / `dataset_to_index` (its
  rows, as global `index` values, end exclusive) and per camera `videos/<key>/chunk_index`, `.../file_index`,
  `.../from_timestamp`, `.../to_timestamp` (its time window in a concatenated MP4); `stats/*` are not read;
- `meta/tasks.parquet`: `task_index` plus the task text (a `task` column, or the pandas index lerobot writes);
- `data/chunk-XXX/file-XXX.parquet` and `videos/<key>/chunk-XXX/file-XXX.mp4` (`info.json` templates with
  `chunk_index`, `file_index`, `video_key`); timestamps restart at 0 in each episode.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from ingest.errors import EpisodeError
from ingest.sources.lerobot_models import EpisodeEntry, InputInfo, VideoWindow, video_keys
from schemas.reject import Stage

EPISODE_COLUMNS = ("episode_index", "data/chunk_index", "data/file_index", "dataset_from_index",
                   "dataset_to_index")  # fmt: skip
VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp", "to_timestamp")


# ---------------------------------------------------------------------------------------------- meta


def _read_parquet(path: Path, columns: list[str] | None = None, stage: Stage = "discover") -> pa.Table:
    if not path.is_file():
        raise EpisodeError(path, path.name, "file missing", stage=stage)
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise EpisodeError(path, path.name, f"unreadable Parquet: {e}", stage=stage) from e


def _task_text_column(table: pa.Table) -> str | None:
    """`task`, else the pandas index column (lerobot writes tasks as a DataFrame indexed by the text)."""
    if "task" in table.column_names:
        return "task"
    pandas = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}"))
    names = [c for c in pandas.get("index_columns", []) if isinstance(c, str)]
    return names[0] if names and names[0] in table.column_names else None


def read_tasks(root: Path) -> dict[int, str]:
    """`meta/tasks.parquet` as task_index -> text."""
    path = root / "meta/tasks.parquet"
    table = _read_parquet(path)
    text = _task_text_column(table)
    if "task_index" not in table.column_names or text is None:
        raise EpisodeError(path, "task_index", "needs a task_index and a task text column", stage="discover")
    indices, texts = table.column("task_index").to_pylist(), table.column(text).to_pylist()
    return {int(i): str(t) for i, t in zip(indices, texts, strict=True)}


def _episode_files(root: Path) -> list[Path]:
    files = sorted((root / "meta/episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise EpisodeError(root / "meta/episodes", "episodes", "no meta/episodes/chunk-*/file-*.parquet",
                           stage="discover")  # fmt: skip
    return files


def _require(row: dict[str, Any], column: str, path: Path) -> Any:
    value = row.get(column)
    if value is None:
        raise EpisodeError(path, column, f"missing for episode {row.get('episode_index')}", stage="discover")
    return value


def _video_window(
    row: dict[str, Any], key: str, info: InputInfo, root: Path, path: Path
) -> VideoWindow | None:
    cols = {c: row.get(f"videos/{key}/{c}") for c in VIDEO_COLUMNS}
    if cols["chunk_index"] is None or cols["file_index"] is None or not info.video_path:
        return None  # no file for this camera: a missing-video reject when the camera is needed
    name = info.video_path.format(
        video_key=key, chunk_index=cols["chunk_index"], file_index=cols["file_index"]
    )
    return VideoWindow(
        path=root / name,
        from_s=float(_require(row, f"videos/{key}/from_timestamp", path)),
        to_s=None if cols["to_timestamp"] is None else float(cols["to_timestamp"]),
    )


def _entry(row: dict[str, Any], info: InputInfo, root: Path, path: Path) -> EpisodeEntry:
    values = {c: _require(row, c, path) for c in EPISODE_COLUMNS}
    data = info.data_path.format(chunk_index=values["data/chunk_index"], file_index=values["data/file_index"])
    videos = {key: w for key in video_keys(info) if (w := _video_window(row, key, info, root, path))}
    try:
        return EpisodeEntry(
            index=values["episode_index"], length=row.get("length"), tasks=list(row.get("tasks") or []),
            data_file=root / data, rows=(values["dataset_from_index"], values["dataset_to_index"]),
            videos=videos,
        )  # fmt: skip
    except ValidationError as e:
        raise EpisodeError(
            path, f"episode {values['episode_index']}", f"bad row: {e}", stage="discover"
        ) from e


def read_episodes(root: Path, info: InputInfo) -> dict[int, EpisodeEntry]:
    """Every episode of `meta/episodes/*/*.parquet`, located."""
    wanted = {"length", "tasks", *EPISODE_COLUMNS}
    wanted |= {f"videos/{k}/{c}" for k in video_keys(info) for c in VIDEO_COLUMNS}
    entries: dict[int, EpisodeEntry] = {}
    for path in _episode_files(root):
        names = pq.read_schema(path).names
        missing = [c for c in EPISODE_COLUMNS if c not in names]
        if missing:
            raise EpisodeError(path, missing[0], "column missing in the episodes Parquet", stage="discover")
        table = _read_parquet(path, [c for c in names if c in wanted])
        for row in table.to_pylist():
            entry = _entry(row, info, root, path)
            entries[entry.index] = entry
    return entries


# ---------------------------------------------------------------------------------------------- rows


def read_rows(entry: EpisodeEntry) -> pa.Table:
    """The episode's rows of its (shared) data file, checked against `dataset_from/to_index`."""
    path = entry.data_file
    if not path.is_file():
        raise EpisodeError(path, "parquet", "data file missing", stage="read")
    try:
        table = pq.read_table(path, filters=[("episode_index", "=", entry.index)])
    except (OSError, pa.ArrowException) as e:
        raise EpisodeError(path, "parquet", f"unreadable Parquet: {e}", stage="read") from e
    if entry.rows is not None:
        _check_rows(entry, table, path)
    return table


def _check_rows(entry: EpisodeEntry, table: pa.Table, path: Path) -> None:
    start, end = entry.rows or (0, 0)
    if table.num_rows != end - start:
        raise EpisodeError(
            path, "episode_index",
            f"episode {entry.index}: {table.num_rows} rows, meta/episodes says {end - start} ({start}:{end})",
            stage="read",
        )  # fmt: skip
    if "index" in table.column_names and table.num_rows:
        index = table.column("index").to_pylist()
        if index[0] != start or index[-1] != end - 1:
            raise EpisodeError(
                path, "index", f"episode {entry.index}: rows {index[0]}..{index[-1]}, meta/episodes says "
                f"{start}..{end - 1}", stage="read",
            )  # fmt: skip
