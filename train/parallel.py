"""How the model is spread over ranks and made faster, applied from outside `train/model.py` (torchtitan's
split: the model file knows nothing of parallelism).

Order, per MMDiTBlock then the root: activation checkpointing, `torch.compile`, then FSDP2
(`fully_shard`) or DDP around the whole model. Checkpointing and compile replace the block's `forward` on
the instance, so parameter names (and the checkpoint's `model` state dict) are the same in every mode.

FSDP2 on CUDA keeps fp32 master weights and gathers them in bf16 (`MixedPrecisionPolicy(param_dtype=bf16,
reduce_dtype=fp32)`); on CPU (gloo) it stays fp32. Checkpoints hold the FULL state dict in every mode: under
FSDP every rank takes part in gathering it (`full_state`), rank 0 writes it, and a resume loads it back
into the shards (`load_full_state`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

Parallel = Literal["ddp", "fsdp"]


def checkpointed(forward: Callable) -> Callable:
    """`forward` recomputed in the backward pass instead of keeping its activations (non-reentrant)."""
    from torch.utils.checkpoint import checkpoint

    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def apply_block_options(model: nn.Module, activation_checkpointing: bool, compile_blocks: bool) -> None:
    """Per MMDiTBlock: recompute its activations in the backward pass, and/or compile its forward."""
    for block in model.blocks:
        forward = block.forward
        if activation_checkpointing:
            forward = checkpointed(forward)
        if compile_blocks:
            forward = torch.compile(forward)
        if forward is not block.forward:
            block.forward = forward


def shard(model: nn.Module, device: torch.device) -> nn.Module:
    """FSDP2 over every rank of the process group: each MMDiTBlock is a unit, then the root (the embeddings,
    final layers and everything else)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    if device.type == "cuda":
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    else:
        mp = MixedPrecisionPolicy()
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return model


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP over the process group (what `ray.train.torch.prepare_model` does, for torchrun)."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type != "cuda":
        return DistributedDataParallel(model)
    return DistributedDataParallel(model, device_ids=[device.index or torch.cuda.current_device()])


def parallelize(
    model: nn.Module,
    parallel: Parallel,
    world_size: int,
    device: torch.device,
    activation_checkpointing: bool = False,
    compile_blocks: bool = False,
    ddp_wrap: Callable | None = None,
) -> nn.Module:
    """The model as one rank trains it. `ddp_wrap` (Ray Train's `prepare_model`) replaces our DDP."""
    apply_block_options(model, activation_checkpointing, compile_blocks)
    if parallel == "fsdp" and world_size > 1:
        return shard(model, device)
    if ddp_wrap is not None:
        return ddp_wrap(model)
    return data_parallel(model, device) if world_size > 1 else model


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Model and optimiser state gathered to full tensors on CPU (a collective: every rank calls it; rank 0
    gets the tensors). The model dict has the names of `LDAModel.state_dict()`; the optimiser's is keyed by
    parameter name (torch.distributed.checkpoint's format)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(
        model, optimizer, options=options
    )


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Put a full (gathered) model and optimiser state back into the shards of this rank."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, state["model"], options=options)
    set_optimizer_state_dict(model, optimizer, optim_state_dict=state["optimizer"], options=options)


def keyed_by_name(optimizer_state: dict[str, Any]) -> bool:
    """Whether an optimiser state dict is keyed by parameter name (written under FSDP), not by index."""
    return any(isinstance(k, str) for k in optimizer_state.get("state", {}))


def total_norm(norm: torch.Tensor) -> float:
    """`clip_grad_norm_`'s result as a number (a DTensor under FSDP: materialise it first)."""
    full = getattr(norm, "full_tensor", None)
    return float(full() if full is not None else norm)


def optimizer_kwargs(device: torch.device) -> dict[str, bool]:
    """Fused AdamW on CUDA (one kernel for all parameters), the foreach implementation elsewhere."""
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when started by torchrun (or anything setting its variables)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return rank, world, int(os.environ.get("LOCAL_RANK", rank))
