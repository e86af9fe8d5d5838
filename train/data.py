"""Training samples: the plan's episodes (`train.plan`) sampled deterministically, built from the LeRobot
datasets (Parquet) and the latent cache (safetensors), normalised (`train.normalize`), batched by
DataLoader workers.

Never imports `ingest/`; no video is decoded (the latents must be cached; with `images`, frame t comes
from the same cache). See docs/TRAINING.md.

- `TrainingData.open(cfg)`: the plan of one split (`train.plan.open_plan`). `spec(step, rank, i)` is a pure
  function of (seed, step, rank, i); `batch(step, rank)` builds the `train.batch.Batch` of one step.
- `build_loader(cfg, rank, world_size, start_step)`: the batches of steps start_step, start_step + 1, ...
  from DataLoader workers, in step order.
- `build_eval_samples`: samples of the held-out episodes (`train.plan.split_episodes`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from schemas.latents import latents_path
from schemas.latents_reader import read_images, read_latents
from train.batch import TASK_IDS, TASK_NAMES, Batch, last_action
from train.condition_cache import read_condition
from train.normalize import Normalizer
from train.plan import (
    POLICY_BIT,
    DataConfig,
    DatasetInfo,
    EpisodeTable,
    Pool,
    Split,
    embodiment_ids,
    n_cached,
    n_with_future,
    open_plan,
    read_vectors,
)

EVAL_STREAM = 1 << 48  # the `step` slot of the evaluation stream: never reached by training


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
        infos, table, pools, normalizer = open_plan(cfg, normalizer, split, tasks)
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
