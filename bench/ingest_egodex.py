"""Benchmark `ingest run egodex`: output frames per second (wall and per CPU-second) and peak memory.

    .venv/bin/python bench/ingest_egodex.py --episodes 24                 # synthetic 1080p input
    .venv/bin/python bench/ingest_egodex.py --real --copies 4             # the six real episodes x4
    .venv/bin/python bench/ingest_egodex.py --real --copies 16 --workers 1 --pin 0 --baseline
                                              # beside the least possible work, both on one core

The input is generated (or copied) into a temporary folder first, untimed. The job runs as the user
runs it (the `ingest` console script, a fresh process with its own local Ray); peak memory is the
largest summed RSS of its whole process tree, sampled every 0.1 s. `--baseline` also times, on the same
input, the least work a conversion needs (`run_minimal`: one process, no Ray) and prints the job's share of
its speed; `--pin CPU` runs everything on that one core (children inherit the affinity).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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
    cmd += ["--duplicates", "keep"]  # --real's copies are the same content: publish them all
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


def run_minimal(inp: Path, out: Path, width: int = 640, height: int = 360) -> dict[str, float]:
    """The unavoidable work of converting EgoDex, in this process: decode every source frame, keep every
    third (30 -> 10 Hz), scale in the codec's scaler, x264 veryfast with one thread (the section's crf and
    gop), and the kept frames' transforms to Parquet. No Ray, no staging, no checks, statistics or meta."""
    import h5py
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    start, cpu0, frames = time.perf_counter(), time.process_time(), 0
    for k, h5 in enumerate(sorted(inp.rglob("*.hdf5"))):
        kept = _minimal_video(h5.with_suffix(".mp4"), out / f"{k}.mp4", width, height)
        with h5py.File(h5, "r") as f:
            group = f["transforms"]
            cols = {n: np.asarray(group[n][::3][:kept], np.float32).reshape(kept, -1) for n in group}
        table = pa.table({n: pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1])
                          for n, v in cols.items()})  # fmt: skip
        pq.write_table(table, out / f"{k}.parquet")
        frames += kept
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return {"frames": frames, "wall_s": wall, "cpu_s": cpu, "frames_per_s": frames / wall}


def _minimal_video(src: Path, dst: Path, width: int, height: int) -> int:
    import av

    kept = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        stream.thread_count = 1
        options = {"crf": "23", "preset": "veryfast", "g": "10", "threads": "1"}
        enc = out.add_stream("libx264", rate=10, options=options)
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        for i, frame in enumerate(inp.decode(stream)):
            if i % 3 == 0:
                scaled = frame.reformat(width, height, format="yuv420p", interpolation="AREA")
                scaled.pts, kept = kept, kept + 1
                out.mux(enc.encode(scaled))
        out.mux(enc.encode(None))
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--episodes", type=int, default=24, help="synthetic episodes")
    parser.add_argument("--frames", type=int, default=150, help="30 Hz frames per synthetic episode")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--real", action="store_true", help="copy the six real EgoDex episodes instead")
    parser.add_argument("--copies", type=int, default=4, help="with --real: how many copies")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts to run")
    parser.add_argument("--baseline", action="store_true", help="also time the least possible work")
    parser.add_argument("--pin", type=int, help="run everything on this one CPU")
    args = parser.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    with tempfile.TemporaryDirectory(prefix="bench-egodex-") as tmp:
        inp = Path(tmp) / "input"
        make_input(inp, args)
        kind = f"real x{args.copies}" if args.real else f"synthetic {args.width}x{args.height}"
        kind += "" if args.pin is None else f", pinned to CPU {args.pin}"
        if args.baseline:
            base = run_minimal(inp, Path(tmp) / "minimal")
            print(f"least possible work [{kind}]: {base['frames']} frames, wall {base['wall_s']:.1f} s, "
                  f"{base['frames_per_s']:.1f} frames/s, CPU {base['cpu_s']:.1f} s", flush=True)  # fmt: skip
        for workers in (int(w) for w in args.workers.split(",")):
            out = Path(tmp) / f"out-{workers}"
            r = run_ingest(inp, out, workers)
            print(
                f"ingest egodex [{kind}] workers={workers}: {r['episodes']} episodes, {r['frames']} frames, "
                f"wall {r['wall_s']:.1f} s, {r['frames_per_s']:.1f} frames/s, CPU {r['cpu_s']:.1f} s, "
                f"{r['frames_per_cpu_s']:.1f} frames/CPU-s, peak RSS {r['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
            if args.baseline:
                share = r["frames_per_s"] / base["frames_per_s"]
                print(f"  the job reaches {share:.0%} of the least possible work's speed "
                      f"({r['wall_s']:.1f} s vs {base['wall_s']:.1f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
