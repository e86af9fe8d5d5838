"""HOT3D converter and the MANO stage: a generated MANO-like model run through smplx, synthetic sequences
with a known answer, bad inputs, the job end to end, and the real annotation sample with stand-in videos."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ingest.cli import MANO_DIR_ENV
from ingest.convert import mano
from ingest.convert.camera import poses_from_rows
from ingest.errors import EpisodeError
from ingest.sources import hot3d
from ingest.stages import quality
from schemas.canonical import SIDES
from schemas.episode import CanonicalEpisode
from schemas.pipelines import Hot3dConfig, PipelinesFile
from tests.fixtures import hot3d as fh
from tests.fixtures import mano as fm
from tests.fixtures.hand_rule import canonical_wrist

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata" / "hot3d" / "data_sample"
REAL_SEQS = sorted(p.parent for p in REAL.rglob("mano_hand_pose_trajectory.jsonl")) if REAL.is_dir() else []
OFFSETS = {"left": 0, "right": 73}


def section(mano_dir: Path | None, **video: int) -> dict:
    sec = yaml.safe_load((ROOT / "pipelines.yaml").read_text())["sources"]["hot3d"]
    sec["mano_dir"] = None if mano_dir is None else str(mano_dir)
    sec["video"] = {**sec["video"], **video}
    return sec


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("mano")
    return folder, fm.write_model(folder)


@pytest.fixture(scope="module")
def cfg(model: tuple[Path, dict]) -> Hot3dConfig:
    return Hot3dConfig.model_validate(section(model[0]))


def hot3d_arrays(model: dict, side: str) -> dict:
    return fm.hot3d_fixed_left(model) if side == "left" else model["right"]


def convert(seq: fh.Hot3dSequence, cfg: Hot3dConfig) -> CanonicalEpisode:
    (ep,) = hot3d.SOURCE.convert(hot3d.SOURCE.discover(seq.folder.parents[1], cfg)[0], cfg)
    return ep


def six_d(R: np.ndarray) -> np.ndarray:
    return np.concatenate([R[..., :, 0], R[..., :, 1]], axis=-1)


# ------------------------------------------------------------------------------------------- MANO stage


def test_generated_model_has_mano_shapes_and_loads_in_smplx(model: tuple[Path, dict]) -> None:
    folder, arrays = model
    for name in mano.MANO_FILES.values():
        loaded = mano.load_mano_arrays(folder / name)
        assert {k: v.shape for k, v in loaded.items()} == mano.MODEL_SHAPES
    layers = mano.load_models(str(folder), 15, False)
    right, left = layers["right"], layers["left"]
    assert tuple(right.J_regressor.shape) == (16, 778) and tuple(right.faces_tensor.shape) == (1538, 3)
    assert tuple(right.hand_components.shape) == (15, 45) and right.num_pca_comps == 15
    np.testing.assert_allclose(right.hand_mean.numpy(), arrays["right"]["hands_mean"], atol=1e-7)
    # HOT3D's left-hand fix: the released left file's x shape directions are negated, y/z kept.
    np.testing.assert_allclose(left.shapedirs[:, 0].numpy(), -arrays["right"]["shapedirs"][:, 0], atol=1e-7)
    np.testing.assert_allclose(left.shapedirs[:, 1].numpy(), arrays["right"]["shapedirs"][:, 1], atol=1e-7)


def test_fix_leaves_a_mirrored_left_model_alone(model: tuple[Path, dict]) -> None:
    arrays = model[1]
    mirrored = dict(arrays["left"], shapedirs=hot3d_arrays(arrays, "left")["shapedirs"])
    assert mano.fix_left_shapedirs(mirrored, arrays["right"]) is mirrored


def test_chumpy_and_sparse_pickles_load_without_chumpy_or_scipy(tmp_path: Path) -> None:
    assert importlib.util.find_spec("chumpy") is None and importlib.util.find_spec("scipy") is None
    plain = fm.write_model(tmp_path / "plain", seed=3)
    fm.write_model(tmp_path / "ch", seed=3, chumpy_like=True)
    assert b"chumpy.ch" in (tmp_path / "ch" / "MANO_RIGHT.pkl").read_bytes()
    for side, name in (("right", "MANO_RIGHT.pkl"), ("left", "MANO_LEFT.pkl")):
        loaded = mano.load_mano_arrays(tmp_path / "ch" / name)
        for key, want in plain[side].items():
            np.testing.assert_array_equal(loaded[key], want, err_msg=key)


def test_wrong_model_shape_is_named(tmp_path: Path) -> None:
    import pickle

    arrays = fm.make_model()["right"]
    arrays["hands_components"] = arrays["hands_components"][:30]
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(pickle.dumps(arrays, protocol=2))
    with pytest.raises(ValueError, match=r"hands_components: expected shape \(45, 45\), got \(30, 45\)"):
        mano.load_mano_arrays(tmp_path / "MANO_RIGHT.pkl")


@pytest.mark.parametrize("side", SIDES)
def test_smplx_keypoints_follow_numpy_kinematics(model: tuple[Path, dict], side: str) -> None:
    rng = np.random.default_rng(7)
    n = 6
    pca, betas = rng.normal(0, 1, (n, 15)), rng.normal(0, 1, (n, 10))
    R, t = fm.rodrigues(rng.normal(0, 1.5, (n, 3))), rng.normal(0, 0.5, (n, 3))
    got = mano.keypoints(mano.load_models(str(model[0]), 15, False)[side], pca, betas, R, t)
    want = np.stack(
        [fm.forward(hot3d_arrays(model[1], side), pca[i], betas[i], R[i], t[i]) for i in range(n)]
    )
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.ptp(got[:, 4] - got[:, 0], axis=0).max() > 0.01  # the pose moves the thumb tip


def test_axis_angle_round_trip() -> None:
    aa = np.array([[0.0, 0.0, 0.0], [0.3, -1.2, 0.5], [np.pi - 1e-4, 0, 0], [1e-9, 0, 0]])
    np.testing.assert_allclose(mano.axis_angle(fm.rodrigues(aa)), aa, atol=1e-6)


# ------------------------------------------------------------------------------------------- config


def test_missing_mano_files_refuse_with_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MANO_DIR_ENV, raising=False)
    fh.write_sequence(tmp_path / "in", "P1")
    with pytest.raises(mano.ManoModelMissing, match=r"no folder configured.*mano\.is\.tue\.mpg\.de"):
        hot3d.SOURCE.discover(tmp_path / "in", Hot3dConfig.model_validate(section(None)))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "MANO_RIGHT.pkl").write_bytes(b"x")
    empty = Hot3dConfig.model_validate(section(tmp_path / "m"))
    with pytest.raises(mano.ManoModelMissing, match=rf"in {tmp_path / 'm'} \(missing MANO_LEFT\.pkl\)"):
        hot3d.SOURCE.discover(tmp_path / "in", empty)


def test_run_option_replaces_the_section_and_the_environment_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MANO folder travels as data (`RunOptions.mano_dir` -> the section), never through a validator
    reading the environment; other sections are left as they are."""
    from ingest.job import with_mano_dir

    monkeypatch.setenv(MANO_DIR_ENV, str(tmp_path / "env"))
    cfg = Hot3dConfig.model_validate(section(Path("/elsewhere")))
    assert cfg.mano_dir == Path("/elsewhere")
    assert with_mano_dir(cfg, tmp_path / "m" / ".." / "m").mano_dir == tmp_path / "m"
    assert with_mano_dir(cfg, None) is cfg and cfg.mano_dir == Path("/elsewhere")
    egodex = PipelinesFile.load(ROOT / "pipelines.yaml").source("egodex")
    assert with_mano_dir(egodex, tmp_path) is egodex


