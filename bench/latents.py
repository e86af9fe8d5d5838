"""Benchmark the latents path: decode + preprocess + encode frames/s, and the share of each part.

    .venv/bin/python bench/latents.py                      # CPU, real ViT-S/16 shape, random weights
    .venv/bin/python bench/latents.py --device cuda --batch 256 --frames 2048   # on a GPU machine
    .venv/bin/python bench/latents.py --job                # also `ingest latents` end to end (Ray)

The input is an H.264 640x360 video at 10 fps, as `ingest run` writes it (generated, untimed). Parts:
- decode: PyAV decode of every `stride`-th frame, RGB at the policy's size straight from the codec
  scaler (`ingest.latents.decode_chunks`);
- preprocess: resize/crop to 224 and ImageNet normalisation in torch (`ingest.latents.preprocess`);
- encode: the DINOv3 ViT-S/16 forward (random weights: same cost as the real ones).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def make_video(path: Path, frames: int, width: int = 640, height: int = 360) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"crf": "23", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 4 * k, axis=1), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, 10)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(args: argparse.Namespace, video: Path) -> dict[str, float]:
    from ingest.latents import decode_chunks, latent_frames, load_encoder, preprocess
    from schemas.latents import LatentsConfig

    cfg = LatentsConfig(random_weights=True, device=args.device, batch_size=args.batch)
    encoder = load_encoder(cfg)
    frames = latent_frames(args.frames, args.stride)
    t = {"decode": 0.0, "preprocess": 0.0, "encode": 0.0}
    start = time.perf_counter()
    chunks = decode_chunks(video, frames, cfg.resize, args.batch)
    while True:
        t0 = time.perf_counter()
        images = next(chunks, None)
        t1 = time.perf_counter()
        if images is None:
            break
        with torch.inference_mode():
            pixels = preprocess(images, cfg.resize, encoder.device)
            sync(args.device)
            t2 = time.perf_counter()
            with torch.autocast(encoder.device.type, dtype=torch.bfloat16, enabled=args.device == "cuda"):
                encoder.backbone(pixel_values=pixels)
            sync(args.device)
        t["decode"] += t1 - t0
        t["preprocess"] += t2 - t1
        t["encode"] += time.perf_counter() - t2
    t["total"] = time.perf_counter() - start
    t["frames"] = float(len(frames))
    return t


def job(args: argparse.Namespace, tmp: Path) -> str:
    """`ingest run` on generated EgoDex input, then `ingest latents --random-weights`, timed."""
    import subprocess

    from tests.fixtures.egodex import write_dataset

    write_dataset(tmp / "in", args.job_episodes, 300, width=640, height=360)
    bin_ = Path(sys.executable).parent
    subprocess.run([bin_ / "ingest", "run", "egodex", "-i", tmp / "in", "-o", tmp / "out", "--no-progress"],
                   check=True, capture_output=True)  # fmt: skip
    start = time.perf_counter()
    subprocess.run([bin_ / "ingest", "latents", tmp / "out/egodex", "--random-weights", "--no-progress"],
                   check=True, capture_output=True)  # fmt: skip
    wall = time.perf_counter() - start
    n = args.job_episodes * len(range(0, 100, 3))
    rate = f"{n / wall:.1f} frames/s (Ray start-up included)"
    return f"ingest latents (Ray, CPU): {n} frames in {wall:.1f} s = {rate}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--frames", type=int, default=480, help="10 Hz frames in the video")
    parser.add_argument("--stride", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--job", action="store_true", help="also time `ingest latents` end to end")
    parser.add_argument("--job-episodes", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-latents-") as tmp:
        video = Path(tmp) / "video.mp4"
        make_video(video, args.frames)
        t = measure(args, video)
        parts = ("decode", "preprocess", "encode")
        shares = [f"{k} {t[k]:.2f} s ({100 * t[k] / t['total']:.0f} %)" for k in parts]
        head = f"latents [{args.device}, ViT-S/16, batch {args.batch}, threads {torch.get_num_threads()}]"
        rate = f"{t['frames']:.0f} frames in {t['total']:.2f} s = {t['frames'] / t['total']:.1f} frames/s"
        print(f"{head}: {rate}; {', '.join(shares)}")
        if args.job:
            print(job(args, Path(tmp)))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
