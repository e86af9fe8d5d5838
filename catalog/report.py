"""`catalog report ROOT`: the EI-30K overview of a root as a static HTML page (`index.html` + PNGs, no
server): hours and episodes by category, source and tier, episode-length histograms per category, the
`catalog stats` plot, and each given mixture's effective weights (per entry and dataset, as `train launch`
samples them). Links each dataset's own report (`ingest report`) where it has one."""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from catalog import stats
from catalog.mixture import load_mixture, resolve
from catalog.query import scan
from schemas.catalog import CATEGORIES

if TYPE_CHECKING:
    import polars as pl

    from catalog.mixture import MixturePlan

STATS_PNG, LENGTHS_PNG = "ei30k.png", "lengths.png"
CSS = """body{font-family:system-ui,sans-serif;margin:1.2em;color:#222;max-width:1400px}
h2{border-bottom:1px solid #ddd}table{border-collapse:collapse;font-size:.85em;margin-bottom:1em}
td,th{border:1px solid #ddd;padding:2px 6px}th{background:#f3f3f3;text-align:left}img{max-width:100%}"""


def frame_table(df: pl.DataFrame, title: str = "") -> str:
    """A polars frame as an HTML table (floats to 4 significant digits)."""
    head = "".join(f"<th>{escape(c)}</th>" for c in df.columns)
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else escape(str(v))  # noqa: E731
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in df.iter_rows())
    caption = f"<caption>{escape(title)}</caption>" if title else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def by_tier(root: Path) -> pl.DataFrame:
    """Episodes and hours per category and quality tier."""
    import polars as pl

    agg = [pl.len().cast(pl.Int64).alias("episodes"), (pl.col("seconds").sum() / 3600).alias("hours")]
    df = scan(root).group_by("category", "quality_tier").agg(agg).collect()
    return df.sort(pl.col("category").to_physical(), pl.col("quality_tier").cast(pl.String))


def plot_lengths(root: Path, out: Path) -> Path:
    """One histogram of episode lengths (seconds) per category that has episodes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    df = scan(root).select(pl.col("category").cast(pl.String), "seconds").collect()
    present = [c for c in CATEGORIES if c in set(df["category"])]
    fig, axes = plt.subplots(
        1, max(len(present), 1), figsize=(3.2 * max(len(present), 1), 2.6), squeeze=False
    )
    for ax, cat in zip(axes[0], present, strict=False):
        ax.hist(df.filter(pl.col("category") == cat)["seconds"].to_numpy(), bins=30, color="#4c72b0")
        ax.set(title=cat, xlabel="episode length (s)", ylabel="episodes")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def mixture_html(plan: MixturePlan) -> str:
    """Per entry: episodes, hours, weight; per dataset of the entry: its share of the weight."""
    import polars as pl

    rows = [(e.name, d.dataset, d.episodes, d.hours, d.weight) for e in plan.entries for d in e.datasets]
    rows += [(e.name, "(nothing matched)", 0, 0.0, 0.0) for e in plan.entries if not e.datasets]
    df = pl.DataFrame(rows, schema=["entry", "dataset", "episodes", "hours", "weight"], orient="row")
    head = f"{plan.mixture}: {plan.stage}, weighting {plan.weighting}, temperature {plan.temperature:g}"
    notes = "".join(f"<li>{escape(n)}</li>" for n in plan.notes)
    return f"<h3>{escape(head)}</h3>{frame_table(df)}<ul>{notes}</ul>"


def _dataset_links(root: Path, out: Path) -> str:
    links = [
        f'<li><a href="{escape(Path(os.path.relpath(p, out)).as_posix())}">{escape(p.parts[-3])}</a></li>'
        for p in sorted(root.resolve().glob("*/report/index.html"))
        if (p.parents[1] / "meta/info.json").is_file()
    ]
    return f"<ul>{''.join(links)}</ul>" if links else "<p>none yet (`ingest report ROOT/NAME`)</p>"


def write_report(root: Path, out: Path, mixtures: list[Path]) -> Path:
    """Write `out/index.html` and its PNGs; a mixture file that does not parse raises its own error."""
    out.mkdir(parents=True, exist_ok=True)
    plans = [resolve(root, load_mixture(m)) for m in mixtures]
    stats.plot(root, out / STATS_PNG)
    plot_lengths(root, out / LENGTHS_PNG)
    cats = stats.by_category(root)
    total = int(cats.filter(cats["category"] == "total")["episodes"][0])
    body = (
        f"<h1>Catalog of {escape(str(root))}</h1>"
        f'<p><span id="episode-count" data-count="{total}">{total} episodes</span></p>'
        f'<h2>Hours, episodes and tiers</h2><img src="{STATS_PNG}" alt="hours and tiers per category">'
        f"{frame_table(cats, 'per category')}{frame_table(stats.by_source(root), 'per category and source')}"
        f"{frame_table(by_tier(root), 'per category and tier')}"
        f'<h2>Episode lengths</h2><img src="{LENGTHS_PNG}" alt="episode length histograms">'
        f"<h2>Mixtures</h2>{''.join(mixture_html(p) for p in plans) or '<p>none given (--mixture)</p>'}"
        f"<h2>Dataset reports</h2>{_dataset_links(root, out.resolve())}"
    )
    head = f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>catalog</title><style>{CSS}'
    (out / "index.html").write_text(f"{head}</style></head><body>{body}</body></html>\n")
    return out / "index.html"
