"""OXE (RLDS) converter, Bridge mapping: a known closed-form trajectory at 5 Hz, bad records, the real sample.

Expected values are computed here independently of ingest/sources/oxe.py: rotations by applying Rodrigues'
vector formula about the fixed axes one after the other (extrinsic) instead of multiplying matrices, and
the 10 Hz samples from the closed form at t = k / 10 instead of through the resampling plan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tests.fixtures.rlds as rlds_fx
from ingest.convert.geometry import euler_to_matrix
from ingest.errors import EpisodeError
from ingest.sources import oxe
from ingest.sources.base import PartReject
from ingest.sources.rlds import RldsDataset
from ingest.stages import quality
from schemas.canonical import part_slice
from schemas.episode import CanonicalEpisode
from schemas.pipelines import EgoDexConfig
from schemas.sources_oxe import EefOffset, OxeConfig

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata" / "oxe_bridge_rlds" / "bridge_dataset" / "1.0.0"
STATE, ACTION = "steps/observation/state", "steps/action"
N = 10  # source steps at 5 Hz -> 2N - 1 = 19 frames at 10 Hz (as in the Bridge sample)
GRIP_CLOSED, GRIP_OPEN = 0.1, 1.1
AXES = {"x": np.array([1.0, 0, 0]), "y": np.array([0, 1.0, 0]), "z": np.array([0, 0, 1.0])}
_make_episode = rlds_fx.make_episode


def make_cfg(**kw: object) -> OxeConfig:
    base = dict(
        format="oxe", source_version="1.0.0", license="CC-BY-4.0", embodiment="widowx",
        embodiment_kind="real_robot", reference_frame="base", native_fps=5, gripper_range=(0.1, 1.1),
    )  # fmt: skip
    return OxeConfig(**{**base, **kw})


# ----------------------------------------------------------------------- the closed form, independently


def trajectory(s: np.ndarray, e: int) -> np.ndarray:
    """State `[x, y, z, roll, pitch, yaw, gripper]` at source step (or fractional step) `s`."""
    s = np.asarray(s, dtype=np.float64)
    one = np.ones_like(s)
    return np.stack(
        [0.3 + 0.01 * s + 0.1 * e, -0.1 + 0.02 * s, 0.2 - 0.005 * s,
         0.3 * one, -0.2 * one, 0.1 + 0.25 * s, GRIP_CLOSED + 0.1 * s],
        axis=-1,
    )  # fmt: skip


def rodrigues(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotate vector `v` by `angle` about the unit `axis` (Rodrigues' rotation formula)."""
    c, s = np.cos(angle), np.sin(angle)
    return v * c + np.cross(axis, v) * s + axis * np.dot(axis, v) * (1 - c)


def extrinsic_xyz(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """The matrix whose column j is e_j turned about fixed x by roll, then fixed y, then fixed z."""
    cols = []
    for e in np.eye(3):
        v = rodrigues(e, AXES["x"], roll)
        v = rodrigues(v, AXES["y"], pitch)
        cols.append(rodrigues(v, AXES["z"], yaw))
    return np.stack(cols, axis=1)


def sixd(R: np.ndarray) -> np.ndarray:
    return np.concatenate([R[:, 0], R[:, 1]])


def rotation_angle(R: np.ndarray) -> float:
    return float(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))


def known_episode(e: int, num_steps: int, hw: tuple[int, int]) -> rlds_fx.Episode:
    ep = _make_episode(e, num_steps, hw)
    ep.steps[STATE] = trajectory(np.arange(num_steps), e).astype(np.float32)
    return ep


@pytest.fixture
def known(monkeypatch: pytest.MonkeyPatch) -> None:
    """The RLDS fixture writer with the state replaced by the closed-form trajectory."""
    monkeypatch.setattr(rlds_fx, "make_episode", known_episode)


