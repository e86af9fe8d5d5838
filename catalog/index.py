"""`catalog build ROOT`: index every dataset under ROOT into `ROOT/catalog/{episodes,datasets}.parquet`.

Incremental: each dataset's fingerprint (sizes and mtimes of its meta files and of its latents folders)
is stored in `datasets.parquet`; a dataset whose fingerprint did not change keeps its previous rows and
is not read again. A dataset that cannot be read, or whose files disagree with each other, is reported
and left out; the others are indexed. Both Parquet files are written to a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from schemas.atomic import atomic_path
from schemas.card import DatasetCard
from schemas.catalog import (
    DATASETS_FILE,
    EPISODES_FILE,
    LATENTS_META_PATH,
    LATENTS_PATH,
    CatalogDataset,
    CatalogEpisode,
    dataset_schema,
    dims_bitstring,
    episode_schema,
)
from schemas.lerobot import CARD_PATH, EPISODES_PATH, INFO_PATH, EpisodeRecord, InfoJson

if TYPE_CHECKING:
    import polars as pl

META_FILES = (INFO_PATH, EPISODES_PATH, CARD_PATH, LATENTS_META_PATH)


class DatasetError(Exception):
    """A dataset that cannot be indexed; the message names the file (and line / field)."""


class BrokenDataset(BaseModel):
    dataset: str
    error: str


class BuildReport(BaseModel):
    """What `build` did: datasets read again, kept as they were, dropped, and broken."""

    root: Path
    read: list[str]
    unchanged: list[str]
    removed: list[str]
    broken: list[BrokenDataset]
    datasets: int
    episodes: int
    hours: float
    seconds: float
    written: bool


def discover(root: Path) -> list[Path]:
    """Every dataset folder under ROOT (one with `meta/info.json`), by name."""
    return sorted(p.parent.parent for p in root.glob(f"*/{INFO_PATH}"))


def fingerprint(ds: Path) -> str:
    """sha256 over the size and mtime of each meta file (or its absence) and of each latents folder."""
    entries: list[Any] = []
    for rel in META_FILES:
        p = ds / rel
        st = p.stat() if p.exists() else None
        entries.append([rel, st.st_size, st.st_mtime_ns] if st else [rel, None])
    for d in sorted((ds / "latents").glob("chunk-*/*")):
        entries.append([str(d.relative_to(ds)), d.stat().st_mtime_ns])
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


# --------------------------------------------------------------------------- reading one dataset


def _load_json(model: type[BaseModel], path: Path) -> Any:
    try:
        return model.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise DatasetError(f"{path.parent.name}/{path.name}: missing") from None
    except ValidationError as e:
        raise DatasetError(f"{path.parent.name}/{path.name}: {_first_error(e)}") from None


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "file"
    more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"


def read_episodes(path: Path) -> list[EpisodeRecord]:
    """Every line of `meta/episodes.jsonl` through `EpisodeRecord`; an error names the line and field."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{EPISODES_PATH}: missing") from None
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(EpisodeRecord.model_validate_json(line))
        except ValidationError as e:
            raise DatasetError(f"{EPISODES_PATH} line {i}: {_first_error(e)}") from None
    return out


def _check_consistent(info: InfoJson, card: DatasetCard, records: list[EpisodeRecord]) -> None:
    indices = [r.episode_index for r in records]
    if sorted(indices) != list(range(len(records))):
        raise DatasetError(f"{EPISODES_PATH}: episode_index is not 0..{len(records) - 1}")
    if len(records) != info.total_episodes:
        raise DatasetError(
            f"{EPISODES_PATH}: {len(records)} episodes, {INFO_PATH} total_episodes {info.total_episodes}"
        )
    frames = sum(r.length for r in records)
    if frames != info.total_frames:
        raise DatasetError(
            f"{EPISODES_PATH}: lengths sum to {frames}, {INFO_PATH} total_frames {info.total_frames}"
        )
    if card.fps != info.fps:
        raise DatasetError(f"{CARD_PATH}: fps {card.fps}, {INFO_PATH} fps {info.fps}")


def _latent_files(ds: Path) -> set[str]:
    """Relative paths of every latents file (one directory listing per chunk and camera)."""
    if not (ds / LATENTS_META_PATH).exists():
        return set()
    return {str(p.relative_to(ds)) for p in (ds / "latents").glob("chunk-*/*/*.safetensors")}


def _has_latents(info: InfoJson, files: set[str], index: int) -> bool:
    cameras = info.video_keys()
    chunk = index // info.chunks_size
    paths = (LATENTS_PATH.format(episode_chunk=chunk, video_key=k, episode_index=index) for k in cameras)
    return bool(cameras) and all(p in files for p in paths)


def _data_path(name: str, info: InfoJson, index: int) -> str:
    return f"{name}/{info.data_path.format(episode_chunk=index // info.chunks_size, episode_index=index)}"


