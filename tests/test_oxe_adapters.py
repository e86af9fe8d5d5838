"""The OXE key-mapping reader configured for RT-1 (fractal, 3 Hz) and DROID (15 Hz), a joint-only mapping,
mapping refusals and per-record rejects; the shipped `pipelines.yaml` sections are the configs under test.

Expected values are computed here independently of ingest/sources/oxe.py and the resampler: rotations with
Rodrigues' formula from the fixture's axis-angle (RT-1, written as quaternions) or by turning the base axes
one after the other (DROID's extrinsic Euler angles), 10 Hz frame k from the closed form at source step
`k * native_fps / 10` (with one angle moving about a fixed axis, SLERP is exact), and the nearest source
step by rounding with ties to the earlier step.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

import tests.fixtures.rlds as rlds_fx
from ingest.errors import EpisodeError
from ingest.job import DEFAULT_PIPELINES, RunOptions, run
from ingest.sources import oxe
from ingest.sources.base import PartReject
from ingest.sources.rlds import RldsDataset, RldsEpisode
from ingest.stages import quality
from ingest.validate import validate_dataset
from schemas.canonical import part_slice
from schemas.episode import CanonicalEpisode
from schemas.pipelines import PipelinesFile
from schemas.sources_oxe import EefOffset, NamedField, OxeConfig, SuccessSignal

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata" / "oxe_bridge_rlds" / "bridge_dataset" / "1.0.0"
RIGHT = slice(part_slice("right", "position").start, part_slice("right", "gripper").stop)
AXES = np.eye(3)


def shipped(section: str, **update: object) -> OxeConfig:
    cfg = PipelinesFile.load(DEFAULT_PIPELINES).source(section)
    assert isinstance(cfg, OxeConfig)
    return cfg.model_copy(update=update)


def convert_all(root: Path, cfg: OxeConfig) -> list[CanonicalEpisode | PartReject]:
    return [item for ref in oxe.SOURCE.discover(root, cfg) for item in oxe.SOURCE.convert(ref, cfg)]


def episodes_of(items: list[CanonicalEpisode | PartReject]) -> list[CanonicalEpisode]:
    assert all(isinstance(x, CanonicalEpisode) for x in items), items
    return items  # type: ignore[return-value]


# ------------------------------------------------------------------------- independent references


def rodrigues(axis: np.ndarray, angle: float) -> np.ndarray:
    """R = I + sin(a) K + (1 - cos(a)) K^2 for the unit `axis`."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def extrinsic_xyz(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Column j: base axis j turned about fixed x by roll, then fixed y by pitch, then fixed z by yaw."""
    cols = [rodrigues(AXES[2], yaw) @ rodrigues(AXES[1], pitch) @ rodrigues(AXES[0], roll) @ e for e in AXES]
    return np.stack(cols, axis=1)


def sixd(R: np.ndarray) -> np.ndarray:
    return np.concatenate([R[:, 0], R[:, 1]])


def nearest_step(s: np.ndarray) -> np.ndarray:
    """Round half down: a 10 Hz frame exactly between two source steps takes the earlier one."""
    return np.ceil(np.asarray(s) - 0.5 - 1e-9).astype(int)


