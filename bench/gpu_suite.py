"""The GPU suite: DINO latents images/s, training-step MFU of 0.5b and 1b in bf16, VLM captions/s; one JSON.

    bench/gpu_suite.sh                      # on a GPU machine: a few minutes, writes gpu_suite.json
    bench/gpu_suite.sh --dry                # CPU: the same code paths, tiny models, a few steps (CI)
    .venv/bin/python bench/gpu_suite.py --help

Parts (each timed after warm-up, CUDA synchronised; a part that fails records its error and the rest run):
- latents: `ingest.latents.Encoder` (preprocessing + DINOv3 ViT-S/16 forward, bf16 autocast on CUDA) on
  random uint8 frames at 640x360, as `ingest latents` feeds it; random weights unless `--dino-dir`.
- train: one optimiser step of `LDAModel` (forward + backward + fused AdamW, bf16 autocast) on random
  batches of the real shapes (196 x 384 latents, 100 condition tokens of width 2560), single GPU, with
  `--compile` / `--activation-checkpointing` as asked; MFU = FLOPs counted by FlopCounterMode on the meta
  device / step time / the GPU's dense bf16 peak (H100 / H200 989 TFLOP/s, A100 312).
- captions: `ingest.captions.vlm.VlmCaptioner` (batched greedy generate) on random frames; a local
  Qwen3-VL with `--vlm-dir`, else the tiny random Qwen3-VL of the tests (a plumbing figure, named so).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, iters: int, device: torch.device) -> float:
    """Seconds per call of `fn` over `iters` calls (after the caller's warm-up)."""
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


def latents(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from ingest.latents import load_encoder
    from schemas.latents import LatentsConfig

    override = None
    if args.dino_dir:
        cfg = LatentsConfig(model_dir=args.dino_dir, device=device.type)
    else:
        cfg = LatentsConfig(random_weights=True, device=device.type)
        if args.dry:
            from tests.fixtures.dino import TINY_DINO

            override = TINY_DINO
    encoder = load_encoder(cfg, override)
    frames = torch.from_numpy(
        np.random.default_rng(0).integers(0, 255, (args.dino_batch, 360, 640, 3), np.uint8)
    )
    with torch.inference_mode():
        encoder(frames)
        step = timed(lambda: encoder(frames), args.iters, device)
    model = str(args.dino_dir) if args.dino_dir else ("tiny-random" if args.dry else "vit-s16-random")
    return {"model": model, "batch": args.dino_batch, "images_per_s": args.dino_batch / step}


def train(args: argparse.Namespace, device: torch.device, name: str, batch: int) -> dict[str, Any]:
    from train_step import bench_config, make_step, meta_flops

    from train.model import LDAModel
    from train.parallel import apply_block_options

    config = bench_config(name)
    cond_len = 8 if name == "tiny" else args.cond_len
    torch.manual_seed(0)
    model = LDAModel(config).to(device).train()
    apply_block_options(model, args.activation_checkpointing, args.compile)
    step = make_step(model, config, batch, cond_len, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.warmup):
        step()
    seconds = timed(step, args.iters, device)
    flops = meta_flops(name, batch, cond_len)["train_GFLOP_per_sample"] * 1e9 * batch
    peak = peak_flops(device)
    return {
        "config": name, "params_M": sum(p.numel() for p in model.parameters()) / 1e6, "batch": batch,
        "compile": args.compile, "activation_checkpointing": args.activation_checkpointing,
        "step_ms": seconds * 1e3, "samples_per_s": batch / seconds, "TFLOP_per_s": flops / seconds / 1e12,
        "MFU": flops / seconds / peak if peak else None,
        "peak_mem_GiB": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }  # fmt: skip


def captions(args: argparse.Namespace, device: torch.device, tmp: Path) -> dict[str, Any]:
    from caption import bench_vlm

    model_dir = args.vlm_dir
    if model_dir is None:
        from tests.fixtures.qwen3vl import save_tiny_qwen3vl

        model_dir = save_tiny_qwen3vl(tmp / "qwen3vl")
    ns = argparse.Namespace(max_new_tokens=args.max_new_tokens, batch=args.vlm_batch, device=device.type,
                            image_size=64 if args.vlm_dir is None else 448, frames=2 if args.dry else 4,
                            episodes=args.vlm_batch * (1 if args.dry else 4))  # fmt: skip
    rates = bench_vlm(ns, model_dir)
    return {"model": str(args.vlm_dir) if args.vlm_dir else "tiny-random (plumbing only)",
            "batch": args.vlm_batch, "captions_per_s": rates[args.vlm_batch],
            "captions_per_s_batch1": rates[1]}  # fmt: skip


def run_part(fn, *a: Any) -> dict[str, Any]:
    try:
        return fn(*a)
    except Exception as e:  # a part's failure (OOM, missing kernel) is recorded, the suite goes on
        traceback.print_exc()
        return {"error": f"{type(e).__name__}: {e}"}


def suite(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cpu" if args.dry else args.device)
    report: dict[str, Any] = {
        "dry": args.dry, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    report["latents"] = run_part(latents, args, device)
    configs = [("tiny", 4)] if args.dry else [("0.5b", args.batch_05b), ("1b", args.batch_1b)]
    report["train"] = {}
    for name, batch in configs:
        report["train"][name] = run_part(train, args, device, name, batch)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    with tempfile.TemporaryDirectory() as tmp:
        report["captions"] = run_part(captions, args, device, Path(tmp))
    return report


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dry", action="store_true", help="CPU, tiny models, a few steps: the code paths only")
    p.add_argument("--out", type=Path, default=Path("gpu_suite.json"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--iters", type=int, help="timed iterations per part (default 10; dry 2)")
    p.add_argument("--warmup", type=int, help="untimed steps before timing training (default 3; dry 1)")
    p.add_argument("--batch-05b", type=int, default=64)
    p.add_argument("--batch-1b", type=int, default=32)
    p.add_argument("--cond-len", type=int, default=100, help="condition tokens per sample (0.5b, 1b)")
    p.add_argument("--compile", action="store_true", help="torch.compile each block")
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--dino-dir", type=Path, help="local DINOv3 weights (default: random ViT-S/16)")
    p.add_argument("--dino-batch", type=int, help="frames per encoder call (default 256; dry 2)")
    p.add_argument("--vlm-dir", type=Path, help="local Qwen3-VL (default: the tests' tiny random one)")
    p.add_argument("--vlm-batch", type=int, help="episodes per generate() (default 16; dry 2)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    args = p.parse_args(argv)
    defaults = {"iters": (2, 10), "warmup": (1, 3), "dino_batch": (2, 256), "vlm_batch": (2, 16)}
    for key, (dry, gpu) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, dry if args.dry else gpu)
    if not args.dry and not torch.cuda.is_available():
        p.error("no CUDA device: run on a GPU machine, or pass --dry")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    report = suite(args)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