def read_dataset(ds: Path, fp: str) -> tuple[CatalogDataset, list[CatalogEpisode]]:
    """One dataset's catalog rows, read through the schemas; `DatasetError` when it is broken."""
    info: InfoJson = _load_json(InfoJson, ds / INFO_PATH)
    card: DatasetCard = _load_json(DatasetCard, ds / CARD_PATH)
    records = read_episodes(ds / EPISODES_PATH)
    _check_consistent(info, card, records)
    try:
        state_bits, action_bits = (
            dims_bitstring(card.valid_state_dims),
            dims_bitstring(card.valid_action_dims),
        )
    except ValueError as e:
        raise DatasetError(f"{CARD_PATH}: {e}") from None
    latents = _latent_files(ds)
    episodes = [
        CatalogEpisode(
            dataset=ds.name,
            episode_index=r.episode_index,
            source_episode_id=r.source_episode_id,
            source=card.source,
            embodiment=r.embodiment,
            category=card.embodiment_kind,
            quality_tier=r.quality_tier,
            tier_rule=r.tier_rule,
            tier_reason=r.tier_reason,
            has_action=r.has_action,
            length=r.length,
            seconds=r.length / info.fps,
            caption=r.caption,
            caption_source=r.caption_source,
            task=r.task_original,
            valid_state_dims=state_bits,
            valid_action_dims=action_bits,
            latents_present=_has_latents(info, latents, r.episode_index),
            path=_data_path(ds.name, info, r.episode_index),
        )
        for r in sorted(records, key=lambda r: r.episode_index)
    ]
    dataset = CatalogDataset(
        dataset=ds.name,
        path=ds.name,
        source=card.source,
        source_version=card.source_version,
        license=card.license,
        category=card.embodiment_kind,
        robot_type=info.robot_type,
        reference_frame=card.reference_frame,
        fps=info.fps,
        episodes=info.total_episodes,
        frames=info.total_frames,
        hours=info.total_frames / info.fps / 3600,
        rejects=card.rejects,
        cameras=info.video_keys(),
        valid_state_dims=state_bits,
        valid_action_dims=action_bits,
        latents=(ds / LATENTS_META_PATH).exists(),
        latent_episodes=sum(e.latents_present for e in episodes),
        fingerprint=fp,
    )
    return dataset, episodes


# --------------------------------------------------------------------------- the build


def _previous(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The catalog as last written, or empty frames when absent or written with another schema."""
    import polars as pl

    empty = pl.DataFrame(schema=episode_schema()), pl.DataFrame(schema=dataset_schema())
    ep_file, ds_file = root / EPISODES_FILE, root / DATASETS_FILE
    if not (ep_file.exists() and ds_file.exists()):
        return empty
    episodes, datasets = pl.read_parquet(ep_file), pl.read_parquet(ds_file)
    if dict(episodes.schema) != episode_schema() or dict(datasets.schema) != dataset_schema():
        return empty
    return episodes, datasets


def _write_atomic(df: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, statistics=True)


def build(root: Path, *, force: bool = False) -> BuildReport:
    """Index ROOT; re-read only datasets whose fingerprint changed (all of them with `force`)."""
    import polars as pl

    start = time.perf_counter()
    old_episodes, old_datasets = _previous(root)
    old_fp = dict(zip(old_datasets["dataset"], old_datasets["fingerprint"], strict=True))
    read, unchanged, broken = [], [], []
    new_datasets: list[CatalogDataset] = []
    new_episodes: list[CatalogEpisode] = []
    found = discover(root)
    for ds in found:
        fp = fingerprint(ds)
        if not force and old_fp.get(ds.name) == fp:
            unchanged.append(ds.name)
            continue
        try:
            dataset, episodes = read_dataset(ds, fp)
        except DatasetError as e:
            broken.append(BrokenDataset(dataset=ds.name, error=str(e)))
            continue
        read.append(ds.name)
        new_datasets.append(dataset)
        new_episodes += episodes
    removed = sorted(set(old_fp) - {ds.name for ds in found})
    keep = pl.col("dataset").is_in(unchanged)
    datasets = pl.concat([old_datasets.filter(keep), _frame(new_datasets, dataset_schema())]).sort("dataset")
    episodes = pl.concat([old_episodes.filter(keep), _frame(new_episodes, episode_schema())])
    episodes = episodes.sort("dataset", "episode_index")
    written = bool(read or removed or broken) or not (root / DATASETS_FILE).exists()
    if written:
        _write_atomic(
            episodes, root / EPISODES_FILE
        )  # episodes first: datasets.parquet holds the fingerprints
        _write_atomic(datasets, root / DATASETS_FILE)
    return BuildReport(
        root=root,
        read=read,
        unchanged=unchanged,
        removed=removed,
        broken=broken,
        datasets=datasets.height,
        episodes=episodes.height,
        hours=float(datasets["hours"].sum()),
        seconds=time.perf_counter() - start,
        written=written,
    )


def _frame(rows: list[BaseModel], schema: dict[str, Any]) -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame([r.model_dump() for r in rows], schema=schema)
