"""`catalog`: index ingested datasets, query them, and build training mixtures (docs/CATALOG.md).

Thin: parse, validate with pydantic, call one function of `catalog/`; polars, rich and matplotlib are
imported inside the commands so that `--help` stays instant."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from schemas.errors import ExitCode, main_of

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(help="Query ingested datasets and build training mixtures.", no_args_is_help=True)

RootOpt = Annotated[Path, typer.Option("--root", help="A datasets root (the --output of ingest run).")]


class Fmt(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _fail(msg: str, code: int = ExitCode.REFUSED) -> NoReturn:
    """One line on stderr, `catalog: <problem>`, and the exit code (2: refused, see schemas/errors.py)."""
    typer.echo(msg if msg.startswith("catalog") else f"catalog: {msg}", err=True)
    raise typer.Exit(code)


def _console() -> Console:
    from catalog.query import console

    return console()


def _split(values: list[str] | None) -> list[str]:
    """Repeated and/or comma-separated option values."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _errors(e: Exception) -> str:
    from catalog.mixture_file import mixture_error_text

    return mixture_error_text(e) if isinstance(e, ValueError) else str(e)


@app.command()
def datasets(
    root: Annotated[Path, typer.Argument(help="A datasets root (the --output of ingest run).")],
) -> None:
    """List the LeRobot datasets under ROOT with their episode and frame counts."""
    from schemas.lerobot import INFO_PATH, InfoJson

    found = sorted(p.parent.parent for p in root.glob(f"*/{INFO_PATH}"))
    for ds in found:
        info = InfoJson.model_validate_json((ds / INFO_PATH).read_text())
        typer.echo(f"{ds.name}\t{info.total_episodes} episodes\t{info.total_frames} frames\t{info.fps} fps")
    if not found:
        _fail(f"catalog datasets: no dataset under {root}; give the --output of `ingest run`")


@app.command()
def build(
    root: Annotated[Path, typer.Argument(help="A datasets root (the --output of ingest run).")],
    force: Annotated[bool, typer.Option(help="Re-read every dataset, changed or not.")] = False,
) -> None:
    """Index every dataset under ROOT into ROOT/catalog/ (incremental; broken datasets are reported)."""
    from catalog.index import build as build_catalog

    if not root.is_dir():
        _fail(f"{root} is not a folder")
    report = build_catalog(root, force=force)
    for b in report.broken:
        typer.echo(f"broken, skipped: {b.dataset}: {b.error}", err=True)
    typer.echo(
        f"read {len(report.read)} datasets ({', '.join(report.read) or '-'}), "
        f"unchanged {len(report.unchanged)}, removed {len(report.removed)}, broken {len(report.broken)}"
    )
    state = "written" if report.written else "up to date"
    typer.echo(
        f"catalog {state}: {report.datasets} datasets, {report.episodes} episodes, "
        f"{report.hours:.4f} hours ({report.seconds:.2f} s)"
    )


@app.command()
def query(
    root: RootOpt,
    where: Annotated[
        str, typer.Option(help="A selection, e.g. 'category == \"human_action\" and seconds > 2'.")
    ] = "",
    group_by: Annotated[
        list[str] | None, typer.Option(help="Columns to group by (repeat or comma-separate).")
    ] = None,
    columns: Annotated[list[str] | None, typer.Option(help="Columns to show without --group-by.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows (tables: 50 by default).")] = None,
    fmt: Annotated[Fmt, typer.Option("--format", help="table, csv or json.")] = Fmt.table,
) -> None:
    """Select episodes; list them, or count episodes and hours per --group-by."""
    from polars.exceptions import PolarsError
    from pydantic import ValidationError

    from catalog.query import CatalogMissing, Query, render, rich_table, run_query, totals

    opts = {"where": where, "group_by": _split(group_by), "limit": limit}
    if columns:
        opts["columns"] = _split(columns)
    if fmt is Fmt.table and not group_by and limit is None:
        opts["limit"] = 50
    try:
        q = Query.model_validate(opts)
        df = run_query(root, q)
    except (ValidationError, CatalogMissing) as e:
        _fail(_errors(e))
    except PolarsError as e:  # e.g. a regular expression python accepts and polars does not
        _fail(f"the query failed: {e}")
    if fmt is not Fmt.table:
        typer.echo(render(df, fmt.value), nl=False)
        return
    console = _console()
    console.print(rich_table(df))
    if not q.group_by:
        t = totals(root, q.where)
        shown = f" (first {df.height} shown)" if df.height < t["episodes"] else ""
        datasets = f"{t['datasets']} dataset" + "s" * (t["datasets"] != 1)
        console.print(f"{t['episodes']} episodes{shown}, {t['hours']:.4f} hours, {datasets}")


