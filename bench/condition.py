"""What Qwen3-VL conditioning costs the trainer: the frames cached beside the latents, and the VLM forward
against reading cached condition tokens.

    .venv/bin/python bench/condition.py            # CPU: tiny random Qwen3-VL, file reads
    .venv/bin/python bench/condition.py --flops    # + FLOPs of a Qwen3-VL-4B-shaped forward (meta device)

Prints one JSON object:
- `bytes_per_frame`: a cached frame (uint8 224 x 224 x 3) beside a cached latent (float16 196 x 384), and
  what one sample's condition tokens would take cached (float16, Lc x hidden);
- `read_ms`: one sample's reads from an episode file of 300 cached frames (page cache warm): its three
  latents (t - 3, t, t + 6), its frame t, and Lc x 2560 cached condition tokens;
- `forward_ms_per_sample`: the tiny random Qwen3-VL (tests/fixtures/qwen3vl.py) on one 224 px frame and
  an instruction, batch 16, including the image processor;
- with `--flops`: FLOPs of one Qwen3-VL-4B-shaped forward with one 224 px frame (49 image tokens) and
  `--text` text tokens, from its parameters counted on the meta device.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas.latents_reader import read_images, read_latents, read_rows  # noqa: E402

FRAMES = 300
QWEN_4B = {  # lda-model.md 5.2 (secondary source): Qwen3-VL-4B-Instruct shapes
    "text_config": dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                        num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
                        rope_parameters={"rope_type": "default", "mrope_section": [24, 20, 20],
                                         "mrope_interleaved": True, "rope_theta": 5e6}),
    "vision_config": dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, patch_size=16,
                          spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=2560,
                          deepstack_visual_indexes=[5, 11, 17], num_position_embeddings=2304),
}  # fmt: skip


def _timed(fn, repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e3


def reads(tmp: Path, cond_len: int) -> dict[str, float]:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    index = np.arange(0, 3 * FRAMES, 3, dtype=np.int64)
    path = tmp / "episode.safetensors"
    tensors = {"latents": rng.standard_normal((FRAMES, 196, 384)).astype(np.float16), "frame_index": index,
               "images": rng.integers(0, 256, (FRAMES, 224, 224, 3), dtype=np.uint8),
               "cond": rng.standard_normal((FRAMES, cond_len, 2560)).astype(np.float16)}  # fmt: skip
    save_file(tensors, str(path))
    t = [int(x) for x in rng.choice(index[2:-3], 200)]
    it = iter(range(10**9))

    def pick() -> int:
        return t[next(it) % len(t)]

    return {
        "latents_3_frames": _timed(lambda: read_latents(path, [(x := pick()) - 3, x, x + 6]), 200),
        "image_frame_t": _timed(lambda: read_images(path, [pick()]), 200),
        f"cond_tokens_{cond_len}x2560": _timed(lambda: read_rows(path, [pick()], "cond"), 200),
    }


def tiny_forward(tmp: Path, batch: int) -> dict[str, float]:
    from tests.fixtures.qwen3vl import save_tiny_qwen3vl
    from train.conditioning import Qwen3VLConditionEncoder

    encoder = Qwen3VLConditionEncoder(save_tiny_qwen3vl(tmp / "qwen3vl-tiny"))
    images = torch.randint(0, 256, (batch, 1, 224, 224, 3), dtype=torch.uint8)
    captions = ["pick up the red cup and put it on the plate"] * batch
    with torch.no_grad():
        total = _timed(lambda: encoder(captions, images), 5)
        prep = _timed(lambda: encoder.inputs(captions, images), 5)
    return {"total": total / batch, "of_which_preprocessing": prep / batch}


def flops_4b(text_tokens: int) -> dict[str, float]:
    """GFLOPs of one Qwen3-VL-4B-shaped forward on one 224 px frame (196 patches, 49 image tokens) and
    `text_tokens` text tokens: 2 x parameters x tokens per part, parameters counted on the meta device
    (the vision merger is counted at 196 tokens instead of 49: a small over-count; attention scores at
    these lengths are under 1 %). A meta-device forward does not run (the vision tower builds CPU tensors)."""
    from transformers import Qwen3VLConfig, Qwen3VLModel

    config = Qwen3VLConfig(**QWEN_4B, image_token_id=151655, video_token_id=151656,
                           vision_start_token_id=151652, vision_end_token_id=151653)  # fmt: skip
    with torch.device("meta"):
        model = Qwen3VLModel(config)
    text = sum(p.numel() for n, p in model.language_model.named_parameters() if "embed_tokens" not in n)
    vision = sum(p.numel() for p in model.visual.parameters())
    tokens = 49 + text_tokens
    return {"params_b": sum(p.numel() for p in model.parameters()) / 1e9,
            "gflop": (2 * text * tokens + 2 * vision * 196) / 1e9}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--text", type=int, default=25, help="text tokens of the prompt (template + instruction)")
    ap.add_argument("--flops", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cond_len = 49 + args.text
    out: dict = {"bytes_per_frame": {"image_uint8_224": 224 * 224 * 3, "latent_fp16_196x384": 196 * 384 * 2,
                                     f"cond_tokens_fp16_{cond_len}x2560": cond_len * 2560 * 2}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        out["read_ms"] = reads(Path(tmp), cond_len)
        out["forward_ms_per_sample_tiny_cpu"] = tiny_forward(Path(tmp), args.batch)
    if args.flops:
        out["qwen3vl_4b_forward"] = flops_4b(args.text)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
