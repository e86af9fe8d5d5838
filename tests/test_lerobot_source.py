"""LeRobot-input converter: generated v2.0/v2.1 datasets with known EEF motion, bad mappings, real samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ingest.convert import kinematics
from ingest.errors import EpisodeError
from ingest.sources.lerobot import SOURCE
from ingest.stages import quality
from ingest.validate import validate_dataset
from ingest.video import probe
from ingest.writer import finalize_meta, publish_episode, stage_episode
from schemas.canonical import part_slice
from schemas.episode import CanonicalEpisode
from schemas.lerobot import video_path
from schemas.pipelines import PipelinesFile, VideoConfig
from schemas.sources_lerobot import LeRobotInputConfig
from tests.fixtures import lerobot as fx
from tests.fixtures.lerobot import TASKS, gripper_m, position, quat_xyzw

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata"
GR00T = REAL / "gr00t_demo_robot_sim.PickNPlace"
LDA = REAL / "lerobot_v21_lda1b_sim_pick_place"
G1 = REAL / "lerobot_v21_unitree_g1_inspire"
GRIPPER_MAX_M = 0.08
R_OFF = 73  # the `right` side's offset in the 146 vector


# ---------------------------------------------------------------------------------------------- fixture


def matrix_xyzw(q: np.ndarray) -> np.ndarray:
    """Rotation matrices from (x, y, z, w) quaternions (written here independently of the project)."""
    x, y, z, w = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def six_d(R: np.ndarray) -> np.ndarray:
    return np.concatenate([R[:, :, 0], R[:, :, 1]], axis=-1)


def write_dataset(
    root: Path,
    fps: int = 30,
    frames: int = 61,
    version: str = "v2.1",
    t0: float = 0.0,
    frame_index: bool = True,
    cameras: tuple[str, ...] = ("observation.images.front",),
    videos: tuple[str, ...] = ("observation.images.front",),
    **kw: Any,
) -> dict[str, np.ndarray]:
    """One-episode `arm` dataset (tests/fixtures/lerobot.py); returns the source values."""
    missing = {(0, c) for c in cameras if c not in videos}
    spec = fx.Spec(lengths=[frames], fps=fps, t0=t0, frame_index=frame_index, cameras=cameras,
                   missing_videos=missing, **kw)  # fmt: skip
    fx.write_v2(root, spec, version)
    cols = spec.columns(0)
    return {"t": spec.times(0), "state": cols["observation.state"], "action": cols["action"]}


def config(**kw: Any) -> LeRobotInputConfig:
    base: dict[str, Any] = {
        "format": "lerobot", "source_version": "test", "license": "test", "embodiment": "test_arm",
        "embodiment_kind": "sim_robot", "reference_frame": "base", "native_fps": 30,
        "right": {
            "position": "observation.state[0:3]", "rotation": "observation.state[3:7]",
            "rotation_convention": "quat_xyzw", "gripper": "observation.state[7:8]",
            "gripper_open": GRIPPER_MAX_M, "gripper_closed": 0.0,
        },
    }  # fmt: skip
    return LeRobotInputConfig.model_validate(base | kw)


def convert_all(root: Path, cfg: LeRobotInputConfig) -> list[CanonicalEpisode]:
    out = []
    for ref in SOURCE.discover(root, cfg):
        for ep in SOURCE.convert(ref, cfg):
            ep.check()
            out.append(ep)
    return out


def expected_right(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical right-side state [K, 10] and action [K, 10] (pos, rot6d, gripper) at the given times."""
    p, R, g = position(times), matrix_xyzw(quat_xyzw(times)), gripper_m(times) / GRIPPER_MAX_M
    state = np.concatenate([p, six_d(R), g[:, None]], axis=1)
    action = np.zeros_like(state)
    action[:-1, :3] = p[1:] - p[:-1]
    action[:-1, 3:9] = six_d(np.swapaxes(R[:-1], 1, 2) @ R[1:])
    action[:-1, 9] = g[1:]
    action[-1, 3:9] = [1, 0, 0, 0, 1, 0]
    action[-1, 9] = g[-1]
    return state, action


# ---------------------------------------------------------------------------------------------- synthetic


