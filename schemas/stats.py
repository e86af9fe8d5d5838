"""The one merge of statistics: parts' (count, mean, variance) pooled with the parallel-variance formula.

Used for the dataset's `meta/stats.json` from its episodes (ingest/writer.py), the latents' channel moments
(ingest/latents.py) and the trainer's normaliser (train/data.py). The lowest layer, so all of them share it.
"""

from __future__ import annotations

import numpy as np


def merge_moments(
    counts: np.ndarray, means: np.ndarray, variances: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool P parts: `means` and `variances` are [P, ...], `counts` [P] or [P, ...] (a count per dimension).
    Returns (count, mean, variance) of the union, each [...]: count = sum (per dimension), mean =
    count-weighted mean, variance = count-weighted mean of (variance + (part mean - mean)^2) (population
    variance, Chan et al.). Where the total count is 0 the mean and variance are 0."""
    means = np.asarray(means, dtype=np.float64)
    variances = np.asarray(variances, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    counts = np.broadcast_to(counts.reshape(counts.shape + (1,) * (means.ndim - counts.ndim)), means.shape)
    total = counts.sum(0)
    safe = np.where(total > 0, total, 1.0)
    mean = (counts * means).sum(0) / safe
    variance = (counts * (variances + (means - mean) ** 2)).sum(0) / safe
    return total, mean, variance