def expected_side(e: int) -> tuple[np.ndarray, np.ndarray]:
    """Right side (10 values: position, 6D, gripper) of state and action at 10 Hz, `[2N-1, 10]` each."""
    k = np.arange(2 * N - 1)
    src = trajectory(k / 2, e)  # 10 Hz frame k is at source step k / 2 (5 Hz)
    rots = [extrinsic_xyz(*row[3:6]) for row in src]
    grip = (src[:, 6] - GRIP_CLOSED) / (GRIP_OPEN - GRIP_CLOSED)
    state = np.array([[*row[:3], *sixd(R), g] for row, R, g in zip(src, rots, grip, strict=True)])
    action = np.zeros_like(state)
    for t in range(len(k) - 1):
        action[t] = [*(src[t + 1, :3] - src[t, :3]), *sixd(rots[t].T @ rots[t + 1]), grip[t + 1]]
    action[-1] = [0, 0, 0, 1, 0, 0, 0, 1, 0, grip[-1]]
    return state, action


def convert_items(
    fx: rlds_fx.RldsFixture, split: str, shard: int, cfg: OxeConfig
) -> list[CanonicalEpisode | PartReject]:
    refs = {r.source_episode_id: r for r in oxe.SOURCE.discover(fx.root, cfg)}
    return list(oxe.SOURCE.convert(refs[f"{split}/{fx.shards[split][shard].name}"], cfg))


def convert_shard(fx: rlds_fx.RldsFixture, split: str, shard: int, cfg: OxeConfig) -> list[CanonicalEpisode]:
    """The shard's episodes; every record must convert."""
    episodes = convert_items(fx, split, shard, cfg)
    assert all(isinstance(ep, CanonicalEpisode) for ep in episodes), episodes
    for ep in episodes:
        ep.check()
    return episodes  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------- tests


def test_euler_conventions() -> None:
    rng = np.random.default_rng(0)
    angles = rng.uniform(-np.pi, np.pi, size=(20, 3))
    got = euler_to_matrix(angles, "xyz")
    for a, R in zip(angles, got, strict=True):
        np.testing.assert_allclose(R, extrinsic_xyz(*a), atol=1e-12)
    # intrinsic X-Y-Z by (a, b, c) is the same rotation as extrinsic z-y-x by (c, b, a)
    np.testing.assert_allclose(
        euler_to_matrix(angles, "XYZ"), euler_to_matrix(angles[:, ::-1], "zyx"), atol=1e-12
    )
    with pytest.raises(ValueError, match="euler_order"):
        make_cfg(euler_order="xYz")
    with pytest.raises(ValueError, match="consecutive axes"):
        make_cfg(euler_order="xxz")


def test_known_trajectory_state_action_masks(tmp_path: Path, known: None) -> None:
    fx = rlds_fx.write_rlds_dataset(tmp_path, splits={"train": [2]}, num_steps=N)
    cfg = make_cfg(splits=["train"])
    episodes = convert_shard(fx, "train", 0, cfg)
    assert len(episodes) == 2
    for e, ep in enumerate(episodes):
        assert ep.length == 2 * N - 1
        state, action = expected_side(e)
        right = slice(part_slice("right", "position").start, part_slice("right", "gripper").stop)
        np.testing.assert_allclose(ep.state[:, right], state, atol=2e-6, rtol=0)
        np.testing.assert_allclose(ep.action[:, right], action, atol=2e-6, rtol=0)
        for mask in (ep.state_mask, ep.action_mask):
            assert mask[:, right].all()
            assert not mask[:, part_slice("right", "keypoints")].any()
            assert not mask[:, :73].any()
        assert not ep.state[:, :73].any() and not ep.state[:, part_slice("right", "keypoints")].any()


