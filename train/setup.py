"""Build one rank's training run from `TrainOptions`: data, normaliser, model, condition encoder, optimiser,
and the checkpoint to resume from. Also what `train eval` needs to rebuild a run from its folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from train.state import CHECKPOINT, RANDOM_TEXT, RUN_CONFIG, Run, TrainOptions, load_checkpoint

NORMALIZER = "normalizer.json"


def data_config(opts: TrainOptions, world_size: int, **kw: Any) -> Any:
    from train.plan import DataConfig

    if opts.batch_size % world_size:
        raise ValueError(f"--batch-size {opts.batch_size} is not a multiple of --num-workers {world_size}")
    return DataConfig(root=opts.root, mixture=opts.mixture, batch_size=opts.batch_size // world_size,
                      seed=opts.seed, num_workers=opts.loader_workers, images=opts.vlm,
                      condition_cache=opts.condition_cache, normalizer=opts.normalizer,
                      normalize_per=opts.normalize_per, pin_memory=torch.cuda.is_available(),
                      **kw)  # fmt: skip


def condition_encoder(opts: TrainOptions, device: torch.device) -> Any:
    """The run's condition encoder: Qwen3-VL on frame t and the instruction (frozen unless
    `--unfreeze-vlm`), or the random byte-level text encoder (`random-text`, tests and demos)."""
    from train.conditioning import Qwen3VLConditionEncoder, SmallTextEncoder

    if opts.condition_cache is not None:
        return _precomputed(opts)
    if not opts.vlm:
        return SmallTextEncoder().to(device)
    return Qwen3VLConditionEncoder(Path(opts.condition), device=str(device), frozen=not opts.unfreeze_vlm)


def _precomputed(opts: TrainOptions) -> Any:
    """The stand-in for a cached encoder; a --condition folder, if given, must be the cache's."""
    from train.condition_cache import CacheMeta, model_identity
    from train.conditioning import PrecomputedCondition

    meta = CacheMeta.load(opts.condition_cache)
    if opts.condition is not None and model_identity(Path(opts.condition)) != meta.identity:
        raise ValueError(
            f"--condition-cache {opts.condition_cache} holds {meta.encoder}, not {opts.condition}"
        )
    return PrecomputedCondition(meta.encoder, meta.dim)


def build_model(config_name: str, data: Any, cond_dim: int, action_heads: str = "shared") -> Any:
    from train.configs import get_config
    from train.model import LDAModel

    tokens, dim = data.latent_shape
    # Per-embodiment heads: one copy for each embodiment of the data (its ids index `data.embodiments`).
    embodiments = tuple(data.embodiments) if action_heads == "per_embodiment" else ()
    # Inverse dynamics is scored on the steps between o_t and the future frame (future_offset frames).
    config = get_config(config_name, latent_dim=dim, n_latent_tokens=tokens, cond_dim=cond_dim,
                        future_obs_index=data.cfg.future_offset, action_heads=action_heads,
                        embodiments=embodiments)  # fmt: skip
    return LDAModel(config)


def run_embodiments(state: dict[str, Any] | None) -> list[str] | None:
    """The embodiment names a checkpoint's per-embodiment model was built with (None: shared heads)."""
    config = (state or {}).get("model_config", {})
    return list(config["embodiments"]) if config.get("action_heads") == "per_embodiment" else None


def check_resume(opts: TrainOptions, state: dict[str, Any]) -> None:
    """--action-heads, --normalizer and --normalize-per of a resumed run must be the checkpoint's."""
    heads = state["model_config"].get("action_heads", "shared")
    mode = state["normalizer"].get("mode", "mean_std")
    per = "dataset" if state["normalizer"].get("per_dataset") else "mixture"
    if (opts.action_heads, opts.normalizer, opts.normalize_per) != (heads, mode, per):
        raise ValueError(f"--resume: the checkpoint has --action-heads {heads} --normalizer {mode} "
                         f"--normalize-per {per}, not {opts.action_heads} / {opts.normalizer} / "
                         f"{opts.normalize_per}")  # fmt: skip


def _cond_dim(encoder: Any) -> int:
    return int(encoder.dim)


def build_run(
    opts: TrainOptions, rank: int, world_size: int, device: torch.device, wrap_model: Callable | None
) -> tuple[Run, Any, dict[str, Any]]:
    """(run, loader from the run's step, extras for the loop). Resumes from `opts.out` when asked."""
    from train.data import TrainingData, build_loader
    from train.flow import training_losses
    from train.normalize import Normalizer

    state = load_checkpoint(opts.out) if opts.resume else None
    if opts.resume and state is None:
        raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {opts.out}")
    if state is None and (opts.out / CHECKPOINT).exists():
        raise FileExistsError(f"{opts.out} already holds a run: pass --resume, or another --out")
    cfg = data_config(opts, world_size)
    if state is not None:
        check_resume(opts, state)
    normalizer = Normalizer.model_validate(state["normalizer"]) if state else None
    data = TrainingData.open(cfg, normalizer, embodiments=run_embodiments(state))
    torch.manual_seed(opts.seed)  # identical initial weights on every rank
    encoder = condition_encoder(opts, device)
    if not encoder.frozen and world_size > 1:
        raise ValueError("--unfreeze-vlm is single-process for now (the encoder is not data-parallel)")
    model = build_model(opts.config, data, _cond_dim(encoder), opts.action_heads).to(device)
    model = parallelize_run(model, opts, world_size, device, wrap_model)
    run = Run(opts, model, encoder, device)
    if state is not None:
        run.load_state_dict(state)
    if rank == 0:
        _write_run_files(opts, data, model, encoder)
    loader = build_loader(cfg, rank, world_size, start_step=run.step, data=data)
    extra = {"losses_fn": training_losses, "checkpoint_extra": _checkpoint_extra(opts, data, model)}
    return run, loader, extra


def parallelize_run(
    model: Any, opts: TrainOptions, world_size: int, device: torch.device, ddp_wrap: Callable | None
) -> Any:
    """DDP or FSDP2 over the ranks, per-block activation checkpointing and compile (`train/parallel.py`)."""
    from train.parallel import parallelize

    return parallelize(model, opts.parallel, world_size, device, opts.activation_checkpointing,
                       opts.compile, ddp_wrap)  # fmt: skip


def _model_config(model: Any) -> Any:
    return getattr(model, "module", model).config


def _checkpoint_extra(opts: TrainOptions, data: Any, model: Any) -> dict[str, Any]:
    return {"normalizer": data.normalizer.model_dump(mode="json"),
            "model_config": _model_config(model).model_dump(mode="json"),
            "options": opts.model_dump(mode="json")}  # fmt: skip


def condition_description(encoder: Any) -> dict[str, Any]:
    """What run.json says of the condition encoder (its name is also on every metrics.jsonl line)."""
    note = "random weights, no meaning: tests and demos only" if encoder.name == RANDOM_TEXT else None
    return {"name": encoder.name, "dim": int(encoder.dim), "frozen": bool(encoder.frozen),
            "images": bool(encoder.needs_images), "note": note}  # fmt: skip


def _write_run_files(opts: TrainOptions, data: Any, model: Any, encoder: Any) -> None:
    opts.out.mkdir(parents=True, exist_ok=True)
    data.normalizer.save(opts.out / NORMALIZER)
    run = {"options": opts.model_dump(mode="json"), "model": _model_config(model).model_dump(mode="json"),
           "data": data.describe(), "condition": condition_description(encoder)}  # fmt: skip
    (opts.out / RUN_CONFIG).write_text(json.dumps(run, indent=2) + "\n")
