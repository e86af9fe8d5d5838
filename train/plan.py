"""The training plan: a mixture resolved through the catalog into the datasets, episodes and pools sampling
draws from, the deterministic held-out split, and the normalisation statistics of the training episodes.

- `DataConfig`: what the data side needs; `DataError`: why a mixture cannot give samples.
- `open_plan(cfg, normalizer, split, tasks)`: (datasets, episode table, pools, normaliser) of one split.
- `split_episodes` / `is_held_out`: the held-out split (a hash of dataset and episode, never Python's).
- `read_vectors`: one episode's raw state / action vectors and masks (Parquet).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from schemas.latents import LatentsMeta
from schemas.lerobot import INFO_PATH, InfoJson
from train.batch import ACTION_DIM, CHUNK, HISTORY_ACTIONS, TASK_IDS, TASK_NAMES
from train.normalize import Normalizer, NormalizerMode, VectorStats, masked_stats, merge_moments, merge_stats

if TYPE_CHECKING:
    import polars as pl

    from catalog.mixture import MixturePlan

POLICY_BIT = 1 << TASK_IDS["policy"]
FORECAST_BIT = 1 << TASK_IDS["visual_forecasting"]
STATE, ACTION = "observation.state", "action"
STATE_MASK, ACTION_MASK = "observation.state_mask", "action_mask"
Split = Literal["train", "eval"]
NormalizePer = Literal["mixture", "dataset"]


class DataError(ValueError):
    """The mixture, the catalog or a dataset cannot give training samples; the message says why."""


class DataConfig(BaseModel):
    """What `train/data.py` needs; `batch_size` is per rank (the global batch is world_size x batch_size)."""

    model_config = ConfigDict(extra="forbid")
    root: Path = Field(description="the datasets root whose catalog the mixture resolves against")
    mixture: Path = Field(description="the mixture YAML (`catalog mixture`)")
    batch_size: int = Field(32, gt=0)
    history_offset: int = Field(3, ge=0, description="frames back for the history latent (stride multiple)")
    future_offset: int = Field(6, gt=0, description="frames ahead for the future latent (stride multiple)")
    chunk: int = Field(CHUNK, gt=0, description="action chunk t .. t+chunk-1")
    history_actions: int = Field(HISTORY_ACTIONS, ge=0, description="actions t-H .. t-1")
    seed: int = Field(0, ge=0)
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0: in the main process)")
    pin_memory: bool = False
    holdout: float = Field(0.1, ge=0, lt=1, description="fraction of episodes held out for evaluation")
    camera: str | None = Field(None, description="latents camera; None: each dataset's first camera")
    images: bool = Field(False, description="put frame t (uint8, from the latents cache) into each batch")
    condition_cache: Path | None = Field(
        None, description="cached condition tokens (`train cache-condition`)"
    )
    std_floor: float = Field(1e-3, gt=0, description="lower bound of every normalisation std")
    normalizer: NormalizerMode = Field(
        "mean_std", description="state/action normalisation: mean_std (z-score) or quantile (q01/q99 -> -1/1)"
    )
    normalize_per: NormalizePer = Field(
        "mixture", description="state/action statistics merged over the mixture, or each dataset's own"
    )
    stats_rows: int = Field(100_000, gt=0, description="frames per dataset read for state/action statistics")
    episode_cache: int = Field(64, gt=0, description="open episodes kept per worker (LRU)")
    prefetch_factor: int = Field(2, gt=0, description="batches each worker prepares ahead")
    mp_context: Literal["spawn", "forkserver", "fork"] = Field(
        "spawn",
        description="worker start method; fork is unsafe after polars / pyarrow / Ray started threads",
    )


def is_held_out(dataset: str, episode_index: int, fraction: float) -> bool:
    """Deterministic (a blake2b hash of dataset and episode, not Python's salted `hash`)."""
    digest = hashlib.blake2b(f"{dataset}\0{episode_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


def split_episodes(episodes: pl.DataFrame, fraction: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(training, held out) rows of a frame with `dataset` and `episode_index` columns."""
    import polars as pl

    held = [
        is_held_out(d, int(e), fraction)
        for d, e in zip(episodes["dataset"], episodes["episode_index"], strict=True)
    ]
    mask = pl.Series("held", held, dtype=pl.Boolean)
    return episodes.filter(~mask), episodes.filter(mask)


def _split(rows: pl.DataFrame, holdout: float, split: Split) -> pl.DataFrame:
    if holdout <= 0:
        if split == "eval":
            raise DataError("holdout is 0: no episode is held out for evaluation")
        return rows
    train, held = split_episodes(rows, holdout)
    chosen = held if split == "eval" else train
    if chosen.is_empty():
        raise DataError(f"the {split} split (holdout {holdout}) has no episode")
    return chosen


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset of the plan: where it is and how its latents are laid out."""

    name: str
    path: Path
    chunks_size: int
    stride: int
    camera: str
    latents: LatentsMeta
    has_action: bool  # at least one matched episode has actions
    action_dims: np.ndarray  # bool [146]: the card's `valid_action_dims` (the embodiment's dimensions)
    embodiment: str  # meta/info.json `robot_type` (the source config's `embodiment`, e.g. "widowx")


def _dataset_info(
    name: str, path: Path, cfg: DataConfig, has_action: bool, dims: str, embodiment: str | None
) -> DatasetInfo:
    """`dims`: the catalog's `valid_action_dims` bit string of the dataset (from its card); `embodiment`: the
    catalog's `robot_type` (meta/info.json)."""
    if not embodiment:
        raise DataError(f"{name}: meta/info.json has no robot_type (the dataset's embodiment)")
    info = InfoJson.model_validate_json((path / INFO_PATH).read_text())
    meta = LatentsMeta.load(path)
    camera = cfg.camera or meta.cameras[0]
    if camera not in meta.cameras:
        raise DataError(f"{name}: no latents for camera {camera!r} (cached: {', '.join(meta.cameras)})")
    if cfg.images and not meta.images:
        raise DataError(
            f"{name}: its latents cache holds no frames, and the condition encoder needs them: run "
            "`ingest latents` again with `images: true` (pipelines.yaml latents section; the default)"
        )
    for field in ("future_offset", "history_offset"):
        if getattr(cfg, field) % meta.stride:
            raise DataError(
                f"{name}: {field} {getattr(cfg, field)} is not a multiple of the latents stride {meta.stride}"
            )
    action_dims = np.frombuffer(dims.encode(), dtype=np.uint8) == ord("1")
    return DatasetInfo(
        name, path, info.chunks_size, meta.stride, camera, meta, has_action, action_dims, embodiment
    )


def embodiment_ids(infos: Sequence[DatasetInfo], known: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    """(embodiment names, each dataset's id into them). `known`: the names a model was built with, where an
    embodiment outside them is an error; None: the plan's embodiments, sorted."""
    names = list(known) if known is not None else sorted({d.embodiment for d in infos})
    for d in infos:
        if d.embodiment not in names:
            raise DataError(
                f"{d.name}: embodiment {d.embodiment!r} was not seen when the model was built (known: "
                f"{', '.join(names)}): its per-embodiment action heads do not exist"
            )
    return names, np.array([names.index(d.embodiment) for d in infos], dtype=np.int64)


def _check_same_encoder(infos: Sequence[DatasetInfo]) -> None:
    first = infos[0].latents
    key = ("model_id", "revision", "config_sha256", "tokens", "n_tokens", "dim", "resize")
    for d in infos[1:]:
        diff = [k for k in key if getattr(d.latents, k) != getattr(first, k)]
        if diff:
            raise DataError(
                f"latents of {d.name} and {infos[0].name} come from different encoders or layouts "
                f"({', '.join(diff)} differ): re-run `ingest latents` with one encoder"
            )


def _column(table: Any, name: str, dtype: type) -> np.ndarray:
    values = table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=dtype).reshape(table.num_rows, -1)


def read_vectors(path: Path, has_action: bool, length: int | None = None) -> tuple[np.ndarray, ...]:
    """One episode's raw (state, state_mask, action, action_mask), [T, 146] each (pyarrow); an action-free
    episode gets all action masks False. `length`: the catalog's frame count, checked."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=[STATE, STATE_MASK, ACTION, ACTION_MASK, "frame_index"])
    frames = table.column("frame_index").to_numpy()
    if length is not None and (table.num_rows != length or not np.array_equal(frames, np.arange(length))):
        raise DataError(f"{path}: {table.num_rows} frames, the catalog says {length}: `catalog build` again")
    s_mask, a_mask = _column(table, STATE_MASK, bool), _column(table, ACTION_MASK, bool)
    if not has_action:
        a_mask = np.zeros_like(a_mask)
    return _column(table, STATE, np.float32), s_mask, _column(table, ACTION, np.float32), a_mask


def dataset_vector_stats(
    root: Path, paths: Sequence[str], lengths: np.ndarray, has_action: np.ndarray, max_rows: int
) -> dict[str, VectorStats]:
    """State and action statistics of one dataset's episodes (Parquet paths under `root`) over valid values:
    every k-th episode, k chosen so that about `max_rows` frames are read (every episode of a small
    dataset), counts scaled to all the episodes' frames. An episode without actions gives no action value."""
    step = max(1, -(-int(lengths.sum()) // max_rows))
    read = [read_vectors(root / paths[i], bool(has_action[i])) for i in range(0, len(paths), step)]
    out = {}
    for key, (v, m) in ((STATE, (0, 1)), (ACTION, (2, 3))):
        # No episode (all held out): no value, the dataset weighs nothing.
        values = np.concatenate([r[v] for r in read]) if read else np.zeros((0, ACTION_DIM), np.float32)
        masks = np.concatenate([r[m] for r in read]) if read else np.zeros((0, ACTION_DIM), bool)
        out[key] = masked_stats(values, masks, int(lengths.sum()))
    return out


def build_normalizer(infos: Sequence[DatasetInfo], rows: pl.DataFrame, cfg: DataConfig) -> Normalizer:
    """State / action statistics of the rows' episodes (read from their Parquet, masked values left out),
    merged over the plan's datasets; latent statistics merged from each dataset's `meta/latents.json`."""
    rows = rows.unique(["dataset", "episode_index"]).sort("dataset", "episode_index")
    per = []
    for d in infos:
        own = rows.filter(rows["dataset"] == d.name)
        per.append(dataset_vector_stats(cfg.root, own["path"].to_list(), own["length"].to_numpy(),
                                        own["has_action"].to_numpy(), cfg.stats_rows))  # fmt: skip
    state, action = (merge_stats([p[key] for p in per], cfg.std_floor) for key in (STATE, ACTION))
    moments = [d.latents.stats[d.camera] for d in infos]
    l_mean, l_std = merge_moments(
        np.array([m.mean for m in moments]),
        np.array([m.std for m in moments]),
        np.array([[m.count] for m in moments], dtype=np.float64),
        cfg.std_floor,
    )
    values = _vector_values(state, action)
    own = {}
    if cfg.normalize_per == "dataset":  # each dataset's own statistics; its absent dimensions: the merged
        merged = {STATE: state, ACTION: action}
        mine = lambda p, key: merge_stats([p[key], _absent(p[key], merged[key])], cfg.std_floor)  # noqa: E731
        own = {
            d.name: _vector_values(mine(p, STATE), mine(p, ACTION)) for d, p in zip(infos, per, strict=True)
        }
    return Normalizer(mode=cfg.normalizer, **values, latent_mean=l_mean.tolist(), latent_std=l_std.tolist(),
                      datasets=[d.name for d in infos], per_dataset=own)  # fmt: skip


def _vector_values(state: VectorStats, action: VectorStats) -> dict[str, list[float]]:
    """Normalizer fields (state_mean, ..., action_q99) of state and action statistics."""
    return {f"{kind}_{q}": getattr(s, q).tolist() for kind, s in (("state", state), ("action", action))
            for q in ("mean", "std", "q01", "q99")}  # fmt: skip


def _absent(own: VectorStats, merged: VectorStats) -> VectorStats:
    """`merged` weighted only where `own` has no valid value: merged with `own` by `merge_stats`, it fills
    the dimensions the dataset never has and leaves the others exactly the dataset's."""
    return VectorStats(np.where(own.count > 0, 0.0, 1.0), merged.mean, merged.std, merged.q01, merged.q99)


@dataclass
class Pool:
    """One (entry, dataset) pair: its weight and its usable episodes (rows of the table)."""

    entry: str
    dataset: str
    weight: float
    rows: np.ndarray  # int64 rows of `EpisodeTable`
    cum_length: np.ndarray  # cumulative episode lengths (episodes are drawn in proportion to length)


@dataclass
class EpisodeTable:
    """One row per (entry, episode) that can give samples (columns as arrays)."""

    dataset: np.ndarray  # int64 index into `TrainingData.datasets`
    episode_index: np.ndarray  # int64
    length: np.ndarray  # int64 frames
    has_action: np.ndarray  # bool
    tasks: np.ndarray  # int64 bit set of task ids the row may train (tier of its entry, actions)
    caption: list[str]
    data_path: list[str]  # the episode's Parquet, relative to ROOT


def _tier_tasks(plan: MixturePlan) -> dict[tuple[str, str], int]:
    """(entry, tier) -> bit set of the tasks the plan trains there."""
    out = {}
    for e in plan.entries:
        for t in e.tiers:
            out[(e.name, t.tier)] = sum(1 << TASK_IDS[name] for name in t.tasks)
    return out


def _matched_rows(cfg: DataConfig, plan: MixturePlan, mixture: Any) -> pl.DataFrame:
    """Every (entry, episode) the mixture matches, with what sampling needs, in a stable order."""
    import polars as pl

    from catalog.mixture import matched
    from catalog.query import scan

    extra = ["dataset", "episode_index", "length", "caption", "latents_present", "path"]
    rows = matched(cfg.root, mixture).join(scan(cfg.root).select(extra).collect(), on=extra[:2], how="left")
    order = {e.name: i for i, e in enumerate(plan.entries)}
    rows = rows.with_columns(pl.col("entry").replace_strict(order, return_dtype=pl.Int64).alias("entry_pos"))
    return rows.sort("entry_pos", "dataset", "episode_index")


def _task_bits(rows: pl.DataFrame, plan: MixturePlan, filter_bits: int) -> np.ndarray:
    tier = _tier_tasks(plan)
    bits = [
        tier.get((e, str(t)), 0) & (filter_bits if a else FORECAST_BIT & filter_bits)
        for e, t, a in zip(rows["entry"], rows["quality_tier"], rows["has_action"], strict=True)
    ]
    return np.array(bits, dtype=np.int64)


def n_cached(length: np.ndarray | int, stride: np.ndarray | int) -> np.ndarray:
    """Cached latent frames of an episode: frame_index % stride == 0, below its length."""
    return (np.asarray(length) - 1) // stride + 1


def n_with_future(length: np.ndarray | int, stride: np.ndarray | int, future: int) -> np.ndarray:
    """Cached frames t whose future t + future is inside the episode (they come first: t = 0, stride..)."""
    last = np.asarray(length) - 1 - future
    return np.where(last >= 0, last // stride + 1, 0)


def _with_latents(rows: pl.DataFrame) -> pl.DataFrame:
    import polars as pl

    if rows.is_empty():
        raise DataError("the mixture matches no episode of the catalog")
    kept = rows.filter(pl.col("latents_present"))
    if kept.is_empty():
        raise DataError("no matched episode has cached latents: run `ingest latents` and `catalog build`")
    if kept.height < rows.height:
        skipped = rows.height - kept.height
        warnings.warn(f"{skipped} matched episodes have no cached latents and are skipped", stacklevel=3)
    return kept


def _plan_datasets(cfg: DataConfig, rows: pl.DataFrame) -> list[DatasetInfo]:
    """The datasets the rows use, sorted by name, with whether any of their matched episodes has actions."""
    import polars as pl

    from catalog.query import scan

    cards = scan(cfg.root, "datasets").select("dataset", "path", "valid_action_dims", "robot_type").collect()
    paths = {n: (p, d, e) for n, p, d, e in cards.iter_rows()}
    acting = rows.group_by("dataset").agg(pl.col("has_action").any()).sort("dataset")
    infos = [
        _dataset_info(n, cfg.root / paths[n][0], cfg, bool(a), paths[n][1], paths[n][2])
        for n, a in acting.iter_rows()
    ]
    _check_same_encoder(infos)
    return infos


def _usable(
    rows: pl.DataFrame, plan: MixturePlan, infos: list[DatasetInfo], filter_bits: int, future: int
) -> pl.DataFrame:
    """Rows with their task bits and dataset number, keeping those that can give at least one sample: a
    task allowed, and a frame with a future latent when policy is not among the tasks."""
    import polars as pl

    number = {d.name: i for i, d in enumerate(infos)}
    stride = {d.name: d.stride for d in infos}
    ds = rows["dataset"].to_list()
    bits = _task_bits(rows, plan, filter_bits)
    lengths = rows["length"].to_numpy()
    futures = n_with_future(lengths, np.array([stride[d] for d in ds]), future)
    ok = (bits != 0) & (((bits & POLICY_BIT) != 0) | (futures > 0))
    out = rows.with_columns(
        pl.Series("tasks", bits, dtype=pl.Int64), pl.Series("ds", [number[d] for d in ds], dtype=pl.Int64)
    ).filter(pl.Series(ok))
    if out.is_empty():
        raise DataError("no matched episode can give a sample (tasks, actions or length)")
    return out


def _table(rows: pl.DataFrame) -> EpisodeTable:
    return EpisodeTable(
        dataset=rows["ds"].to_numpy().astype(np.int64),
        episode_index=rows["episode_index"].to_numpy().astype(np.int64),
        length=rows["length"].to_numpy().astype(np.int64),
        has_action=rows["has_action"].to_numpy().astype(bool),
        tasks=rows["tasks"].to_numpy().astype(np.int64),
        caption=rows["caption"].to_list(),
        data_path=rows["path"].to_list(),
    )


def _pools(rows: pl.DataFrame, plan: MixturePlan) -> list[Pool]:
    """One pool per (entry, dataset) left, in plan order, weights renormalised over them."""
    weights = {(e.name, d.dataset): d.weight for e in plan.entries for d in e.datasets}
    entries, datasets = rows["entry"].to_list(), rows["dataset"].to_list()
    lengths = rows["length"].to_numpy()
    keys = list(dict.fromkeys(zip(entries, datasets, strict=True)))
    pools = []
    for entry, dataset in keys:
        idx = np.array(
            [i for i, k in enumerate(zip(entries, datasets, strict=True)) if k == (entry, dataset)]
        )
        pools.append(Pool(entry, dataset, weights[(entry, dataset)], idx, np.cumsum(lengths[idx])))
    total = sum(p.weight for p in pools)
    for p in pools:
        p.weight /= total
    return pools


def open_plan(
    cfg: DataConfig, normalizer: Normalizer | None, split: Split, tasks: Sequence[str] = TASK_NAMES
) -> tuple[list[DatasetInfo], EpisodeTable, list[Pool], Normalizer]:
    """Resolve `cfg.mixture` against `cfg.root`'s catalog: the plan's datasets, the `split`'s usable episodes
    (for `tasks`), their pools, and `normalizer` or, when None, the statistics of the training episodes."""
    from catalog.mixture import load_mixture, resolve

    mixture = load_mixture(cfg.mixture)
    plan = resolve(cfg.root, mixture)
    rows = _with_latents(_matched_rows(cfg, plan, mixture))
    infos = _plan_datasets(cfg, rows)
    if normalizer is None:  # statistics of the training episodes only
        normalizer = build_normalizer(infos, _split(rows, cfg.holdout, "train"), cfg)
    rows = _usable(_split(rows, cfg.holdout, split), plan, infos, sum(1 << TASK_IDS[t] for t in tasks),
                   cfg.future_offset)  # fmt: skip
    return infos, _table(rows), _pools(rows, plan), normalizer
