"""Screenshots of `ingest report` and `catalog report` on the real EgoDex sample, as Chromium shows them.

    .venv/bin/python docs/figures/report_egodex.py [--realdata ../shared/realdata] [--out docs/figures]

Ingests ../shared/realdata/egodex into a temporary root (`ingest run egodex`), writes the dataset's report
and the root's catalog report, opens them in headless Chromium (tests/browser.py) and saves
`report_egodex_index.png`, `report_egodex_episode.png` and `report_catalog.png`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.browser import Browser

BIN = Path(sys.executable).parent
SHOTS = {
    "report_egodex_index.png": ("egodex/report/index.html", 1400),
    "report_egodex_episode.png": ("egodex/report/episodes/episode_000002.html", 2100),
    "report_catalog.png": ("catalog/report/index.html", 1700),
}


def build(realdata: Path, root: Path) -> None:
    def sh(*args: str) -> None:
        subprocess.run([str(BIN / args[0]), *args[1:]], check=True)

    sh("ingest", "run", "egodex", "--input", str(realdata / "egodex"), "--output", str(root))
    sh("ingest", "report", str(root / "egodex"))
    sh("catalog", "build", str(root))
    sh("catalog", "report", str(root), "--mixture", "mixtures/ei30k.yaml")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--realdata", type=Path, default=Path("../shared/realdata"))
    ap.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Browser(width=1280) as browser:
        build(args.realdata, Path(tmp))
        for name, (page, height) in SHOTS.items():
            visit = browser.visit(Path(tmp) / page, screenshot=args.out / name, max_height=height)
            print(f"{args.out / name}: loaded in {visit.load_s:.2f} s, {len(visit.image_widths)} images, "
                  f"errors {visit.errors}")  # fmt: skip


if __name__ == "__main__":
    main()
