"""Training data: a mixture resolved through the catalog, sampled deterministically, built from the LeRobot
datasets (Parquet) and the latent cache (safetensors), normalised, batched by DataLoader workers.

Never imports `ingest/`; no video is decoded (the latents must be cached; with `images`, frame t comes
from the same cache). See docs/TRAINING.md.

- `TrainingData.open(cfg)`: resolve the mixture, list the usable episodes of every (entry, dataset) pair,
  merge the normalisation statistics. `spec(step, rank, i)` is a pure function of
  (seed, step, rank, i); `batch(step, rank)` builds the `train.batch.Batch` of one step.
- `build_loader(cfg, rank, world_size, start_step)`: the batches of steps start_step, start_step + 1, ...
  from DataLoader workers, in step order.
- `split_episodes` / `is_held_out`: the deterministic held-out split; `build_eval_samples` draws from it.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from schemas.latents import LatentsMeta, latents_path
from schemas.latents_reader import read_images, read_latents
from schemas.lerobot import INFO_PATH, InfoJson
from schemas.stats import merge_moments as pool_moments
from train.batch import ACTION_DIM, CHUNK, HISTORY_ACTIONS, TASK_IDS, TASK_NAMES, Batch, last_action
from train.condition_cache import read_condition

if TYPE_CHECKING:
    import polars as pl

    from catalog.mixture import MixturePlan

POLICY_BIT = 1 << TASK_IDS["policy"]
FORECAST_BIT = 1 << TASK_IDS["visual_forecasting"]
EVAL_STREAM = 1 << 48  # the `step` slot of the evaluation stream: never reached by training
STATE, ACTION = "observation.state", "action"
STATE_MASK, ACTION_MASK = "observation.state_mask", "action_mask"
Split = Literal["train", "eval"]
NormalizerMode = Literal["mean_std", "quantile"]
NormalizePer = Literal["mixture", "dataset"]
Array = TypeVar("Array", np.ndarray, torch.Tensor)


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


# --------------------------------------------------------------------------- the held-out split


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


# --------------------------------------------------------------------------- normalisation


def merge_moments(
    means: np.ndarray, stds: np.ndarray, weights: np.ndarray, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted merge of per-part moments ([P, D] each) with the parallel-variance formula; a dimension
    without weight gets mean 0, std 1; every std is floored (arithmetic: `schemas.stats.merge_moments`)."""
    total, mean, var = pool_moments(weights, means, stds**2)
    std = np.where(total > 0, np.sqrt(np.maximum(var, 0.0)), 1.0)
    return np.where(total > 0, mean, 0.0), np.maximum(std, floor)


def _vec(v: np.ndarray, like: Array) -> Array:
    if isinstance(like, torch.Tensor):
        dtype = like.dtype if like.is_floating_point() else torch.float32
        return torch.as_tensor(v, dtype=dtype, device=like.device)
    return v


def _float(x: Array) -> Array:
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.float()
    return np.asarray(x, dtype=np.float32)


def _masked(y: Array, mask: Array | None) -> Array:
    if mask is None:
        return y
    if isinstance(y, torch.Tensor):
        return torch.where(mask, y, torch.zeros((), dtype=y.dtype, device=y.device))
    return np.where(mask, y, np.float32(0.0)).astype(np.float32)


