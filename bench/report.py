"""Benchmark `ingest report` at scale: N generated EgoDex-format episodes are ingested once (`ingest run`),
then the report is written (seconds, per episode) and its index and one episode page are opened in headless
Chromium (load event, then every lazy thumbnail decoded).

    .venv/bin/python bench/report.py [--episodes 1000] [--frames 60] [--workers 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BIN = Path(sys.executable).parent


def ingest(root: Path, episodes: int, frames: int) -> Path:
    from tests.fixtures.egodex import write_dataset

    write_dataset(root / "in", episodes, frames)
    cmd = [str(BIN / "ingest"), "run", "egodex", "--input", str(root / "in"), "--output", str(root / "out")]
    subprocess.run(cmd, check=True, capture_output=True)
    return root / "out" / "egodex"


def main() -> None:
    from ingest.report.build import write_report
    from ingest.report.episode import StripOptions
    from tests.browser import Browser

    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--frames", type=int, default=60, help="source frames per episode (30 Hz)")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="use (or make) the dataset here instead of a temporary folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        ds = base / "out" / "egodex"
        if not (ds / "meta/info.json").is_file():
            t0 = time.perf_counter()
            ingest(base, args.episodes, args.frames)
            print(f"ingested {args.episodes} episodes in {time.perf_counter() - t0:.0f} s")
        summary = write_report(ds, base / "report", None, StripOptions(), workers=args.workers)
        per = summary.seconds / summary.episodes * 1e3
        print(f"report of {summary.episodes} episodes: {summary.seconds:.1f} s ({per:.0f} ms/episode)")
        with Browser() as browser:
            for page in ("index.html", "episodes/episode_000000.html"):
                t0 = time.perf_counter()
                visit = browser.visit(base / "report" / page)
                total = time.perf_counter() - t0
                n = len(visit.image_widths)
                print(f"{page}: load event {visit.load_s:.2f} s, {n} images decoded {total:.2f} s, "
                      f"errors {len(visit.errors)}")  # fmt: skip


if __name__ == "__main__":
    main()
