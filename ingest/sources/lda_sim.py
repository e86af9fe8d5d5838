"""Camera facts of the LDA-1B sim (Franka + Robotiq 2F-85 in Isaac Sim; pipelines.yaml `lerobot_lda1b_sim`),
worked out on the sample (tests/test_eef_offsets.py) for the per-episode camera metadata to use.

Each line of `meta/episodes.jsonl` has `task_data.camera_data.<name>` with `camera_params`
`[fx, fy, cx, cy, width, height]`, a `position` and an `orientation` quaternion. What they mean:

- `video.ego_view` is the `realsense` entry, a wrist camera (prim `/robotiq/arm/panda_link8/realsense`): its
  pose is in **panda_link8**, the quaternion is **wxyz**, and the camera axes are Isaac Sim's "world"
  camera convention (+x forward, +y left, +z up), not USD's (-z forward) nor OpenCV's.
- The state's end-effector frame (`state.eef_position` / `state.eef_quaternion`) is **panda_hand**:
  panda_link8 turned -45 degrees about z, same origin (`HAND_FROM_LINK8`).
- Checked: with these facts the source's own pixel projections of the finger keypoints
  (`annotation.ego_view.tcp_2d_trace`) are reproduced from `annotation.tcp_3d_trace` (world) and the state
  to under a pixel, in all 4 sample episodes.

`annotation.tcp_3d_trace` (world frame, metres) and `annotation.<view>.tcp_2d_trace` (pixels) are
pickled numpy arrays `[11, 3]` / `[11, 2]` per row: point 0 is fixed (not the gripper), points 1 and 6
are the two fingertips, 2-5 and 7-10 outline the two finger pads. The converter never unpickles them
(they pass through as bytes); only the tests read them, to measure the offset (tests/fixtures/lda_traces.py).

The other entries (`obs_camera`, `obs_camera_2`, `camera1`) have world-frame poses; the robot base sits
in the world at a per-episode translation that the metadata does not give (fitted from the traces in the
test), so they are not exposed here. `grasp_point.realsense` pixels in the sample are not projections
of this camera (negative rows): don't use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ingest.convert.geometry import axis_rotation, quaternion_to_matrix
from ingest.errors import EpisodeError

EGO_CAMERA = "realsense"  # the `camera_data` entry behind `video.ego_view`
# columns: the OpenCV camera axes (+x right, +y down, +z forward) in Isaac's world-convention camera axes
ISAAC_TO_OPENCV = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
HAND_FROM_LINK8 = axis_rotation("z", np.array(np.pi / 4))  # panda_hand = panda_link8 turned -45 deg about z


@dataclass(frozen=True)
class WristCamera:
    """`K [3, 3]`, `size (width, height)` and `eef_from_camera [4, 4]` (OpenCV axes, in the state's eef
    frame); the camera's pose in the base frame at a row is `T_eef @ eef_from_camera`."""

    K: np.ndarray
    size: tuple[int, int]
    eef_from_camera: np.ndarray


def _field(entry: dict[str, Any], key: str, n: int, path: Path, where: str) -> np.ndarray:
    values = np.asarray(entry.get(key, []), dtype=np.float64).reshape(-1)
    if values.shape != (n,) or not np.isfinite(values).all():
        raise EpisodeError(path, f"{where}.{key}", f"expected {n} finite numbers, got {entry.get(key)!r}")
    return values


def wrist_camera(task_data: dict[str, Any], path: Path | str) -> WristCamera:
    """The `video.ego_view` camera of one `meta/episodes.jsonl` line's `task_data` (`path`: for errors)."""
    where = f"task_data.camera_data.{EGO_CAMERA}"
    entry = task_data.get("camera_data", {}).get(EGO_CAMERA)
    if not isinstance(entry, dict):
        raise EpisodeError(path, where, "missing")
    fx, fy, cx, cy, w, h = _field(entry, "camera_params", 6, Path(path), where)
    quat = _field(entry, "orientation", 4, Path(path), where)
    T = np.eye(4)
    T[:3, :3] = HAND_FROM_LINK8 @ quaternion_to_matrix(quat) @ ISAAC_TO_OPENCV
    T[:3, 3] = HAND_FROM_LINK8 @ _field(entry, "position", 3, Path(path), where)
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return WristCamera(K, (int(w), int(h)), T)


def base_from_camera(eef_pose: np.ndarray, camera: WristCamera) -> np.ndarray:
    """`[N, 4, 4]` camera poses in the base frame from the source's eef poses `[N, 4, 4]` (before the
    canonical offset)."""
    return np.asarray(eef_pose, dtype=np.float64) @ camera.eef_from_camera