def test_discover_ids(tmp_path: Path) -> None:
    root = tmp_path / "my_set"
    write_dataset(root)
    refs = SOURCE.discover(root, config())
    assert [r.source_episode_id for r in refs] == ["my_set/episode_000000"]


def test_v21_30hz_exact_state_action(tmp_path: Path) -> None:
    src = write_dataset(tmp_path / "ds", fps=30, frames=61)
    (ep,) = convert_all(tmp_path / "ds", config())
    assert ep.length == 21  # 2.0 s -> floor(2.0 * 10) + 1
    state, action = expected_right(np.arange(21) / 10)
    np.testing.assert_allclose(ep.state[:, R_OFF : R_OFF + 10], state, atol=2e-6)
    np.testing.assert_allclose(ep.action[:, R_OFF : R_OFF + 10], action, atol=2e-6)
    assert ep.state_mask[:, R_OFF : R_OFF + 10].all() and ep.action_mask[:, R_OFF : R_OFF + 10].all()
    assert not ep.state_mask[:, :R_OFF].any() and not ep.state_mask[:, R_OFF + 10 :].any()
    assert not ep.state[:, :R_OFF].any()
    np.testing.assert_array_equal(ep.videos["observation.images.front"].frame_indices, 3 * np.arange(21))
    native = ep.extra["action.native"]
    np.testing.assert_array_equal(native.values, src["action"][3 * np.arange(21)].astype(np.float32))
    assert native.names == ["a0", "a1", "a2", "a3"]
    assert (ep.meta.caption, ep.meta.caption_source, ep.meta.task_original) == (TASKS[0], "source", TASKS[0])
    assert ep.meta.has_action and ep.meta.embodiment == "test_arm"
    assert quality.stage(ep, config()).meta.quality_tier == "high"


def test_v20_24hz_offset_timestamps_interpolate(tmp_path: Path) -> None:
    """v2.0, no frame_index, first timestamp 0.05 s: output sample k at 0.1 k s after the first frame."""
    root = tmp_path / "ds"
    write_dataset(root, fps=24, frames=48, version="v2.0", t0=0.05, frame_index=False)
    (ep,) = convert_all(root, config(native_fps=24))
    k = np.arange(20)  # duration 47 / 24 = 1.96 s -> 20 samples (no 10 Hz time is a tie at 24 fps)
    assert ep.length == len(k)
    src_t = np.arange(48) / 24
    # linear / SLERP between the bracketing source frames, computed here from the known motion
    lo = np.minimum((k * 24) // 10, 46)
    w = (k / 10 - src_t[lo]) * 24
    p = (1 - w)[:, None] * position(src_t[lo]) + w[:, None] * position(src_t[lo + 1])
    np.testing.assert_allclose(ep.state[:, R_OFF : R_OFF + 3], p, atol=2e-6)
    # the rotation turns at a constant rate about a fixed axis, so SLERP gives the exact rotation
    np.testing.assert_allclose(
        ep.state[:, R_OFF + 3 : R_OFF + 9], six_d(matrix_xyzw(quat_xyzw(k / 10))), atol=2e-6
    )
    g = (1 - w) * gripper_m(src_t[lo]) + w * gripper_m(src_t[lo + 1])
    np.testing.assert_allclose(ep.state[:, R_OFF + 9], g / GRIPPER_MAX_M, atol=2e-6)
    # nearest source frame, distances in units of 1/120 s
    dist = np.abs(5 * np.arange(48)[None, :] - 12 * k[:, None])
    np.testing.assert_array_equal(ep.videos["observation.images.front"].frame_indices, dist.argmin(axis=1))


def test_missing_video_is_named(tmp_path: Path) -> None:
    cams = ("observation.images.front", "observation.images.wrist")
    write_dataset(tmp_path / "ds", cameras=cams, videos=cams[:1])
    with pytest.raises(EpisodeError, match="video missing") as err:
        convert_all(tmp_path / "ds", config())
    assert err.value.field == "observation.images.wrist"
    (ep,) = convert_all(tmp_path / "ds", config(optional_cameras=["observation.images.wrist"]))
    assert list(ep.videos) == ["observation.images.front"]


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"right": {"position": "state.eef_pos", "rotation": "observation.state[3:7]"}}, "state.eef_pos"),
        ({"joints": ["modality:state.right_arm"]}, "modality:state.right_arm"),
        ({"native_action": ["actions.joint"]}, "actions.joint"),
        ({"cameras": ["observation.images.nope"]}, "observation.images.nope"),
    ],
)
def test_unknown_mapping_key_refused(tmp_path: Path, kw: dict[str, Any], key: str) -> None:
    write_dataset(tmp_path / "ds")
    with pytest.raises(EpisodeError, match="unknown key") as err:
        convert_all(tmp_path / "ds", config(**kw))
    assert err.value.field == key


