"""schemas/stats.py: the one merge of (count, mean, variance) parts."""

from __future__ import annotations

import numpy as np

from schemas.stats import merge_moments


def test_merged_parts_equal_the_moments_of_all_values() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.normal(k, 1 + k, size=(n, 3)) for k, n in enumerate((5, 40, 1))]
    count, mean, var = merge_moments(
        [len(p) for p in parts], [p.mean(0) for p in parts], [p.var(0) for p in parts]
    )
    every = np.concatenate(parts)
    assert count.tolist() == [46.0] * 3
    np.testing.assert_allclose(mean, every.mean(0), rtol=1e-12)
    np.testing.assert_allclose(var, every.var(0), rtol=1e-12)


def test_counts_per_dimension_weigh_each_dimension_alone() -> None:
    """Dimension 1 is valid only in the second part: its moments are that part's; a dimension valid nowhere
    gets count 0, mean 0, variance 0."""
    counts = np.array([[4, 0, 0], [2, 3, 0]])
    means = np.array([[1.0, 99.0, 5.0], [4.0, 2.0, 7.0]])
    variances = np.array([[1.0, 99.0, 1.0], [4.0, 0.5, 1.0]])
    count, mean, var = merge_moments(counts, means, variances)
    assert count.tolist() == [6, 3, 0] and mean.tolist() == [2.0, 2.0, 0.0]
    assert var.tolist() == [(4 * (1 + 1) + 2 * (4 + 4)) / 6, 0.5, 0.0]
