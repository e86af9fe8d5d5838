"""Benchmark `ingest run egodex`: output frames per second (wall and per CPU-second) and peak memory.

    .venv/bin/python bench/ingest_egodex.py --episodes 24                 # synthetic 1080p input
    .venv/bin/python bench/ingest_egodex.py --real --copies 4             # the six real episodes x4

The input is generated (or copied) into a temporary folder first, untimed. The job runs as the user
runs it (the `ingest` console script, a fresh process with its own local Ray); peak memory is the
largest summed RSS of its whole process tree, sampled every 0.1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "realdata" / "egodex"


def make_input(dst: Path, args: argparse.Namespace) -> None:
    if args.real:
        for c in range(args.copies):
            for h5 in sorted(REAL.glob("*/*.hdf5")):
                folder = dst / f"copy{c}" / h5.parent.name
                folder.mkdir(parents=True, exist_ok=True)
                for f in (h5, h5.with_suffix(".mp4")):
                    shutil.copy(f, folder / f.name)
        return
    from tests.fixtures.egodex import write_dataset

    write_dataset(dst, args.episodes, args.frames, width=args.width, height=args.height)


class TreeSampler:
    """Samples a process tree: peak summed RSS, and CPU seconds per process (its last sample counts).

    Ray's workers are children of the raylet, which is never reaped by the job's process, so
    getrusage(RUSAGE_CHILDREN) misses them; sampling the tree sees every process."""

    def __init__(self, pid: int) -> None:
        self.root, self.peak_rss, self.cpu = psutil.Process(pid), 0, {}

    def sample(self) -> None:
        rss = 0
        for p in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                rss += p.memory_info().rss
                self.cpu[(p.pid, p.create_time())] = t.user + t.system
        self.peak_rss = max(self.peak_rss, rss)


def run_ingest(
    inp: Path, out: Path, workers: int, source: str = "egodex", pipelines: Path | None = None
) -> dict[str, float]:
    cmd = [str(Path(sys.executable).parent / "ingest"), "run", source, "--input", str(inp)]
    cmd += ["--output", str(out), "--workers", str(workers), "--no-progress", "--max-reject-ratio", "0"]
    cmd += ["--pipelines", str(pipelines)] if pipelines else []
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    tree = TreeSampler(proc.pid)
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            tree.sample()
        time.sleep(0.1)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"ingest run failed with exit status {proc.returncode}")
    info = json.loads((out / source / "meta" / "info.json").read_text())
    cpu = sum(tree.cpu.values())
    frames = info["total_frames"]
    return {"episodes": info["total_episodes"], "frames": frames, "wall_s": wall, "cpu_s": cpu,
            "frames_per_s": frames / wall, "frames_per_cpu_s": frames / cpu if cpu else 0.0,
            "peak_rss_mib": tree.peak_rss / 2**20}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--episodes", type=int, default=24, help="synthetic episodes")
    parser.add_argument("--frames", type=int, default=150, help="30 Hz frames per synthetic episode")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--real", action="store_true", help="copy the six real EgoDex episodes instead")
    parser.add_argument("--copies", type=int, default=4, help="with --real: how many copies")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-egodex-") as tmp:
        inp = Path(tmp) / "input"
        make_input(inp, args)
        kind = f"real x{args.copies}" if args.real else f"synthetic {args.width}x{args.height}"
        for workers in (int(w) for w in args.workers.split(",")):
            out = Path(tmp) / f"out-{workers}"
            r = run_ingest(inp, out, workers)
            print(
                f"ingest egodex [{kind}] workers={workers}: {r['episodes']} episodes, {r['frames']} frames, "
                f"wall {r['wall_s']:.1f} s, {r['frames_per_s']:.1f} frames/s, CPU {r['cpu_s']:.1f} s, "
                f"{r['frames_per_cpu_s']:.1f} frames/CPU-s, peak RSS {r['peak_rss_mib']:.0f} MiB",
                flush=True,
            )


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