def test_bad_slice_and_unknown_config_field(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds")
    with pytest.raises(EpisodeError, match="outside") as err:
        convert_all(tmp_path / "ds", config(joints=["observation.state[6:12]"]))
    assert err.value.field == "observation.state[6:12]"
    with pytest.raises(ValueError, match="eef_frame"):
        config(eef_frame="tool0")


def test_joint_only_masks_wrist(tmp_path: Path) -> None:
    src = write_dataset(tmp_path / "ds")
    (ep,) = convert_all(tmp_path / "ds", config(right=None, joints=["observation.state"]))
    assert not ep.state_mask.any() and not ep.action_mask.any() and not ep.state.any()
    assert ep.meta.quality_tier == "actionless" and not ep.meta.has_action
    joints = ep.extra["observation.joints"]
    np.testing.assert_allclose(joints.values, src["state"][3 * np.arange(21)], atol=1e-6)
    assert joints.names == [f"s{i}" for i in range(8)]


def test_unknown_version_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", version="v1.6")
    with pytest.raises(EpisodeError, match="unknown LeRobot version 'v1.6'") as err:
        SOURCE.discover(tmp_path / "ds", config())
    assert (err.value.field, err.value.stage) == ("codebase_version", "discover")


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"right": {"position": "states.eef_pos", "rotation": "observation.state[3:7]"}}, "states.eef_pos"),
        ({"joints": ["observation.state[4:9]"]}, "observation.state[4:9]"),
        ({"native_action": ["actions.joint"]}, "actions.joint"),
        ({"optional_cameras": ["images.rgb.head"]}, "images.rgb.head"),
        ({"annotations": ["annotation.human.nope"]}, "annotation.human.nope"),
    ],
)
def test_unknown_key_refused_at_discover(tmp_path: Path, kw: dict[str, Any], key: str) -> None:
    """Refused before any episode converts, naming the key (a slice past the declared shape too)."""
    write_dataset(tmp_path / "ds")
    with pytest.raises(EpisodeError, match="unknown key|outside the 8 values") as err:
        SOURCE.discover(tmp_path / "ds", config(**kw))
    assert (err.value.field, err.value.stage) == (key, "discover")
    assert err.value.path.endswith("meta/info.json")


def test_path_template_of_another_version_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds")
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    info["data_path"] = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"  # v3.0's, in a v2.1
    (tmp_path / "ds/meta/info.json").write_text(json.dumps(info))
    with pytest.raises(EpisodeError, match="path templates do not fit v2.1: KeyError..chunk_index") as err:
        SOURCE.discover(tmp_path / "ds", config())
    assert (err.value.field, err.value.stage) == ("data_path", "discover")


def test_v20_three_episodes_each_its_own_rows(tmp_path: Path) -> None:
    """v2.0 (no episodes_stats.jsonl): episode e's state is the motion shifted by 0.01 e in x."""
    spec = fx.Spec(lengths=[61, 45, 50])
    fx.write_v2(tmp_path / "ds", spec, version="v2.0")
    assert not (tmp_path / "ds/meta/episodes_stats.jsonl").exists()
    episodes = convert_all(tmp_path / "ds", config())
    assert [ep.length for ep in episodes] == [21, 15, 17]
    for e, ep in enumerate(episodes):
        k = np.arange(ep.length) / 10
        np.testing.assert_allclose(ep.state[:, R_OFF : R_OFF + 3], position(k, e), atol=2e-6)
        assert ep.meta.caption == TASKS[e % 2 * 2]


