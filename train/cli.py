"""`train`: thin CLI over the trainer. Parse, validate with pydantic, call one function; lazy imports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from schemas.errors import main_of

if TYPE_CHECKING:
    from train.state import TrainOptions

app = typer.Typer(help="Train the latent-dynamics action model.", no_args_is_help=True)


def _print_plan(mixture: Path, root: Path) -> None:
    from catalog.mixture import MixtureFileError, load_mixture, plan_lines, plan_table, resolve
    from catalog.query import CatalogMissing, console

    try:
        plan = resolve(root, load_mixture(mixture))
    except (MixtureFileError, CatalogMissing) as e:
        typer.echo(f"train: {e}", err=True)
        raise typer.Exit(2) from None
    out = console()
    out.print(plan_table(plan))
    for line in plan_lines(plan):
        out.print(line)
    if not plan.episodes:
        typer.echo(f"train: no episode of {root} matches the mixture {plan.mixture}", err=True)
        raise typer.Exit(2)


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
    condition: Annotated[
        str | None,
        typer.Option(
            help="Condition encoder: a local Qwen3-VL folder (frame t + instruction, as in the paper), or "
            "random-text (random byte-level text encoder: tests and demos only). Default: random-text for "
            "tiny/small; 0.5b/1b need a Qwen3-VL folder."
        ),
    ] = None,
    unfreeze_vlm: Annotated[bool, typer.Option(help="Fine-tune the Qwen3-VL encoder (at --vlm-lr).")] = False,
    vlm_lr: Annotated[float, typer.Option(help="Peak learning rate of an unfrozen Qwen3-VL.")] = 1e-5,
    condition_cache: Annotated[
        Path | None, typer.Option(help="Condition tokens cached by `train cache-condition` (no VLM runs).")
    ] = None,
    action_heads: Annotated[
        str, typer.Option(help="Action encoders/head: shared, or per_embodiment (one set per robot_type).")
    ] = "shared",
    normalizer: Annotated[
        str, typer.Option(help="State/action normalisation: mean_std, or quantile (q01/q99 -> -1/1).")
    ] = "mean_std",
    normalize_per: Annotated[
        str, typer.Option(help="State/action statistics merged over the mixture, or per dataset (its own).")
    ] = "mixture",
    progress: Annotated[bool, typer.Option(help="Show a progress line.")] = True,
    parallel: Annotated[str, typer.Option(help="ddp (replicas) or fsdp (FSDP2 shards).")] = "ddp",
    activation_checkpointing: Annotated[
        bool, typer.Option(help="Recompute each block's activations in the backward pass.")
    ] = False,
    compile: Annotated[bool, typer.Option(help="torch.compile each block.")] = False,
    ema: Annotated[
        float | None, typer.Option(help="Keep an EMA of the weights with this decay; eval/viz use it.")
    ] = None,
) -> None:
    """Train on a mixture: print the resolved plan, then train (resumable, data-parallel on Ray)."""
    opts = _train_options(dict(locals()))  # every option above is a `TrainOptions` field of the same name
    _print_plan(mixture, root)
    _run_launch(opts)


def _train_options(values: dict) -> TrainOptions:
    from pydantic import ValidationError

    from train.state import TrainOptions

    try:
        return TrainOptions(**values)
    except ValidationError as e:
        typer.echo(f"train launch: {e.errors()[0]['msg'].removeprefix('Value error, ')}", err=True)
        raise typer.Exit(2) from None


def _run_launch(opts: TrainOptions) -> None:
    from train.distributed import launch as run_launch

    try:
        run_launch(opts)
    except (FileExistsError, FileNotFoundError, ValueError, KeyError) as e:
        typer.echo(f"train launch: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"run written to {opts.out} (metrics.jsonl, checkpoint.pt)")


@app.command("cache-condition")
def cache_condition(
    mixture: Annotated[Path, typer.Option(help="Mixture YAML: every cached frame of its episodes.")],
    root: Annotated[Path, typer.Option(help="The datasets root the mixture resolves against.")],
    condition: Annotated[Path, typer.Option(help="Local Qwen3-VL folder (frozen).")],
    out: Annotated[Path, typer.Option(help="Cache folder for `train launch --condition-cache`.")],
    batch_size: Annotated[int, typer.Option(help="Frames per VLM forward.")] = 16,
) -> None:
    """Run a frozen Qwen3-VL once over frame t and the instruction of every cached frame of the mixture's
    episodes and store its tokens; a re-run encodes only new or re-captioned episodes."""
    from train.cache_job import CacheOptions, build_condition_cache

    try:
        summary = build_condition_cache(
            CacheOptions(mixture=mixture, root=root, condition=condition, out=out, batch_size=batch_size)
        )
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"train cache-condition: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{out}: {summary.episodes} episodes, {summary.encoded} encoded now ({summary.frames} frames)")


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
    except ValueError as e:  # DataError: e.g. an embodiment the run's model lacks (a missing run: below)
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


@app.command("viz")
def viz_cmd(
    run: Annotated[Path, typer.Argument(help="A run folder written by `train launch`.")],
    samples: Annotated[int, typer.Option(min=1, help="Held-out forward-dynamics samples to draw.")] = 4,
    out: Annotated[Path | None, typer.Option(help="Folder for the PNGs (default: RUN/viz).")] = None,
    steps: Annotated[int | None, typer.Option(help="Euler steps (default: the model config's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the held-out draw and of the sampler's noise.")] = 0,
    mixture: Annotated[Path | None, typer.Option(help="Mixture to draw from (default: the run's).")] = None,
    root: Annotated[Path | None, typer.Option(help="Datasets root (default: the run's).")] = None,
) -> None:
    """The paper's pictures for held-out samples: PCA of predicted vs true future DINO features, and the
    action-conditioned attention |A(action) - A(no-op)| over the image grid."""
    from train.viz import visualize

    try:
        written = visualize(run, out, samples, steps, seed, mixture, root)
    except ValueError as e:  # a missing run or checkpoint: the shared one-line handler (schemas/errors.py)
        typer.echo(f"train viz: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{len(written)} files written to {written[0].parent}")


@app.command("estimate")
def estimate_cmd(
    config: Annotated[str, typer.Option(help="Model config.")] = "1b",
    batch_size: Annotated[int, typer.Option(help="Global batch size (as in `train launch`).")] = 256,
    gpus: Annotated[int, typer.Option(min=1, help="Data-parallel GPUs.")] = 8,
    gpu: Annotated[str, typer.Option(help="h100, h200 or a100.")] = "h100",
    parallel: Annotated[str, typer.Option(help="ddp or fsdp.")] = "ddp",
    activation_checkpointing: Annotated[bool, typer.Option(help="Per-block recompute.")] = False,
    vlm: Annotated[
        str, typer.Option(help="Frozen condition encoder held on the GPU: qwen3-vl-4b or none.")
    ] = ("qwen3-vl-4b"),
    mfu: Annotated[float, typer.Option(min=0.01, max=1.0, help="Assumed model FLOP utilisation.")] = 0.35,
    cond_len: Annotated[int, typer.Option(min=1, help="Condition tokens per sample.")] = 100,
    json_out: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON.")] = False,
) -> None:
    """Memory per GPU (parameters, gradients, AdamW, activations, condition encoder) and step time from
    FLOPs at an assumed MFU, for a config, batch and GPU count (formulas: train/estimate.py)."""
    from train.estimate import estimate

    try:
        est = estimate(config, batch_size, gpus, gpu, parallel, activation_checkpointing, vlm, mfu, cond_len)
    except (KeyError, ValueError) as e:
        typer.echo(f"train estimate: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(est.model_dump_json(indent=1) if json_out else "\n".join(est.lines()))


@app.callback()
def main() -> None:
    """Trainer commands."""


entry = main_of(app, "train")  # one-line errors and the exit codes of schemas/errors.py

if __name__ == "__main__":
    entry()
