"""`catalog stats`: the EI-30K table (hours, episodes and tiers per category and source) and its plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from catalog.query import scan
from schemas.catalog import CATEGORIES, TIERS

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.axes import Axes


def _aggs() -> list[pl.Expr]:
    import polars as pl

    tiers = [(pl.col("quality_tier") == t).sum().cast(pl.Int64).alias(t) for t in TIERS]
    return [
        pl.col("dataset").n_unique().cast(pl.Int64).alias("datasets"),
        pl.len().cast(pl.Int64).alias("episodes"),
        (pl.col("seconds").sum() / 3600).alias("hours"),
        *tiers,
        pl.col("latents_present").sum().cast(pl.Int64).alias("with_latents"),
    ]


def by_source(root: Path) -> pl.DataFrame:
    """One row per (category, source): datasets, episodes, hours, episodes per tier, with latents."""
    import polars as pl

    df = scan(root).group_by("category", "source").agg(_aggs()).collect()
    return df.sort(
        pl.col("category").to_physical(), pl.col("hours"), "source", descending=[False, True, False]
    )


def by_category(root: Path) -> pl.DataFrame:
    """One row per category (all four, zeros where nothing is ingested) and a `total` row."""
    import polars as pl

    cats = pl.DataFrame({"category": list(CATEGORIES)})
    got = scan(root).group_by("category").agg(_aggs()).collect()
    got = got.with_columns(pl.col("category").cast(pl.String))
    df = cats.join(got, on="category", how="left").fill_null(0)
    total = df.select(pl.lit("total").alias("category"), pl.exclude("category").sum())
    total = total.with_columns(datasets=scan(root).select(pl.col("dataset").n_unique()).collect().item())
    return pl.concat([df, total.cast(df.schema)])


def plot(root: Path, out: Path) -> Path:
    """A PNG with two panels: hours per category stacked by source, and episodes per category by tier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    src = by_source(root)
    fig, (ax_h, ax_t) = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    _stacked(ax_h, src, "source", "hours")
    ax_h.set(title="hours per category, by source", xlabel="hours")
    cat = by_category(root)[:-1]  # without the total row
    left = [0.0] * len(CATEGORIES)
    for tier in TIERS:
        ax_t.barh(range(len(CATEGORIES)), cat[tier].to_list(), left=left, label=tier)
        left = [a + b for a, b in zip(left, cat[tier].to_list(), strict=True)]
    ax_t.set_yticks(range(len(CATEGORIES)), list(CATEGORIES))
    ax_t.set(title="episodes per category, by quality tier", xlabel="episodes")
    ax_t.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _stacked(ax: Axes, df: pl.DataFrame, stack: str, value: str) -> None:
    left = dict.fromkeys(CATEGORIES, 0.0)
    for row in df.iter_rows(named=True):
        cat = str(row["category"])
        ax.barh(CATEGORIES.index(cat), row[value], left=left[cat], label=row[stack])
        left[cat] += row[value]
    ax.set_yticks(range(len(CATEGORIES)), list(CATEGORIES))
    ax.set_ylim(-0.5, len(CATEGORIES) - 0.5)
    if df.height:
        ax.legend(fontsize=8)
