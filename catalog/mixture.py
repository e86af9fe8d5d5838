"""Mixtures: build one from selections, load / write the YAML file, resolve it against a catalog.

Resolving gives, per entry, the matched episodes and hours per dataset and tier, and the sampling
weight of every (entry, dataset) pair; the weights of the whole mixture sum to 1:

- `hours`: w(entry, dataset) ~ hours ** (1 / temperature)  (temperature 1 = proportional to hours;
  larger temperatures flatten towards uniform);
- `uniform`: every (entry, dataset) pair that matched something weighs the same;
- `explicit`: entry e gets weight_e / sum of the weights of the entries that matched something, split
  among its datasets ~ hours ** (1 / temperature).

Within one (entry, dataset) pair the trainer samples frames uniformly (episodes in proportion to their
length). An entry uses only the tiers its `tasks` name; each tier trains the tasks listed for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from catalog.mixture_file import Mixture, MixtureEntry, MixtureError, mixture_error_text
from catalog.query import scan
from catalog.where import compile_where, parse_where
from schemas.catalog import TIER_TASKS, TIERS

if TYPE_CHECKING:
    import polars as pl
    from rich.table import Table

ACTION_TASKS = ("policy", "forward_dynamics", "inverse_dynamics")


class MixtureFileError(ValueError):
    """A mixture file that does not load; the message has one line per problem (entry and field)."""


def load_mixture(path: Path) -> Mixture:
    """Read and validate a mixture YAML file."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise MixtureFileError(f"{path}: {e}") from None
    try:
        return Mixture.model_validate(raw)
    except ValidationError as e:
        raise MixtureFileError(f"{path}:\n{mixture_error_text(e)}") from None


def mixture_yaml(m: Mixture) -> str:
    import yaml

    data = m.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)