class Normalizer(BaseModel):
    """Per-dimension statistics of state and action (146 each) and per-channel mean/std of the latents.

    `mode` picks how state and action are normalised: "mean_std" maps x to (x - mean) / std; "quantile" maps
    q01 to -1 and q99 to 1 (openpi / GR00T), no clipping. Latents always use mean/std. Every statistic is
    over valid (mask True) values only. Works on numpy arrays and torch tensors (the last axis is the
    dimension / channel). A value whose mask is False normalises to 0. Saved as JSON in the run dir and in
    checkpoints; a file without `mode` (written before the choice existed) is "mean_std"."""

    model_config = ConfigDict(extra="forbid")
    mode: NormalizerMode = "mean_std"
    state_mean: list[float]
    state_std: list[float]
    action_mean: list[float]
    action_std: list[float]
    latent_mean: list[float]
    latent_std: list[float]
    state_q01: list[float] = Field(default_factory=list)
    state_q99: list[float] = Field(default_factory=list)
    action_q01: list[float] = Field(default_factory=list)
    action_q99: list[float] = Field(default_factory=list)
    datasets: list[str] = Field(default_factory=list, description="the datasets the statistics merge")
    # `--normalize-per dataset`: each dataset's own state / action statistics (keys as the fields above,
    # e.g. "action_mean"; a dimension the dataset never has keeps the merged value). Empty: merged only.
    per_dataset: dict[str, dict[str, list[float]]] = Field(default_factory=dict)
    _arrays: dict[str, np.ndarray] = PrivateAttr(default_factory=dict)
    _views: dict[str, Normalizer] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _quantiles_present(self) -> Normalizer:
        if self.mode == "quantile":
            for kind in ("state", "action"):
                width = len(getattr(self, f"{kind}_mean"))
                if len(getattr(self, f"{kind}_q01")) != width or len(getattr(self, f"{kind}_q99")) != width:
                    raise ValueError(f"quantile normalizer: {kind}_q01 / {kind}_q99 must have width {width}")
        return self

    def __eq__(self, other: object) -> bool:  # the array cache is not part of the value
        return isinstance(other, Normalizer) and self.model_dump() == other.model_dump()

    def _a(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            self._arrays[name] = np.asarray(getattr(self, name), dtype=np.float32)
        return self._arrays[name]

    def _affine(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(offset, scale) with normalised = (x - offset) / scale."""
        if self.mode == "quantile" and kind != "latent":
            key = f"{kind}_affine"
            if key not in self._arrays:
                lo, hi = self._a(f"{kind}_q01"), self._a(f"{kind}_q99")
                self._arrays[key] = np.stack([(hi + lo) / 2, (hi - lo) / 2])
            return self._arrays[key][0], self._arrays[key][1]
        return self._a(f"{kind}_mean"), self._a(f"{kind}_std")

    def _forward(self, x: Array, kind: str, mask: Array | None) -> Array:
        x = _float(x)
        offset, scale = self._affine(kind)
        return _masked((x - _vec(offset, x)) / _vec(scale, x), mask)

    def _inverse(self, y: Array, kind: str, mask: Array | None) -> Array:
        y = _float(y)
        offset, scale = self._affine(kind)
        return _masked(y * _vec(scale, y) + _vec(offset, y), mask)

    def normalize_state(self, x: Array, mask: Array | None = None) -> Array:
        return self._forward(x, "state", mask)

    def unnormalize_state(self, x: Array, mask: Array | None = None) -> Array:
        return self._inverse(x, "state", mask)

    def normalize_actions(self, x: Array, mask: Array | None = None) -> Array:
        return self._forward(x, "action", mask)

    def unnormalize_actions(self, x: Array, mask: Array | None = None) -> Array:
        return self._inverse(x, "action", mask)

    def normalize_latents(self, x: Array) -> Array:
        return self._forward(x, "latent", None)

    def unnormalize_latents(self, x: Array) -> Array:
        return self._inverse(x, "latent", None)

    def for_dataset(self, name: str) -> Normalizer:
        """The normaliser of one dataset's samples: its own statistics under `--normalize-per dataset`, else
        (or for a dataset the statistics do not know) the merged ones."""
        if name not in self.per_dataset:
            return self
        if name not in self._views:
            own = {**self.model_dump(), **self.per_dataset[name], "per_dataset": {}}  # fresh array cache
            self._views[name] = Normalizer.model_validate(own)
        return self._views[name]

    def normalize_actions_for(self, datasets: Sequence[str], x: Array, mask: Array | None = None) -> Array:
        """`normalize_actions` of a batch [B, ...] whose sample i is of `datasets[i]`."""
        return self._per_sample("normalize_actions", datasets, x, mask)

    def unnormalize_actions_for(self, datasets: Sequence[str], x: Array, mask: Array | None = None) -> Array:
        return self._per_sample("unnormalize_actions", datasets, x, mask)

    def unnormalize_state_for(self, datasets: Sequence[str], x: Array, mask: Array | None = None) -> Array:
        return self._per_sample("unnormalize_state", datasets, x, mask)

    def _per_sample(self, method: str, datasets: Sequence[str], x: Array, mask: Array | None) -> Array:
        if not self.per_dataset:
            return getattr(self, method)(x, mask)
        out = x.clone().float() if isinstance(x, torch.Tensor) else np.array(x, dtype=np.float32)
        for name in sorted(set(datasets)):
            rows = [i for i, d in enumerate(datasets) if d == name]
            part = None if mask is None else mask[rows]
            out[rows] = getattr(self.for_dataset(name), method)(x[rows], part)
        return out

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.model_dump_json(indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> Normalizer:
        return cls.model_validate_json(path.read_text())


# --------------------------------------------------------------------------- datasets of the plan


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


@dataclass
class VectorStats:
    """A vector feature's statistics over its valid values, per dimension ([D] each). `count` is the number of
    frames where the dimension is valid: the weight of these statistics in a merge."""

    count: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    q01: np.ndarray
    q99: np.ndarray


def masked_stats(values: np.ndarray, mask: np.ndarray, frames: int | None = None) -> VectorStats:
    """Statistics of [T, D] values over the entries whose mask is True (and that are finite): a masked
    entry never counts, whatever the file holds there. `frames`: the frame count `values` were sampled from
    (the counts are scaled to it). A dimension without a valid value gets count 0 and zeros."""
    x = np.where(mask & np.isfinite(values), np.asarray(values, dtype=np.float64), np.nan)
    n = (~np.isnan(x)).sum(0).astype(np.float64)
    if not n.any():
        zero = np.zeros(x.shape[1])
        return VectorStats(zero, zero, zero, zero, zero)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(x, 0), np.nanstd(x, 0)
        q01, q99 = np.nanquantile(x, [0.01, 0.99], axis=0)
    scale = frames / len(x) if frames else 1.0
    return VectorStats(n * scale, *(np.nan_to_num(v) for v in (mean, std, q01, q99)))


def merge_stats(parts: Sequence[VectorStats], floor: float) -> VectorStats:
    """The one merge of per-dataset statistics, each dimension weighted by the frames where it is valid:
    mean / std by the parallel-variance formula (`merge_moments`), q01 / q99 as the weighted mean of the
    datasets' quantiles (exact for one dataset; not the quantile of the pooled frames). A dimension valid
    nowhere gets mean 0, std 1, q01 -1, q99 1; every std is floored, and q99 - q01 is at least 2 floor."""
    w = np.stack([p.count for p in parts])
    mean, std = merge_moments(np.stack([p.mean for p in parts]), np.stack([p.std for p in parts]), w, floor)
    total = w.sum(0)
    safe = np.where(total > 0, total, 1.0)
    lo, hi = ((w * np.stack([getattr(p, q) for p in parts])).sum(0) / safe for q in ("q01", "q99"))
    center, half = (hi + lo) / 2, np.maximum((hi - lo) / 2, floor)
    q01, q99 = np.where(total > 0, center - half, -1.0), np.where(total > 0, center + half, 1.0)
    return VectorStats(total, mean, std, q01, q99)


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


# --------------------------------------------------------------------------- the episode table


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


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class SampleSpec:
    """What one sample is: a pure function of (seed, step, rank, i)."""

    pool: int
    row: int
    dataset: str
    episode_index: int
    frame_index: int
    task: int
    future_valid: bool


@dataclass
class Sample:
    """One sample, normalised (numpy); `collate` stacks them into a `Batch`."""

    task: int
    obs_latents: np.ndarray  # float32 [2, N, L]
    future_latents: np.ndarray  # float32 [N, L]
    future_valid: bool
    state: np.ndarray  # float32 [A]
    state_mask: np.ndarray  # bool [A]
    history_actions: np.ndarray  # float32 [H, A]
    history_mask: np.ndarray  # bool [H, A]
    actions: np.ndarray  # float32 [C, A]
    action_mask: np.ndarray  # bool [C, A]
    action_dims: np.ndarray  # bool [A]: the dataset card's action dimensions (none without actions)
    last_action: np.ndarray  # float32 [A]: `train.batch.last_action` of frame t
    embodiment: int  # id into `TrainingData.embodiments`
    caption: str
    dataset: str
    episode_index: int
    frame_index: int
    images: np.ndarray | None = None  # uint8 [V, H, W, 3]: frame t (`DataConfig.images`)
    cond: np.ndarray | None = None  # float16 [Lc, dim]: cached condition tokens of frame t


@dataclass
class EpisodeArrays:
    """One episode's normalised vectors (0 where masked) and masks, [T, 146] each."""

    state: np.ndarray
    state_mask: np.ndarray
    action: np.ndarray
    action_mask: np.ndarray


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


def read_episode(path: Path, length: int, has_action: bool, norm: Normalizer) -> EpisodeArrays:
    """Read one episode's Parquet and normalise it; an action-free episode gets no actions."""
    state, s_mask, action, a_mask = read_vectors(path, has_action, length)
    return EpisodeArrays(norm.normalize_state(state, s_mask), s_mask, norm.normalize_actions(action, a_mask),
                         a_mask)  # fmt: skip


def window(values: np.ndarray, mask: np.ndarray, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows start .. start+n-1; rows outside the episode are zeros with mask False."""
    idx = np.arange(start, start + n)
    inside = (idx >= 0) & (idx < len(values))
    out = np.zeros((n, values.shape[1]), dtype=np.float32)
    out_mask = np.zeros((n, values.shape[1]), dtype=bool)
    out[inside], out_mask[inside] = values[idx[inside]], mask[idx[inside]]
    return out, out_mask


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack samples into a `Batch` (order kept)."""

    def stack(name: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([getattr(s, name) for s in samples]))

    return Batch(
        task=torch.tensor([s.task for s in samples], dtype=torch.int64),
        obs_latents=stack("obs_latents"),
        future_latents=stack("future_latents"),
        future_valid=torch.tensor([s.future_valid for s in samples], dtype=torch.bool),
        state=stack("state"),
        state_mask=stack("state_mask"),
        history_actions=stack("history_actions"),
        history_mask=stack("history_mask"),
        actions=stack("actions"),
        action_mask=stack("action_mask"),
        action_dims=stack("action_dims"),
        last_action=stack("last_action"),
        embodiment=torch.tensor([s.embodiment for s in samples], dtype=torch.int64),
        captions=[s.caption for s in samples],
        dataset=[s.dataset for s in samples],
        episode_index=torch.tensor([s.episode_index for s in samples], dtype=torch.int64),
        frame_index=torch.tensor([s.frame_index for s in samples], dtype=torch.int64),
        images=None if samples[0].images is None else stack("images"),
        **_cond_tokens([s.cond for s in samples]),
    )


def _cond_tokens(items: list[np.ndarray | None]) -> dict[str, torch.Tensor]:
    """Cached condition tokens -> right-padded `cond_tokens` float32 [B, L, dim] and `cond_mask`."""
    if items[0] is None:
        return {}
    length = max(len(x) for x in items)
    tokens = np.zeros((len(items), length, items[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(items), length), dtype=bool)
    for i, x in enumerate(items):
        tokens[i, : len(x)], mask[i, : len(x)] = x, True
    return {"cond_tokens": torch.from_numpy(tokens), "cond_mask": torch.from_numpy(mask)}


def _pick(cum: np.ndarray, u: float) -> int:
    """Index i with probability (cum[i] - cum[i-1]) / cum[-1], for u uniform in [0, 1)."""
    return int(min(np.searchsorted(cum, u * cum[-1], side="right"), len(cum) - 1))


def _bits(mask: int) -> list[int]:
    return [i for i in range(len(TASK_NAMES)) if mask >> i & 1]


# --------------------------------------------------------------------------- the training data


class TrainingData:
    """The resolved mixture: pools, episodes, datasets and the normaliser. Picklable (workers get a copy,
    each with its own episode cache)."""

    def __init__(
        self,
        cfg: DataConfig,
        datasets: list[DatasetInfo],
        table: EpisodeTable,
        pools: list[Pool],
        normalizer: Normalizer,
        stream: int | None = None,
        embodiments: Sequence[str] | None = None,
    ) -> None:
        self.cfg, self.datasets, self.table, self.pools = cfg, datasets, table, pools
        # The embodiment names the batches' `embodiment` ids index (a per-embodiment model's, when given).
        self.embodiments, self._embodiment = embodiment_ids(datasets, embodiments)
        self.normalizer = normalizer
        self.stream = stream  # None: training (rng per step); an int: the evaluation stream
        self.pool_cum = np.cumsum([p.weight for p in pools])
        self._stride = np.array([d.stride for d in datasets], dtype=np.int64)
        self._cache: OrderedDict[int, EpisodeArrays] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": OrderedDict()}

    # ----------------------------------------------------------------- building

    @classmethod
    def open(
        cls,
        cfg: DataConfig,
        normalizer: Normalizer | None = None,
        *,
        split: Split = "train",
        tasks: Sequence[str] = TASK_NAMES,
        embodiments: Sequence[str] | None = None,
    ) -> TrainingData:
        """Resolve `cfg.mixture` against `cfg.root`'s catalog. `split="eval"` keeps the held-out episodes
        (and only `tasks`); `normalizer` (e.g. from a checkpoint) replaces the merged statistics;
        `embodiments` (a per-embodiment model's) fixes the embodiment ids: a dataset of another embodiment
        is a `DataError`."""
        from catalog.mixture import load_mixture, resolve

        mixture = load_mixture(cfg.mixture)
        plan = resolve(cfg.root, mixture)
        rows = _with_latents(_matched_rows(cfg, plan, mixture))
        infos = _plan_datasets(cfg, rows)
        if normalizer is None:  # statistics of the training episodes only
            normalizer = build_normalizer(infos, _split(rows, cfg.holdout, "train"), cfg)
        rows = _split(rows, cfg.holdout, split)
        bits = sum(1 << TASK_IDS[t] for t in tasks)
        rows = _usable(rows, plan, infos, bits, cfg.future_offset)
        table = _table(rows)
        pools = _pools(rows, plan)
        stream = None if split == "train" else EVAL_STREAM
        return cls(cfg, infos, table, pools, normalizer, stream, embodiments)

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(tokens, channels) of the cached latents."""
        meta = self.datasets[0].latents
        return meta.n_tokens, meta.dim

    def describe(self) -> list[str]:
        """One line per pool: entry, dataset, weight, episodes."""
        return [
            f"{p.entry}/{p.dataset}: weight {p.weight:.4f}, {len(p.rows)} episodes, "
            f"{int(p.cum_length[-1])} frames"
            for p in self.pools
        ]

    # ----------------------------------------------------------------- sampling

    def rng(self, step: int, rank: int, i: int) -> np.random.Generator:
        slot = step if self.stream is None else self.stream
        return np.random.default_rng([self.cfg.seed, slot, rank, i])

    def spec(self, step: int, rank: int, i: int) -> SampleSpec:
        """Sample i of `step` on `rank`: pool by weight, episode by length, a cached frame, a task."""
        rng = self.rng(step, rank, i)
        p = _pick(self.pool_cum, rng.random())
        pool = self.pools[p]
        row = int(pool.rows[_pick(pool.cum_length, rng.random())])
        d, length, bits = self.table.dataset[row], int(self.table.length[row]), int(self.table.tasks[row])
        stride = int(self._stride[d])
        with_future = int(n_with_future(length, stride, self.cfg.future_offset))
        k = int(rng.integers(int(n_cached(length, stride)) if bits & POLICY_BIT else with_future))
        future = k < with_future
        feasible = _bits(bits if future else bits & POLICY_BIT)
        task = feasible[int(rng.integers(len(feasible)))]
        return SampleSpec(
            p, row, self.datasets[d].name, int(self.table.episode_index[row]), k * stride, task, future
        )

    def batch(self, step: int, rank: int = 0) -> Batch:
        """Rank r's share of the global batch of `step`: global samples r*B .. r*B+B-1 (B = per-rank batch),
        so W ranks together see exactly the batch one process of batch W*B would see."""
        size = self.cfg.batch_size
        return collate([self.sample(self.spec(step, 0, rank * size + i)) for i in range(size)])

    # ----------------------------------------------------------------- reading

    def episode(self, row: int) -> EpisodeArrays:
        if row in self._cache:
            self._cache.move_to_end(row)
            return self._cache[row]
        t = self.table
        path = self.cfg.root / t.data_path[row]
        norm = self.normalizer.for_dataset(self.datasets[int(t.dataset[row])].name)
        arrays = read_episode(path, int(t.length[row]), bool(t.has_action[row]), norm)
        self._cache[row] = arrays
        while len(self._cache) > self.cfg.episode_cache:
            self._cache.popitem(last=False)
        return arrays

    def latents(self, spec: SampleSpec) -> tuple[np.ndarray, np.ndarray]:
        """(obs [2, N, L], future [N, L]) normalised; the future is zeros when it does not exist."""
        info = self.datasets[int(self.table.dataset[spec.row])]
        t, cfg = spec.frame_index, self.cfg
        frames = [max(t - cfg.history_offset, 0), t] + ([t + cfg.future_offset] if spec.future_valid else [])
        path = info.path / latents_path(spec.episode_index, info.camera, info.chunks_size)
        lat = self.normalizer.normalize_latents(read_latents(path, frames))
        future = lat[2] if spec.future_valid else np.zeros_like(lat[0])
        return lat[:2], future

    def cached_condition(self, spec: SampleSpec) -> np.ndarray | None:
        """float16 [Lc, dim]: frame t's condition tokens from `cfg.condition_cache`, or None."""
        if self.cfg.condition_cache is None:
            return None
        return read_condition(self.cfg.condition_cache, spec.dataset, spec.episode_index, spec.frame_index)

    def images(self, spec: SampleSpec) -> np.ndarray | None:
        """uint8 [1, H, W, 3]: frame t as cached beside its latent (one camera), or None (`cfg.images` off).
        Only frame t: never the history or the future frame."""
        if not self.cfg.images:
            return None
        info = self.datasets[int(self.table.dataset[spec.row])]
        path = info.path / latents_path(spec.episode_index, info.camera, info.chunks_size)
        return read_images(path, [spec.frame_index])

    def sample(self, spec: SampleSpec) -> Sample:
        ep, t, cfg = self.episode(spec.row), spec.frame_index, self.cfg
        actions, action_mask = window(ep.action, ep.action_mask, t, cfg.chunk)
        history, history_mask = window(
            ep.action, ep.action_mask, t - cfg.history_actions, cfg.history_actions
        )
        obs, future = self.latents(spec)
        has_action = bool(self.table.has_action[spec.row])
        d = int(self.table.dataset[spec.row])
        dims = self.datasets[d].action_dims & has_action
        state, state_mask = ep.state[t].copy(), ep.state_mask[t].copy()
        norm = self.normalizer.for_dataset(self.datasets[d].name)
        last = last_action(history[-1], history_mask[-1], state, state_mask, dims, norm)
        return Sample(
            task=spec.task,
            obs_latents=obs,
            future_latents=future,
            future_valid=spec.future_valid,
            state=state,
            state_mask=state_mask,
            history_actions=history,
            history_mask=history_mask,
            actions=actions,
            action_mask=action_mask,
            action_dims=dims,
            last_action=last,
            embodiment=int(self._embodiment[d]),
            caption=self.table.caption[spec.row],
            dataset=spec.dataset,
            episode_index=spec.episode_index,
            frame_index=t,
            images=self.images(spec),
            cond=self.cached_condition(spec),
        )

    def sample_at(self, dataset: str, episode_index: int, frame_index: int, task: str = "policy") -> Sample:
        """The sample of one given frame (for tests and debugging); the frame must be cached."""
        rows = np.flatnonzero(self.table.episode_index == episode_index)
        rows = [int(r) for r in rows if self.datasets[int(self.table.dataset[r])].name == dataset]
        if not rows:
            raise KeyError(f"{dataset} episode {episode_index} is not in this data")
        length = int(self.table.length[rows[0]])
        future = frame_index + self.cfg.future_offset < length
        spec = SampleSpec(-1, rows[0], dataset, episode_index, frame_index, TASK_IDS[task], future)
        return self.sample(spec)


# --------------------------------------------------------------------------- loaders


class StepStream(IterableDataset):
    """Yields the batch of step s for s = start_step, start_step + 1, ...; with W workers, worker w makes
    the steps start_step + w + k W, so the DataLoader's round-robin returns them in step order."""

    def __init__(self, data: TrainingData, rank: int, start_step: int) -> None:
        self.data, self.rank, self.start_step = data, rank, start_step

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        step = self.start_step + worker
        while True:
            yield self.data.batch(step, self.rank)
            step += workers


def build_loader(
    cfg: DataConfig,
    rank: int = 0,
    world_size: int = 1,
    start_step: int = 0,
    *,
    data: TrainingData | None = None,
) -> DataLoader:
    """An endless iterable of `Batch`, one per step from `start_step`; `data` avoids resolving twice."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    data = data or TrainingData.open(cfg)
    extra: dict[str, Any] = {}
    if cfg.num_workers:
        extra = {"multiprocessing_context": cfg.mp_context, "prefetch_factor": cfg.prefetch_factor}
    return DataLoader(
        StepStream(data, rank, start_step),
        batch_size=None,
        num_workers=cfg.num_workers,
        pin_memory=cfg.pin_memory,
        **extra,
    )


def build_eval_samples(
    cfg: DataConfig,
    n: int,
    *,
    normalizer: Normalizer | None = None,
    tasks: Sequence[str] = ("policy", "forward_dynamics"),
    data: TrainingData | None = None,
    embodiments: Sequence[str] | None = None,
) -> list[Batch]:
    """n samples of the held-out episodes, each with a task of `tasks` its tier allows, in batches of
    `cfg.batch_size`; the same for every call with the same seed. `data`: the held-out data already opened
    with the same arguments (`TrainingData.open(cfg, normalizer, split="eval", tasks=tasks,
    embodiments=embodiments)`); `embodiments`: see `TrainingData.open`."""
    data = data or TrainingData.open(cfg, normalizer, split="eval", tasks=tasks, embodiments=embodiments)
    specs = [data.spec(0, 0, i) for i in range(n)]
    size = cfg.batch_size
    return [collate([data.sample(s) for s in specs[a : a + size]]) for a in range(0, n, size)]
