"""Draw the AgiBot A2D sample's canonical gripper frames in its head camera's image plane.

    .venv/bin/python docs/figures/project_agibot_a2d.py [--realdata ../shared/realdata]

The Genie Sim A2D episode in ../shared/realdata ships no video, so there is no frame to draw on: the
`agibot_a2d` section's published state (each gripper in the head camera frame at t) is projected with the
head camera's own intrinsics (`parameters/camera/head_intrinsic_params.json`, 1280 x 720) onto a grey canvas
of that size: the path of both gripper centres (left blue, right orange) and the axes every 30 frames
(x red: closing, y green, z blue: approach, 6 cm).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from project_egodex import wrist_pose  # the script folder is on sys.path

from ingest.convert.camera import draw_frame, intrinsic_matrix, project
from ingest.sources.agibot import SOURCE
from schemas.canonical import SIDES, part_slice
from schemas.pipelines import PipelinesFile

EPISODE = "agibot_world/a2d_genie_sim_episode/3335935/A2D0015AB00061/12055373"
PATH_COLOURS = {"left": (60, 110, 255), "right": (255, 150, 40)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--realdata", type=Path, default=Path("../shared/realdata"))
    ap.add_argument("--out", type=Path, default=Path("docs/figures/agibot_a2d_head_camera.png"))
    args = ap.parse_args()
    cfg = PipelinesFile.load(Path("pipelines.yaml")).source("agibot_a2d")
    folder = args.realdata / EPISODE
    (ref,) = [
        r for r in SOURCE.discover(args.realdata / "agibot_world", cfg) if "12055373" in r.source_episode_id
    ]
    (ep,) = SOURCE.convert(ref, cfg)
    k = json.loads((folder / "parameters/camera/head_intrinsic_params.json").read_text())
    K = intrinsic_matrix(k["fx"], k["fy"], k["ppx"], k["ppy"])
    img = Image.new("RGB", (int(2 * k["ppx"]), int(2 * k["ppy"])), (96, 96, 96))
    draw = ImageDraw.Draw(img)
    for side in SIDES:
        uv = project(K, ep.state[:, part_slice(side, "position")].astype(np.float64))
        draw.line([tuple(p) for p in uv if np.isfinite(p).all()], fill=PATH_COLOURS[side], width=2)
        for t in range(0, ep.length, 30):
            draw_frame(draw, K, wrist_pose(ep.state[t].astype(np.float64), side), length=0.06)
    draw.text((10, 10), "AgiBot A2D (Genie Sim): no video in the sample; head camera image plane, 1280x720",
              fill=(255, 255, 255))  # fmt: skip
    img.save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