@app.command()
def stats(
    root: RootOpt,
    plot: Annotated[Path | None, typer.Option(help="Also write a PNG plot (needs matplotlib).")] = None,
    fmt: Annotated[
        Fmt, typer.Option("--format", help="table, csv or json (per category and source).")
    ] = Fmt.table,
) -> None:
    """The EI-30K table: hours, episodes and quality tiers per category and per source."""
    from catalog import stats as st
    from catalog.query import CatalogMissing, render, rich_table

    try:
        cats, sources = st.by_category(root), st.by_source(root)
    except CatalogMissing as e:
        _fail(str(e))
    if fmt is not Fmt.table:
        typer.echo(render(sources, fmt.value), nl=False)
    else:
        console = _console()
        console.print(rich_table(cats, title="per category"))
        console.print(rich_table(sources, title="per category and source"))
    if plot:
        try:
            typer.echo(f"plot written to {st.plot(root, plot)}", err=fmt is not Fmt.table)
        except ImportError:
            _fail("--plot needs matplotlib: pip install matplotlib")


@app.command()
def mixture(
    root: RootOpt,
    name: Annotated[str, typer.Option(help="The mixture's name.")],
    out: Annotated[Path, typer.Option(help="The YAML file to write.")],
    select: Annotated[list[str], typer.Option(help="An entry: NAME=SELECTION (repeat for each entry).")],
    weighting: Annotated[str, typer.Option(help="hours, uniform or explicit.")] = "hours",
    temperature: Annotated[float, typer.Option(help="Sampling temperature: weights ~ hours ** (1/T).")] = 1.0,
    weight: Annotated[list[str] | None, typer.Option(help="NAME=W for --weighting explicit.")] = None,
    tasks: Annotated[
        list[str] | None,
        typer.Option(help="NAME=TIER:TASK,TASK (repeat per tier); default: the contract's table."),
    ] = None,
    stage: Annotated[str, typer.Option(help="pretraining or post_training.")] = "pretraining",
    description: Annotated[str, typer.Option(help="Free text kept in the file.")] = "",
) -> None:
    """Write a mixture file from selections; every entry must match something in the catalog."""
    from catalog.mixture import (
        MixtureFileError,
        build_mixture,
        parse_pairs,
        parse_tasks,
        plan_lines,
        plan_table,
        resolve,
        write_mixture,
    )
    from catalog.query import CatalogMissing

    try:
        weights = {n: float(w) for n, w in parse_pairs(weight or [], "weight")}
        m = build_mixture(
            root,
            name,
            parse_pairs(select, "select"),
            weighting=weighting,
            temperature=temperature,
            weights=weights,
            tasks=parse_tasks(tasks or []),
            stage=stage,
            description=description,
        )
    except (MixtureFileError, CatalogMissing, ValueError) as e:
        _fail(str(e))
    write_mixture(m, out)
    plan = resolve(root, m)
    console = _console()
    console.print(plan_table(plan))
    for line in plan_lines(plan):
        console.print(line)
    console.print(f"mixture written to {out}")


@app.command("resolve")
def resolve_cmd(
    root: RootOpt,
    mixture_file: Annotated[Path, typer.Option("--mixture", help="A mixture YAML file.")],
    strict: Annotated[bool, typer.Option(help="Fail when an entry matches nothing.")] = False,
    fmt: Annotated[Fmt, typer.Option("--format", help="table or json.")] = Fmt.table,
) -> None:
    """Resolve a mixture against the catalog: episodes, hours and weights per entry, and what is missing."""
    from catalog.mixture import MixtureFileError, load_mixture, plan_lines, plan_table, resolve
    from catalog.mixture_file import MixtureError
    from catalog.query import CatalogMissing

    try:
        plan = resolve(root, load_mixture(mixture_file), strict=strict)
    except (MixtureFileError, MixtureError, CatalogMissing) as e:
        _fail(str(e))
    if fmt is Fmt.json:
        typer.echo(plan.model_dump_json(indent=2))
        return
    console = _console()
    console.print(plan_table(plan))
    for line in plan_lines(plan):
        console.print(line)


@app.command()
def report(
    root: Annotated[Path, typer.Argument(help="A datasets root with a catalog (`catalog build ROOT`).")],
    out: Annotated[Path | None, typer.Option(help="Folder to write (default: ROOT/catalog/report).")] = None,
    mixture_files: Annotated[
        list[Path] | None, typer.Option("--mixture", help="A mixture file whose weights to show (repeat).")
    ] = None,
) -> None:
    """Write the EI-30K overview of ROOT as HTML: hours by category, source and tier, lengths, mixtures."""
    from catalog.mixture import MixtureFileError
    from catalog.query import CatalogMissing
    from catalog.report import write_report

    try:
        page = write_report(root, out or root / "catalog" / "report", mixture_files or [])
    except (MixtureFileError, CatalogMissing) as e:
        _fail(str(e))
    typer.echo(f"catalog report written to {page}")


@app.callback()
def main() -> None:
    """Catalog commands."""


entry = main_of(app, "catalog")  # one-line errors and the exit codes of schemas/errors.py

if __name__ == "__main__":
    entry()