def test_cli_refuses_without_mano_and_names_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.cli import app

    monkeypatch.delenv(MANO_DIR_ENV, raising=False)  # the default of --mano-dir
    fh.write_sequence(tmp_path / "in", "P1")
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(yaml.safe_dump({"sources": {"hot3d": section(None)}}))
    args = [
        "run",
        "hot3d",
        "-i",
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "out"),
        "--pipelines",
        str(pipelines),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "MANO model files not found in no folder configured" in res.output
    res = CliRunner().invoke(app, [*args, "--mano-dir", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and f"not found in {tmp_path / 'nowhere'}" in res.output
    monkeypatch.setenv(MANO_DIR_ENV, str(tmp_path / "from_env"))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and f"not found in {tmp_path / 'from_env'}" in res.output
    assert not (tmp_path / "out" / "hot3d" / "data").exists()


# ------------------------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("headset", ["Quest3", "Aria"])
def test_episode_matches_closed_form(tmp_path: Path, cfg: Hot3dConfig, model: tuple, headset: str) -> None:
    """Aria also checks that SLAM-stream lines (other poses, 90 us later) are skipped and that the RGB
    calibration comes from mps/slam/online_calibration.jsonl."""
    seq = fh.write_sequence(tmp_path, "P1", headset, n_frames=31, phase=0.4)
    ep = convert(seq, cfg)
    rows = np.arange(0, 31, 3)
    assert ep.length == 11 and ep.videos[cfg.camera_key].frame_indices.tolist() == rows.tolist()
    assert ep.videos[cfg.camera_key].path == seq.mp4
    assert ep.state_mask.all() and ep.action_mask.all() and ep.meta.has_action
    for side, off in OFFSETS.items():
        ex = fh.expected_side(seq, hot3d_arrays(model[1], side), side, rows)
        rel = ex.in_camera
        np.testing.assert_allclose(ep.state[:, off : off + 3], rel[:, :3, 3], atol=1e-5)
        np.testing.assert_allclose(ep.state[:, off + 3 : off + 9], six_d(rel[:, :3, :3]), atol=1e-5)
        np.testing.assert_allclose(ep.state[:, off + 9], ex.gripper, atol=1e-5)
        np.testing.assert_allclose(ep.state[:, off + 10 : off + 73], ex.keypoints.reshape(-1, 63), atol=1e-5)
        assert (rel[:, 2, 3] > 0.3).all()  # in front of the camera, as written
        # Camera-motion decoupling: the wrist at t+1 in the camera frame AT t.
        nxt = np.linalg.inv(ex.camera[:-1]) @ ex.wrist[1:]
        np.testing.assert_allclose(ep.action[:-1, off : off + 3], nxt[:, :3, 3] - rel[:-1, :3, 3], atol=1e-5)
        delta = np.swapaxes(rel[:-1, :3, :3], -1, -2) @ nxt[:, :3, :3]
        np.testing.assert_allclose(ep.action[:-1, off + 3 : off + 9], six_d(delta), atol=1e-5)
        assert np.array_equal(ep.action[-1, off : off + 9], [0, 0, 0, 1, 0, 0, 0, 1, 0])
    assert ep.state[0, 0] < ep.state[0, 73]  # left hand left of the right one
    # the camera model: the stream's projection as written, its pose the closed-form world_from_camera
    (cam,) = ep.cameras
    params = fh.PROJECTION[headset]
    if headset == "Quest3":
        assert (cam.width, cam.height) == (64, 48)  # camera_models.json imageWidth / imageHeight
        assert [cam.fx, cam.fy, cam.cx, cam.cy] == params["projectionParams"][:4]
    else:
        assert (cam.width, cam.height) == (1408, 1408)  # no size in the calibration: the section's
        f, cx, cy = params["Projection"]["Params"][:3]
        assert [cam.fx, cam.fy, cam.cx, cam.cy] == [f, f, cx, cy]
    assert (cam.distortion_model, cam.distortion, cam.pose_frame) == ("fisheye624", fh.FISHEYE, "world")
    np.testing.assert_allclose(poses_from_rows(ep.extra[cam.pose_column].values), ex.camera, atol=2e-6)


def test_head_motion_is_not_in_the_action(tmp_path: Path, cfg: Hot3dConfig, model: tuple) -> None:
    """The naive difference of camera-frame positions differs from the decoupled action (the head moves)."""
    seq = fh.write_sequence(tmp_path, "P1", "Quest3", n_frames=31)
    ep = convert(seq, cfg)
    naive = np.diff(ep.state[:, 73:76], axis=0)
    assert np.abs(naive - ep.action[:-1, 73:76]).max() > 1e-3


def test_absent_hand_is_masked_not_invented(tmp_path: Path, cfg: Hot3dConfig) -> None:
    seq = fh.write_sequence(tmp_path, "P1", "Quest3", n_frames=31, absent={"right": [9, 10, 11]})
    ep = convert(seq, cfg)
    r = slice(73, 146)
    assert ep.state_mask[:, :73].all() and ep.action_mask[:, :73].all()
    assert ep.state_mask[:, r].all(axis=1).tolist() == [k != 3 for k in range(11)]
    assert not ep.state_mask[3, r].any()
    assert not ep.action_mask[2, 73:82].any() and not ep.action_mask[3, 73:82].any()
    assert ep.action_mask[4, r].all() and np.isfinite(ep.state).all()


def test_hand_never_annotated_is_absent(tmp_path: Path, cfg: Hot3dConfig) -> None:
    seq = fh.write_sequence(tmp_path, "P1", "Quest3", n_frames=16, absent={"left": range(16)})
    ep = convert(seq, cfg)
    assert not ep.state_mask[:, :73].any() and not ep.state[:, :73].any()
    assert ep.state_mask[:, 73:].all()
    assert quality.stage(ep, cfg).meta.quality_metrics["valid_fraction"] == pytest.approx(0.5)


def test_caption_names_the_objects(tmp_path: Path, cfg: Hot3dConfig) -> None:
    fh.write_object_library(tmp_path)
    ep = convert(fh.write_sequence(tmp_path, "P1", "Quest3", n_frames=7), cfg)
    assert ep.meta.caption == "interact with the coffee pot and mug white"
    assert ep.meta.caption_source == "template" and ep.meta.task_original == ""


@pytest.mark.parametrize(
    ("bad", "field", "message"),
    [
        ("pose_width", "line 5: hand_poses.1.pose", "expected 15 MANO values, got 14"),
        ("betas_width", "line 3: hand_poses.0.betas", "expected 10 MANO values, got 11"),
        ("past_end", "timestamp_ns", "frame 30 of stream 1201-1, past the video's end (26 frames)"),
        ("undecodable", "video", "cannot be decoded"),
    ],
)
def test_bad_input_is_a_named_reject(
    tmp_path: Path, cfg: Hot3dConfig, bad: str, field: str, message: str
) -> None:
    seq = fh.write_sequence(tmp_path, "P1", "Quest3", n_frames=31, bad=bad)
    with pytest.raises(EpisodeError) as err:
        convert(seq, cfg)
    assert err.value.field == field and message in str(err.value)
    want = seq.mp4 if bad in ("past_end", "undecodable") else seq.folder / hot3d.MANO_JSONL
    assert err.value.path == str(want)


def test_discover_finds_sequences_in_order(tmp_path: Path, cfg: Hot3dConfig) -> None:
    for name, headset in (("P2", "Quest3"), ("P1", "Aria"), ("P1", "Quest3")):
        fh.write_sequence(tmp_path, name, headset, n_frames=4)
    ids = [r.source_episode_id for r in hot3d.SOURCE.discover(tmp_path, cfg)]
    assert ids == ["Aria/P1", "Quest3/P1", "Quest3/P2"]


# ------------------------------------------------------------------------------------------- the job


@pytest.mark.ray
def test_job_writes_a_valid_dataset_and_names_rejects(tmp_path: Path, model: tuple, ray_local: None) -> None:
    from ingest.job import RunOptions, run
    from ingest.validate import validate_dataset

    fh.write_sequence(tmp_path / "in", "P1", "Quest3", n_frames=40)
    fh.write_sequence(tmp_path / "in", "P2", "Aria", n_frames=25, phase=1.0)
    fh.write_sequence(tmp_path / "in", "P3", "Quest3", n_frames=31, bad="pose_width")
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(yaml.safe_dump({"sources": {"hot3d": section(model[0], width=64, height=64)}}))
    opts = RunOptions(source="hot3d", input=tmp_path / "in", output=tmp_path / "out", pipelines=pipelines,
                      workers=1, progress=False, max_reject_ratio=0.5)  # fmt: skip
    summary = run(opts)
    root = tmp_path / "out" / "hot3d"
    assert (summary.published, summary.rejected, summary.total_frames) == (2, 1, 14 + 9)
    assert validate_dataset(root) == []
    (reject,) = [json.loads(x) for x in (root / "meta/rejects.jsonl").read_text().splitlines()]
    assert reject["source_path"].endswith("Quest3/P3/mano_hand_pose_trajectory.jsonl")
    assert "line 5: hand_poses.1.pose: expected 15 MANO values, got 14" in reject["error"]
    card = json.loads((root / "meta/dataset_card.json").read_text())
    assert card["reference_frame"] == "camera" and card["embodiment_kind"] == "human_action"
    episodes = [json.loads(x) for x in (root / "meta/episodes.jsonl").read_text().splitlines()]
    assert [e["source_episode_id"] for e in episodes] == ["Aria/P2", "Quest3/P1"]
    assert all(e["has_action"] and e["quality_tier"] != "actionless" for e in episodes)


# ------------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_SEQS, reason="needs ../shared/realdata/hot3d")
def test_real_intrinsics_of_the_kept_streams() -> None:
    """Quest3 `camera_models.json` FISHEYE624 [fx, fy, cx, cy, 12 coefficients] at 1280x1024; Aria's RGB
    FisheyeRadTanThinPrism [f, cx, cy, 12 coefficients] with no size (the exported video gives it)."""
    quest = hot3d.read_intrinsics(REAL / "Quest3/P0002_273c2819", "1201-1")
    assert (quest.fx, quest.fy, quest.size) == (504.5934753417969, 504.5934753417969, (1280, 1024))
    assert quest.model == "fisheye624"
    assert (quest.cx, quest.cy, len(quest.coefficients)) == (638.3945922851562, 509.4228515625, 12)
    aria = hot3d.read_intrinsics(REAL / "Aria/P0003_c701bd11", "214-1")
    assert (aria.fx, aria.fy, aria.cx, aria.cy) == (609.3602294921875, 609.3602294921875, 706.2735595703125,
                                                    704.17626953125)  # fmt: skip
    assert (aria.model, aria.size, len(aria.coefficients)) == ("fisheye624", (0, 0), 12)


def _projection(seq: Path, stream: str) -> tuple[float, float, float]:
    """(f, cx, cy) of the kept camera (Quest3 camera_models.json, Aria online calibration)."""
    if (seq / "camera_models.json").is_file():
        params = next(
            c for c in json.loads((seq / "camera_models.json").read_text()) if c["stream_id"] == stream
        )
        p = params["projectionParams"]
        return p[0], p[2], p[3]  # fx, fy, cx, cy, ...
    first = json.loads((seq / "mps/slam/online_calibration.jsonl").read_text().splitlines()[0])
    p = next(c for c in first["CameraCalibrations"] if c["Label"] == "camera-rgb")["Projection"]["Params"]
    return p[0], p[1], p[2]  # f, cx, cy, ...


def _boxes(seq: Path, stream: str) -> dict[tuple[int, str], tuple[float, float, float, float]]:
    with open(seq / "box2d_hands.csv", newline="") as f:
        return {
            (int(r["timestamp[ns]"]), r["hand_index"]): tuple(float(r[k]) for k in
                ("x_min[pixel]", "x_max[pixel]", "y_min[pixel]", "y_max[pixel]"))
            for r in csv.DictReader(f) if r["stream_id"] == stream
        }  # fmt: skip


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_SEQS, reason="needs ../shared/realdata/hot3d")
def test_real_sequences_wrists_land_in_the_annotated_hand_boxes(tmp_path: Path, cfg: Hot3dConfig) -> None:
    """The real headset poses, calibrations and MANO wrist transforms put each wrist, projected with an
    equidistant fisheye of the real focal length, inside (or at the edge of) HOT3D's own 2D hand box."""
    fh.real_stand_in(REAL, tmp_path)
    refs = hot3d.SOURCE.discover(tmp_path, cfg)
    assert [r.source_episode_id for r in refs] == ["Aria/P0003_c701bd11", "Quest3/P0002_273c2819"]
    for ref, n_rows in zip(refs, (12, 5), strict=True):
        (ep,) = hot3d.SOURCE.convert(ref, cfg)
        seq = REAL / ref.source_episode_id
        stream = cfg.camera_streams["Aria" if "Aria" in ref.source_episode_id else "Quest3"]
        assert ep.length == n_rows and ep.state_mask.all() and ep.meta.quality_tier != "actionless"
        assert ep.videos[cfg.camera_key].frame_indices.tolist() == [3 * k for k in range(n_rows)]
        assert "coffee pot" in ep.meta.caption
        stream_ts = hot3d.read_stream_timestamps(seq / hot3d.STREAM_CSV, stream)
        f, cx, cy = _projection(seq, stream)
        boxes = _boxes(seq, stream)
        for k, frame in enumerate(ep.videos[cfg.camera_key].frame_indices):
            for key, off in (("0", 0), ("1", 73)):
                x, y, z = ep.state[k, off : off + 3].astype(np.float64)
                assert z > 0.1
                theta, r_xy = np.arctan2(np.hypot(x, y), z), np.hypot(x, y)
                u, v = cx + f * theta * x / r_xy, cy + f * theta * y / r_xy
                x0, x1, y0, y1 = boxes[(int(stream_ts[frame]), key)]
                assert x0 - 40 < u < x1 + 40 and y0 - 40 < v < y1 + 40, (ref.source_episode_id, k, key)


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_SEQS, reason="needs ../shared/realdata/hot3d")
def test_real_quest3_values_from_the_raw_files(tmp_path: Path, cfg: Hot3dConfig, model: tuple) -> None:
    """Quest3 samples fall on the 10 Hz grid (3 frames = 100 ms exactly), so every row is a raw sample:
    recompute the wrist in the camera frame and the keypoints from the raw JSON/CSV and the model arrays."""
    fh.real_stand_in(REAL, tmp_path)
    ref = next(r for r in hot3d.SOURCE.discover(tmp_path, cfg) if r.source_episode_id.startswith("Quest3"))
    (ep,) = hot3d.SOURCE.convert(ref, cfg)
    seq = REAL / ref.source_episode_id
    lines = [json.loads(x) for x in (seq / hot3d.MANO_JSONL).read_text().splitlines()]
    with open(seq / hot3d.HEADSET_CSV, newline="") as f:
        head = {int(r["timestamp[ns]"]): r for r in csv.DictReader(f)}
    cam = next(c for c in json.loads((seq / "camera_models.json").read_text()) if c["stream_id"] == "1201-1")
    dev_cam = fh.pose(fh.quat_to_matrix(cam["T_Device_Camera"]["quaternion_wxyz"]),
                      np.array(cam["T_Device_Camera"]["translation_xyz"]))  # fmt: skip
    for k in range(ep.length):
        line = lines[3 * k]
        h = head[line["timestamp_ns"]]
        q = [float(h[c]) for c in ("q_wo_w", "q_wo_x", "q_wo_y", "q_wo_z")]
        t = np.array([float(h[c]) for c in ("t_wo_x[m]", "t_wo_y[m]", "t_wo_z[m]")])
        T_cam = fh.pose(fh.quat_to_matrix(q), t) @ dev_cam
        for side, key in (("left", "0"), ("right", "1")):
            hand, off = line["hand_poses"][key], OFFSETS[side]
            R = fh.quat_to_matrix(hand["wrist_xform"]["q_wxyz"])
            params = (np.array(hand[k]) for k in ("pose", "betas"))
            world = fm.forward(
                hot3d_arrays(model[1], side), *params, R, np.array(hand["wrist_xform"]["t_xyz"])
            )
            W = canonical_wrist(world[None], side)[0]
            rel = np.linalg.inv(T_cam) @ W
            np.testing.assert_allclose(ep.state[k, off : off + 3], rel[:3, 3], atol=1e-5)
            np.testing.assert_allclose(ep.state[k, off + 3 : off + 9], six_d(rel[:3, :3]), atol=1e-5)
            kps = (world - world[0]) @ W[:3, :3]
            np.testing.assert_allclose(ep.state[k, off + 10 : off + 73], kps.reshape(-1), atol=1e-5)
