"""Benchmark the captioners: captions/s of the template captioner and of the VLM path.

    .venv/bin/python bench/caption.py                       # template + the tiny random Qwen3-VL on CPU
    .venv/bin/python bench/caption.py --model-dir DIR --device cuda --batch 16   # a real Qwen3-VL, GPU

- template: `TemplateCaptioner` over the real Ego4D Goal-Step and EPIC-KITCHENS texts when
  ../shared/realdata has them (else real-style strings), repeated to `--texts` requests.
- vlm: `VlmCaptioner.caption` (preprocessing, batched greedy `generate`, cleanup) on `--frames` random
  frames per episode at `--image-size` px; without `--model-dir` it is the tiny random Qwen3-VL of
  tests/fixtures/qwen3vl.py (64x64 px frames, a 2-layer 64-wide model): its figure measures the plumbing,
  not a real model. Frame decoding is not included (see `bench/latents.py` for decode rates).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "realdata"
STYLE = [
    "#C C picks up the knife from the table",
    "Kneads the dough with the mixer.",
    "continue chopping onion",
    "Put the spoon in the pot.",
    "taking a glass",
    "Remove own USB from USB bank while sitting against a blue background.",
    "put carrot on plate",
    "basic_pick_and_place",
]


def real_texts() -> list[str]:
    """Ego4D Goal-Step step descriptions and EPIC narrations (real-style strings when absent)."""
    texts: list[str] = []

    def walk(seg: dict) -> None:
        texts.append(seg.get("step_description") or "")
        for child in seg.get("segments", []):
            walk(child)

    for path in sorted((REAL / "ego4d_goalstep" / "data").glob("*.json")):
        for video in json.loads(path.read_text())["videos"]:
            for seg in video.get("segments", []):
                walk(seg)
    epic = REAL / "epic_kitchens_100" / "EPIC_100_validation.csv"
    if epic.exists():
        with open(epic, newline="") as f:
            texts += [row["narration"] for row in csv.DictReader(f)]
    return [t for t in texts if t.strip()] or STYLE


def bench_template(n: int) -> tuple[float, int]:
    from ingest.captions.base import CaptionRequest
    from ingest.captions.template import TemplateCaptioner

    texts = real_texts()
    reqs = [CaptionRequest(str(i), texts[i % len(texts)], "", "source") for i in range(n)]
    start = time.perf_counter()
    TemplateCaptioner().caption(reqs)
    return n / (time.perf_counter() - start), len(texts)


def bench_vlm(args: argparse.Namespace, model_dir: Path) -> dict[int, float]:
    from ingest.captions.base import CaptionRequest
    from ingest.captions.vlm import VlmCaptioner
    from schemas.captions import VlmConfig

    cfg = VlmConfig(model_dir=model_dir, max_new_tokens=args.max_new_tokens, batch_size=args.batch)
    captioner = VlmCaptioner(cfg, args.device)
    rng = np.random.default_rng(0)
    size = (args.image_size * 9 // 16, args.image_size, 3)
    frames = [rng.integers(0, 255, (args.frames, *size), dtype=np.uint8) for _ in range(args.episodes)]
    reqs = [CaptionRequest(str(i), STYLE[i % len(STYLE)], "", "source", f) for i, f in enumerate(frames)]
    out = {}
    for batch in sorted({1, args.batch}):
        captioner.caption(reqs[:batch])  # warm-up
        start = time.perf_counter()
        for i in range(0, len(reqs), batch):
            captioner.caption(reqs[i : i + batch])
        if args.device == "cuda":
            import torch

            torch.cuda.synchronize()
        out[batch] = len(reqs) / (time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=100_000, help="template requests")
    parser.add_argument(
        "--model-dir", type=Path, help="a local Qwen3-VL folder (default: the tiny random one)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    rate, distinct = bench_template(args.texts)
    print(f"template: {rate:,.0f} captions/s ({args.texts} requests cycling over {distinct} real texts)")
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from tests.fixtures.qwen3vl import save_tiny_qwen3vl

            model_dir = save_tiny_qwen3vl(Path(tmp) / "qwen3vl-tiny")
        rates = bench_vlm(args, model_dir)
    what = "tiny random Qwen3-VL" if args.model_dir is None else model_dir.name
    where = f"{args.device}, {torch.get_num_threads()} torch threads" if args.device == "cpu" else args.device
    for batch, r in rates.items():
        setup = f"{args.frames} frames of {args.image_size} px, max_new_tokens {args.max_new_tokens}"
        print(f"vlm ({what}, {where}): batch {batch}: {r:.1f} captions/s ({setup})")


if __name__ == "__main__":
    main()
