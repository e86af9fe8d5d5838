"""`ingest run interndata`: the shipped `interndata` mapping on generated InternData-A1 buckets (LeRobot v3.0
and v2.1, nested like the release, with the dataset's own key names and known values)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ingest.errors import EpisodeError
from ingest.job import DEFAULT_PIPELINES, RunOptions, run
from ingest.sources.lerobot import SOURCE
from ingest.validate import validate_dataset
from schemas.pipelines import PipelinesFile
from schemas.sources_lerobot import LeRobotInputConfig
from tests.fixtures import lerobot as fx

L_OFF, R_OFF = 0, 73  # the sides' offsets in the 146 vector


def section() -> LeRobotInputConfig:
    cfg = PipelinesFile.load(DEFAULT_PIPELINES).source("interndata")
    assert isinstance(cfg, LeRobotInputConfig)
    return cfg


def matrix_wxyz(q: np.ndarray) -> np.ndarray:
    """Rotation matrices from (w, x, y, z) quaternions (written here independently of the project)."""
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def expected_side(e: int, side: str, t: np.ndarray) -> np.ndarray:
    """Canonical [pos, rot6d, gripper] of one side at times t (from the fixture's closed forms)."""
    pose = fx.intern_pose(t, e, side)
    R = matrix_wxyz(pose[:, 3:7])
    grip = fx.intern_gripper(t, e, side) / fx.INTERN_GRIPPER_OPEN
    return np.concatenate([pose[:, :3], R[:, :, 0], R[:, :, 1], grip[:, None]], axis=1)


@pytest.mark.parametrize("layout", ["v3.0", "v2.1"])
def test_interndata_both_arms_joints_and_cameras(tmp_path: Path, layout: str) -> None:
    spec = fx.interndata_spec()
    fx.write_v3(tmp_path / "b", spec) if layout == "v3.0" else fx.write_v2(tmp_path / "b", spec)
    refs = SOURCE.discover(tmp_path / "b", section())
    episodes = [SOURCE.convert(r, section())[0] for r in refs]
    assert [ep.length for ep in episodes] == [14, 18, 11]  # 40, 52, 33 rows at 30 Hz
    for e, ep in enumerate(episodes):
        k = np.arange(ep.length) / 10
        for side, off in (("left", L_OFF), ("right", R_OFF)):
            np.testing.assert_allclose(ep.state[:, off : off + 10], expected_side(e, side, k), atol=2e-5)
            assert ep.state_mask[:, off : off + 10].all()
        joints = ep.extra["observation.joints"]
        np.testing.assert_allclose(joints.values[:, :6], fx.intern_joints(k, e), atol=2e-5)
        assert joints.names[6] == "states.right_joint.position.0"
        native = ep.extra["action.native"]
        assert native.values.shape == (ep.length, 2 * (6 + 1 + 7))  # every actions.* column
        np.testing.assert_allclose(native.values[:, :6], fx.intern_joints(k + 1 / 30, e), atol=2e-5)
        assert sorted(ep.videos) == ["observation.images.hand_left", "observation.images.hand_right",
                                     "observation.images.head"]  # fmt: skip
        assert ep.meta.embodiment == "agilex_split_aloha" and ep.meta.has_action


def test_interndata_tree_finds_buckets_and_skips_other_robots(tmp_path: Path) -> None:
    fx.write_interndata_tree(tmp_path / "data")
    ids = [r.source_episode_id for r in SOURCE.discover(tmp_path / "data", section())]
    v21, v30 = (
        "sim/basic/split_aloha/stack_bowls",
        "sim_updated_lerobotv30/pick_and_place/split_aloha/pick_cup",
    )
    assert ids == [f"{v21}/episode_{e:06d}" for e in range(2)] + [f"{v30}/episode_{e:06d}" for e in range(3)]


def test_interndata_other_robot_alone_refused(tmp_path: Path) -> None:
    fx.write_v2(tmp_path / "franka", fx.Spec(robot_type="Franka"))
    with pytest.raises(EpisodeError, match=r"no dataset of robot_type \['AgileX Split Aloha'\]") as err:
        SOURCE.discover(tmp_path / "franka", section())
    assert (err.value.field, err.value.stage) == ("robot_type", "discover")


def test_interndata_bucket_without_ee_pose_refused_by_name(tmp_path: Path) -> None:
    """A bucket that lacks a mapped key (older buckets have joints only) is refused before converting."""
    root = tmp_path / "b"
    fx.write_v2(root, fx.interndata_spec())
    info = json.loads((root / "meta/info.json").read_text())
    del info["features"]["states.right_ee_to_robot_pose"]
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(EpisodeError, match="unknown key: 'states.right_ee_to_robot_pose'") as err:
        SOURCE.discover(root, section())
    assert (err.value.field, err.value.stage) == ("states.right_ee_to_robot_pose[0:3]", "discover")


@pytest.mark.ray
@pytest.mark.usefixtures("ray_local")
def test_ingest_run_interndata_tree(tmp_path: Path) -> None:
    """The real job on a tree of a v2.1 and a v3.0 bucket: 5 episodes published in discovery order, the
    dataset validates, and a published video shows its episode's frames (codes read back after scaling)."""
    fx.write_interndata_tree(tmp_path / "data")
    opts = RunOptions(source="interndata", input=tmp_path / "data", output=tmp_path / "out", workers=2,
                      progress=False)  # fmt: skip
    summary = run(opts)
    root = tmp_path / "out/interndata"
    assert (summary.published, summary.rejected, summary.total_episodes) == (5, 0, 5)
    assert validate_dataset(root) == []
    lines = [json.loads(x) for x in (root / "meta/episodes.jsonl").read_text().splitlines()]
    assert [x["length"] for x in lines] == [15, 11, 14, 18, 11]
    mp4 = root / "videos/chunk-000/observation.images.hand_left/episode_000003.mp4"
    assert fx.decode_codes(mp4) == [fx.frame_code(1, 3 * k) for k in range(18)]  # v3.0 episode 1
    table = pq.read_table(root / "data/chunk-000/episode_000003.parquet")
    left = np.asarray(table.column("observation.state").to_pylist(), dtype=np.float64)[:, :10]
    np.testing.assert_allclose(left, expected_side(1, "left", np.arange(18) / 10), atol=2e-5)