def test_native_columns_videos_and_meta(tmp_path: Path, known: None) -> None:
    fx = rlds_fx.write_rlds_dataset(tmp_path, splits={"train": [2]}, num_steps=N)
    cfg = make_cfg(splits=["train"])
    episodes = convert_shard(fx, "train", 0, cfg)
    nearest = [k // 2 for k in range(2 * N - 1)]  # halfway frames take the earlier step
    shard = fx.shards["train"][0]
    for e, (ep, src) in enumerate(zip(episodes, fx.episodes["train"][0], strict=True)):
        native = ep.extra["action.native"]
        assert native.values.dtype == np.float32 and native.names[0] == "dx" and len(native.names) == 7
        np.testing.assert_array_equal(native.values, src.steps[ACTION][nearest])
        np.testing.assert_array_equal(ep.extra["observation.native_state"].values, src.steps[STATE][nearest])
        assert sorted(ep.videos) == [f"observation.images.{c}" for c in rlds_fx.CAMERAS]
        for video in ep.videos.values():
            assert video.path == shard and video.frame_indices.tolist() == nearest
            assert video.images is not None and len(video.images) == N and video.images[0][:2] == b"\xff\xd8"
        assert ep.meta.source_episode_id == f"train/{shard.name}#{e}"
        assert ep.meta.caption == ep.meta.task_original == rlds_fx.INSTRUCTIONS[e % 3]
        assert ep.meta.caption_source == "source" and ep.meta.embodiment == "widowx" and ep.meta.has_action
        staged = quality.stage(ep, cfg).meta  # the tier and the metrics are decided by the stage
        assert staged.quality_tier == "high" and staged.quality_metrics["valid_fraction"] == 1.0


def test_slerp_midpoints_when_all_angles_move(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def moving(e: int, num_steps: int, hw: tuple[int, int]) -> rlds_fx.Episode:
        ep = known_episode(e, num_steps, hw)
        i = np.arange(num_steps)
        ep.steps[STATE][:, 3:6] = np.stack([0.2 * i, -0.15 * i + 0.1, 0.3 * i], 1).astype(np.float32)
        return ep

    monkeypatch.setattr(rlds_fx, "make_episode", moving)
    fx = rlds_fx.write_rlds_dataset(tmp_path, splits={"train": [1]}, num_steps=N)
    (ep,) = convert_shard(fx, "train", 0, make_cfg(splits=["train"]))
    rot = ep.state[:, part_slice("right", "rotation")].astype(np.float64)
    R = np.stack([np.stack([r[:3], r[3:], np.cross(r[:3], r[3:])], axis=1) for r in rot])
    angles = fx.episodes["train"][0][0].steps[STATE][:, 3:6].astype(np.float64)
    for i in range(N):  # frames on source steps are the source rotations
        np.testing.assert_allclose(R[2 * i], extrinsic_xyz(*angles[i]), atol=2e-6)
    for i in range(N - 1):  # halfway frames are geodesic midpoints
        whole = rotation_angle(R[2 * i].T @ R[2 * i + 2])
        assert rotation_angle(R[2 * i].T @ R[2 * i + 1]) == pytest.approx(whole / 2, abs=1e-5)
        assert rotation_angle(R[2 * i + 1].T @ R[2 * i + 2]) == pytest.approx(whole / 2, abs=1e-5)


def test_eef_offset_and_gripper_clipping(tmp_path: Path, known: None) -> None:
    fx = rlds_fx.write_rlds_dataset(tmp_path, splits={"train": [1]}, num_steps=N)
    cfg = make_cfg(
        splits=["train"],
        eef_offset=EefOffset(translation=(0.0, 0.0, 0.05), provenance="test"),
        gripper_range=(0.1, 0.5),
    )
    (ep,) = convert_shard(fx, "train", 0, cfg)
    steps = trajectory(np.arange(N), 0)
    tool_z = np.stack([extrinsic_xyz(*row[3:6])[:, 2] for row in steps])  # the EEF z axis in the base frame
    wrist = steps[:, :3] + 0.05 * tool_z  # the canonical wrist at the source steps, then linear in time
    want = np.stack([np.interp(np.arange(2 * N - 1) / 2, np.arange(N), wrist[:, j]) for j in range(3)], 1)
    np.testing.assert_allclose(ep.state[:, part_slice("right", "position")], want, atol=2e-6)
    src = trajectory(np.arange(2 * N - 1) / 2, 0)
    grip = ep.state[:, part_slice("right", "gripper")][:, 0]
    np.testing.assert_allclose(grip, np.clip((src[:, 6] - 0.1) / 0.4, 0, 1), atol=2e-6)
    assert (
        grip.max() == 1.0 and np.isclose(grip, 1.0, atol=1e-6).sum() == 2 * N - 1 - 8
    )  # clipped from step 4


def test_discover_one_ref_per_shard(tmp_path: Path, known: None) -> None:
    fx = rlds_fx.write_rlds_dataset(tmp_path, splits={"train": [2, 1], "val": [1]}, num_steps=N)
    refs = oxe.SOURCE.discover(fx.root, make_cfg())
    want = [f"{s}/{p.name}" for s in ("train", "val") for p in fx.shards[s]]
    assert [r.source_episode_id for r in refs] == want
    assert refs[0].files == {"shard": str(fx.shards["train"][0]), "dataset": str(fx.root.resolve())}
    assert [r.source_episode_id for r in oxe.SOURCE.discover(fx.root, make_cfg(splits=["val"]))] == want[2:]
    assert [len(convert_shard(fx, "train", i, make_cfg())) for i in (0, 1)] == [2, 1]


def test_empty_instruction_gets_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def silent(e: int, num_steps: int, hw: tuple[int, int]) -> rlds_fx.Episode:
        ep = known_episode(e, num_steps, hw)
        ep.instruction = ""
        return ep

    monkeypatch.setattr(rlds_fx, "make_episode", silent)
    fx = rlds_fx.write_rlds_dataset(tmp_path, name="bridge_dataset", splits={"train": [1]}, num_steps=N)
    (ep,) = convert_shard(fx, "train", 0, make_cfg(splits=["train"]))
    assert (ep.meta.caption, ep.meta.caption_source, ep.meta.task_original) == (
        "bridge dataset",
        "template",
        "",
    )


def test_camera_flag_and_black_frames_make_a_camera_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Camera 0 has a presence flag (here `has_language`, 0 in odd records); camera 1 has none and is all
    black in record 2: each record keeps exactly the cameras it has."""
    cam0, cam1 = (f"steps/observation/{c}" for c in rlds_fx.CAMERAS[:2])
    real_features = rlds_fx.episode_features

    def flagged(ep: rlds_fx.Episode, fmt: str) -> dict:
        e = ep.episode_id - 100
        if e == 2:
            ep.images[cam1] = np.zeros_like(ep.images[cam1])
        flat = real_features(ep, fmt)  # type: ignore[arg-type]
        flat["episode_metadata/has_language"] = np.array([1 - e % 2], np.int64)
        return flat

    monkeypatch.setattr(rlds_fx, "episode_features", flagged)
    fx = rlds_fx.write_rlds_dataset(tmp_path, splits={"train": [3]}, num_steps=N)
    cfg = make_cfg(
        splits=["train"], cameras=[cam0, cam1], camera_flags={cam0: "episode_metadata/has_language"}
    )
    episodes = convert_shard(fx, "train", 0, cfg)
    names = [sorted(k.rsplit(".", 1)[-1] for k in ep.videos) for ep in episodes]
    c0, c1 = rlds_fx.CAMERAS[:2]
    assert names == [[c0, c1], [c1], [c0]]


def test_a_camera_flag_must_be_one_number(tmp_path: Path) -> None:
    fx = rlds_fx.write_rlds_dataset(tmp_path, splits={"train": [1]}, num_steps=N)
    cam = f"steps/observation/{rlds_fx.CAMERAS[0]}"
    cfg = make_cfg(cameras=[cam], camera_flags={cam: "episode_metadata/file_path"})
    with pytest.raises(EpisodeError, match="file_path: the presence flag"):
        oxe.SOURCE.discover(fx.root, cfg)


@pytest.mark.parametrize("how", ["crc", "truncate"])
def test_corrupt_record_is_one_named_reject(tmp_path: Path, how: str) -> None:
    fx = rlds_fx.write_rlds_dataset(tmp_path, splits={"train": [3]}, num_steps=N, corrupt=how)
    items = convert_items(fx, "train", 0, make_cfg(splits=["train"]))
    shard = fx.shards["train"][0]
    assert (
        isinstance(items[0], CanonicalEpisode) and items[0].meta.source_episode_id == f"train/{shard.name}#0"
    )
    reject = items[1]
    assert isinstance(reject, PartReject) and reject.source_episode_id == f"train/{shard.name}#1"
    assert (reject.error.path, reject.error.field, reject.error.stage) == (str(shard), "record 1", "read")
    if how == "crc":  # the framing is intact: the record after the bad one is still converted
        assert isinstance(items[2], CanonicalEpisode) and items[2].meta.caption == rlds_fx.INSTRUCTIONS[2]
        assert "payload CRC32C mismatch" in str(reject.error)
    else:  # lost framing: the record dataset_info.json lists after it is a reject of its own
        assert isinstance(items[2], PartReject) and items[2].error.field == "record 2"
        assert "framing is lost at record 1 (dataset_info.json lists 3)" in str(items[2].error)
    assert len(items) == 3


def test_non_finite_state_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(e: int, num_steps: int, hw: tuple[int, int]) -> rlds_fx.Episode:
        ep = known_episode(e, num_steps, hw)
        ep.steps[STATE][3, 4] = np.nan
        return ep

    monkeypatch.setattr(rlds_fx, "make_episode", broken)
    fx = rlds_fx.write_rlds_dataset(tmp_path, splits={"train": [1]}, num_steps=N)
    (reject,) = convert_items(fx, "train", 0, make_cfg(splits=["train"]))
    assert isinstance(reject, PartReject) and "non-finite value (NaN/inf) at step 3" in str(reject.error)
    assert reject.error.field == f"record 0: {STATE}" and reject.error.path == str(fx.shards["train"][0])


def test_wrong_config_type_refused(tmp_path: Path) -> None:
    cfg = EgoDexConfig(format="egodex", source_version="1", license="x", embodiment="human_ego",
                       embodiment_kind="human_action", reference_frame="camera", native_fps=30)  # fmt: skip
    with pytest.raises(TypeError, match="OxeConfig"):
        oxe.SOURCE.discover(tmp_path, cfg)


@pytest.mark.realdata
@pytest.mark.skipif(not (REAL / "features.json").is_file(), reason="needs ../shared/realdata/oxe_bridge_rlds")
def test_real_bridge_shards() -> None:
    cfg = make_cfg(gripper_range=(0.0, 1.0))
    refs = oxe.SOURCE.discover(REAL, cfg)
    assert [r.source_episode_id.split("/")[0] for r in refs] == ["train", "val"]
    ds = RldsDataset.open(REAL)
    for ref in refs:
        episodes = oxe.SOURCE.convert(ref, cfg)
        records = list(ds.iter_episodes(ref.files["shard"]))
        assert len(episodes) == len(records) == 25
        for i, (ep, rec) in enumerate(zip(episodes, records, strict=True)):
            ep.check()
            assert ep.length == 19 and rec.num_steps == 10
            assert ep.meta.source_episode_id == f"{ref.source_episode_id}#{i}"
            assert ep.meta.caption.strip() and ep.meta.caption_source == "source"
            assert np.isfinite(ep.state).all() and np.isfinite(ep.action).all()
            nearest = np.arange(19) // 2
            np.testing.assert_array_equal(ep.extra["action.native"].values, rec.steps[ACTION][nearest])
            # image_3 is all black in every record (its has_image_3 is false, as are the others' flags)
            assert sorted(ep.videos) == [f"observation.images.image_{i}" for i in range(3)]
            assert oxe.all_black(rec.images["steps/observation/image_3"])
            assert not oxe.all_black(rec.images["steps/observation/image_0"])
            assert all(len(v.images or []) == 10 for v in ep.videos.values())
            grip = ep.state[:, part_slice("right", "gripper")]
            assert ((grip >= 0) & (grip <= 1)).all()


@pytest.mark.ray
@pytest.mark.realdata
@pytest.mark.usefixtures("ray_local")
@pytest.mark.skipif(not (REAL / "features.json").is_file(), reason="needs ../shared/realdata/oxe_bridge_rlds")
def test_real_bridge_run_publishes_no_absent_camera(tmp_path: Path) -> None:
    """`ingest run oxe` on the real sample: the all-black image_3 is no feature, info.json and the videos
    folders agree, and the dataset validates."""
    from ingest.job import RunOptions, run
    from ingest.validate import validate_dataset
    from schemas.lerobot import InfoJson

    summary = run(RunOptions(source="oxe", input=REAL, output=tmp_path, workers=1, progress=False))
    out = tmp_path / "oxe"
    info = InfoJson.model_validate_json((out / "meta/info.json").read_text())
    cameras = [f"observation.images.image_{i}" for i in range(3)]
    # The Octo debug sample's val shard holds the train shard's 25 episodes again (same frames and images,
    # another order): each is recorded as a duplicate of its train twin, not published twice.
    assert (summary.published, summary.duplicates) == (25, 25)
    assert info.video_keys() == cameras and info.total_videos == 3 * info.total_episodes == 75
    rejects = (out / "meta/rejects.jsonl").read_text().splitlines()
    assert len(rejects) == 25 and all('"stage":"duplicate"' in r and "published train/" in r for r in rejects)
    assert sorted(p.name for p in (out / "videos/chunk-000").iterdir()) == cameras
    assert validate_dataset(out) == []