def test_annotations_carried_over_as_text(tmp_path: Path) -> None:
    """`annotation.*` task rows -> text at the nearest source frame (30 Hz: frame 3k); halves 0 / 2."""
    write_dataset(tmp_path / "ds", frames=61, annotations=True)
    (ep,) = convert_all(tmp_path / "ds", config())
    source_rows = 3 * np.arange(21)
    want = [TASKS[0] if r < 30 else TASKS[2] for r in source_rows]
    assert ep.annotations["annotation.human.action.task_description"] == want
    assert ep.annotations["annotation.human.validity"] == ["valid"] * 21
    (only,) = convert_all(tmp_path / "ds", config(annotations=["annotation.human.validity"]))
    assert list(only.annotations) == ["annotation.human.validity"]


def test_annotation_row_outside_task_table_rejected(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", annotations=True)
    path = tmp_path / "ds/data/chunk-000/episode_000000.parquet"
    table = pq.read_table(path)
    col = "annotation.human.validity"
    bad = np.ones(table.num_rows, dtype=np.int64)
    bad[40] = 7
    pq.write_table(table.set_column(table.column_names.index(col), col, pa.array(bad)), path)
    with pytest.raises(EpisodeError, match="task index 7 is not in the task table") as err:
        convert_all(tmp_path / "ds", config())
    assert err.value.field == col


def test_camera_model_fixed_in_the_section(tmp_path: Path) -> None:
    """The hook for a camera whose intrinsics come from the robot model (GR1 head): fixed in the section."""
    write_dataset(tmp_path / "ds", frames=31)
    spec = {"intrinsics": [50.0, 51.0, 31.5, 23.5, 64, 48], "provenance": "robot model"}
    (ep,) = convert_all(tmp_path / "ds", config(camera_models={"observation.images.front": spec}))
    (cam,) = ep.cameras
    assert (cam.camera, cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy) == (
        "observation.images.front", 64, 48, 50.0, 51.0, 31.5, 23.5)  # fmt: skip
    assert cam.provenance == "robot model" and cam.pose_column is None


def test_camera_data_entry_missing_is_named(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", frames=31)
    cfg = config(camera_models={"observation.images.front": {"camera_data": "obs_camera"}})
    with pytest.raises(EpisodeError, match="expected \\[fx, fy, cx, cy, width, height\\], got None") as err:
        convert_all(tmp_path / "ds", cfg)
    assert err.value.field == "task_data.camera_data.obs_camera.camera_params"


def test_video_shorter_than_rows_rejected(tmp_path: Path) -> None:
    cam = "observation.images.front"
    write_dataset(tmp_path / "ds", frames=61, video_frames={(0, cam): 58})
    with pytest.raises(EpisodeError, match="video shorter than the episode: 58 frames, needs 61") as err:
        convert_all(tmp_path / "ds", config())
    assert (err.value.field, err.value.stage) == (cam, "read")


def test_episode_length_mismatch_rejected(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", frames=61)
    line = json.dumps({"episode_index": 0, "tasks": [TASKS[0]], "length": 60})
    (tmp_path / "ds/meta/episodes.jsonl").write_text(line + "\n")
    with pytest.raises(EpisodeError, match="says 60 frames, Parquet has 61") as err:
        convert_all(tmp_path / "ds", config())
    assert err.value.field == "length"


# ---------------------------------------------------------------------------------------------- real samples


GR00T_GROUPS = ["left_arm", "left_hand", "left_leg", "neck", "right_arm", "right_hand", "right_leg", "waist"]


def gr00t_config(fk: bool = False) -> LeRobotInputConfig:
    """The demo as joints only, or (`fk`) with both hands by forward kinematics in the ego camera."""
    joints = [f"modality:state.{g}" for g in GR00T_GROUPS]
    kin = (
        {"kinematics": {"model": "gr1_fourier", "joints": joints}, "reference_frame": "camera"} if fk else {}
    )
    return config(
        embodiment="gr1_arms_only", native_fps=20, right=None,
        joints=joints, optional_cameras=["observation.images.egoview"], **kin,
    )  # fmt: skip


def lda_config(**kw: Any) -> LeRobotInputConfig:
    right = {
        "position": "state.eef_position", "rotation": "state.eef_quaternion",
        "rotation_convention": "quat_wxyz", "gripper": "state.gripper_width[0:1]",
        "gripper_open": 0.0, "gripper_closed": 0.785,
    }  # fmt: skip
    base: dict[str, Any] = {"embodiment": "franka_robotiq", "right": right, "joints": ["state.joints"]}
    return config(**(base | {"cameras": ["video.ego_view"]} | kw))


def source_duration(parquet: Path, fps: float) -> float:
    ts = pq.read_table(parquet, columns=["timestamp"]).column("timestamp").to_numpy().astype(np.float64)
    return round((ts[-1] - ts[0]) * fps) / fps


def tasks_of(root: Path) -> list[str]:
    lines = (root / "meta/episodes.jsonl").read_text().splitlines()
    return [next(t for t in json.loads(x)["tasks"] if t != "valid") for x in lines]


@pytest.mark.realdata
@pytest.mark.skipif(not (GR00T / "meta/info.json").is_file(), reason="needs ../shared/realdata GR00T demo")
@pytest.mark.skipif(kinematics.assets_dir() is None, reason="needs the GR1 model (make setup)")
def test_real_gr00t_demo() -> None:
    episodes = convert_all(GR00T, gr00t_config(fk=True))
    assert len(episodes) == 5
    for i, ep in enumerate(episodes):
        duration = source_duration(GR00T / f"data/chunk-000/episode_{i:06d}.parquet", 20)
        assert ep.length == int(np.floor(duration * 10)) + 1
        assert ep.meta.caption == tasks_of(GR00T)[i] and ep.meta.caption != "valid"
        assert ep.meta.has_action
        for side in ("left", "right"):  # wrist by FK; 17 of 21 keypoints on the Fourier hand (no DIPs)
            assert ep.state_mask[:, part_slice(side, "position")].all()
            assert ep.state_mask[:, part_slice(side, "rotation")].all()
            assert ep.state_mask[:, part_slice(side, "gripper")].all()
            kp = ep.state_mask[:, part_slice(side, "keypoints")].reshape(ep.length, 21, 3)[:, :, 0]
            assert (kp.sum(axis=1) == 17).all() and not kp[:, [7, 11, 15, 19]].any()
        # the wrists are in front of the ego camera, left hand on the image's left
        left, right = (
            ep.state[:, part_slice("left", "position")],
            ep.state[:, part_slice("right", "position")],
        )
        assert (left[:, 2] > 0.1).all() and (right[:, 2] > 0.1).all() and (left[:, 0] < right[:, 0]).all()
        assert ep.extra["observation.joints"].values.shape == (ep.length, 44)
        assert ep.extra["observation.joints"].names[22] == "state.right_arm.0"
        assert ep.extra["action.native"].values.shape == (ep.length, 44)
        assert list(ep.videos) == ["observation.images.ego_view"]  # `egoview` is declared with no files
        np.testing.assert_array_equal(
            ep.videos["observation.images.ego_view"].frame_indices, 2 * np.arange(ep.length)
        )


@pytest.mark.realdata
@pytest.mark.skipif(not (GR00T / "meta/info.json").is_file(), reason="needs ../shared/realdata GR00T demo")
def test_real_gr00t_joints_only_stays_masked() -> None:
    """Without a kinematics model a joint-only robot publishes no canonical values (joints kept)."""
    (ep,) = SOURCE.convert(SOURCE.discover(GR00T, gr00t_config())[0], gr00t_config())
    assert not ep.state_mask.any() and not ep.action_mask.any() and not ep.meta.has_action
    assert ep.extra["observation.joints"].values.shape == (ep.length, 44)


@pytest.mark.realdata
@pytest.mark.skipif(not (GR00T / "meta/info.json").is_file(), reason="needs ../shared/realdata GR00T demo")
def test_real_gr00t_without_the_model_files_is_a_named_reject(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(kinematics.ASSETS_ENV, str(tmp_path / "nowhere"))
    kinematics.gr1_model.cache_clear()
    try:
        ref = SOURCE.discover(GR00T, gr00t_config(fk=True))[0]
        with pytest.raises(EpisodeError, match="GR1 assets not found .*make setup") as err:
            SOURCE.convert(ref, gr00t_config(fk=True))
        assert err.value.field == "kinematics"
    finally:
        kinematics.gr1_model.cache_clear()


@pytest.mark.realdata
@pytest.mark.skipif(not (LDA / "meta/info.json").is_file(), reason="needs ../shared/realdata LDA sim sample")
def test_real_lda_sim() -> None:
    episodes = convert_all(LDA, lda_config())
    assert len(episodes) == 4
    for i, ep in enumerate(episodes):
        duration = source_duration(LDA / f"data/chunk-000/episode_{i:06d}.parquet", 30)
        assert ep.length == int(np.floor(duration * 10)) + 1
        assert ep.meta.caption == tasks_of(LDA)[i]
        assert ep.state_mask[:, R_OFF : R_OFF + 10].all() and ep.meta.has_action
        assert ep.state[:, R_OFF + 9].min() >= 0.0 and ep.state[:, R_OFF + 9].max() <= 1.0
        assert ep.extra["action.native"].values.shape == (ep.length, 61)  # the 16 action.* columns


@pytest.mark.realdata
@pytest.mark.skipif(not (LDA / "meta/info.json").is_file(), reason="needs ../shared/realdata LDA sim sample")
def test_real_lda_euler_matches_quaternion() -> None:
    """The sample's `eef_rotation` (extrinsic xyz Euler) and `eef_quaternion` (wxyz) agree once mapped."""
    euler = lda_config(right=lda_config().right.model_dump() | {"rotation": "state.eef_rotation",
                                                                 "rotation_convention": "euler"})  # fmt: skip
    ref = SOURCE.discover(LDA, euler)[0]
    (a,), (b,) = SOURCE.convert(ref, lda_config()), SOURCE.convert(ref, euler)
    np.testing.assert_allclose(
        a.state[:, R_OFF + 3 : R_OFF + 9], b.state[:, R_OFF + 3 : R_OFF + 9], atol=1e-4
    )


@pytest.mark.realdata
@pytest.mark.skipif(not (LDA / "meta/info.json").is_file(), reason="needs ../shared/realdata LDA sim sample")
def test_real_lda_missing_cameras_rejected_by_name() -> None:
    cfg = lda_config(cameras=None)
    fields = []
    for ref in SOURCE.discover(LDA, cfg):
        with pytest.raises(EpisodeError, match="video missing") as err:
            SOURCE.convert(ref, cfg)
        fields.append(err.value.field)
    assert fields == ["video.base_view", "video.base_view", "video.base_view_2", "video.base_view"]


@pytest.mark.realdata
@pytest.mark.skipif(not (GR00T / "meta/info.json").is_file(), reason="needs ../shared/realdata GR00T demo")
def test_real_gr00t_annotations_as_text() -> None:
    """GR00T's `annotation.human.*` rows of tasks.jsonl, at the nearest 20 Hz frame (2k), as text."""
    tasks = {
        json.loads(x)["task_index"]: json.loads(x)["task"]
        for x in (GR00T / "meta/tasks.jsonl").read_text().splitlines()
    }
    for i, ep in enumerate(convert_all(GR00T, gr00t_config())):
        table = pq.read_table(GR00T / f"data/chunk-000/episode_{i:06d}.parquet")
        for col in ("annotation.human.action.task_description", "annotation.human.validity"):
            rows = table.column(col).to_numpy()[2 * np.arange(ep.length)]
            assert ep.annotations[col] == [tasks[r] for r in rows]
        assert set(ep.annotations["annotation.human.validity"]) == {"valid"}
        assert ep.annotations["annotation.human.action.task_description"][0] == ep.meta.caption


@pytest.mark.realdata
@pytest.mark.skipif(not (LDA / "meta/info.json").is_file(), reason="needs ../shared/realdata LDA sim sample")
def test_real_lda_binary_annotations_not_carried() -> None:
    """The LDA sample's 21 `annotation.*` columns are pickles (binary), not task rows: none is carried."""
    ref = SOURCE.discover(LDA, lda_config())[0]
    (ep,) = SOURCE.convert(ref, lda_config())
    assert ep.annotations == {}
    with pytest.raises(EpisodeError, match="expected task indices, got binary") as err:
        SOURCE.convert(ref, lda_config(annotations=["annotation.pick_obj_uid"]))
    assert err.value.field == "annotation.pick_obj_uid"


def g1_config() -> LeRobotInputConfig:
    return config(embodiment="unitree_g1_inspire", right=None, joints=["observation.state"])


@pytest.mark.realdata
@pytest.mark.skipif(
    not (G1 / "meta/info.json").is_file(), reason="needs ../shared/realdata Unitree G1 sample"
)
def test_real_unitree_g1_converts_episodes_with_video() -> None:
    """100 episodes, videos only for 1, 2, 4, 5: those convert (joints only, 26 named joints), the others
    are named `video missing` rejects."""
    cfg, done, missing = g1_config(), {}, []
    for ref in SOURCE.discover(G1, cfg):
        try:
            (ep,) = SOURCE.convert(ref, cfg)
            done[ref.source_episode_id] = ep
        except EpisodeError as e:
            assert (e.field, e.stage, "video missing" in str(e)) == (
                "observation.images.cam_high",
                "read",
                True,
            )
            missing.append(ref.source_episode_id)
    assert sorted(done) == [f"{G1.name}/episode_{i:06d}" for i in (1, 2, 4, 5)] and len(missing) == 96
    for i, ep in zip((1, 2, 4, 5), done.values(), strict=True):
        table = pq.read_table(G1 / f"data/chunk-000/episode_{i:06d}.parquet")
        assert (
            ep.length
            == int(np.floor(source_duration(G1 / f"data/chunk-000/episode_{i:06d}.parquet", 30) * 10)) + 1
        )
        joints = ep.extra["observation.joints"]
        assert joints.names[0] == "kLeftShoulderPitch" and joints.names[25] == "kRightHandThumbRotation"
        state = np.asarray(table.column("observation.state").to_pylist(), dtype=np.float32)
        np.testing.assert_allclose(joints.values[:, :], state[3 * np.arange(ep.length)], atol=1e-6)
        assert not ep.state_mask.any() and ep.meta.quality_tier == "actionless"
        assert ep.meta.caption == "Pick up the yellow bottle on the table."


# ------------------------------------------------------------------------------------ published videos

SHIPPED = PipelinesFile.load(ROOT / "pipelines.yaml")


def publish_first(
    root: Path, section: str, cfg: LeRobotInputConfig, out: Path, video: VideoConfig | None = None
) -> Path:
    """The first episode's first 8 frames published with `video`, by default the section's shipped box."""
    ep = SOURCE.convert(SOURCE.discover(root, cfg)[0], cfg)[0].frames(slice(0, 8))
    stage_episode(ep, out / "s0", video or SHIPPED.source(section).video)
    publish_episode(out / "s0", out / "ds", 0, 0, {})
    finalize_meta(out / "ds", section, SHIPPED.source(section), [])
    return out / "ds"


def first_frames(path: Path) -> np.ndarray:
    """Frame 0 of a video as RGB."""
    import av

    with av.open(str(path)) as c:
        return next(f.to_ndarray(format="rgb24") for f in c.decode(video=0))


@pytest.mark.realdata
@pytest.mark.skipif(not (GR00T / "meta/info.json").is_file(), reason="needs ../shared/realdata GR00T demo")
def test_real_gr00t_demo_published_square(tmp_path: Path) -> None:
    """The 256x256 GR00T demo in the shipped 640x360 box stays 256x256 (probed with PyAV), pixel for pixel
    the source's frame (not stretched)."""
    ds = publish_first(GR00T, "lerobot_gr00t_gr1", gr00t_config(), tmp_path)
    key = "observation.images.ego_view"
    p = probe(ds / video_path(0, key))
    assert (p.width, p.height) == (256, 256)
    src = first_frames(GR00T / "videos/chunk-000/observation.images.ego_view/episode_000000.mp4")
    assert src.shape == (256, 256, 3)
    out = first_frames(ds / video_path(0, key)).astype(np.float64)
    assert np.abs(out - src).mean() < 4  # H.264 at crf 23 only


@pytest.mark.realdata
@pytest.mark.skipif(not (LDA / "meta/info.json").is_file(), reason="needs ../shared/realdata LDA sim sample")
@pytest.mark.parametrize(("box", "want"), [(None, (640, 480)), ((640, 360), (480, 360))])
def test_real_lda_published_4_3_with_its_camera_model(tmp_path: Path, box, want) -> None:
    """640x480 in -> 4:3 out (the shipped box keeps it whole; a 16:9 box gives 480x360), the source frame
    resized by PIL to that size (same aspect) matches; the camera model plumbing (camera_data entry
    `obs_camera`, chosen here only to exercise it) scales its intrinsics to the published size."""
    from PIL import Image

    cfg = lda_config(camera_models={"video.ego_view": {"camera_data": "obs_camera"}})
    video = None if box is None else VideoConfig(width=box[0], height=box[1])
    ds = publish_first(LDA, "lerobot_lda1b_sim", cfg, tmp_path, video)
    key = "observation.images.ego_view"
    p = probe(ds / video_path(0, key))
    assert (p.width, p.height) == want
    assert validate_dataset(ds) == []
    src = first_frames(LDA / "videos/chunk-000/video.ego_view/episode_000000.mp4")
    assert src.shape == (480, 640, 3)
    resized = np.asarray(Image.fromarray(src).resize(want, Image.Resampling.BOX), dtype=np.float64)
    assert np.abs(first_frames(ds / video_path(0, key)) - resized).mean() < 4
    cam = json.loads((ds / "meta/cameras.jsonl").read_text())
    s = want[0] / 640
    assert (cam["width"], cam["height"]) == want
    assert cam["fx"] == pytest.approx(606.9908447265625 * s) and cam["cx"] == pytest.approx(
        (321.7320556640625 + 0.5) * s - 0.5
    )


@pytest.mark.ray
@pytest.mark.realdata
@pytest.mark.usefixtures("ray_local")
@pytest.mark.skipif(not (GR00T / "meta/info.json").is_file(), reason="needs ../shared/realdata GR00T demo")
def test_real_gr00t_demo_round_trips_for_gr00t(tmp_path: Path) -> None:
    """A joint-only dataset: our modality.json has the source's own state / action groups over
    observation.joints / action.native (not the all-zero canonical slices), and GR00T's loader logic
    slices our stats.json by them to the source's values at the kept 20 Hz frames (2k)."""
    from ingest.job import RunOptions, run
    from ingest.validate import validate_dataset
    from tests.fixtures.gr00t import gr00t_load_stats

    # the shipped section without its kinematic model: a joint-only robot
    raw = yaml.safe_load((ROOT / "pipelines.yaml").read_text())
    del raw["sources"]["lerobot_gr00t_gr1"]["kinematics"]
    raw["sources"]["lerobot_gr00t_gr1"]["reference_frame"] = "base"
    (tmp_path / "pipelines.yaml").write_text(yaml.safe_dump(raw))
    opts = RunOptions(source="lerobot_gr00t_gr1", input=GR00T, output=tmp_path, workers=1, progress=False,
                      pipelines=tmp_path / "pipelines.yaml")  # fmt: skip
    run(opts)
    out = tmp_path / "lerobot_gr00t_gr1"
    assert validate_dataset(out) == []
    ours = json.loads((out / "meta/modality.json").read_text())
    theirs = json.loads((GR00T / "meta/modality.json").read_text())
    for group, key in (("state", "observation.joints"), ("action", "action.native")):
        want = {k: (v["start"], v["end"]) for k, v in theirs[group].items()}
        assert {k: (v["start"], v["end"]) for k, v in ours[group].items()} == want
        assert {v["original_key"] for v in ours[group].values()} == {key}
    loaded = gr00t_load_stats(out)
    source = np.concatenate(
        [
            np.stack(pq.read_table(p).column("observation.state").to_numpy(zero_copy_only=False))[::2]
            for p in sorted((GR00T / "data/chunk-000").glob("*.parquet"))
        ]
    )
    a, b = theirs["state"]["right_arm"]["start"], theirs["state"]["right_arm"]["end"]
    right_arm = loaded["state"]["right_arm"]
    np.testing.assert_allclose(right_arm.max, source[:, a:b].max(0), atol=1e-6)
    np.testing.assert_allclose(right_arm.q01, np.quantile(source[:, a:b], 0.01, axis=0), atol=1e-5)
    assert loaded["action"]["left_hand"].mean.shape == (6,)
