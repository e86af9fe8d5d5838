"""Benchmark the conversion step alone (`Source.convert`, no video encoding, no Ray) on the real samples:
milliseconds per source episode and per output frame, best of `--repeat` runs.

    .venv/bin/python bench/convert_real.py                       # this checkout
    PYTHONPATH=OTHER .venv/bin/python bench/convert_real.py --pipelines OTHER/pipelines.yaml  # another

Run it for two checkouts back to back to compare (the second line imports the other checkout's code).
Sections: `egodex` (hand rule on 21 joints), `lerobot_gr00t_gr1` (forward kinematics where the section has
it) and `lerobot_lda1b_sim` (EEF offset, wrist camera poses).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
INPUTS = {
    "egodex": REAL / "egodex",
    "lerobot_gr00t_gr1": REAL / "gr00t_demo_robot_sim.PickNPlace",
    "lerobot_lda1b_sim": REAL / "lerobot_v21_lda1b_sim_pick_place",
}


def bench(section: str, pipelines: Path, repeat: int) -> tuple[float, float, int]:
    from ingest.sources import get_source
    from schemas.pipelines import PipelinesFile

    cfg = PipelinesFile.load(pipelines).source(section)
    source = get_source(cfg.format)
    refs = source.discover(INPUTS[section], cfg)
    best = float("inf")
    for _ in range(repeat):
        t0, frames = time.perf_counter(), 0
        for ref in refs:
            frames += sum(ep.length for ep in source.convert(ref, cfg))
        best = min(best, time.perf_counter() - t0)
    return best / len(refs) * 1e3, best / frames * 1e3, frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipelines", type=Path, default=Path(__file__).resolve().parents[1] / "pipelines.yaml")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import ingest

    print(f"code: {Path(ingest.__file__).parent.parent}")
    for section, folder in INPUTS.items():
        if not folder.is_dir():
            continue
        per_ep, per_frame, frames = bench(section, args.pipelines, args.repeat)
        print(f"{section:20s} {per_ep:8.1f} ms/episode {per_frame:7.3f} ms/frame ({frames} frames)")


if __name__ == "__main__":
    main()
