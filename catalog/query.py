"""Queries over the catalog: a selection (`catalog.where.parse_where`) compiled to a polars expression,
run on a lazy scan of `ROOT/catalog/episodes.parquet`, optionally grouped with counts and hours."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from catalog.where import compile_where, episode_columns, parse_where
from schemas.catalog import DATASETS_FILE, EPISODES_FILE

if TYPE_CHECKING:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

DEFAULT_COLUMNS = [
    "dataset",
    "episode_index",
    "category",
    "embodiment",
    "quality_tier",
    "has_action",
    "seconds",
    "latents_present",
    "caption",
]
Format = Literal["table", "csv", "json"]


class CatalogMissing(FileNotFoundError):
    """No catalog under ROOT: `catalog build ROOT` first."""


def scan(root: Path, table: Literal["episodes", "datasets"] = "episodes") -> pl.LazyFrame:
    """A lazy scan of the catalog's episodes (or datasets); filters and projections are pushed down."""
    import polars as pl

    path = root / (EPISODES_FILE if table == "episodes" else DATASETS_FILE)
    if not path.exists():
        raise CatalogMissing(f"no catalog at {path}: run `catalog build {root}` first")
    return pl.scan_parquet(path)


def select(root: Path, where: str) -> pl.LazyFrame:
    """The episodes matching `where` (lazy)."""
    return scan(root).filter(compile_where(parse_where(where)))


# --------------------------------------------------------------------------- queries


class Query(BaseModel):
    """`catalog query`'s inputs, validated before anything is read."""

    model_config = ConfigDict(extra="forbid")
    where: str = ""
    group_by: list[str] = Field(default_factory=list)
    columns: list[str] = Field(default_factory=lambda: list(DEFAULT_COLUMNS))
    limit: int | None = Field(None, gt=0)

    @field_validator("where")
    @classmethod
    def _parses(cls, v: str) -> str:
        parse_where(v)
        return v

    @field_validator("group_by", "columns")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in episode_columns()]
        if unknown:
            raise ValueError(f"unknown column {unknown[0]!r}; columns: {', '.join(episode_columns())}")
        return v


def summarize(lf: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
    """Episodes, datasets, frames and hours per group (one row of totals when `by` is empty)."""
    import polars as pl

    aggs = [
        pl.len().cast(pl.Int64).alias("episodes"),
        pl.col("dataset").n_unique().cast(pl.Int64).alias("datasets"),
        pl.col("length").sum().alias("frames"),
        (pl.col("seconds").sum() / 3600).alias("hours"),
    ]
    if not by:
        return lf.select(aggs)
    return lf.group_by(by).agg(aggs).sort(["hours", *by], descending=[True] + [False] * len(by))


def run_query(root: Path, q: Query) -> pl.DataFrame:
    """Matching episodes (their `columns`, at most `limit`), or their summary per `group_by`."""
    lf = select(root, q.where)
    if q.group_by:
        return summarize(lf, q.group_by).collect()
    lf = lf.select(q.columns).sort(
        *[c for c in ("dataset", "episode_index") if c in q.columns] or q.columns[:1]
    )
    return (lf.head(q.limit) if q.limit else lf).collect()


def totals(root: Path, where: str) -> dict[str, float]:
    """`episodes`, `datasets`, `frames`, `hours` of the selection."""
    return summarize(select(root, where), []).collect().row(0, named=True)


def render(df: pl.DataFrame, fmt: Format) -> str:
    """CSV or JSON (a list of row objects) text of a result."""
    if fmt == "csv":
        return df.write_csv()
    if fmt == "json":
        return df.write_json()
    raise ValueError(f"render: unsupported format {fmt!r} (tables are printed with rich)")


def console() -> Console:
    """A rich console; 160 columns wide when the output is not a terminal (pipes, files, tests)."""
    from rich.console import Console

    c = Console(soft_wrap=False)
    return c if c.is_terminal else Console(soft_wrap=False, width=160)


def rich_table(df: pl.DataFrame, title: str | None = None) -> Table:
    """A rich table of a polars frame; floats with 3 decimals (hours with 4)."""
    from rich.table import Table

    table = Table(title=title)
    for name, dtype in df.schema.items():
        table.add_column(name, justify="right" if dtype.is_numeric() else "left")
    for row in df.iter_rows():
        table.add_row(*[_cell(v) for v in row])
    return table


def _cell(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)
