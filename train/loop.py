"""The training loop: AdamW, warm-up + cosine, grad clipping and accumulation, bf16 on GPU,
`metrics.jsonl`, atomic checkpoints, exact `--resume`.

Exactness: every source of randomness of step s is seeded from (seed, step, rank): the data (see
`train/data.py`), the flow-matching noise and times (a torch.Generator), and dropout (the global torch
seed). A run resumed from the checkpoint of step s therefore logs the same losses as one that never
stopped. Parallelism lives in `train/distributed.py`; this file only knows `rank` / `world_size`.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.errors import Refused

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
RUN_CONFIG = "run.json"
RANDOM_TEXT = "random-text"  # the random byte-level text encoder: tests and demos only
RANDOM_TEXT_ALIASES = (RANDOM_TEXT, "small")
CPU_CONFIGS = ("tiny", "small")  # configs whose default condition is RANDOM_TEXT


class TrainOptions(BaseModel):
    """`train launch`: validated before anything is built."""

    model_config = ConfigDict(extra="forbid")
    mixture: Path
    root: Path = Field(description="datasets root holding catalog/ (the --output of ingest run)")
    out: Path
    config: str = "tiny"
    steps: int = Field(200, gt=0)
    batch_size: int = Field(16, gt=0, description="global batch (split over data-parallel workers)")
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(1e-4, gt=0)
    min_lr: float = 5e-7
    weight_decay: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup: int | None = Field(None, ge=0, description="default: 5 % of the steps")
    grad_clip: float = 1.0
    ema: float | None = Field(
        None, gt=0, lt=1, description="also keep an exponential moving average of the weights with this "
        "decay (e.g. 0.999); `train eval` / `train viz` then score the averaged weights"
    )  # fmt: skip
    seed: int = 0
    resume: bool = False
    checkpoint_every: int = Field(50, gt=0)
    loader_workers: int = Field(2, ge=0)
    num_workers: int = Field(1, gt=0, description="data-parallel workers (Ray Train) ")
    address: str | None = None
    condition: str | None = Field(
        None,
        description="a local Qwen3-VL folder (image + text, the paper's), or random-text (tests/demos); "
        "default: random-text for tiny/small, required for 0.5b/1b",
    )
    unfreeze_vlm: bool = Field(False, description="fine-tune the Qwen3-VL condition encoder (lr vlm_lr)")
    vlm_lr: float = Field(1e-5, gt=0, description="peak lr of the unfrozen Qwen3-VL (LDA: 1e-5)")
    condition_cache: Path | None = Field(
        None, description="read condition tokens from `train cache-condition`"
    )
    action_heads: Literal["shared", "per_embodiment"] = "shared"  # see ModelConfig.action_heads
    normalizer: Literal["mean_std", "quantile"] = "mean_std"  # state / action normalisation (train.data)
    normalize_per: Literal["mixture", "dataset"] = "mixture"  # statistics merged, or each dataset's own
    progress: bool = True
    # Scale (train/parallel.py): how ranks share the model, and per-block recompute / compile.
    parallel: Literal["ddp", "fsdp"] = "ddp"
    activation_checkpointing: bool = False
    compile: bool = False

    @field_validator("mixture", "root", "out")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        """Workers on Ray Train run elsewhere: every path is absolute."""
        return v.resolve()

    @field_validator("config")
    @classmethod
    def _known_config(cls, v: str) -> str:
        from train.configs import CONFIGS

        if v not in CONFIGS:
            raise ValueError(f"unknown model config {v!r}; known: {sorted(CONFIGS)}")
        return v

    @model_validator(mode="after")
    def _resolve_condition(self) -> TrainOptions:
        """random-text by name (`small` is its old alias), else a local Qwen3-VL folder (made absolute)."""
        from train.conditioning import qwen3vl_folder

        if self.condition_cache is not None:
            if self.unfreeze_vlm:
                raise ValueError(
                    "--unfreeze-vlm trains the VLM: its tokens cannot come from --condition-cache"
                )
            self.condition_cache = self.condition_cache.resolve()
            if self.condition is not None:  # checked against the cache when the run is built
                self.condition = str(qwen3vl_folder(self.condition).resolve())
            return self
        if self.condition is None and self.config not in CPU_CONFIGS:
            raise ValueError(
                f"--config {self.config} conditions on Qwen3-VL (image + instruction): pass --condition "
                f"with a local Qwen3-VL folder (or --condition {RANDOM_TEXT} for a demo without meaning)"
            )
        if self.condition is None or self.condition in RANDOM_TEXT_ALIASES:
            self.condition = RANDOM_TEXT
        else:
            self.condition = str(qwen3vl_folder(self.condition).resolve())
        if self.ema is not None and self.parallel == "fsdp":
            raise ValueError("--ema keeps whole weights per rank: use it with --parallel ddp, not fsdp")
        if self.unfreeze_vlm and self.condition == RANDOM_TEXT:
            raise ValueError("--unfreeze-vlm fine-tunes a Qwen3-VL: pass --condition with its local folder")
        return self

    @property
    def vlm(self) -> bool:
        """The condition encoder is Qwen3-VL and runs in the step (it needs frame t in every batch)."""
        return self.condition_cache is None and self.condition != RANDOM_TEXT

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else max(1, self.steps // 20)


def lr_lambda(opts: TrainOptions) -> Callable[[int], float]:
    """Linear warm-up to `lr`, then cosine down to `min_lr` at the last step."""

    def factor(step: int) -> float:
        if step < opts.warmup_steps:
            return (step + 1) / opts.warmup_steps
        span = max(1, opts.steps - opts.warmup_steps)
        progress = min(1.0, (step - opts.warmup_steps) / span)
        floor = opts.min_lr / opts.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**63 - 1)


class Run:
    """Model, condition encoder, optimiser and schedule of one training run (one rank)."""

    def __init__(self, opts: TrainOptions, model: torch.nn.Module, condition: Any, device: torch.device):
        self.opts, self.model, self.condition, self.device = opts, model, condition, device
        from train.parallel import optimizer_kwargs

        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
        if self.tunes_condition:  # --unfreeze-vlm: the encoder trains too, at its own lr
            groups.append(
                {"params": [p for p in condition.parameters() if p.requires_grad], "lr": opts.vlm_lr}
            )
        self.trainable = [p for g in groups for p in g["params"]]
        hyper = {"lr": opts.lr, "betas": opts.betas, "eps": opts.eps, "weight_decay": opts.weight_decay}
        self.optimizer = torch.optim.AdamW(groups, **hyper, **optimizer_kwargs(device))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(opts))
        self.step = 0
        # --ema: an averaged copy of every trained model weight, by parameter name (the model's own names).
        named = getattr(model, "module", model).named_parameters()
        self.ema = {n: p.detach().clone() for n, p in named if p.requires_grad} if opts.ema else None

    def update_ema(self) -> None:
        """ema <- decay * ema + (1 - decay) * weights, after each optimiser step (no-op without --ema)."""
        if self.ema is None:
            return
        named = dict(getattr(self.model, "module", self.model).named_parameters())
        with torch.no_grad():
            weights = [named[n].detach() for n in self.ema]
            torch._foreach_lerp_(list(self.ema.values()), weights, 1.0 - self.opts.ema)

    @property
    def tunes_condition(self) -> bool:
        """Whether the condition encoder trains with the model (`--unfreeze-vlm`)."""
        return self.condition is not None and not self.condition.frozen

    def state_dict(self) -> dict[str, Any]:
        """Full tensors; under FSDP a collective (every rank calls it, rank 0 gets the tensors)."""
        from train.parallel import full_state, is_sharded

        if is_sharded(self.model):
            model_state, optim_state = full_state(self.model, self.optimizer)
        else:
            model_state = getattr(self.model, "module", self.model).state_dict()  # unwrap DDP
            optim_state = self.optimizer.state_dict()
        state = {"model": model_state, "optimizer": optim_state,
                 "scheduler": self.scheduler.state_dict(), "step": self.step}  # fmt: skip
        if self.ema is not None:
            state["ema"] = {n: t.clone() for n, t in self.ema.items()}
        if self.tunes_condition:  # a fine-tuned encoder is part of the model
            state["condition"] = getattr(self.condition, "module", self.condition).state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from train.parallel import is_sharded, keyed_by_name, load_full_state

        if is_sharded(self.model) or keyed_by_name(state["optimizer"]):  # FSDP, or an FSDP run's checkpoint
            load_full_state(self.model, self.optimizer, state)
        else:
            getattr(self.model, "module", self.model).load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        if "condition" in state:
            getattr(self.condition, "module", self.condition).load_state_dict(state["condition"])
        if self.ema is not None and "ema" in state:
            for n, t in state["ema"].items():
                self.ema[n].copy_(t)
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])


def save_checkpoint(out: Path, run: Run, extra: dict[str, Any]) -> None:
    write_checkpoint(out, run.state_dict(), extra)


def write_checkpoint(out: Path, state: dict[str, Any], extra: dict[str, Any]) -> None:
    """Written to a temp file then renamed: a killed run leaves the previous checkpoint intact."""
    tmp = out / f".{CHECKPOINT}.tmp"
    torch.save({**state, **extra}, tmp)
    os.replace(tmp, out / CHECKPOINT)


def load_checkpoint(out: Path) -> dict[str, Any] | None:
    """Tensors and plain types only (`weights_only=True`): a checkpoint carrying code is refused, not run."""
    path = out / CHECKPOINT
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        problem = f"{path} is not a checkpoint of `train launch` (truncated, or it holds code): {e}"
        raise Refused(" ".join(problem.split())[:400], "remove it, or restore the run folder") from e


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
    from train.setup import build_run

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
