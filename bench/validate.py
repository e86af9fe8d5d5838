"""Time `ingest validate` in full and with `--sample` on a 1,000-episode dataset with latents.

    .venv/bin/python bench/validate.py --keep /tmp/validate-bench          # builds it once, then times
    .venv/bin/python bench/validate.py --keep /tmp/validate-bench --sample 50 --sample 0.01

The dataset is built as a user builds one (untimed): synthetic EgoDex episodes (`tests/fixtures/egodex.py`,
`--frames` source frames at 30 Hz, 192x108) -> `ingest run egodex` -> `ingest latents` with a tiny DINOv3
saved to a folder (`tests/fixtures/dino.py`). Each validation runs as a user runs it (the `ingest` console
script), best of `--repeat`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def build(keep: Path, episodes: int, frames: int, workers: int) -> Path:
    sys.path.insert(0, str(REPO))
    from tests.fixtures.dino import save_tiny_dino
    from tests.fixtures.egodex import write_dataset

    root = keep / "datasets/egodex"
    if (root / "meta/latents.json").is_file():
        return root
    if not (keep / "in").is_dir():
        write_dataset(keep / "in", episodes, frames)
    dino = save_tiny_dino(keep / "dino")
    common = ["--workers", str(workers), "--no-progress"]
    subprocess.run([BIN / "ingest", "run", "egodex", "--input", keep / "in", "--output", keep / "datasets",
                    *common], check=True)  # fmt: skip
    subprocess.run([BIN / "ingest", "latents", root, "--model-dir", dino, *common], check=True)
    return root


def timed(cmd: list, repeat: int) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True)
        best = min(best, time.perf_counter() - t0)
        out = (result.stdout + result.stderr).strip().splitlines()[-1]
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", type=Path, required=True, help="folder for the dataset (reused if built)")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=90, help="source frames per episode (30 Hz)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--sample", action="append", default=None, help="--sample values to time (repeatable)"
    )
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    root = build(args.keep, args.episodes, args.frames, args.workers)
    n = sum(1 for _ in (root / "meta/episodes.jsonl").open())
    print(f"{root}: {n} episodes")
    full, last = timed([BIN / "ingest", "validate", root], args.repeat)
    print(f"| full (default) | {full:.1f} s | {last}")
    for sample in args.sample or ["50"]:
        wall, last = timed([BIN / "ingest", "validate", root, "--sample", sample], args.repeat)
        print(f"| --sample {sample} | {wall:.1f} s ({full / wall:.1f}x faster) | {last}")


if __name__ == "__main__":
    main()
