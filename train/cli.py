"""`train`: thin CLI over the trainer. Parse, validate with pydantic, call one function; lazy imports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Train the latent-dynamics action model.", no_args_is_help=True)


def _print_plan(mixture: Path, root: Path) -> None:
    from catalog.mixture import MixtureFileError, load_mixture, plan_lines, plan_table, resolve
    from catalog.query import CatalogMissing, console

    try:
        plan = resolve(root, load_mixture(mixture))
    except (MixtureFileError, CatalogMissing) as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from None
    out = console()
    out.print(plan_table(plan))
    for line in plan_lines(plan):
        out.print(line)
    if not plan.episodes:
        typer.echo(f"no episode of {root} matches the mixture {plan.mixture}", err=True)
        raise typer.Exit(1)


@app.command()
def launch(
    mixture: Annotated[Path, typer.Option(help="Mixture YAML built with `catalog mixture`.")],
    root: Annotated[Path, typer.Option(help="The datasets root whose catalog the mixture resolves against.")],
    out: Annotated[Path, typer.Option(help="Run folder: metrics.jsonl, checkpoint.pt, run.json.")] = Path(
        "run"
    ),
    config: Annotated[str, typer.Option(help="Model config: tiny, 0.5b or 1b.")] = "tiny",
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 200,
    batch_size: Annotated[int, typer.Option(help="Global batch size.")] = 16,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per step.")] = 1,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 1e-4,
    seed: Annotated[int, typer.Option(help="Seed of data, noise and initial weights.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its checkpoint.")] = False,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 50,
    loader_workers: Annotated[int, typer.Option(help="DataLoader worker processes per rank.")] = 2,
    num_workers: Annotated[int, typer.Option(help="Data-parallel workers on Ray Train.")] = 1,
    address: Annotated[str | None, typer.Option(help="Join this Ray cluster.")] = None,
    condition: Annotated[str, typer.Option(help='"small" or a local Qwen3-VL folder.')] = "small",
    action_heads: Annotated[
        str, typer.Option(help="Action encoders/head: shared, or per_embodiment (one set per robot_type).")
    ] = "shared",
    normalizer: Annotated[
        str, typer.Option(help="State/action normalisation: mean_std, or quantile (q01/q99 -> -1/1).")
    ] = "mean_std",
    progress: Annotated[bool, typer.Option(help="Show a progress line.")] = True,
) -> None:
    """Train on a mixture: print the resolved plan, then train (resumable, data-parallel on Ray)."""
    from train.loop import TrainOptions

    opts = TrainOptions(
        mixture=mixture, root=root, out=out, config=config, steps=steps, batch_size=batch_size,
        grad_accum=grad_accum, lr=lr, seed=seed, resume=resume, checkpoint_every=checkpoint_every,
        loader_workers=loader_workers, num_workers=num_workers, address=address, condition=condition,
        progress=progress, action_heads=action_heads, normalizer=normalizer,
    )  # fmt: skip
    _print_plan(mixture, root)
    from train.distributed import launch as run_launch

    try:
        run_launch(opts)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        typer.echo(f"train launch: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"run written to {out} (metrics.jsonl, checkpoint.pt)")


@app.command("eval")
def eval_cmd(
    run: Annotated[Path, typer.Option(help="A run folder written by `train launch`.")],
    mixture: Annotated[Path | None, typer.Option(help="Mixture to evaluate on (default: the run's).")] = None,
    root: Annotated[Path | None, typer.Option(help="Datasets root (default: the run's).")] = None,
    samples: Annotated[int, typer.Option(help="Held-out samples.")] = 64,
    steps: Annotated[int | None, typer.Option(help="Euler steps (default: the model config's).")] = None,
    draws: Annotated[int, typer.Option(min=1, help="Noise draws the model's error is averaged over.")] = 4,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Report file (default: RUN/eval.json).")
    ] = None,
) -> None:
    """Held-out action L1 (policy, inverse dynamics) and forward-dynamics latent MSE, beside the baselines
    (zero, training-mean and repeat-last action; mean and copy-current-frame latent) on the same samples."""
    from catalog.query import console
    from train.evaluate import EVAL_JSON, evaluate, report_tables

    try:
        report = evaluate(run, mixture, root, samples, steps, draws=draws)
    except (FileNotFoundError, ValueError) as e:  # DataError: e.g. an embodiment the run's model lacks
        typer.echo(f"train eval: {e}", err=True)
        raise typer.Exit(2) from None

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.5f}"

    typer.echo(f"{run} (step {report.step}, {report.samples} held-out samples, {report.counts})")
    typer.echo(f"policy action L1: {fmt(report.policy_action_l1)}")
    typer.echo(f"inverse-dynamics action L1: {fmt(report.inverse_action_l1)}")
    typer.echo(f"forward-dynamics latent MSE: {fmt(report.forward_latent_mse)}")
    out = console()
    for table in report_tables(report):
        out.print(table)
    path = json_out or run / EVAL_JSON
    path.write_text(report.model_dump_json(indent=1))
    typer.echo(f"report written to {path}")


@app.callback()
def main() -> None:
    """Trainer commands."""


if __name__ == "__main__":
    app()
