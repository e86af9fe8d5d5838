"""The state of one training run, shared by `train/setup.py` (which builds it) and `train/loop.py` (which
steps it): `TrainOptions`, the `Run` (model, condition encoder, optimiser, schedule, EMA) and its atomic,
code-free checkpoints."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.atomic import atomic_path
from schemas.errors import Refused

CHECKPOINT = "checkpoint.pt"
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
        if self.ema is not None:  # a checkpoint without an average: start it from the resumed weights
            named = dict(getattr(self.model, "module", self.model).named_parameters())
            saved = state.get("ema", {})
            for n, t in self.ema.items():
                t.copy_(saved[n] if n in saved else named[n].detach())
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])


def save_checkpoint(out: Path, run: Run, extra: dict[str, Any]) -> None:
    write_checkpoint(out, run.state_dict(), extra)


def write_checkpoint(out: Path, state: dict[str, Any], extra: dict[str, Any]) -> None:
    """Written to a temp file then renamed: a killed run leaves the previous checkpoint intact."""
    with atomic_path(out / CHECKPOINT) as tmp:
        torch.save({**state, **extra}, tmp)


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
