"""Benchmark one training step of the LDA MM-DiT: forward + backward + AdamW on random batches.

    .venv/bin/python bench/train_step.py               # tiny on CPU (+ 0.5b, 1b when CUDA is there)
    .venv/bin/python bench/train_step.py --configs 1b --batch 32 --steps 20   # on a GPU machine
    .venv/bin/python bench/train_step.py --flops-only  # FLOPs per sample of every config (meta device)

Per config: samples/s, step time, peak memory (CUDA: max allocated; CPU: the process's peak RSS), the
FLOPs of one step from torch's FlopCounterMode (forward + backward at the same shapes, counted on the
meta device, where SDPA runs as countable matmuls: on CPU its fused kernel counts 0; AdamW's elementwise
work is not counted), achieved TFLOP/s and, on a GPU, MFU against 989 TFLOP/s (H100 SXM bf16 dense).
Shapes: `tiny` as configured (196 tokens x 32); 0.5b / 1b with the real ViT-S/16 latents (196 x 384) and
`--cond-len` condition tokens of width 2560 (Qwen3-VL-4B). bf16 autocast on CUDA, fp32 on CPU.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.configs import ModelConfig, get_config  # noqa: E402
from train.flow import random_batch, random_cond, training_losses  # noqa: E402
from train.model import LDAModel  # noqa: E402

H100_BF16_PEAK = 989e12
DEFAULT_BATCH = {"tiny": 8, "0.5b": 64, "1b": 32}


def bench_config(name: str) -> ModelConfig:
    if name == "tiny":
        return get_config("tiny")
    return get_config(name, latent_dim=384, n_latent_tokens=196, cond_dim=2560)


def make_step(model: LDAModel, config: ModelConfig, batch_size: int, cond_len: int, device: torch.device):
    """A closure running one optimiser step on a fixed random batch; returns the loss tensor."""
    batch = random_batch(config, batch_size, device=device)
    cond = random_cond(config, batch_size, length=cond_len, device=device)
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-5, fused=fused)
    generator = torch.Generator(device=device).manual_seed(0)
    use_bf16 = device.type == "cuda"

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = training_losses(model, batch, *cond, generator).total
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def measure(name: str, batch_size: int, steps: int, warmup: int, cond_len: int, device: torch.device) -> dict:
    config = bench_config(name)
    torch.manual_seed(0)
    model = LDAModel(config).to(device).train()
    params = sum(p.numel() for p in model.parameters())
    step = make_step(model, config, batch_size, cond_len, device)
    for _ in range(warmup):
        step()
    flops = meta_flops(name, batch_size, cond_len)["train_GFLOP_per_sample"] * 1e9 * batch_size
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    step_s = (time.perf_counter() - start) / steps
    achieved = flops / step_s
    return {
        "config": name,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "params_M": params / 1e6,
        "batch": batch_size,
        "step_ms": step_s * 1e3,
        "samples_per_s": batch_size / step_s,
        "peak_mem_GiB": peak_memory_gib(device),
        "train_GFLOP_per_sample": flops / batch_size / 1e9,
        "TFLOP_per_s": achieved / 1e12,
        "MFU_%": 100 * achieved / H100_BF16_PEAK if device.type == "cuda" else float("nan"),
    }


def meta_flops(name: str, batch_size: int, cond_len: int) -> dict:
    """Forward and forward + backward FLOPs per sample, counted on the meta device (no memory, no GPU)."""
    config = bench_config(name)
    with torch.device("meta"):
        model = LDAModel(config)
    meta = torch.device("meta")
    batch = random_batch(config, batch_size).to(meta)
    cond = tuple(x.to(meta) for x in random_cond(config, batch_size, length=cond_len))
    generator = torch.Generator().manual_seed(0)
    with FlopCounterMode(display=False) as fwd:
        loss = training_losses(model, batch, *cond, generator).total
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    forward = fwd.get_total_flops() / batch_size
    total = forward + bwd.get_total_flops() / batch_size
    params = sum(p.numel() for p in model.parameters())
    return {"config": name, "params_M": params / 1e6, "fwd_GFLOP_per_sample": forward / 1e9,
            "train_GFLOP_per_sample": total / 1e9}  # fmt: skip


def print_rows(rows: list[dict]) -> None:
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{row[k]:.2f}" if isinstance(row[k], float) else str(row[k]) for k in keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--configs", nargs="+", help="default: tiny on CPU; tiny, 0.5b, 1b with CUDA")
    parser.add_argument("--batch", type=int, help=f"samples per step (default per config: {DEFAULT_BATCH})")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--cond-len", type=int, default=100, help="condition tokens per sample")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--flops-only", action="store_true", help="count FLOPs on the meta device only")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.flops_only:
        names = args.configs or ["tiny", "0.5b", "1b"]
        print_rows([meta_flops(n, args.batch or 2, 8 if n == "tiny" else args.cond_len) for n in names])
        return
    names = args.configs or (["tiny", "0.5b", "1b"] if device.type == "cuda" else ["tiny"])
    rows = []
    for name in names:
        batch_size = args.batch or DEFAULT_BATCH[name]
        cond_len = 8 if name == "tiny" else args.cond_len
        try:
            rows.append(measure(name, batch_size, args.steps, args.warmup, cond_len, device))
        except torch.OutOfMemoryError:
            print(f"{name}: out of memory at batch {batch_size}", file=sys.stderr)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if rows:
        print_rows(rows)


if __name__ == "__main__":
    main()
