"""Load datasets we wrote with the official lerobot 0.3.3 reader (run inside the compat environment).

    <compat-venv>/bin/python tests/compat/check_lerobot.py DATASET [DATASET ...]

For each dataset: `LeRobotDataset(repo_id, root=...)` offline, every frame read (video decoded), each
frame's state/action/timestamp compared with the Parquet read by pyarrow, the task string compared with
tasks.jsonl, a `delta_timestamps` action chunk and a DataLoader batch. Prints one line per check and a
closing "N passed, M failed"; exits non-zero on any failure. Imports nothing of ours.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="hf-datasets-"))
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    RESULTS.append((name, bool(ok), detail))
    print(f"{'PASS' if ok else 'FAIL'} {name} {detail}", flush=True)


def parquet_frames(root: Path) -> dict[str, np.ndarray]:
    files = sorted((root / "data").glob("chunk-*/episode_*.parquet"))
    table = pq.read_table(files[0]).schema
    cols = [c for c in ("observation.state", "action", "timestamp", "index") if c in table.names]
    tables = [pq.read_table(f, columns=cols) for f in files]
    return {c: np.concatenate([np.asarray(t.column(c).to_pylist()) for t in tables]) for c in cols}


def check_dataset(root: Path) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    tasks = [json.loads(line) for line in (root / "meta/tasks.jsonl").read_text().splitlines()]
    episodes = [json.loads(line) for line in (root / "meta/episodes.jsonl").read_text().splitlines()]
    cams = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    ds = LeRobotDataset(f"local/{root.name}", root=root, video_backend="pyav")
    check(f"{root.name}: loads", True, f"{ds.num_episodes} episodes, {ds.num_frames} frames")
    total = info["total_frames"]
    check(f"{root.name}: frame count", len(ds) == total, f"{len(ds)} vs {total}")
    want = parquet_frames(root)
    ep_of_frame = np.repeat(np.arange(len(episodes)), [e["length"] for e in episodes])
    bad_state = bad_video = bad_task = 0
    for i in range(len(ds)):
        item = ds[i]
        for key in ("observation.state", "action"):
            if key in want and not np.allclose(item[key].numpy(), want[key][i], atol=1e-6):
                bad_state += 1
        if abs(float(item["timestamp"]) - float(want["timestamp"][i])) > 1e-6:
            bad_state += 1
        for cam in cams:
            h, w, _ = info["features"][cam]["shape"]
            frame = item[cam]
            if frame.shape != (3, h, w) or not (float(frame.min()) >= 0.0 and float(frame.max()) <= 1.0):
                bad_video += 1
        task_index = int(item["task_index"])
        if item["task"] != tasks[task_index]["task"] or item["task"] not in episodes[ep_of_frame[i]]["tasks"]:
            bad_task += 1
    check(f"{root.name}: state/action/timestamp equal the Parquet", bad_state == 0, f"{bad_state} mismatches")
    check(f"{root.name}: video frames decode CHW in [0,1]", bad_video == 0, f"{bad_video} bad of {len(ds)}")
    check(f"{root.name}: task strings", bad_task == 0, f"{bad_task} mismatches")
    chunk = LeRobotDataset(
        f"local/{root.name}", root=root, video_backend="pyav", delta_timestamps={"action": [0.0, 0.1, 0.2]}
    )
    last = chunk[episodes[0]["length"] - 1]
    dim = info["features"]["action"]["shape"][0]
    check(
        f"{root.name}: delta_timestamps action chunk",
        tuple(last["action"].shape) == (3, dim) and last["action_is_pad"].tolist() == [False, True, True],
        f"shape {tuple(last['action'].shape)}, pad {last['action_is_pad'].tolist()}",
    )
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False)))
    check(f"{root.name}: DataLoader batch", batch["observation.state"].shape[0] == min(4, len(ds)))


def main(paths: list[str]) -> int:
    for p in paths:
        try:
            check_dataset(Path(p).resolve())
        except Exception as exc:  # noqa: BLE001 - report and go on to the next dataset
            check(f"{Path(p).name}: loads", False, f"{type(exc).__name__}: {exc}")
    failed = sum(not ok for _, ok, _ in RESULTS)
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed or not RESULTS else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
