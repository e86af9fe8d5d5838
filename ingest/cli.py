"""`ingest`: thin typer CLI. Parse, validate with pydantic, call one function; heavy imports stay lazy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Ingest embodied datasets into LeRobot v2.1 datasets.", no_args_is_help=True)
ModelDir = Annotated[
    Path | None,
    typer.Option(help="Local folder of a DINOv3ViTModel (default: pipelines.yaml latents.model_dir)."),
]
RandomWeights = Annotated[
    bool, typer.Option(help="No weights: a random ViT-S/16, for demos and tests only (marked as such).")
]


@app.command()
def run(
    source: Annotated[str, typer.Argument(help="Source name, e.g. egodex (see `ingest sources`).")],
    input: Annotated[Path, typer.Option("--input", "-i", help="The source's root folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Datasets root; writes OUTPUT/NAME.")],
    name: Annotated[str | None, typer.Option(help="Dataset folder name (default: the source name).")] = None,
    address: Annotated[str | None, typer.Option(help="Join this Ray cluster instead of a local Ray.")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel conversions (default: CPU count).")] = None,
    limit: Annotated[int | None, typer.Option(help="Convert only the first N source episodes.")] = None,
    max_reject_ratio: Annotated[float, typer.Option(help="Exit non-zero above this reject ratio.")] = 0.05,
    pipelines: Annotated[Path | None, typer.Option(help="pipelines.yaml to read.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    latents: Annotated[bool, typer.Option(help="Then cache DINOv3 latents (see `ingest latents`).")] = False,
    model_dir: ModelDir = None,
    random_weights: RandomWeights = False,
) -> None:
    """Convert every episode of SOURCE under --input into a LeRobot v2.1 dataset."""
    from ingest.job import RunOptions
    from ingest.job import run as run_job

    fields = {"workers": workers, "limit": limit, "pipelines": pipelines, "name": name, "address": address}
    opts = RunOptions(
        source=source,
        input=input,
        output=output,
        max_reject_ratio=max_reject_ratio,
        progress=progress,
        **{k: v for k, v in fields.items() if v is not None},
    )
    summary = run_job(opts)
    typer.echo(
        f"{summary.dataset_root}: {summary.total_episodes} episodes, {summary.total_frames} frames "
        f"(this run: {summary.published} published, {summary.rejected} rejected, "
        f"{summary.skipped_published} source items already published)"
    )
    if summary.rejected:
        typer.echo(f"rejects: {summary.dataset_root / 'meta' / 'rejects.jsonl'}", err=True)
    if latents:
        _latents(summary.dataset_root, opts.pipelines, model_dir, random_weights, address, workers, progress)
    if summary.reject_ratio > opts.max_reject_ratio:
        typer.echo(f"reject ratio {summary.reject_ratio:.3f} > {opts.max_reject_ratio}", err=True)
        raise typer.Exit(1)


@app.command("latents")
def latents_cmd(
    path: Annotated[Path, typer.Argument(help="A dataset folder (ROOT/NAME) written by `ingest run`.")],
    model_dir: ModelDir = None,
    random_weights: RandomWeights = False,
    address: Annotated[str | None, typer.Option(help="Join this Ray cluster instead of a local Ray.")] = None,
    workers: Annotated[int | None, typer.Option(help="Decode tasks at once (default: CPUs).")] = None,
    pipelines: Annotated[Path | None, typer.Option(help="pipelines.yaml to read (section latents).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Cache DINOv3 latents of every episode of a dataset; a re-run encodes only what is missing."""
    _latents(path, pipelines, model_dir, random_weights, address, workers, progress)


def _latents(
    path: Path,
    pipelines: Path | None,
    model_dir: Path | None,
    random_weights: bool,
    address: str | None,
    workers: int | None,
    progress: bool,
) -> None:
    from ingest.job import DEFAULT_PIPELINES
    from ingest.latents_job import LatentsOptions, run_latents
    from schemas.pipelines import PipelinesFile

    cfg = PipelinesFile.load(pipelines or DEFAULT_PIPELINES).latents
    if model_dir is not None or random_weights:
        cfg = cfg.model_copy(update={"model_dir": model_dir, "random_weights": random_weights})
    opts = LatentsOptions(dataset=path, latents=cfg, address=address, workers=workers, progress=progress)
    try:
        summary = run_latents(opts)
    except ValueError as e:
        typer.echo(f"ingest latents: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{path}: latents for {summary.files} episode-cameras ({summary.encoded} encoded now, "
        f"{summary.skipped} already cached, {summary.rejected} rejected)"
    )
    if summary.random_weights:
        typer.echo("WARNING: RANDOM WEIGHTS: these latents are for demos and tests only", err=True)
    if summary.rejected:
        raise typer.Exit(1)


@app.command()
def validate(path: Annotated[Path, typer.Argument(help="A dataset folder (ROOT/NAME).")]) -> None:
    """Check a dataset against the contract; exit 0 only when every check holds."""
    from ingest.validate import validate_dataset

    problems = validate_dataset(path)
    for p in problems:
        typer.echo(f"{p.file}: {p.field}: {p.message}", err=True)
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {path}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{path}: valid")


@app.command()
def sources(
    pipelines: Annotated[Path | None, typer.Option(help="pipelines.yaml to read.")] = None,
) -> None:
    """List the sources `ingest run` knows: each pipelines.yaml section and its reader."""
    from ingest.job import DEFAULT_PIPELINES
    from schemas.pipelines import PipelinesFile

    for name, cfg in PipelinesFile.load(pipelines or DEFAULT_PIPELINES).sources.items():
        typer.echo(f"{name}\t{cfg.format}\t{cfg.embodiment_kind}\t{cfg.embodiment}")


if __name__ == "__main__":
    app()