def expected_side(pos: np.ndarray, rots: list[np.ndarray], grip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right side (10 values) of state and action from 10 Hz poses, by CONTRACT.md section 4."""
    state = np.array([[*p, *sixd(R), g] for p, R, g in zip(pos, rots, grip, strict=True)])
    action = np.zeros_like(state)
    for t in range(len(pos) - 1):
        action[t] = [*(pos[t + 1] - pos[t]), *sixd(rots[t].T @ rots[t + 1]), grip[t + 1]]
    action[-1] = [0, 0, 0, 1, 0, 0, 0, 1, 0, grip[-1]]
    return state, action


def check_right_side(ep: CanonicalEpisode, state: np.ndarray, action: np.ndarray) -> None:
    np.testing.assert_allclose(ep.state[:, RIGHT], state, atol=3e-6, rtol=0)
    np.testing.assert_allclose(ep.action[:, RIGHT], action, atol=3e-6, rtol=0)
    for mask in (ep.state_mask, ep.action_mask):
        assert mask[:, RIGHT].all() and not mask[:, :73].any()
        assert not mask[:, part_slice("right", "keypoints")].any()


# ------------------------------------------------------------------------------------ RT-1 (fractal)

FRACTAL_N = 7  # 3 Hz: 2 s -> 21 frames at 10 Hz


def test_fractal_3hz_upsampled_state_action_masks(tmp_path: Path) -> None:
    fx = rlds_fx.write_fractal_dataset(tmp_path, shards=[2], num_steps=FRACTAL_N)
    episodes = episodes_of(convert_all(fx.root, shipped("oxe_fractal")))
    s = np.arange(21) * 3 / 10  # source step of each 10 Hz frame
    for e, ep in enumerate(episodes):
        assert ep.length == 21 and ep.meta.embodiment == "google_robot"
        pos, angle, closed = rlds_fx.fractal_state(s, e)
        rots = [rodrigues(rlds_fx.FRACTAL_AXIS, a) for a in angle]
        check_right_side(ep, *expected_side(pos, rots, 1.0 - closed))  # gripper_closed: 1 = closed


def test_fractal_native_action_success_caption_video(tmp_path: Path) -> None:
    fx = rlds_fx.write_fractal_dataset(tmp_path, shards=[3], num_steps=FRACTAL_N)
    cfg = shipped("oxe_fractal")
    episodes = episodes_of(convert_all(fx.root, cfg))
    near = nearest_step(np.arange(21) * 3 / 10)
    assert near.tolist()[:7] == [0, 0, 1, 1, 1, 1, 2]  # 0.0 0.3 0.6 0.9 1.2 1.5 (tie: earlier) 1.8
    keys = ["world_vector", "rotation_delta", "gripper_closedness_action", "terminate_episode",
            "base_displacement_vector", "base_displacement_vertical_rotation"]  # fmt: skip
    for e, (ep, src) in enumerate(zip(episodes, fx.episodes["train"][0], strict=True)):
        native = ep.extra["action.native"]
        want = np.concatenate([src.steps[f"steps/action/{k}"].astype(np.float64) for k in keys], 1)[near]
        np.testing.assert_array_equal(native.values, want.astype(np.float32))
        assert native.names[:7] == ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper_closedness"]
        assert native.names[7:10] == ["terminate_episode.0", "terminate_episode.1", "terminate_episode.2"]
        assert native.values[-1, 7:10].tolist() == [1.0, 0.0, 0.0]  # the one-hot of the last step
        state = ep.extra["observation.native_state"]
        assert state.names == ["x", "y", "z", "qx", "qy", "qz", "qw", "gripper_closed"]
        np.testing.assert_array_equal(
            state.values[:, :7], src.steps["steps/observation/base_pose_tool_reached"][near]
        )
        assert ep.meta.quality_metrics["success"] == (1.0 if e % 2 == 0 else 0.0)  # reward on the last step
        assert ep.meta.caption == ep.meta.task_original == rlds_fx.FRACTAL_INSTRUCTIONS[e % 2]
        assert ep.meta.caption_source == "source"
        tier = quality.stage(ep, cfg).meta.quality_tier
        assert tier == ("high" if e % 2 == 0 else "low")  # a failed attempt is tiered low
        (video,) = ep.videos.values()
        assert (
            list(ep.videos) == ["observation.images.image"] and video.frame_indices.tolist() == near.tolist()
        )
        assert video.images is not None and len(video.images) == FRACTAL_N
    text = RldsDataset.open(fx.root).features["steps/observation/natural_language_instruction"]
    assert text.kind == "text"  # declared as a scalar string Tensor, as in the OXE copies


def test_fractal_eef_offset_rotates_with_the_tool(tmp_path: Path) -> None:
    fx = rlds_fx.write_fractal_dataset(tmp_path, shards=[1], num_steps=FRACTAL_N)
    quarter = (np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4))  # 90 degrees about the tool z axis
    cfg = shipped(
        "oxe_fractal",
        eef_offset=EefOffset(translation=(0.02, 0.0, 0.1), quat_wxyz=quarter, provenance="test"),
    )
    (ep,) = episodes_of(convert_all(fx.root, cfg))
    steps = np.arange(FRACTAL_N)
    pos, angle, _ = rlds_fx.fractal_state(steps, 0)
    tips = np.stack(
        [p + rodrigues(rlds_fx.FRACTAL_AXIS, a) @ [0.02, 0.0, 0.1] for p, a in zip(pos, angle, strict=True)]
    )
    s = np.arange(21) * 3 / 10  # the canonical position is interpolated linearly between source steps
    want = np.stack([np.interp(s, steps, tips[:, j]) for j in range(3)], 1)
    np.testing.assert_allclose(ep.state[:, part_slice("right", "position")], want, atol=3e-6)
    _, angle10, _ = rlds_fx.fractal_state(s, 0)
    for row, a in zip(ep.state[:, part_slice("right", "rotation")], angle10, strict=True):
        np.testing.assert_allclose(
            row, sixd(rodrigues(rlds_fx.FRACTAL_AXIS, a) @ rodrigues(AXES[2], np.pi / 2)), atol=3e-6
        )


def test_quaternion_orders_and_zero_quaternion() -> None:
    ep = RldsEpisode(shard=Path("shard-x"), index=4, num_steps=2)
    axis, angle = np.array([0.0, 0.6, 0.8]), 1.1
    xyzw = np.array([[*(axis * np.sin(angle / 2)), np.cos(angle / 2)]] * 2)
    for convention, values in (("quat_xyzw", xyzw), ("quat_wxyz", xyzw[:, [3, 0, 1, 2]])):
        cfg = shipped("oxe_fractal", rotation_convention=convention)
        np.testing.assert_allclose(oxe.to_rotation(values, cfg, ep)[1], rodrigues(axis, angle), atol=1e-12)
    with pytest.raises(EpisodeError, match="zero quaternion at step 1") as info:
        oxe.to_rotation(np.array([[0, 0, 0, 1.0], [0, 0, 0, 0]]), shipped("oxe_fractal"), ep)
    assert info.value.path == "shard-x" and info.value.field.startswith("record 4: ")


# -------------------------------------------------------------------------------------------- DROID

DROID_N = 16  # 15 Hz: 1 s -> 11 frames at 10 Hz


def test_droid_15hz_downsampled_state_action_joints(tmp_path: Path) -> None:
    fx = rlds_fx.write_droid_dataset(tmp_path, shards=[2], num_steps=DROID_N)
    # the reader's conventions against the raw pose: the shipped offset is set aside (its effect: the fractal
    # offset test; its value: pipelines.yaml provenance)
    episodes = episodes_of(convert_all(fx.root, shipped("oxe_droid", eef_offset=EefOffset())))
    s = np.arange(11) * 15 / 10
    near = nearest_step(s)
    for e, (ep, src) in enumerate(zip(episodes, fx.episodes["train"][0], strict=True)):
        assert ep.length == 11 and ep.meta.embodiment == "franka"
        cart, grip, joints = rlds_fx.droid_state(s, e)
        rots = [extrinsic_xyz(*row[3:6]) for row in cart]
        check_right_side(ep, *expected_side(cart[:, :3], rots, 1.0 - grip))  # gripper_position: 1 = closed
        np.testing.assert_allclose(ep.extra["observation.joints"].values, joints, atol=2e-6)  # linear in time
        assert ep.extra["observation.joints"].names == [f"joint_position.{j}" for j in range(7)]
        native = ep.extra["action.native"]
        want = np.concatenate([src.steps["steps/action"], src.steps["steps/action_dict/cartesian_position"],
                               src.steps["steps/action_dict/gripper_position"],
                               src.steps["steps/action_dict/joint_position"]], 1)[near]  # fmt: skip
        np.testing.assert_array_equal(native.values, want.astype(np.float32))
        assert native.names[:8] == [*(f"action.{j}" for j in range(7)), "cartesian_position.0"]
        assert len(native.names) == 7 + 6 + 1 + 7
        assert ep.extra["observation.native_state"].names == [
            "x",
            "y",
            "z",
            "roll",
            "pitch",
            "yaw",
            "gripper_position",
        ]


def test_droid_instructions_success_and_cameras(tmp_path: Path) -> None:
    fx = rlds_fx.write_droid_dataset(tmp_path, shards=[3], num_steps=DROID_N)
    episodes = episodes_of(convert_all(fx.root, shipped("oxe_droid")))
    texts = [ep.meta.caption for ep in episodes]
    assert texts == [
        rlds_fx.DROID_INSTRUCTIONS[0],
        rlds_fx.DROID_INSTRUCTION_2,
        rlds_fx.DROID_INSTRUCTIONS[2],
    ]
    assert [ep.meta.quality_metrics["success"] for ep in episodes] == [1.0, 0.0, 1.0]  # success/ or failure/
    for ep in episodes:
        assert sorted(ep.videos) == [f"observation.images.{c}" for c in rlds_fx.DROID_CAMERAS]
        assert all(
            v.frame_indices.tolist() == [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15] for v in ep.videos.values()
        )
    # a path matching neither pattern gives no flag at all, never a guess
    cfg = shipped(
        "oxe_droid", success=SuccessSignal(key="episode_metadata/file_path", success_pattern="/ok/")
    )
    assert all("success" not in ep.meta.quality_metrics for ep in episodes_of(convert_all(fx.root, cfg)))


def test_bridge_section_has_no_success_flag(tmp_path: Path) -> None:
    fx = rlds_fx.write_rlds_dataset(tmp_path, splits={"train": [1]}, num_steps=6)  # reward 1 on its last step
    cameras = [f"steps/observation/{c}" for c in rlds_fx.CAMERAS]
    cfg = shipped("oxe", splits=["train"], cameras=cameras)
    (ep,) = episodes_of(convert_all(fx.root, cfg))
    m = quality.stage(ep, cfg).meta.quality_metrics
    assert "success" not in m and m["valid_fraction"] == 1.0


# ------------------------------------------------------------------------------- generic mappings


def test_joint_only_mapping_masks_the_wrist(tmp_path: Path) -> None:
    fx = rlds_fx.write_droid_dataset(tmp_path, shards=[1], num_steps=DROID_N)
    cfg = shipped("oxe_droid", position=None, rotation=None)
    (ep,) = episodes_of(convert_all(fx.root, cfg))
    pose = slice(part_slice("right", "position").start, part_slice("right", "rotation").stop)
    grip = part_slice("right", "gripper")
    assert (
        not ep.state_mask[:, pose].any() and not ep.action_mask[:, pose].any() and not ep.state[:, pose].any()
    )
    assert ep.state_mask[:, grip].all() and ep.action_mask[:, grip].all()
    np.testing.assert_allclose(
        ep.state[:, grip][:, 0], 1.0 - rlds_fx.droid_state(np.arange(11) * 1.5, 0)[1], atol=1e-6
    )
    assert ep.extra["observation.joints"].values.shape == (11, 7) and ep.meta.has_action
    assert quality.stage(ep, cfg).meta.quality_metrics["valid_fraction"] == 0.0  # no wrist
    cfg = shipped("oxe_droid", position=None, rotation=None, gripper=None)
    (bare,) = episodes_of(convert_all(fx.root, cfg))
    assert not bare.state_mask.any() and not bare.meta.has_action and bare.meta.quality_tier == "actionless"
    staged = quality.stage(bare, cfg).meta  # measured without the interaction metrics, tiered actionless
    assert staged.quality_tier == "actionless" and staged.quality_metrics["valid_fraction"] == 0.0
    assert staged.quality_metrics["frames"] == 11 and "idle_start_s" not in staged.quality_metrics


def test_mapping_that_does_not_fit_is_refused_at_discover(tmp_path: Path) -> None:
    fx = rlds_fx.write_droid_dataset(tmp_path, shards=[1], num_steps=DROID_N)
    cfg = shipped(
        "oxe_droid",
        position="steps/observation/cartesian_positon[0:3]",  # a typo
        rotation="steps/observation/cartesian_position[3:7]",  # outside the 6 values
        gripper="steps/observation/joint_position",  # 7 values for 1
        native_action=[NamedField(key="steps/action", names=["a", "b"])],
        instructions=["steps/reward"],
        cameras=["steps/observation/joint_position"],
        success=SuccessSignal(key="episode_metadata/file_path"),
    )
    with pytest.raises(EpisodeError) as info:
        oxe.SOURCE.discover(fx.root, cfg)
    err = info.value
    assert err.path == str(fx.root.resolve() / "features.json") and err.stage == "discover"
    msg = str(err)
    assert "does not fit dataset 'droid'" in msg
    assert (
        "steps/observation/cartesian_positon: unknown key (did you mean steps/observation/cartesian_position"
        in msg
    )
    assert "steps/observation/cartesian_position[3:7]: slice outside the 6 values" in msg
    assert "steps/observation/joint_position: gripper needs 1 value(s), the field has 7" in msg
    assert "steps/action: 2 names for 7 values" in msg
    assert "steps/reward: expected text, features.json has tensor" in msg
    assert "steps/observation/joint_position: expected image, features.json has tensor" in msg
    assert "a text success signal needs success_pattern" in msg
    with pytest.raises(EpisodeError, match="wrist_camera: unknown key"):
        oxe.SOURCE.discover(fx.root, shipped("oxe_droid", cameras=["steps/observation/wrist_camera"]))


def test_schema_refuses_half_a_pose() -> None:
    with pytest.raises(ValueError, match="position and rotation must be given together"):
        shipped("oxe_droid").model_validate({**shipped("oxe_droid").model_dump(), "rotation": None})
    with pytest.raises(ValueError, match="gripper_range"):
        shipped("oxe_fractal").model_validate(
            {**shipped("oxe_fractal").model_dump(), "gripper_range": (1, 1)}
        )


# --------------------------------------------------------------------------------- bad records


def test_corrupt_record_mid_shard_is_one_named_reject(tmp_path: Path) -> None:
    fx = rlds_fx.write_fractal_dataset(
        tmp_path, shards=[3], num_steps=FRACTAL_N, corrupt="crc", corrupt_record=1
    )
    items = convert_all(fx.root, shipped("oxe_fractal"))
    shard = fx.shards["train"][0]
    assert [type(x).__name__ for x in items] == ["CanonicalEpisode", "PartReject", "CanonicalEpisode"]
    reject = items[1]
    assert isinstance(reject, PartReject) and reject.source_episode_id == f"train/{shard.name}#1"
    assert (reject.error.path, reject.error.field, reject.error.stage) == (str(shard), "record 1", "read")
    offset = fx.record_offsets[shard][1]
    assert f"byte offset {offset}: payload CRC32C mismatch" in str(reject.error)
    last = items[2]
    assert isinstance(last, CanonicalEpisode) and last.meta.source_episode_id == f"train/{shard.name}#2"
    s = np.arange(21) * 3 / 10
    pos, angle, closed = rlds_fx.fractal_state(s, 2)  # the record after the bad one keeps its own values
    check_right_side(
        last, *expected_side(pos, [rodrigues(rlds_fx.FRACTAL_AXIS, a) for a in angle], 1 - closed)
    )


def test_shard_shorter_than_dataset_info_says(tmp_path: Path) -> None:
    fx = rlds_fx.write_fractal_dataset(tmp_path, shards=[3], num_steps=FRACTAL_N)
    shard = fx.shards["train"][0]
    shard.write_bytes(shard.read_bytes()[: fx.record_offsets[shard][2]])  # ends cleanly after record 1
    items = convert_all(fx.root, shipped("oxe_fractal"))
    assert [type(x).__name__ for x in items] == ["CanonicalEpisode", "CanonicalEpisode", "PartReject"]
    assert "record 2: missing: the shard ends after 2 records (dataset_info.json lists 3)" in str(
        items[2].error
    )


def test_non_finite_value_in_one_record_is_a_reject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = rlds_fx.droid_episode

    def broken(e: int, n: int, hw: tuple[int, int]) -> rlds_fx.RobotEpisode:
        ep = original(e, n, hw)
        if e == 1:
            ep.steps["steps/observation/gripper_position"][5, 0] = np.inf
        return ep

    monkeypatch.setattr(rlds_fx, "droid_episode", broken)
    fx = rlds_fx.write_droid_dataset(tmp_path, shards=[3], num_steps=DROID_N)
    items = convert_all(fx.root, shipped("oxe_droid"))
    assert [type(x).__name__ for x in items] == ["CanonicalEpisode", "PartReject", "CanonicalEpisode"]
    err = items[1].error
    assert (
        err.field == "record 1: steps/observation/gripper_position"
        and "non-finite value (NaN/inf) at step 5" in str(err)
    )


# ------------------------------------------------------------------------------- through the job


def _pipelines(tmp: Path, section: str, **update: object) -> Path:
    path = tmp / "pipelines.yaml"
    cfg = shipped(section, **update).model_dump(mode="json", exclude={"quality"})  # rules come from `tiers:`
    path.write_text(yaml.safe_dump({"sources": {section: cfg}}))
    return path


@pytest.mark.ray
@pytest.mark.usefixtures("ray_local")
def test_droid_and_fractal_through_the_job(tmp_path: Path) -> None:
    droid = rlds_fx.write_droid_dataset(tmp_path / "in", shards=[3, 1], num_steps=DROID_N, corrupt="crc")
    fractal = rlds_fx.write_fractal_dataset(tmp_path / "in", shards=[2], num_steps=FRACTAL_N)
    runs = {"oxe_droid": droid, "oxe_fractal": fractal}
    for section, fx in runs.items():
        opts = RunOptions(source=section, input=fx.root, output=tmp_path / "out", workers=2, progress=False,
                          pipelines=_pipelines(tmp_path, section, eef_offset=EefOffset()),  # raw poses
                          max_reject_ratio=1.0)  # fmt: skip
        run(opts)
        assert validate_dataset(tmp_path / "out" / section) == []
    root = tmp_path / "out" / "oxe_droid"
    rows = [json.loads(x) for x in (root / "meta/episodes.jsonl").read_text().splitlines()]
    shard0, shard1 = (p.name for p in droid.shards["train"])
    assert [r["source_episode_id"] for r in rows] == [
        f"train/{shard0}#0",
        f"train/{shard0}#2",
        f"train/{shard1}#0",
    ]
    assert [r["quality_metrics"]["success"] for r in rows] == [1.0, 1.0, 0.0]  # episodes 0, 2, 3
    (reject,) = [json.loads(x) for x in (root / "meta/rejects.jsonl").read_text().splitlines()]
    assert reject["source_path"] == str(droid.shards["train"][0]) and "record 1" in reject["error"]
    info = json.loads((root / "meta/info.json").read_text())
    assert info["features"]["observation.joints"]["shape"] == [7]
    assert {f"observation.images.{c}" for c in rlds_fx.DROID_CAMERAS} <= set(info["features"])
    table = pq.read_table(root / "data/chunk-000/episode_000001.parquet")
    state = np.asarray(table.column("observation.state").to_pylist())
    cart, grip, _ = rlds_fx.droid_state(np.arange(11) * 1.5, 2)
    np.testing.assert_allclose(state[:, part_slice("right", "position")], cart[:, :3], atol=2e-6)
    np.testing.assert_allclose(state[:, part_slice("right", "gripper")][:, 0], 1 - grip, atol=2e-6)
    fractal_rows = (tmp_path / "out" / "oxe_fractal" / "meta/episodes.jsonl").read_text().splitlines()
    assert [json.loads(x)["quality_metrics"]["success"] for x in fractal_rows] == [1.0, 0.0]


# ------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
@pytest.mark.skipif(not (REAL / "features.json").is_file(), reason="needs ../shared/realdata/oxe_bridge_rlds")
def test_shipped_bridge_section_on_the_real_sample() -> None:
    items = convert_all(REAL, shipped("oxe"))
    episodes = episodes_of(items)
    assert len(episodes) == 50
    ds = RldsDataset.open(REAL)
    first = next(ds.iter_episodes(ds.shards("train")[0]))
    ep = episodes[0]
    assert sorted(ep.videos) == [f"observation.images.image_{i}" for i in range(3)]  # image_3 is black
    assert ep.extra["action.native"].names == ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]
    np.testing.assert_array_equal(
        ep.extra["observation.native_state"].values,
        first.steps["steps/observation/state"][np.arange(19) // 2],
    )
    state = first.steps["steps/observation/state"].astype(np.float64)
    np.testing.assert_allclose(ep.state[::2, part_slice("right", "position")], state[:, :3], atol=1e-6)
    # stored angles are of R_ee @ D^T (D: bridge_data_robot's gripper-down DEFAULT_ROTATION); the canonical
    # frame is ee_gripper_link [y z x]: R_state @ D @ [y z x] = R_state @ [[0,1,0],[1,0,0],[0,0,-1]]
    to_canonical = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    rot = [extrinsic_xyz(*row[3:6]) @ to_canonical for row in state]
    np.testing.assert_allclose(
        ep.state[::2, part_slice("right", "rotation")], [sixd(R) for R in rot], atol=2e-6
    )
    assert all("success" not in e.meta.quality_metrics for e in episodes)