def write_mixture(m: Mixture, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(mixture_yaml(m))
    return path


# --------------------------------------------------------------------------- building from the command line


def parse_pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    """`NAME=VALUE` items (split at the first `=`); the name must be a plain entry name."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"{what}: expected NAME={what.upper()}, got {item!r}")
        if value.startswith("="):
            raise ValueError(f"{what}: expected NAME={what.upper()}, got {item!r} (name the entry first)")
        out.append((name, value.strip()))
    return out


def parse_tasks(items: list[str]) -> dict[str, dict[str, list[str]]]:
    """`NAME=TIER:TASK,TASK` items -> {entry: {tier: [tasks]}}."""
    out: dict[str, dict[str, list[str]]] = {}
    for name, value in parse_pairs(items, "tasks"):
        tier, sep, tasks = value.partition(":")
        if not sep:
            raise ValueError(f"tasks: expected NAME=TIER:TASK,TASK, got {name}={value}")
        out.setdefault(name, {})[tier.strip()] = [t.strip() for t in tasks.split(",") if t.strip()]
    return out


def build_mixture(
    root: Path,
    name: str,
    select: list[tuple[str, str]],
    *,
    weighting: str = "hours",
    temperature: float = 1.0,
    weights: dict[str, float] | None = None,
    tasks: dict[str, dict[str, list[str]]] | None = None,
    stage: str = "pretraining",
    description: str = "",
) -> Mixture:
    """A validated mixture whose every entry matches at least one episode of the catalog under ROOT."""
    weights, tasks = weights or {}, tasks or {}
    names = {n for n, _ in select}
    for field, given in (("weight", weights), ("tasks", tasks)):
        stray = sorted(set(given) - names)
        if stray:
            raise MixtureError(stray[0], field, "no --select gives this entry")
    entries = [
        {
            "name": n,
            "where": w,
            **({"weight": weights[n]} if n in weights else {}),
            **({"tasks": tasks[n]} if n in tasks else {}),
        }
        for n, w in select
    ]
    raw = {
        "name": name,
        "description": description,
        "stage": stage,
        "weighting": weighting,
        "temperature": temperature,
        "entries": entries,
    }
    try:
        mixture = Mixture.model_validate(raw)
    except ValidationError as e:
        raise MixtureFileError(mixture_error_text(e)) from None
    resolve(root, mixture, strict=True)
    return mixture


# --------------------------------------------------------------------------- resolving


class DatasetShare(BaseModel):
    dataset: str
    episodes: int
    hours: float
    weight: float


class TierShare(BaseModel):
    tier: str
    episodes: int
    hours: float
    tasks: list[str]


class EntryPlan(BaseModel):
    name: str
    where: str
    episodes: int
    hours: float
    weight: float
    tiers: list[TierShare]
    datasets: list[DatasetShare]
    missing_tiers: list[str]


class MixturePlan(BaseModel):
    """A mixture resolved against one catalog: what each entry trains on, and with which weight."""

    mixture: str
    root: Path
    stage: str
    weighting: str
    temperature: float
    entries: list[EntryPlan]
    missing: list[str]
    overlap_episodes: int
    episodes: int
    hours: float
    notes: list[str]


def _entry_filter(entry: MixtureEntry) -> pl.Expr:
    import polars as pl

    return compile_where(parse_where(entry.where)) & pl.col("quality_tier").is_in(entry.trained_tiers())


def matched(root: Path, mixture: Mixture) -> pl.DataFrame:
    """One row per (entry, episode) matched: entry, dataset, episode_index, tier, has_action, seconds."""
    import polars as pl

    base = scan(root)
    cols = ["dataset", "episode_index", "quality_tier", "has_action", "seconds"]
    frames = [
        base.filter(_entry_filter(e)).select(pl.lit(e.name).alias("entry"), *cols) for e in mixture.entries
    ]
    return pl.concat(frames).collect()


def _weights(mixture: Mixture, pairs: pl.DataFrame) -> pl.DataFrame:
    """`pairs` (entry, dataset, hours) with a `weight` column summing to 1."""
    import polars as pl

    t = 1.0 / mixture.temperature
    if mixture.weighting == "uniform":
        raw = pl.lit(1.0)
    elif mixture.weighting == "hours":
        raw = pl.col("hours").pow(t)
    else:
        given = {e.name: e.weight for e in mixture.entries}
        present = pairs["entry"].unique().to_list()
        total = sum(given[n] or 0.0 for n in present)
        share = pl.col("entry").replace_strict({n: (given[n] or 0.0) / total for n in present})
        raw = share * pl.col("hours").pow(t) / pl.col("hours").pow(t).sum().over("entry")
    out = pairs.with_columns(raw.alias("weight"))
    return out.with_columns(pl.col("weight") / pl.col("weight").sum())


def resolve(root: Path, mixture: Mixture, *, strict: bool = False) -> MixturePlan:
    """Resolve `mixture` against the catalog under ROOT; with `strict`, an entry that matches nothing
    raises `MixtureError` naming it and its `where`."""
    import polars as pl

    rows = matched(root, mixture)
    hours = (pl.col("seconds").sum() / 3600).alias("hours")
    n = pl.len().cast(pl.Int64).alias("episodes")
    pairs = _weights(mixture, rows.group_by("entry", "dataset").agg(n, hours).sort("entry", "dataset"))
    tiers = rows.group_by("entry", "quality_tier").agg(n, hours)
    entries = [_entry_plan(e, mixture, pairs, tiers) for e in mixture.entries]
    missing = [p.name for p in entries if p.episodes == 0]
    if strict and missing:
        raise MixtureError(missing[0], "where", f"matches no episode of the catalog under {root}")
    unique = rows.select("dataset", "episode_index", "seconds").unique(["dataset", "episode_index"])
    overlap = rows.group_by("dataset", "episode_index").len().filter(pl.col("len") > 1).height
    return MixturePlan(
        mixture=mixture.name,
        root=root,
        stage=mixture.stage,
        weighting=mixture.weighting,
        temperature=mixture.temperature,
        entries=entries,
        missing=missing,
        overlap_episodes=overlap,
        episodes=unique.height,
        hours=float(unique["seconds"].sum()) / 3600,
        notes=_notes(mixture, rows, missing, overlap),
    )


def _entry_plan(entry: MixtureEntry, mixture: Mixture, pairs: pl.DataFrame, tiers: pl.DataFrame) -> EntryPlan:
    import polars as pl

    mine = pairs.filter(pl.col("entry") == entry.name)
    by_tier = {
        r["quality_tier"]: r for r in tiers.filter(pl.col("entry") == entry.name).iter_rows(named=True)
    }
    tier_shares = [
        TierShare(tier=t, episodes=by_tier[t]["episodes"], hours=by_tier[t]["hours"], tasks=entry.tasks[t])
        for t in entry.trained_tiers()
        if t in by_tier
    ]
    return EntryPlan(
        name=entry.name,
        where=entry.where,
        episodes=int(mine["episodes"].sum()),
        hours=float(mine["hours"].sum()),
        weight=float(mine["weight"].sum()),
        tiers=tier_shares,
        datasets=[DatasetShare(**r) for r in mine.drop("entry").iter_rows(named=True)],
        missing_tiers=[t for t in entry.trained_tiers() if t not in by_tier],
    )


def _notes(mixture: Mixture, rows: pl.DataFrame, missing: list[str], overlap: int) -> list[str]:
    import polars as pl

    notes = []
    if missing and mixture.weighting == "explicit":
        notes.append(
            f"the weight of {', '.join(missing)} (nothing matched) is shared among the other entries"
        )
    if overlap:
        notes.append(f"{overlap} episodes match more than one entry and are sampled through each of them")
    for e in mixture.entries:
        action_tiers = [t for t in e.trained_tiers() if set(e.tasks[t]) & set(ACTION_TASKS)]
        bad = rows.filter(
            (pl.col("entry") == e.name) & ~pl.col("has_action") & pl.col("quality_tier").is_in(action_tiers)
        ).height
        if bad:
            notes.append(
                f"entry {e.name!r}: {bad} episodes without actions are in a tier that trains on actions"
            )
    return notes


# --------------------------------------------------------------------------- printing


def plan_table(plan: MixturePlan) -> Table:
    """The plan as a rich table: one row per entry and tier."""
    from rich.table import Table

    table = Table(
        title=f"mixture {plan.mixture} ({plan.stage}, weighting {plan.weighting}, "
        f"temperature {plan.temperature:g}) against {plan.root}"
    )
    for col in ("entry", "datasets", "tier", "episodes", "hours", "weight", "tasks"):
        table.add_column(col, justify="right" if col in ("episodes", "hours", "weight") else "left")
    for e in plan.entries:
        names = ", ".join(d.dataset for d in e.datasets) or "-"
        table.add_row(
            e.name,
            names,
            "all",
            str(e.episodes),
            f"{e.hours:.4f}",
            f"{e.weight:.4f}",
            "MISSING: matches nothing" if not e.episodes else "",
            style="bold",
        )
        for t in e.tiers:
            table.add_row("", "", t.tier, str(t.episodes), f"{t.hours:.4f}", "", ", ".join(t.tasks))
        for t in e.missing_tiers if e.episodes else []:
            table.add_row("", "", t, "0", "-", "", "none matched")
    return table


def plan_lines(plan: MixturePlan) -> list[str]:
    """Totals and notes under the table."""
    lines = [f"{plan.episodes} episodes, {plan.hours:.4f} hours in {len(plan.entries)} entries"]
    if plan.missing:
        lines.append(f"missing (no episode matched): {', '.join(plan.missing)}")
    return lines + plan.notes


def default_tasks() -> dict[str, list[str]]:
    """The table of CONTRACT.md section 8 as a `tasks` value."""
    return {t: list(TIER_TASKS[t]) for t in TIERS}
