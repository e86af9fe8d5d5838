"""The camera model travels with the data, proven on published real datasets: what `ingest run` writes to
`meta/cameras.jsonl` (intrinsics at the published size, a per-frame pose column) projects the published
end effector onto the points picked on (or given by) the source's own video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ingest.convert.camera import intrinsic_matrix, poses_from_rows, project
from ingest.convert.geometry import invert_pose
from schemas.canonical import part_slice
from tests.test_eef_offsets import LDA, _closing_frame, _lda_meta, _lda_rows, needs_lda
from tests.test_kinematics import ANNOTATED_RIGHT_WRISTS, GR00T, WRIST_TOLERANCE_PX, needs_demo, needs_model

pytestmark = [pytest.mark.ray, pytest.mark.realdata, pytest.mark.usefixtures("ray_local")]


def _publish(section: str, source: Path, out: Path) -> Path:
    from ingest.job import RunOptions, run
    from ingest.validate import validate_dataset

    run(RunOptions(source=section, input=source, output=out, workers=1, progress=False))
    assert validate_dataset(out / section) == []
    return out / section


def _camera(root: Path, episode: int, key: str) -> dict:
    lines = [json.loads(x) for x in (root / "meta/cameras.jsonl").read_text().splitlines()]
    (cam,) = [c for c in lines if c["episode_index"] == episode and c["camera"] == key]
    return cam


def _episode(root: Path, episode: int) -> tuple[dict, dict]:
    record = json.loads((root / "meta/episodes.jsonl").read_text().splitlines()[episode])
    table = pq.read_table(root / f"data/chunk-000/episode_{episode:06d}.parquet")
    return record, {c: np.stack(table.column(c).to_numpy(zero_copy_only=False)) for c in table.column_names
                    if c.startswith(("observation.", "action"))}  # fmt: skip


@needs_model
@needs_demo
def test_gr1_ego_camera_published_with_the_data(tmp_path: Path) -> None:
    """GR00T demo: the ego view's model (forward kinematics of the head camera) in meta/cameras.jsonl
    projects the published right wrist (camera frame) onto the hand-annotated wrist pixels, and its pose
    column is the head camera's base pose per frame."""
    root = _publish("lerobot_gr00t_gr1", GR00T, tmp_path)
    for (episode, t), pixel in ANNOTATED_RIGHT_WRISTS.items():
        cam = _camera(root, episode, "observation.images.ego_view")
        assert (cam["width"], cam["height"], cam["pose_frame"]) == (256, 256, "base")
        record, cols = _episode(root, episode)
        k = t - int(record["quality_metrics"].get("cut_frames_start", 0))  # the quality stage may cut
        K = intrinsic_matrix(cam["fx"], cam["fy"], cam["cx"], cam["cy"])
        uv = project(K, cols["observation.state"][k, part_slice("right", "position")].astype(np.float64))
        assert np.linalg.norm(uv - pixel) < WRIST_TOLERANCE_PX, (uv, pixel, episode, t)
        head = poses_from_rows(cols[cam["pose_column"]])[k]
        # it looks forward (+x) and down at the table (measured 56 degrees below the horizon), and the
        # image's right is the robot's right (-y of the base)
        assert head[0, 2] > 0.3 and head[2, 2] < -0.5 and head[:3, 0] @ [0.0, -1.0, 0.0] > 0.95


@needs_lda
def test_lda_wrist_camera_published_with_the_data(tmp_path: Path) -> None:
    """LDA sim: the ego view's model (the `realsense` wrist camera) with its per-frame base pose projects the
    published gripper centre (base frame) onto the midpoint of the source's own finger-pad projections at
    each episode's grasp."""
    root = _publish("lerobot_lda1b_sim", LDA, tmp_path)
    for episode, meta in enumerate(_lda_meta()):
        rows = _lda_rows(episode)
        cam = _camera(root, episode, "observation.images.ego_view")
        assert (cam["width"], cam["height"], cam["pose_frame"]) == (640, 480, "base")
        record, cols = _episode(root, episode)
        start = int(record["quality_metrics"].get("cut_frames_start", 0))
        j = -(-_closing_frame(rows, meta["task_data"]["frame_status"]["0/grasp"]) // 3)  # 10 Hz, closed
        k = j - start
        base_from_cam = poses_from_rows(cols[cam["pose_column"]][k : k + 1])[0]
        centre = cols["observation.state"][k, part_slice("right", "position")].astype(np.float64)
        in_cam = invert_pose(base_from_cam) @ np.append(centre, 1.0)
        uv = project(intrinsic_matrix(cam["fx"], cam["fy"], cam["cx"], cam["cy"]), in_cam[:3])
        pads = _lda_rows(episode)["ego"][3 * j]
        mid = (pads[2:6].mean(0) + pads[7:11].mean(0)) / 2
        assert np.linalg.norm(uv - mid) < 20.0, (episode, uv, mid)
