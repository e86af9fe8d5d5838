"""Draw the canonical gripper frame of the LDA-1B sim onto its own wrist video at each episode's grasp.

    PYTHONPATH=. .venv/bin/python docs/figures/lda_sim_projection.py [--data DIR]   # DIR: the LDA sample

Writes `docs/figures/lda_sim_projection_ep<i>.png`: the `video.ego_view` frame at the first row after
frame_status `grasp` with the fingers closed on the object (state.gripper_width[0] > 0.3 rad), the
canonical frame (`T_eef @ T_offset` of the shipped `lerobot_lda1b_sim` section; x red, y green, z blue,
3 cm, yellow ring at the origin) projected with `ingest/sources/lda_sim.py`'s wrist camera, and in cyan
the source's own projections of the two finger-pad centres (`annotation.ego_view.tcp_2d_trace`) with
their midpoint (cross). tests/test_eef_offsets.py asserts the same numbers. The PNGs carry frames of
the LDA-1B sample video (CC BY-NC 4.0): figures for this project's docs, not data to redistribute.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
from PIL import ImageDraw

from ingest.convert.camera import overlay
from ingest.convert.geometry import invert_pose, quaternions_to_matrix
from ingest.convert.robot import eef_poses, offset_transform
from ingest.sources import lda_sim
from schemas.pipelines import PipelinesFile
from tests.fixtures import lda_traces

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CYAN = (0, 230, 255)


def video_frame(path: Path, index: int) -> np.ndarray:
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise IndexError(f"{path}: no frame {index}")


def draw_episode(data: Path, episode: int, offset: np.ndarray) -> tuple[object, float]:
    meta = json.loads((data / "meta/episodes.jsonl").read_text().splitlines()[episode])["task_data"]
    table = pq.read_table(data / f"data/chunk-000/episode_{episode:06d}.parquet")
    col = lambda k: np.asarray(table.column(k).to_pylist(), dtype=np.float64)  # noqa: E731
    grip = col("state.gripper_width")[:, 0]
    grasp = meta["frame_status"]["0/grasp"]
    k = grasp + int(np.argmax(grip[grasp:] > 0.3))
    pose = eef_poses(quaternions_to_matrix(col("state.eef_quaternion")[k : k + 1], "wxyz"),
                     col("state.eef_position")[k : k + 1], np.eye(4))[0]  # fmt: skip
    cam = lda_sim.wrist_camera(meta, data / "meta/episodes.jsonl")
    canonical_cam = invert_pose(pose @ cam.eef_from_camera) @ pose @ offset
    img = overlay(video_frame(data / f"videos/chunk-000/video.ego_view/episode_{episode:06d}.mp4", k),
                  cam.K, [canonical_cam], [], length=0.03)  # fmt: skip
    ego = lda_traces.tcp_traces(table, "annotation.ego_view.tcp_2d_trace", data)[k]
    draw = ImageDraw.Draw(img)
    for pad in lda_traces.PADS:
        u, v = ego[pad].mean(0)
        draw.ellipse([u - 4, v - 4, u + 4, v + 4], outline=CYAN, width=2)
    u, v = lda_traces.pad_centre(ego)
    draw.line([u - 6, v, u + 6, v], fill=CYAN, width=2)
    draw.line([u, v - 6, u, v + 6], fill=CYAN, width=2)
    draw.text((8, 8), f"episode {episode}, row {k} (grasp {grasp})", fill=(255, 255, 255))
    origin = cam.K @ canonical_cam[:3, 3]
    return img, float(np.linalg.norm(origin[:2] / origin[2] - (u, v)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared/realdata/lerobot_v21_lda1b_sim_pick_place"
    )
    args = ap.parse_args()
    arm = PipelinesFile.load(ROOT / "pipelines.yaml").source("lerobot_lda1b_sim").right
    offset = offset_transform(arm.eef_offset.quat_wxyz, arm.eef_offset.translation)
    for episode in range(len((args.data / "meta/episodes.jsonl").read_text().splitlines())):
        img, err = draw_episode(args.data, episode, offset)
        out = HERE / f"lda_sim_projection_ep{episode}.png"
        img.save(out)
        print(f"{out.name}: origin {err:.1f} px from the source's pad midpoint")


if __name__ == "__main__":
    main()
