"""Peak memory of the Ego4D annotation reader at Ego4D's size: discovery (the driver) and converting one
clip (a worker), each in a fresh process.

    .venv/bin/python bench/annotations.py --keep /tmp/ego4d-bench            # 3.85M narrations, 9,600 videos
    PYTHONPATH=/tmp/old-tree .venv/bin/python bench/annotations.py --keep /tmp/ego4d-bench   # other code

Ego4D v2's `narration.json` holds about 3.85M narrations over about 9,600 videos (pass 1 and pass 2); the
file written here (untimed, once) has that many, with the real file's fields and realistic text lengths,
and stand-in videos for the first `--videos-present` uids (the rest are annotations of videos not
downloaded: `missing_videos: skip`). The reader under test is whatever `ingest` imports from `sys.path`,
so the same script measures two versions of the code.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEXT = "C picks up the knife from the table with his right hand and cuts the onion on the board"


def write_narrations(path: Path, videos: int, narrations: int) -> None:
    """`{uid: {narration_pass_1: {narrations: [...]}, narration_pass_2: ...}}`, written as a stream."""
    per_pass = narrations // (2 * videos)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.write("{")
        for v in range(videos):
            f.write(("," if v else "") + json.dumps(f"uid-{v:05d}") + ": {")
            for p in (1, 2):
                items = []
                for i in range(per_pass):
                    t, words = 1.0 + 2.3 * i, TEXT.split(" ")[: 6 + (i * 7 + v) % 10]
                    text, uid = "#C " + " ".join(words), f"{v:08x}-{p}-{i:06d}"
                    items.append({"timestamp_sec": t, "timestamp_frame": int(30 * t), "narration_text": text,
                                  "annotation_uid": uid, "_unmapped_timestamp_sec": t})  # fmt: skip
                block = {
                    "narrations": items,
                    "summaries": [{"summary_text": "#summary C cooks", "start_sec": 0.0}],
                }
                f.write(
                    ("," if p == 2 else "") + json.dumps(f"narration_pass_{p}") + ": " + json.dumps(block)
                )
            f.write("}")
        f.write("}")


def build(keep: Path, videos: int, narrations: int, present: int) -> Path:
    from tests.fixtures.human import write_video

    root = keep / "ego4d"
    narr = root / "v2/annotations/narration.json"
    if not narr.is_file():
        write_narrations(narr.with_suffix(".tmp"), videos, narrations)
        narr.with_suffix(".tmp").rename(narr)
    for v in range(present):
        if not (root / f"v2/full_scale/uid-{v:05d}.mp4").is_file():
            write_video(root / f"v2/full_scale/uid-{v:05d}.mp4", 150, 30)
    return root


def _config():
    from schemas.pipelines import PipelinesFile

    return (
        PipelinesFile.load(REPO / "pipelines.yaml")
        .source("ego4d")
        .model_copy(update={"annotations": ["narration"]})
    )


def measure(mode: str, root: Path, refs: Path) -> None:
    """In this (fresh) process: discover (writes the first ref), or convert the ref discovered."""
    from ingest.sources.base import SourceEpisodeRef
    from ingest.sources.ego4d import SOURCE

    cfg, t0 = _config(), time.perf_counter()
    if mode == "driver":
        found = SOURCE.discover(root, cfg)
        refs.write_text(found[0].model_dump_json())
        what = f"{len(found)} episodes discovered"
    else:
        episodes = SOURCE.convert(SourceEpisodeRef.model_validate_json(refs.read_text()), cfg)
        what = f"{len(episodes)} episode(s) of {episodes[0].meta.source_episode_id} converted"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "seconds": round(time.perf_counter() - t0, 1), "peak_mib": round(peak),
                      "what": what}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", type=Path, required=True, help="folder for the generated input (reused)")
    parser.add_argument("--videos", type=int, default=9600)
    parser.add_argument("--narrations", type=int, default=3_850_000)
    parser.add_argument("--videos-present", type=int, default=2)
    parser.add_argument("--mode", choices=["driver", "worker"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        measure(args.mode, args.keep / "ego4d", args.keep / "ref.json")
        return
    sys.path.insert(0, str(REPO))
    root = build(args.keep, args.videos, args.narrations, args.videos_present)
    size = (root / "v2/annotations/narration.json").stat().st_size / 2**20
    print(f"narration.json: {size:.0f} MiB, {args.narrations} narrations, {args.videos} videos")
    for mode in ("driver", "worker"):
        cmd = [sys.executable, __file__, "--keep", str(args.keep), "--mode", mode]
        print(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
