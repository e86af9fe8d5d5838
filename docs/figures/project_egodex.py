"""Draw the canonical wrist frames and the 21 keypoints of the real EgoDex sample onto its own video.

    .venv/bin/python docs/figures/project_egodex.py [--realdata ../shared/realdata] [--out docs/figures]

Each episode is converted by the real `egodex` source; its state at 10 Hz frame k (the canonical wrist in
the camera frame at k, keypoints in the wrist frame) is projected with the HDF5's own intrinsics onto
source video frame 3k. Axes: x red (palm normal), y green, z blue (approach), 5 cm long.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import h5py
import numpy as np

from ingest.convert.camera import overlay
from ingest.convert.geometry import rotation_from_6d, transform_points
from ingest.sources import egodex
from ingest.sources.base import SourceEpisodeRef
from schemas.canonical import SIDES, part_slice
from schemas.pipelines import PipelinesFile

EPISODES = {"basic_pick_and_place/0": (0, 15, 30), "add_remove_lid/0": (15,), "open_close/1": (40,)}


def convert(root: Path, ep_id: str):
    h5 = root / f"{ep_id}.hdf5"
    ref = SourceEpisodeRef(
        source_episode_id=ep_id, files={"hdf5": str(h5), "mp4": str(h5.with_suffix(".mp4"))}
    )
    cfg = PipelinesFile.load(Path("pipelines.yaml")).source("egodex")
    (ep,) = egodex.SOURCE.convert(ref, cfg)
    with h5py.File(h5) as f:
        K = f["camera/intrinsic"][()].astype(np.float64)
    return ep, K


def wrist_pose(state: np.ndarray, side: str) -> np.ndarray:
    """camera_from_canonical-wrist `[4, 4]` of one 146-wide state row."""
    T = np.eye(4)
    T[:3, 3] = state[part_slice(side, "position")]
    T[:3, :3] = rotation_from_6d(state[part_slice(side, "rotation")])
    return T


def keypoints_in_camera(state: np.ndarray, side: str) -> np.ndarray:
    kps = state[part_slice(side, "keypoints")].reshape(21, 3)
    return transform_points(wrist_pose(state, side), kps)


def video_frames(mp4: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    out = {}
    with av.open(str(mp4)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="rgb24")
            if i >= max(wanted):
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--realdata", type=Path, default=Path("../shared/realdata"))
    ap.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = ap.parse_args()
    root = args.realdata / "egodex"
    for ep_id, ks in EPISODES.items():
        ep, K = convert(root, ep_id)
        frames = video_frames(ep.videos["observation.images.ego"].path, {3 * k for k in ks})
        for k in ks:
            state = ep.state[k].astype(np.float64)
            img = overlay(frames[3 * k], K, [wrist_pose(state, s) for s in SIDES],
                          [keypoints_in_camera(state, s) for s in SIDES], length=0.06)  # fmt: skip
            name = f"egodex_projection_{ep_id.replace('/', '_')}_{k:03d}.png"
            img.resize((960, 540)).save(args.out / name)
            print(args.out / name)


if __name__ == "__main__":
    main()
