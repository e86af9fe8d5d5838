"""`ingest view PATH --episode N`: one episode as a rerun recording (`.rrd`; rerun is LeRobot's viewer).

Entities, in the episode's reference frame (`world`, OpenCV axes for a camera frame, x forward z up for a
robot base): each camera with a pose there as a pinhole with its video (`world/<camera>`), other cameras'
videos in 2D (`videos/<camera>`); per side the wrist frame's axes, the 21 keypoints and their bones
(`world/hands/<side>`; masked keypoints grey); the state and action series (`series/...`, valid values only).
Timelines: `frame` (the 10 Hz index) and `time` (seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ingest.convert.geometry import invert_pose
from ingest.report.draw import AXIS_M, BONES, MASKED, SIDE_COLOURS, keypoint_valid, side_present
from ingest.report.load import Dataset, episode_columns, load
from ingest.report.projection import camera_from_reference, keypoints, wrist_pose
from schemas.camera import CameraRecord
from schemas.canonical import SIDES, part_slice
from schemas.episode import FPS
from schemas.errors import Refused

APP_ID = "ei_forge"
AXIS_RGB = ((230, 40, 40), (40, 200, 40), (40, 90, 255))


def _rows(rr, rows: np.ndarray) -> list:
    """The `frame` and `time` timelines at the given 10 Hz frames."""
    return [rr.TimeColumn("frame", sequence=rows), rr.TimeColumn("time", duration=rows / FPS)]


def _times(rr, n: int) -> list:
    return _rows(rr, np.arange(n))


def _log_camera(rec, rr, ds: Dataset, episode: int, key: str, cam: CameraRecord | None, pose) -> None:
    """A camera's video under `world/<name>` (with its pinhole and pose) or `videos/<name>` (2D only)."""
    name = key.removeprefix("observation.images.")
    entity = f"world/{name}" if cam is not None and pose is not None else f"videos/{name}"
    if entity.startswith("world/"):
        rec.log(entity, rr.Pinhole(focal_length=[cam.fx, cam.fy], principal_point=[cam.cx, cam.cy],
                                   width=cam.width, height=cam.height, camera_xyz=rr.ViewCoordinates.RDF),
                static=True)  # fmt: skip
        ref_from_cam = invert_pose(pose)
        rec.send_columns(entity, indexes=_times(rr, len(pose)),
                         columns=rr.Transform3D.columns(translation=ref_from_cam[:, :3, 3],
                                                        mat3x3=ref_from_cam[:, :3, :3]))  # fmt: skip
    video = rr.AssetVideo(path=ds.video(episode, key))
    rec.log(f"{entity}/video", video, static=True)
    ts = video.read_frame_timestamps_nanos()
    rec.send_columns(
        f"{entity}/video", indexes=_times(rr, len(ts)), columns=rr.VideoFrameReference.columns_nanos(ts)
    )


def _log_hand(rec, rr, state: np.ndarray, mask: np.ndarray, side: str) -> None:
    """One frame of one side: wrist axes, keypoints (masked grey), bones."""
    base = f"world/hands/{side}"
    T, kps, ok = wrist_pose(state, side), keypoints(state, side), keypoint_valid(mask, side)
    colours = np.where(ok[:, None], SIDE_COLOURS[side], MASKED).astype(np.uint8)
    rec.log(f"{base}/keypoints", rr.Points3D(kps, colors=colours, radii=0.004))
    rec.log(f"{base}/bones", rr.LineStrips3D([kps[[a, b]] for a, b in BONES], colors=SIDE_COLOURS[side]))
    wrist_ok = bool(mask[part_slice(side, "position")].all())
    axes = (T[:3, :3] * AXIS_M).T
    rec.log(f"{base}/wrist", rr.Arrows3D(origins=np.repeat(T[None, :3, 3], 3, 0), vectors=axes,
                                         colors=AXIS_RGB if wrist_ok else [MASKED] * 3))  # fmt: skip


def _log_hands(rec, rr, cols: dict[str, np.ndarray]) -> None:
    state, mask = cols["observation.state"].astype(np.float64), cols["observation.state_mask"].astype(bool)
    for k in range(len(state)):
        rec.set_time("frame", sequence=k)
        rec.set_time("time", duration=k / FPS)
        for side in SIDES:
            if side_present(state[k], mask[k], side):
                with np.errstate(invalid="ignore"):
                    _log_hand(rec, rr, state[k], mask[k], side)


def _log_series(rec, rr, cols: dict[str, np.ndarray]) -> None:
    """Position x y z and gripper of each side, state and action, at the frames where they are valid."""
    for key, mkey, kind in (("observation.state", "observation.state_mask", "state"),
                            ("action", "action_mask", "action")):  # fmt: skip
        for side in SIDES:
            pos, grip = part_slice(side, "position"), part_slice(side, "gripper")
            dims = {"position/x": pos.start, "position/y": pos.start + 1, "position/z": pos.start + 2}
            for name, dim in {**dims, "gripper": grip.start}.items():
                rows = np.flatnonzero(cols[mkey][:, dim].astype(bool))
                if rows.size:
                    values = rr.Scalars.columns(scalars=cols[key][rows, dim].astype(np.float64))
                    rec.send_columns(f"series/{kind}/{side}/{name}", indexes=_rows(rr, rows), columns=values)


def write_recording(root: Path, episode: int, out: Path) -> Path:
    """Write episode `episode` of the dataset `root` to the `.rrd` file `out`."""
    import rerun as rr

    ds = load(root)
    if not 0 <= episode < len(ds.episodes):
        raise Refused(f"{root} has no episode {episode}", f"give --episode 0..{len(ds.episodes) - 1}")
    cols = episode_columns(root, episode)
    cams = ds.cameras.get(episode, [])
    by_key, n = {c.camera: c for c in cams}, len(cols["observation.state"])
    out.parent.mkdir(parents=True, exist_ok=True)
    rec = rr.RecordingStream(APP_ID, recording_id=f"{ds.name}/episode_{episode:06d}")
    rec.save(out)
    axes = rr.ViewCoordinates.RDF if ds.card.reference_frame == "camera" else rr.ViewCoordinates.FLU
    rec.log("world", axes, static=True)
    for key in ds.info.video_keys():
        cam = by_key.get(key)
        pose = None if cam is None else camera_from_reference(cam, cams, cols, ds.card.reference_frame, n)
        _log_camera(rec, rr, ds, episode, key, cam, pose)
    _log_hands(rec, rr, cols)
    _log_series(rec, rr, cols)
    rec.flush()
    return out
