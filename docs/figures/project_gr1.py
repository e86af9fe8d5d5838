"""Proof on real video: project the published canonical wrist frames and keypoints of both GR1 hands (GR00T
demo, forward kinematics) onto the source ego-view frames, and save PNGs.

    .venv/bin/python docs/figures/project_gr1.py [--input ../shared/realdata/gr00t_demo_robot_sim.PickNPlace]
        [--out docs/figures] [--frames 0:0,0:30,0:75,2:40,3:100]   # episode:10 Hz frame

What is drawn is what the converter publishes (`observation.state`, camera frame): the wrist position and
6D rotation (axes x red: closing, y green, z blue: approach; 5 cm) and the mapped keypoints (wrist frame ->
camera frame), with the ego camera's intrinsics (ingest/convert/kinematics.py). tests/test_kinematics.py
uses `convert`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np

from ingest.convert import camera
from ingest.convert.geometry import rotation_from_6d
from ingest.sources.lerobot import SOURCE, Converted, convert_recording
from schemas.canonical import SIDE_DIM, SIDES, side_offset
from schemas.pipelines import PipelinesFile

ROOT = Path(__file__).resolve().parents[2]
SECTION = "lerobot_gr00t_gr1"


def gr00t_config():
    """The `lerobot_gr00t_gr1` section of pipelines.yaml."""
    return PipelinesFile.load(ROOT / "pipelines.yaml").source(SECTION)


def convert(root: Path, episode: int) -> Converted:
    cfg = gr00t_config()
    ref = next(
        r for r in SOURCE.discover(root, cfg) if r.source_episode_id.endswith(f"episode_{episode:06d}")
    )
    return convert_recording(ref, cfg)


def camera_poses(rec: Converted, t: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per side with a valid wrist at 10 Hz frame `t`: the canonical pose `[4, 4]` and the valid keypoints
    `[K, 3]`, both in the camera frame, from the published state."""
    poses, points = [], []
    for side in SIDES:
        row = rec.arrays.state[t, side_offset(side) : side_offset(side) + SIDE_DIM].astype(np.float64)
        mask = rec.arrays.state_mask[t, side_offset(side) : side_offset(side) + SIDE_DIM]
        if not mask[:9].all():
            continue
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = rotation_from_6d(row[3:9]), row[:3]
        kps = row[10:].reshape(21, 3)[mask[10::3]]
        poses.append(T)
        points.append(kps @ T[:3, :3].T + T[:3, 3])
    return poses, points


def ego_K(rec: Converted) -> np.ndarray:
    """`K [3, 3]` of the ego view as published (the episode's camera model, meta/cameras.jsonl)."""
    (cam,) = [c for c in rec.cameras if c.camera == "observation.images.ego_view"]
    return camera.intrinsic_matrix(cam.fx, cam.fy, cam.cx, cam.cy)


def wrist_pixels(rec: Converted, t: int) -> np.ndarray:
    """`[sides, 2]` pixels of the published wrist origins (left, right) at 10 Hz frame `t`."""
    poses, _ = camera_poses(rec, t)
    return np.array([camera.project(ego_K(rec), T[:3, 3]) for T in poses])


def source_frames(rec: Converted, ts: list[int]) -> dict[int, np.ndarray]:
    """RGB source video frames for 10 Hz frames `ts` (the ego view)."""
    src = rec.videos["observation.images.ego_view"]
    wanted = {int(src.frame_indices[t]): t for t in ts}
    out = {}
    with av.open(str(src.path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                out[wanted[i]] = frame.to_ndarray(format="rgb24")
            if len(out) == len(wanted):
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--input", type=Path, default=ROOT.parent / "shared/realdata/gr00t_demo_robot_sim.PickNPlace"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs/figures")
    ap.add_argument("--frames", default="0:0,0:75,0:150,2:100,4:120")
    ap.add_argument("--scale", type=int, default=3, help="upscale the 256 px frames for viewing")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    wanted: dict[int, list[int]] = {}
    for item in args.frames.split(","):
        ep, t = (int(x) for x in item.split(":"))
        wanted.setdefault(ep, []).append(t)
    for ep, ts in wanted.items():
        rec = convert(args.input, ep)
        frames = source_frames(rec, ts)
        for t in ts:
            poses, points = camera_poses(rec, t)
            img = camera.overlay(frames[t], ego_K(rec), poses, points, length=0.05)
            img = img.resize((img.width * args.scale, img.height * args.scale))
            path = args.out / f"gr1_projection_ep{ep}_t{t:03d}.png"
            img.save(path)
            print(path, "wrists (left, right) px:", np.round(wrist_pixels(rec, t), 1).tolist())


if __name__ == "__main__":
    main()
