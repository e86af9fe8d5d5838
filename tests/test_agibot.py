"""AgiBot World converter: generated episodes with a known motion (camera and base frames, both gripper
layouts, dexterous hands, sub-skill segments), bad inputs, and the real files of ../shared/realdata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from ingest.convert.camera import poses_from_rows
from ingest.errors import EpisodeError
from ingest.sources.agibot import SOURCE, camera_poses, open_proprio, read_field, segment_ranges
from ingest.stages import quality
from schemas.canonical import part_slice
from schemas.episode import CanonicalEpisode
from schemas.pipelines import PipelinesFile, VideoConfig
from schemas.source_config import EefOffset
from schemas.sources_agibot import AgibotConfig, NamedField, TaskInfoFile
from tests.fixtures import agibot as fx

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata" / "agibot_world"
BETA_H5 = REAL / "proprio_stats_beta_sample" / "proprio_stats.h5"
A2D = REAL / "a2d_genie_sim_episode" / "3335935" / "A2D0015AB00061" / "12055373"
_SECTION = yaml.safe_load((ROOT / "pipelines.yaml").read_text())["sources"]["agibot"]
SHIPPED_SECTION = PipelinesFile.model_validate({"sources": {"agibot": _SECTION}}).source(
    "agibot"
)  # this section alone
SIDES = ("left", "right")
# The reader's mechanics are checked against the raw flange poses: the shipped flange -> gripper-centre
# offset is set aside (its effect: test_jittered_rows_base_frame_with_an_eef_offset; its value and
# provenance: pipelines.yaml, test_eef_offsets.py).
SHIPPED = SHIPPED_SECTION.model_copy(
    update={s: getattr(SHIPPED_SECTION, s).model_copy(update={"eef_offset": EefOffset()}) for s in SIDES}
)


def _cfg(**update: object) -> AgibotConfig:
    cfg = SHIPPED.model_copy(
        update={"video": VideoConfig(width=64, height=48), "reference_frame": "camera", **update}
    )
    return AgibotConfig.model_validate(cfg.model_dump())


def _convert(root: Path, cfg: AgibotConfig, index: int = 0) -> CanonicalEpisode:
    (ep,) = SOURCE.convert(SOURCE.discover(root, cfg)[index], cfg)
    return ep


def _rot(ep: CanonicalEpisode, arr: np.ndarray, side: str) -> np.ndarray:
    six = arr[:, part_slice(side, "rotation")].astype(np.float64)
    return np.concatenate([six[:, :3], six[:, 3:]], axis=-1)


def _six(R: np.ndarray) -> np.ndarray:
    return np.concatenate([R[:, :, 0], R[:, :, 1]], axis=-1)


def _assert_side(ep: CanonicalEpisode, side: str, want: fx.Expected) -> None:
    pos, grip = part_slice(side, "position"), part_slice(side, "gripper")
    np.testing.assert_allclose(ep.state[:, pos], want.position, atol=2e-6)
    np.testing.assert_allclose(_rot(ep, ep.state, side), _six(want.rotation), atol=2e-6)
    np.testing.assert_allclose(ep.state[:, grip.start], want.gripper, atol=2e-6)
    np.testing.assert_allclose(ep.action[:, pos], want.action_position, atol=2e-6)
    np.testing.assert_allclose(_rot(ep, ep.action, side), _six(want.action_rotation), atol=2e-6)
    np.testing.assert_allclose(ep.action[:-1, grip.start], want.gripper[1:], atol=2e-6)


# ---------------------------------------------------------------------------------------------- motion


def test_camera_frame_state_and_action_match_the_closed_form(tmp_path: Path) -> None:
    w = fx.write_episode(tmp_path, "327", "648642", 91, motion=fx.Motion(0.3))
    fx.write_task_info(tmp_path, [w])
    ep = _convert(tmp_path, _cfg())
    assert ep.length == 31  # 91 rows at 30 Hz = 3.0 s -> 31 frames at 10 Hz
    for side in SIDES:
        _assert_side(ep, side, fx.expected_side(w, side, camera=True))
        keypoints = part_slice(side, "keypoints")
        assert ep.state_mask[:, part_slice(side, "position").start : keypoints.start].all()
        assert not ep.state_mask[:, keypoints].any()
    # the head moves, so decoupling matters: the naive difference of camera-frame states is different
    naive = np.diff(ep.state[:, part_slice("left", "position")], axis=0)
    assert np.abs(naive - ep.action[:-1, part_slice("left", "position")]).max() > 1e-3


def test_camera_models_from_the_parameters(tmp_path: Path) -> None:
    """Intrinsics at each video's size (the files give none), the head's per-frame pose from its
    extrinsics (the fixture's closed-form camera at the 10 Hz times), the hand's without a pose."""
    w = fx.write_episode(tmp_path, "327", "8", 61, motion=fx.Motion(0.3))
    fx.write_task_info(tmp_path, [w])
    ep = _convert(tmp_path, _cfg(reference_frame="base"))
    head, hand = ep.cameras
    assert (head.camera, head.width, head.height) == ("observation.images.head", 32, 24)
    k = fx.intrinsic((32, 24))
    assert (head.fx, head.fy, head.cx, head.cy) == (k["fx"], k["fy"], k["ppx"], k["ppy"])
    assert head.distortion is None and head.pose_frame == "base"
    T = poses_from_rows(ep.extra[head.pose_column].values)
    want = w.motion.camera(fx.out_times(w.times_s))
    np.testing.assert_allclose(T, want, atol=2e-6)
    assert (hand.camera, hand.fx, hand.cx, hand.pose_column) == (
        "observation.images.hand_left",
        10.5,
        15.5,
        None,
    )
    assert (hand.distortion_model, hand.distortion) == ("pinhole", [0.1, -0.02, 0.001, 0.0, 0.0])


def test_jittered_rows_base_frame_with_an_eef_offset(tmp_path: Path) -> None:
    w = fx.write_episode(tmp_path, "327", "7", 100, motion=fx.Motion(1.1), jitter_grid=True)
    fx.write_task_info(tmp_path, [w])
    half = np.sqrt(0.5)  # 90 degrees about the flange z axis, and 12 cm along it
    arms = {
        s: getattr(SHIPPED, s).model_copy(
            update={
                "eef_offset": EefOffset(
                    translation=(0.0, 0.0, 0.12), quat_wxyz=(half, 0.0, 0.0, half), provenance="test"
                )
            }
        )
        for s in SIDES
    }
    ep = _convert(tmp_path, _cfg(reference_frame="base", **arms))
    offset = fx.pose(fx.axis_angle((0, 0, 1), np.array([np.pi / 2])), np.array([[0.0, 0.0, 0.12]]))[0]
    for side in SIDES:
        _assert_side(ep, side, fx.expected_side(w, side, camera=False, offset=offset))


def test_opengl_extrinsics_are_turned_to_opencv(tmp_path: Path) -> None:
    w = fx.write_episode(tmp_path, "327", "1", 61, opengl=True)
    fx.write_task_info(tmp_path, [w])
    ep = _convert(tmp_path, _cfg(camera_convention="opengl"))
    _assert_side(ep, "right", fx.expected_side(w, "right", camera=True))
    wrong = _convert(tmp_path, _cfg(camera_convention="opencv"))
    pos = part_slice("right", "position")
    assert np.abs(wrong.state[:, pos] - ep.state[:, pos]).max() > 0.1


def test_combined_effector_layout_gives_the_same_grippers(tmp_path: Path) -> None:
    w = fx.write_episode(tmp_path, "327", "2", 61, layout="combined")
    fx.write_task_info(tmp_path, [w])
    ep = _convert(tmp_path, _cfg())
    for side in SIDES:
        want = fx.expected_side(w, side).gripper
        np.testing.assert_allclose(ep.state[:, part_slice(side, "gripper").start], want, atol=2e-6)
    native = ep.extra["action.native"]
    rows = np.arange(ep.length) * 3
    with h5py.File(tmp_path / "proprio_stats/327/2/proprio_stats.h5") as f:
        command = f["action/effector/position"][()]
    right = native.values[:, native.names.index("right.gripper")]
    np.testing.assert_allclose(right, command[rows, 1], atol=1e-6)


def test_dexterous_hands_keep_their_joints(tmp_path: Path) -> None:
    w = fx.write_episode(tmp_path, "327", "3", 61, layout="dexterous", jitter_grid=True)
    fx.write_task_info(tmp_path, [w])
    arms = {s: getattr(SHIPPED, s).model_copy(update={"gripper": None}) for s in SIDES}
    hands = [NamedField(key=f"state/{s}_effector/position") for s in SIDES]
    ep = _convert(tmp_path, _cfg(native_action=[], hand_joints=hands, **arms))
    tau = fx.out_times(w.times_s)
    rad = w.motion.hand_rad(w.times_s)
    want = np.stack([np.interp(tau, w.times_s, rad[:, j]) for j in range(12)], axis=-1)
    obs, act = ep.extra["observation.hand_joints"], ep.extra["action.hand_joints"]
    np.testing.assert_allclose(obs.values, want, atol=2e-6)
    np.testing.assert_allclose(act.values, np.concatenate([want[1:], want[-1:]]), atol=2e-6)
    assert obs.names[0] == "state.left_effector.position.0" and len(obs.names) == 12
    assert not ep.state_mask[:, part_slice("left", "gripper")].any()
    want_pose = fx.expected_side(w, "left")
    np.testing.assert_allclose(ep.state[:, part_slice("left", "position")], want_pose.position, atol=2e-6)


def test_native_action_and_joints_come_unchanged_from_the_rows(tmp_path: Path) -> None:
    w = fx.write_episode(tmp_path, "327", "4", 91)
    fx.write_task_info(tmp_path, [w])
    ep = _convert(tmp_path, _cfg())
    rows = np.arange(ep.length) * 3  # rows on the 10 Hz grid
    with h5py.File(tmp_path / "proprio_stats/327/4/proprio_stats.h5") as f:
        pos, quat = f["action/end/position"][()], f["action/end/orientation"][()]
        grip, joints = f["action/left_effector/position"][()], f["state/joint/position"][()]
    native = ep.extra["action.native"]
    assert native.names[:3] == ["left.x", "left.y", "left.z"]
    assert native.names[-2:] == ["left.gripper", "right.gripper"]
    np.testing.assert_allclose(native.values[:, :6], pos[rows].reshape(-1, 6), atol=1e-6)
    np.testing.assert_allclose(native.values[:, 6:14], quat[rows].reshape(-1, 8), atol=1e-6)
    np.testing.assert_allclose(native.values[:, 14], grip[rows, 0], atol=1e-6)
    np.testing.assert_allclose(ep.extra["observation.joints"].values, joints[rows], atol=1e-6)
    assert ep.extra["observation.joints"].names[7] == "right_arm_joint1"
    assert all(v.frame_indices.tolist() == rows.tolist() for v in ep.videos.values())
    assert sorted(ep.videos) == [f"observation.images.{k}" for k in ("hand_left", "hand_right", "head")]


def test_quality_signals_from_the_known_motion(tmp_path: Path) -> None:
    w = fx.write_episode(tmp_path, "327", "5", 181)  # 6 s: the grippers close more than once
    fx.write_task_info(tmp_path, [w])
    cfg = _cfg()
    ep = quality.stage(_convert(tmp_path, cfg), cfg)
    want = {s: fx.expected_side(w, s) for s in SIDES}
    path = sum(np.linalg.norm(np.diff(e.position, axis=0), axis=1).sum() for e in want.values())
    disp = sum(max(np.linalg.norm(e.position[-1] - e.position[0]), 1e-3) for e in want.values())
    closings = [int(np.sum((e.gripper[:-1] > 0.5) & (e.gripper[1:] <= 0.5))) for e in want.values()]
    m = ep.meta.quality_metrics
    assert m["path_over_displacement"] == pytest.approx(path / disp, rel=1e-4)
    assert sum(closings) > 2 and m["regrasps"] == sum(max(c - 1, 0) for c in closings)
    assert m["valid_fraction"] == 1.0 and m["frames"] == 61 and "success" not in m
    assert ep.meta.embodiment == "agibot_g1"


# ---------------------------------------------------------------------------------------------- language


@pytest.mark.parametrize(
    ("segments", "frame_10_text"),
    [
        ([(3, 30, "grasp"), (30, 60, "lift")], "lift"),  # end == next start: half-open, row 30 is "lift"
        ([(3, 30, "grasp"), (31, 60, "lift")], "grasp"),  # no shared boundary: inclusive, row 30 is "grasp"
    ],
)
def test_subtask_text_per_frame(tmp_path: Path, segments: list, frame_10_text: str) -> None:
    config = [{"start_frame": a, "end_frame": b, "action_text": t, "skill": "x"} for a, b, t in segments]
    w = fx.write_episode(tmp_path, "327", "6", 91, segments=config, task_name="Pack the bag")
    fx.write_task_info(tmp_path, [w])
    ep = _convert(tmp_path, _cfg())
    texts = ep.annotations["annotation.subtask"]
    inclusive = segments[0][1] != segments[1][0]
    want = []
    for k in range(ep.length):
        row = 3 * k
        hits = [t for a, b, t in segments if a <= row < b + (1 if inclusive else 0)]
        want.append(hits[-1] if hits else "")
    assert texts == want and texts[10] == frame_10_text
    assert texts[0] == "" and texts[-1] == ""  # rows 0 and 90 lie outside every segment
    assert ep.meta.caption == "Pack the bag" and ep.meta.caption_source == "source"


@pytest.mark.realdata
@pytest.mark.skipif(not A2D.is_dir(), reason="needs ../shared/realdata/agibot_world")
def test_real_a2d_data_info_segments_are_inclusive() -> None:
    entry = TaskInfoFile.validate_json((A2D / "data_info.json").read_bytes())
    assert entry.caption == "Pack in the supermarket" and entry.episode_id == 12055373
    ranges = segment_ranges(entry.label_info.action_config)
    assert [(a, b) for a, b, _ in ranges] == [(18, 255), (255, 554)]
    assert ranges[0][2] == "Pick up the grape juice on the table with the right arm."


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", list(fx.BAD_FIELD))
def test_bad_inputs_are_named_rejects(tmp_path: Path, bad: str) -> None:
    w = fx.write_episode(tmp_path, "327", "648642", 61, bad=bad)  # type: ignore[arg-type]
    fx.write_task_info(tmp_path, [w], skip=["648642"] if bad == "no_task_entry" else [])
    (ref,) = SOURCE.discover(tmp_path, _cfg())
    with pytest.raises(EpisodeError) as err:
        SOURCE.convert(ref, _cfg())
    assert err.value.field == fx.BAD_FIELD[bad]
    files = {"no_video": "head_color.mp4", "short_video": "hand_left_color.mp4",
             "long_video": "hand_left_color.mp4", "no_task_entry": "task_327.json"}  # fmt: skip
    named = files.get(bad, "proprio_stats.h5")
    assert err.value.path.endswith(named)
    if bad in ("short_video", "long_video"):
        frames = 59 if bad == "short_video" else 64
        assert f"video has {frames} frames, proprio_stats.h5 has 61 rows" in str(err.value)


def test_missing_files_are_named(tmp_path: Path) -> None:
    w = fx.write_episode(tmp_path, "327", "1", 31)
    fx.write_task_info(tmp_path, [w])
    (tmp_path / "parameters/327/1/camera/head_extrinsic_params_aligned.json").unlink()
    (tmp_path / "observations/327/2/videos").mkdir(parents=True)  # videos, no proprio_stats.h5
    refs = SOURCE.discover(tmp_path, _cfg())
    assert [r.source_episode_id for r in refs] == ["327/1", "327/2"]
    with pytest.raises(EpisodeError, match="file missing") as err:
        SOURCE.convert(refs[0], _cfg())
    assert err.value.path.endswith("head_extrinsic_params_aligned.json")
    assert (
        len(SOURCE.convert(refs[0], _cfg(reference_frame="base"))) == 1
    )  # the base frame needs no extrinsics
    fx.write_task_info(tmp_path, [w, fx.Written("327", "2", w.times_s, w.motion, "per_side")])
    with pytest.raises(EpisodeError) as err:
        SOURCE.convert(refs[1], _cfg())
    assert err.value.path.endswith("327/2/proprio_stats.h5")


def test_discovery_is_in_natural_order(tmp_path: Path) -> None:
    for task, ep in (("10", "3"), ("9", "12"), ("9", "4")):
        (tmp_path / "proprio_stats" / task / ep).mkdir(parents=True)
    ids = [r.source_episode_id for r in SOURCE.discover(tmp_path, _cfg())]
    assert ids == ["9/4", "9/12", "10/3"]


# ---------------------------------------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def real_layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, fx.Written]:
    """The real Beta proprio_stats.h5 linked into a generated layout (videos, task_info, extrinsics)."""
    if not BETA_H5.is_file():
        pytest.skip("needs ../shared/realdata/agibot_world")
    root = tmp_path_factory.mktemp("agibot_real")
    w = fx.write_episode(
        root, "327", "648642", 0, h5_source=BETA_H5, size=(16, 16), segments=fx.REAL_SEGMENTS
    )
    fx.write_task_info(root, [w])
    return root, w


def _nlerp_rotations(times: np.ndarray, tau: np.ndarray, q_xyzw: np.ndarray) -> np.ndarray:
    """Rotation matrices at `tau` by normalised linear quaternion interpolation (close to SLERP for small
    steps), from xyzw quaternions; matrices by the textbook formula."""
    i = np.clip(np.searchsorted(times, tau, side="right") - 1, 0, len(times) - 2)
    wgt = ((tau - times[i]) / (times[i + 1] - times[i]))[:, None]
    q0, q1 = q_xyzw[i], q_xyzw[i + 1]
    q1 = np.where(np.sum(q0 * q1, axis=1, keepdims=True) < 0, -q1, q1)
    q = (1 - wgt) * q0 + wgt * q1
    x, y, z, w = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
         np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
         np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], axis=-2,
    )  # fmt: skip


@pytest.mark.realdata
def test_real_beta_proprio_stats_base_frame(real_layout: tuple[Path, fx.Written]) -> None:
    root, w = real_layout
    ep = _convert(root, _cfg(reference_frame="base"))
    with h5py.File(BETA_H5) as f:
        pos, quat = f["state/end/position"][()], f["state/end/orientation"][()]
        grip = {s: f[f"state/{s}_effector/position"][()][:, 0] for s in SIDES}
    t = w.times_s
    tau = fx.out_times(t)
    assert ep.length == len(tau) == 663  # 66.29 s of rows
    for i, side in enumerate(SIDES):
        want_p = np.stack([np.interp(tau, t, pos[:, i, a]) for a in range(3)], axis=-1)
        np.testing.assert_allclose(ep.state[:, part_slice(side, "position")], want_p, atol=2e-6)
        want_R = _nlerp_rotations(t, tau, quat[:, i])
        np.testing.assert_allclose(_rot(ep, ep.state, side), _six(want_R), atol=1e-4)
        want_g = np.clip(1 - np.interp(tau, t, grip[side]) / 120.0, 0, 1)
        np.testing.assert_allclose(ep.state[:, part_slice(side, "gripper").start], want_g, atol=2e-6)
    # the real grippers close (command 1) several times; the right one more than once
    assert quality.stage(ep, _cfg(reference_frame="base")).meta.quality_metrics["regrasps"] >= 1
    texts = ep.annotations["annotation.subtask"]
    nearest = ep.videos["observation.images.head"].frame_indices
    assert texts == [
        "Pick the item." if 100 <= r < 900 else "Place it." if 900 <= r < 1700 else "" for r in nearest
    ]


@pytest.mark.realdata
@pytest.mark.skipif(not A2D.is_dir(), reason="needs ../shared/realdata/agibot_world")
def test_real_a2d_files_read() -> None:
    p = open_proprio(A2D / "aligned_joints.h5")  # uint64 ns timestamps, float32 values
    with p.f:
        assert p.rows == 554 and p.times[-1] == pytest.approx(18.416664, abs=1e-6)
        assert read_field(p, "state/right_effector/position").max() == pytest.approx(71.21, abs=0.01)
    # 572 extrinsics for 554 rows; Genie Sim's camera axes are OpenGL: once turned to OpenCV the optical
    # axis (+z) looks forward and down from about 1.3 m
    cam = camera_poses(A2D / "parameters/camera/head_extrinsic_params_aligned.json", 554, "opengl")
    z = cam[:, :3, 2]
    assert cam.shape == (554, 4, 4) and (z[:, 0] > 0.5).all() and (z[:, 2] < -0.5).all()
    assert cam[0, 2, 3] == pytest.approx(1.3107, abs=1e-3)


A2D_ID = "a2d_genie_sim_episode/3335935/A2D0015AB00061/12055373"


def _section(name: str) -> AgibotConfig:
    raw = yaml.safe_load((ROOT / "pipelines.yaml").read_text())["sources"][name]
    return PipelinesFile.model_validate({"sources": {name: raw}}).source(name)  # type: ignore[return-value]


@pytest.mark.realdata
@pytest.mark.skipif(not A2D.is_dir(), reason="needs ../shared/realdata/agibot_world")
def test_real_input_folder_as_it_is_is_two_episode_folders() -> None:
    """`ingest run agibot --input agibot_world`: the A2D aligned folder and the lone Beta h5, no videos."""
    refs = SOURCE.discover(REAL, SHIPPED)
    assert [r.source_episode_id for r in refs] == [A2D_ID, "proprio_stats_beta_sample"]
    a2d, beta = (SOURCE.convert(r, SHIPPED) for r in refs)
    (ep,) = a2d
    with h5py.File(A2D / "aligned_joints.h5") as f:
        ns = f["timestamp"][()].astype(np.int64)
        pos, joints = f["state/end/position"][()], f["state/joint/position"][()]
        quat = f["state/end/orientation"][()].astype(np.float64)
        base, base_q = f["state/robot/position"][()], f["state/robot/orientation"][()]
    # Genie Sim's end poses are world poses; the robot base stands still at a yaw-free world pose
    # (identity quaternion), so the base-frame position is the world position minus the base's
    assert (base_q == [1, 0, 0, 0]).all() and (base == base[0]).all()
    pos = pos - base[0]
    t = (ns - ns[0]) / 1e9
    tau = fx.out_times(t)
    assert ep.length == len(tau) == 185 and not ep.videos  # 18.42 s of rows; the sample ships no video
    for i, side in enumerate(SIDES):
        want = np.stack([np.interp(tau, t, pos[:, i, a]) for a in range(3)], axis=-1)
        np.testing.assert_allclose(ep.state[:, part_slice(side, "position")], want, atol=2e-6)
        # that file's quaternions are wxyz (the `aligned` arms of the section), written out at row 0
        w, x, y, z = quat[0, i] / np.linalg.norm(quat[0, i])
        R0 = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z)],
                       [2 * (x * y + w * z), 1 - 2 * (x * x + z * z)],
                       [2 * (x * z - w * y), 2 * (y * z + w * x)]])  # fmt: skip
        np.testing.assert_allclose(ep.state[0, part_slice(side, "rotation")], R0.T.reshape(-1), atol=1e-5)
    want_j = np.stack([np.interp(tau, t, joints[:, j]) for j in range(14)], axis=-1)
    np.testing.assert_allclose(ep.extra["observation.joints"].values, want_j, atol=2e-6)
    # English caption from data_info.json's english_task_name; the source's Chinese text kept
    assert (ep.meta.caption, ep.meta.task_original) == ("Pack in the supermarket", "超市打包")
    texts = ep.annotations["annotation.subtask"]
    assert texts[0] == "" and texts[50] == "Pick up the grape juice on the table with the right arm."
    assert texts[-1] == "Put the grape juice into the felt bag on the table with the right arm."
    (b,) = beta
    assert b.length == 663 and not b.videos and set(b.annotations["annotation.subtask"]) == {""}
    assert (b.meta.caption, b.meta.caption_source, b.meta.task_original) == ("agibot g1", "template", "")


@pytest.mark.realdata
@pytest.mark.skipif(not A2D.is_dir(), reason="needs ../shared/realdata/agibot_world")
def test_real_a2d_in_the_head_camera_frame() -> None:
    """The `agibot_a2d` section: poses in the head camera frame (OpenGL axes turned to OpenCV's by
    flipping y and z), checked at the first frame from the JSON and the h5 read here."""
    cfg = _section("agibot_a2d")
    (ref,) = [r for r in SOURCE.discover(REAL, cfg) if r.source_episode_id == A2D_ID]
    (ep,) = SOURCE.convert(ref, cfg)
    first = json.loads((A2D / "parameters/camera/head_extrinsic_params_aligned.json").read_text())[0]
    R_gl = np.array(first["extrinsic"]["rotation_matrix"])
    t_cam = np.array(first["extrinsic"]["translation_vector"])
    R_cv = R_gl * np.array([1.0, -1.0, -1.0])  # columns y and z flipped
    with h5py.File(A2D / "aligned_joints.h5") as f:
        p0 = f["state/end/position"][0].astype(np.float64) - f["state/robot/position"][0]
    for i, side in enumerate(SIDES):
        want = R_cv.T @ (p0[i] - t_cam)
        np.testing.assert_allclose(ep.state[0, part_slice(side, "position")], want, atol=1e-5)
    # the working right gripper stays 0.2-0.6 m in front of the head camera (OpenCV: +z forward) and,
    # mid-pick (frame 100, source row 300), projects into the 1280 x 720 head image by its intrinsics
    right = ep.state[:, part_slice("right", "position")]
    assert (right[:, 2] > 0.2).all() and (right[:, 2] < 0.6).all()
    k = json.loads((A2D / "parameters/camera/head_intrinsic_params.json").read_text())
    x, y, z = right[100]
    u, v = k["fx"] * x / z + k["ppx"], k["fy"] * y / z + k["ppy"]
    assert 0 < u < 1280 and 0 < v < 720


@pytest.mark.ray
@pytest.mark.realdata
@pytest.mark.skipif(not A2D.is_dir(), reason="needs ../shared/realdata/agibot_world")
@pytest.mark.usefixtures("ray_local")
def test_real_input_folder_through_the_job(tmp_path: Path) -> None:
    """`ingest run agibot` on the real folder publishes both episodes without a camera feature (lerobot
    loads a dataset without video), and the A2D caption stays English."""
    from ingest.job import RunOptions, run
    from ingest.validate import validate_dataset

    summary = run(RunOptions(source="agibot", input=REAL, output=tmp_path, workers=1, progress=False))
    out = tmp_path / "agibot"
    assert (summary.published, summary.rejected) == (2, 0) and validate_dataset(out) == []
    info = json.loads((out / "meta/info.json").read_text())
    assert info["total_videos"] == 0 and info["video_path"] is None and not (out / "videos").exists()
    first = json.loads((out / "meta/episodes.jsonl").read_text().splitlines()[0])
    assert (first["caption"], first["task_original"]) == ("pack in the supermarket", "超市打包")


@pytest.mark.ray
@pytest.mark.realdata
@pytest.mark.usefixtures("ray_local")
def test_real_episode_through_the_job(real_layout: tuple[Path, fx.Written], tmp_path: Path) -> None:
    """Done-when of issue 6: the real proprio_stats.h5 with videos and a task file (no camera parameters)
    converts with the shipped section (base frame) and validates."""
    from ingest.job import RunOptions, run
    from ingest.validate import validate_dataset

    root = tmp_path / "in"
    shutil.copytree(real_layout[0], root, symlinks=True)
    shutil.rmtree(root / "parameters")
    pipelines = tmp_path / "pipelines.yaml"
    shipped = _cfg(reference_frame=SHIPPED.reference_frame).model_dump(mode="json", exclude={"quality"})
    pipelines.write_text(yaml.safe_dump({"sources": {"agibot": shipped}}))
    opts = RunOptions(source="agibot", input=root, output=tmp_path / "out", workers=1, progress=False,
                      pipelines=pipelines)  # fmt: skip
    summary = run(opts)
    out = tmp_path / "out" / "agibot"
    assert (summary.published, summary.rejected) == (1, 0)
    assert validate_dataset(out) == []
    table = pq.read_table(out / "data/chunk-000/episode_000000.parquet")
    rows = [json.loads(x) for x in (out / "meta/tasks.jsonl").read_text().splitlines()]
    tasks = {r["task_index"]: r["task"] for r in rows}
    texts = [tasks[i] for i in table.column("annotation.subtask").to_pylist()]
    assert texts[0] == "" and texts[100] == "Pick the item." and texts[400] == "Place it."
    (episode,) = [json.loads(x) for x in (out / "meta/episodes.jsonl").read_text().splitlines()]
    assert episode["task_original"] == "Pickup items in the supermarket"
    assert tasks[table.column("task_index")[0].as_py()] == episode["caption"]  # the caption stage's text
    assert episode["quality_metrics"]["frames"] == table.num_rows
    card = json.loads((out / "meta/dataset_card.json").read_text())
    cut = episode["quality_metrics"]["cut_frames_start"] + episode["quality_metrics"]["cut_frames_end"]
    assert card["reference_frame"] == "base" and table.num_rows + cut == 663  # idle ends cut, and counted
    assert "action.native" in table.column_names and "observation.joints" in table.column_names
