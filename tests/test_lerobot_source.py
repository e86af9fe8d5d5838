"""LeRobot-input converter: generated v2.0/v2.1 datasets with known EEF motion, bad mappings, real samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.errors import EpisodeError
from ingest.sources.lerobot import SOURCE
from schemas.episode import CanonicalEpisode
from schemas.sources_lerobot import LeRobotInputConfig

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata"
GR00T = REAL / "gr00t_demo_robot_sim.PickNPlace"
LDA = REAL / "lerobot_v21_lda1b_sim_pick_place"
GRIPPER_MAX_M = 0.08
TASKS = ["pick the cube", "valid", "stack the cups"]
R_OFF = 73  # the `right` side's offset in the 146 vector


# ---------------------------------------------------------------------------------------------- motion


def position(t: np.ndarray) -> np.ndarray:
    return np.stack([0.3 + 0.1 * np.sin(t), 0.05 * t, 0.4 + 0.02 * t**2], axis=-1)


def quat_xyzw(t: np.ndarray) -> np.ndarray:
    """A rotation of angle 0.6 t about a fixed tilted axis, as (x, y, z, w)."""
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    half = 0.3 * t
    return np.concatenate([np.sin(half)[:, None] * axis, np.cos(half)[:, None]], axis=-1)


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


def gripper_m(t: np.ndarray) -> np.ndarray:
    return 0.04 + 0.04 * np.sin(2 * t)


def six_d(R: np.ndarray) -> np.ndarray:
    return np.concatenate([R[:, :, 0], R[:, :, 1]], axis=-1)


# ---------------------------------------------------------------------------------------------- fixture


def write_mp4(path: Path, frames: int, fps: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(frames):
            img = np.full((32, 32, 3), (i * 7) % 256, dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode(None))


def _list_column(values: np.ndarray) -> pa.Array:
    return pa.array([row.tolist() for row in values], type=pa.list_(pa.float64()))


def write_dataset(
    root: Path,
    fps: int = 30,
    frames: int = 61,
    version: str = "v2.1",
    t0: float = 0.0,
    frame_index: bool = True,
    cameras: tuple[str, ...] = ("observation.images.front",),
    videos: tuple[str, ...] = ("observation.images.front",),
) -> dict[str, np.ndarray]:
    """One-episode dataset; `observation.state` = xyz + quat xyzw + gripper (m). Returns the source."""
    t = np.arange(frames) / fps
    state = np.concatenate([position(t), quat_xyzw(t), gripper_m(t)[:, None]], axis=1)
    action = np.random.default_rng(0).normal(size=(frames, 4))
    cols: dict[str, pa.Array] = {
        "observation.state": _list_column(state),
        "action": _list_column(action),
        "timestamp": pa.array((t + t0).astype(np.float32)),
        "episode_index": pa.array(np.zeros(frames, dtype=np.int64)),
        "index": pa.array(np.arange(frames, dtype=np.int64)),
        "task_index": pa.array(np.zeros(frames, dtype=np.int64)),
    }
    if frame_index:
        cols["frame_index"] = pa.array(np.arange(frames, dtype=np.int64))
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(pa.table(cols), root / "data/chunk-000/episode_000000.parquet")
    features: dict[str, Any] = {
        "observation.state": {"dtype": "float64", "shape": [8], "names": [f"s{i}" for i in range(8)]},
        "action": {"dtype": "float64", "shape": [4], "names": ["a0", "a1", "a2", "a3"]},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    }
    for cam in cameras:
        features[cam] = {"dtype": "video", "shape": [32, 32, 3], "names": ["height", "width", "channels"]}
    info = {
        "codebase_version": version, "robot_type": "test_arm", "fps": fps, "chunks_size": 1000,
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features,
    }  # fmt: skip
    (root / "meta").mkdir()
    (root / "meta/info.json").write_text(json.dumps(info))
    (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": s}) + "\n"
                                                   for i, s in enumerate(TASKS)))  # fmt: skip
    episode = {"episode_index": 0, "tasks": [TASKS[0]], "length": frames}
    (root / "meta/episodes.jsonl").write_text(json.dumps(episode) + "\n")
    for cam in videos:
        write_mp4(root / f"videos/chunk-000/{cam}/episode_000000.mp4", frames, fps)
    return {"t": t, "state": state, "action": action}


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
    assert ep.meta.has_action and ep.meta.quality_tier == "high" and ep.meta.embodiment == "test_arm"


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


def test_v3_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", version="v3.0")
    with pytest.raises(EpisodeError, match="not supported"):
        SOURCE.discover(tmp_path / "ds", config())


# ---------------------------------------------------------------------------------------------- real samples


def gr00t_config() -> LeRobotInputConfig:
    groups = ["left_arm", "left_hand", "left_leg", "neck", "right_arm", "right_hand", "right_leg", "waist"]
    return config(
        embodiment="gr1_arms_only", native_fps=20, right=None,
        joints=[f"modality:state.{g}" for g in groups], optional_cameras=["observation.images.egoview"],
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
def test_real_gr00t_demo() -> None:
    episodes = convert_all(GR00T, gr00t_config())
    assert len(episodes) == 5
    for i, ep in enumerate(episodes):
        duration = source_duration(GR00T / f"data/chunk-000/episode_{i:06d}.parquet", 20)
        assert ep.length == int(np.floor(duration * 10)) + 1
        assert ep.meta.caption == tasks_of(GR00T)[i] and ep.meta.caption != "valid"
        assert not ep.state_mask.any() and not ep.action_mask.any()  # no EEF pose: wrist dims masked
        assert ep.extra["observation.joints"].values.shape == (ep.length, 44)
        assert ep.extra["observation.joints"].names[22] == "state.right_arm.0"
        assert ep.extra["action.native"].values.shape == (ep.length, 44)
        assert list(ep.videos) == ["observation.images.ego_view"]  # `egoview` is declared with no files
        np.testing.assert_array_equal(
            ep.videos["observation.images.ego_view"].frame_indices, 2 * np.arange(ep.length)
        )


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
