"""Camera models (schemas/camera.py): pose rows, resizing intrinsics, the episode's checks and the
writer's refusal of intrinsics that do not fit the video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.convert.camera import intrinsic_matrix, pose_rows, poses_from_rows, project
from ingest.convert.geometry import axis_rotation
from ingest.errors import EpisodeError
from ingest.writer import stage_episode
from schemas.camera import POSE_NAMES, CameraModel, pose_column
from schemas.episode import ExtraColumn
from tests.fixtures.configs import CAM, VCFG, make_source
from tests.test_validate import make_episode


def model(**kw: object) -> CameraModel:
    base = {"camera": CAM, "width": 1920, "height": 1080, "fx": 736.6339, "fy": 736.6339, "cx": 960.0,
            "cy": 540.0, "provenance": "test"}  # fmt: skip
    return CameraModel.model_validate(base | kw)


def test_pose_rows_round_trip() -> None:
    rng = np.random.default_rng(0)
    T = np.tile(np.eye(4), (20, 1, 1))
    T[:, :3, :3] = axis_rotation("z", rng.uniform(-3, 3, 20)) @ axis_rotation("x", rng.uniform(-3, 3, 20))
    T[:, :3, 3] = rng.normal(size=(20, 3))
    rows = pose_rows(T)
    assert rows.dtype == np.float32 and rows.shape == (20, 7)
    np.testing.assert_allclose(np.linalg.norm(rows[:, 3:], axis=1), 1.0, atol=1e-6)
    assert (rows[:, 3] >= 0).all()  # qw >= 0: one sign per rotation
    np.testing.assert_allclose(poses_from_rows(rows), T, atol=1e-6)


def test_scaled_intrinsics_project_where_the_resized_image_shows_the_point() -> None:
    """A point's pixel in the 1920x1080 image, mapped onto the 640x360 one pixel centre to pixel centre
    ((u + 0.5) * s - 0.5), is where the scaled model projects it."""
    points = np.array([[0.1, -0.05, 0.4], [-0.3, 0.2, 1.1], [0.0, 0.0, 2.0]])
    big = model()
    small = big.scaled(640, 360)
    uv = project(intrinsic_matrix(big.fx, big.fy, big.cx, big.cy), points)
    want = (uv + 0.5) * [640 / 1920, 360 / 1080] - 0.5
    got = project(intrinsic_matrix(small.fx, small.fy, small.cx, small.cy), points)
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert (small.width, small.height) == (640, 360)


def test_a_model_has_one_kind_of_pose() -> None:
    with pytest.raises(ValueError, match="static pose or a pose column"):
        model(pose_frame="world", pose=np.eye(4).tolist(), pose_column=pose_column(CAM))
    with pytest.raises(ValueError, match="needs its pose_frame"):
        model(pose_column=pose_column(CAM))


def test_episode_check_names_a_camera_without_video_or_pose_column(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src.mp4", 10)
    ep = make_episode(4, "pick", src, 0)
    ep.cameras.append(model(camera="observation.images.head"))
    with pytest.raises(ValueError, match="observation.images.head is not one of the episode's videos"):
        ep.check()
    ep.cameras[0] = model(pose_frame="world", pose_column=pose_column(CAM))
    with pytest.raises(ValueError, match="pose column observation.camera_pose.ego is not an extra column"):
        ep.check()
    ep.extra[pose_column(CAM)] = ExtraColumn(pose_rows(np.tile(np.eye(4), (4, 1, 1))), list(POSE_NAMES))
    ep.check()
    part = ep.frames(slice(1, 3))
    assert part.cameras == ep.cameras and part.extra[pose_column(CAM)].values.shape == (2, 7)


def test_writer_refuses_intrinsics_of_another_aspect(tmp_path: Path) -> None:
    """1920x1080 intrinsics for the 64x48 (4:3) source video: a named reject, nothing staged."""
    ep = make_episode(4, "pick", make_source(tmp_path / "src.mp4", 10), 0)
    ep.cameras.append(model())
    with pytest.raises(EpisodeError, match="intrinsics of 1920x1080 for a 64x48 video") as err:
        stage_episode(ep, tmp_path / "s0", VCFG)
    assert err.value.field == "cameras" and not (tmp_path / "s0").exists()
