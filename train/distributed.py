"""Beyond one process: data-parallel training on Ray Train, or under torchrun (gloo on CPU, NCCL on GPU).

The loop (`train/loop.py`) only knows its rank and world size; here Ray Train starts the workers and
sets up the process group; `train/parallel.py` wraps the model: DDP (Ray's `prepare_model`) or FSDP2
(`--parallel fsdp`). `--address` joins an existing Ray cluster; without it a local Ray is started.
Started by torchrun (RANK / WORLD_SIZE set), `launch` joins torchrun's process group instead of Ray.
Every worker reads the same mixture through the catalog and takes its own slice of each global batch.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from train.loop import fit
from train.state import TrainOptions


def _worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    opts = TrainOptions.model_validate_json(config["opts"])
    ctx = ray.train.get_context()
    wrap = ray.train.torch.prepare_model if opts.parallel == "ddp" else None
    fit(opts, ctx.get_world_rank(), ctx.get_world_size(), wrap_model=wrap)


def _torchrun(opts: TrainOptions, rank: int, world_size: int, local_rank: int) -> None:
    """One rank of a torchrun (or torch.multiprocessing) job: the process group from the environment."""
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world_size)
    try:
        fit(opts.model_copy(update={"progress": opts.progress and rank == 0}), rank, world_size)
    finally:
        dist.destroy_process_group()


def _init_ray(address: str | None, workers: int) -> bool:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=max(workers + 1, os.cpu_count() or 1), include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=False)  # fmt: skip
    return True


def launch(opts: TrainOptions) -> None:
    """`train launch`: one process, one rank of torchrun, or `num_workers` data-parallel workers on Ray."""
    from train.parallel import torchrun_env

    env = torchrun_env()
    if env is not None:
        _torchrun(opts, *env)
        return
    if opts.num_workers == 1 and opts.address is None:
        fit(opts)
        return
    import ray
    import torch
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    started = _init_ray(opts.address, opts.num_workers)
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0)) > 0 and torch.cuda.is_available()
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"opts": opts.model_copy(update={"progress": False}).model_dump_json()},
            scaling_config=ScalingConfig(num_workers=opts.num_workers, use_gpu=gpus),
            torch_config=TorchConfig(backend="nccl" if gpus else "gloo"),
            run_config=RunConfig(storage_path=str((opts.out / "ray").resolve()), name="train"),
        )
        trainer.fit()
    finally:
        if started:
            ray.shutdown()
