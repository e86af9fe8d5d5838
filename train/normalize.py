"""State / action / latent normalisation: per-dimension statistics over valid values (`masked_stats`), the one
merge of per-dataset statistics (`merge_stats`, `merge_moments`), and the `Normalizer` the data side and
the model's outputs share (numpy or torch; saved as JSON in the run and in checkpoints). No I/O but the
normaliser's own JSON; what is read to compute the statistics is `train.plan.build_normalizer`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from schemas.atomic import write_text_atomic
from schemas.stats import merge_moments as pool_moments

NormalizerMode = Literal["mean_std", "quantile"]
Array = TypeVar("Array", np.ndarray, torch.Tensor)


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
        write_text_atomic(path, self.model_dump_json(indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> Normalizer:
        return cls.model_validate_json(path.read_text())


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
