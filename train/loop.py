"""The training loop: AdamW, warm-up + cosine, grad clipping and accumulation, bf16 on GPU,
`metrics.jsonl`, atomic checkpoints, exact `--resume`.

Exactness: every source of randomness of step s is seeded from (seed, step, rank): the data (see
`train/data.py`), the flow-matching noise and times (a torch.Generator), and dropout (the global torch
seed). A run resumed from the checkpoint of step s therefore logs the same losses as one that never
stopped. Parallelism lives in `train/distributed.py`; this file only knows `rank` / `world_size`. The options,
the `Run` and its checkpoints are in `train/state.py`; building a run is `train/setup.py`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from train.setup import build_run
from train.state import Run, TrainOptions, step_seed, write_checkpoint

METRICS = "metrics.jsonl"


def truncate_metrics(out: Path, step: int) -> None:
    """Drop the lines a killed run logged after its last checkpoint, so a resume continues cleanly."""
    path = out / METRICS
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] < step]
    path.write_text("".join(f"{line}\n" for line in keep))


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def train_step(run: Run, batch: Any, step: int, rank: int, losses_fn: Callable) -> dict[str, Any]:
    """One optimiser step over `grad_accum` micro-batches; returns the metrics of the step."""
    from train.conditioning import condition_of
    from train.parallel import total_norm

    opts, started = run.opts, time.perf_counter()
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    loss_sum = 0.0
    for m, micro in enumerate(split_batch(batch, opts.grad_accum)):
        # Part m of rank r is part r*accum+m of the global batch: its noise and dropout are seeded by that
        # index, so W ranks x A micro-batches and 1 rank x W*A micro-batches compute the same step.
        part = step_seed(opts.seed, step, rank * opts.grad_accum + m)
        torch.manual_seed(part)
        generator = torch.Generator(device=run.device).manual_seed(part)
        micro = micro.to(run.device)
        with torch.set_grad_enabled(run.tunes_condition):
            cond, cond_mask = condition_of(run.condition, micro)
        with _autocast(run.device):
            out = losses_fn(run.model, micro, cond.to(run.device), cond_mask.to(run.device), generator)
        (out.total / opts.grad_accum).backward()
        loss_sum += float(out.total.detach()) / opts.grad_accum
        for task, value in out.per_task.items():
            totals[task] = totals.get(task, 0.0) + value / opts.grad_accum
            counts[task] = counts.get(task, 0) + out.counts[task]
    grad_norm = total_norm(torch.nn.utils.clip_grad_norm_(run.trainable, opts.grad_clip))
    lr = run.optimizer.param_groups[0]["lr"]
    run.optimizer.step()
    run.update_ema()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step = step + 1
    elapsed = time.perf_counter() - started
    return {"step": step, "loss": loss_sum, "tasks": totals, "counts": counts, "lr": lr,
            "grad_norm": grad_norm, "samples_per_s": len(batch) / elapsed,
            "condition": run.condition.name}  # fmt: skip


def split_batch(batch: Any, parts: int) -> list[Any]:
    if parts == 1:
        return [batch]
    n = len(batch)
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [batch.slice(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


# ----------------------------------------------------------------------------- one rank's training


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _reduce_mean(value: float, world_size: int) -> float:
    if world_size == 1 or not torch.distributed.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return float(t) / world_size


def _log(out: Path, metrics: dict[str, Any]) -> None:
    with open(out / METRICS, "a") as f:
        f.write(json.dumps(metrics) + "\n")


def fit(opts: TrainOptions, rank: int = 0, world_size: int = 1, wrap_model: Callable | None = None) -> Path:
    """Train `opts.steps` steps (resuming when asked); returns the run directory."""
    run, loader, extra = build_run(opts, rank, world_size, _device(), wrap_model)
    opts.out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        truncate_metrics(opts.out, run.step)
    bar = _progress(opts.progress and rank == 0, opts.steps, run.step)
    with bar:
        task = bar.add_task("train", total=opts.steps, completed=run.step, loss=float("nan"))
        for step, batch in zip(range(run.step, opts.steps), loader, strict=False):
            metrics = train_step(run, batch, step, rank, extra["losses_fn"])
            metrics["loss"] = _reduce_mean(metrics["loss"], world_size)
            last = step + 1 == opts.steps
            if rank == 0:
                _log(opts.out, metrics)
            if last or (step + 1) % opts.checkpoint_every == 0:
                state = run.state_dict()  # under FSDP a collective: every rank gathers, rank 0 writes
                if rank == 0:
                    write_checkpoint(opts.out, state, extra["checkpoint_extra"])
            bar.update(task, advance=1, loss=metrics["loss"])
    return opts.out


def _progress(enabled: bool, total: int, done: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
        disable=not enabled,
    )
