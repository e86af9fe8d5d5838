"""Benchmark `ingest run oxe`: episodes/s and frames/s (and per CPU-second) on a generated RLDS shard set.

    .venv/bin/python bench/ingest_oxe.py                        # 8 shards x 16 episodes x 30 steps, 2 cameras
    .venv/bin/python bench/ingest_oxe.py --shards 16 --workers 1,2

The input (JPEG frames, BridgeData layout) is generated untimed with `tests/fixtures/rlds.py`; the job
runs as a user runs it (the `ingest` console script, its own local Ray), measured by
`bench/ingest_egodex.py`'s process-tree sampler (CPU seconds and peak RSS of every process).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def make_input(tmp: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    from ingest.job import DEFAULT_PIPELINES
    from schemas.pipelines import PipelinesFile
    from tests.fixtures import rlds as rlds_fx

    fx = rlds_fx.write_rlds_dataset(tmp / "in", splits={"train": [args.episodes] * args.shards},
                                    num_steps=args.steps, hw=(args.size, args.size))  # fmt: skip
    cfg = PipelinesFile.load(DEFAULT_PIPELINES).source("oxe")
    cameras = [f"steps/observation/{c}" for c in rlds_fx.CAMERAS]
    cfg = cfg.model_copy(update={"cameras": cameras, "splits": ["train"]})
    pipelines = tmp / "pipelines.yaml"
    pipelines.write_text(yaml.safe_dump({"sources": {"oxe": cfg.model_dump(mode="json")}}))
    return fx.root, pipelines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=16, help="episodes per shard")
    parser.add_argument("--steps", type=int, default=30, help="5 Hz steps per episode")
    parser.add_argument("--size", type=int, default=128, help="camera images are size x size")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    from bench.ingest_egodex import run_ingest  # the same process-tree measurement for every ingest bench

    with tempfile.TemporaryDirectory(prefix="bench-oxe-") as tmp:
        inp, pipelines = make_input(Path(tmp), args)
        for workers in (int(w) for w in args.workers.split(",")):
            r = run_ingest(inp, Path(tmp) / f"out-{workers}", workers, source="oxe", pipelines=pipelines)
            shape = f"{args.shards} shards x {args.episodes} episodes x {args.steps} steps, {args.size}px"
            print(
                f"ingest oxe [{shape}] workers={workers}: {r['episodes'] / r['wall_s']:.1f} episodes/s, "
                f"{r['frames_per_s']:.1f} frames/s, {r['frames_per_cpu_s']:.1f} frames/CPU-s, "
                f"wall {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB",
                flush=True,
            )


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
