"""Estimated hands (ingest/hands/): the lifting on synthetic detections with a known answer; and, when the
estimator environment (tools/hands_env.sh) and ../shared/realdata are there, MediaPipe on real EgoDex
video against ARKit's hands, and `ingest hands` on real egocentric clips (in place, resumable, idempotent)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ingest.convert.camera import project
from ingest.hands import backend, lift
from ingest.hands.backend import Detection
from schemas.canonical import part_slice
from schemas.hands import HandsConfig

ROOT = Path(__file__).resolve().parents[1]
EGODEX = ROOT.parent / "shared" / "realdata" / "egodex"
K = lift.default_intrinsics(640, 360, 80.0)


def _has_env() -> bool:
    try:
        backend.hands_python()
    except FileNotFoundError:
        return False
    return True


needs_estimator = pytest.mark.skipif(not (_has_env() and EGODEX.is_dir()),
                                     reason="needs the hands env and ../shared/realdata/egodex")  # fmt: skip


def _hand(seed: int = 0) -> np.ndarray:
    """A right hand's 21 metric points, centred (wrist at -y, fingers toward +y, thumb toward -x)."""
    rng = np.random.default_rng(seed)
    pts = np.zeros((21, 3))
    for f, x in enumerate((-0.035, -0.02, 0.0, 0.018, 0.034)):
        for j in range(4):
            pts[1 + 4 * f + j] = [x * (1 + 0.1 * j), 0.02 + 0.025 * j, 0.005 * j]
    pts[0] = [0, -0.04, 0]
    return pts - pts.mean(0) + rng.normal(0, 1e-4, (21, 3))


def _detection(world: np.ndarray, R: np.ndarray, t: np.ndarray, side: str = "right", score: float = 0.9):
    cam = world @ R.T + t
    uv = project(K, cam)
    depth = (cam[:, 2] - cam[0, 2]) * K[0, 0] / cam[0, 2]  # weak perspective, wrist at 0
    return Detection(uv, depth, world, side, score)


def _rot(axis: int, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    i, j = [a for a in range(3) if a != axis]
    R = np.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def test_default_intrinsics_give_the_field_of_view() -> None:
    K90 = lift.default_intrinsics(640, 360, 90.0)
    assert K90[0, 0] == pytest.approx(320.0) and K90[0, 2] == 320 and K90[1, 2] == 180


def test_translation_and_rotation_recovered_from_a_projected_hand() -> None:
    world, R, t = _hand(), _rot(0, 25) @ _rot(2, -40), np.array([0.05, 0.08, 0.45])
    det = _detection(world, R, t)
    hand = lift.orient(det)
    shift, rms = lift.solve_translation(hand, det.image, K)
    assert rms < 3.0  # px: the rotation comes from a weak-perspective hand
    np.testing.assert_allclose(hand + shift, world @ R.T + t, atol=0.03)  # ~2 cm in depth


def test_pose_refinement_recovers_a_turned_hand() -> None:
    world, R, t = _hand(), _rot(0, 25) @ _rot(2, -40), np.array([0.05, 0.08, 0.45])
    det = _detection(world, R, t)
    start = world @ (R @ _rot(1, 8)).T + t + [0.01, -0.01, 0.03]  # 8 degrees and 3 cm off
    refined, rms = lift.refine_pose(start, det.image, K)
    assert rms < 0.05  # px
    np.testing.assert_allclose(refined, world @ R.T + t, atol=1e-3)


def test_sides_follow_the_track_not_a_flipped_label() -> None:
    world, R = _hand(), _rot(2, 10)
    frames = []
    for k in range(6):
        right = _detection(world, R, np.array([0.1 + 0.002 * k, 0.05, 0.5]), "right")
        flip = "left" if k == 3 else "right"  # the classifier says left once, with a weak score
        frames.append([_detection(world, R, np.array([0.1 + 0.002 * k, 0.05, 0.5]), flip, 0.55)] if k == 3
                      else [right])  # fmt: skip
    sides = lift.assign_sides(frames, 640)
    assert all(item is not None for item in sides["right"]) and all(item is None for item in sides["left"])


def test_lift_masks_absent_frames_and_jumps_and_moves_the_wrist() -> None:
    world, R = _hand(), _rot(1, 15)
    frames = [[_detection(world, R, np.array([0.05 + 0.01 * k, 0.05, 0.5]))] for k in range(8)]
    frames[2] = []  # hand not seen
    frames[5] = [_detection(world, R, np.array([0.1, 0.05, 1.5]))]  # one frame 1 m deeper: a jump
    arrays, fits, metrics = lift.lift(frames, K, 640, HandsConfig(smooth=False))
    valid = fits["right"].valid
    assert valid.tolist() == [True, True, False, True, True, False, True, True]
    assert not fits["left"].valid.any() and metrics["hands_valid_left"] == 0.0
    pos = part_slice("right", "position")
    assert not arrays.state_mask[2, pos].any() and arrays.state_mask[3, pos].all()
    np.testing.assert_allclose(
        arrays.action[0, pos], [0.01, 0.0, 0.0], atol=2e-3
    )  # the wrist moved 1 cm in x
    assert not arrays.action_mask[1, pos].any()  # frame 2 is absent: no action from 1 to 2
    assert metrics["hands_detected_right"] == pytest.approx(7 / 8)


def test_camera_rotations_chain_into_poses_that_remove_head_turns() -> None:
    """The head turns 2 degrees per frame about y while the wrist stays still in the world: chained, the
    rotations give poses under which the wrist's action is zero although it moves in the image."""
    step = _rot(1, 2.0)
    poses, known = lift.camera_from_rotations([None, step, None, step])
    assert known == pytest.approx(2 / 3)
    np.testing.assert_allclose(poses[1][:3, :3], step.T, atol=1e-12)
    np.testing.assert_allclose(poses[3][:3, :3], step.T @ step.T, atol=1e-12)
    np.testing.assert_allclose(poses[:, :3, 3], 0.0)  # translation unknown
    world = _hand() + [0.12, 0.0, 0.5]  # the hand in the first camera's frame (right of centre), still
    frames = []
    for k in range(4):
        in_cam = world @ poses[k][:3, :3]  # camera k sees R_k^T p
        frames.append([_detection(world - world.mean(0), poses[k][:3, :3].T, in_cam.mean(0))])
    arrays, _, _ = lift.lift(frames, K, 640, HandsConfig(smooth=False), poses)
    moved, _, _ = lift.lift(frames, K, 640, HandsConfig(smooth=False))
    pos = part_slice("right", "position")
    assert np.abs(arrays.action[:3, pos]).max() < 2e-3  # decoupled: no motion
    assert np.abs(moved.action[:3, pos]).max() > 0.01  # without the rotations the head turn leaks in


def test_reply_parsing_unmirrors_the_side_and_scales_to_pixels() -> None:
    pts = [[0.5, 0.25, 0.01]] * 21
    dets = backend.parse_hands(
        {"hands": [{"image": pts, "world": pts, "label": "Left", "score": 0.8}]}, 640, 360
    )
    assert dets[0].side == "right" and dets[0].image[0].tolist() == [320.0, 90.0] and dets[0].depth[0] == 6.4


@needs_estimator
def test_mediapipe_on_real_egodex_lands_on_the_ground_truth() -> None:
    """40 frames of a real EgoDex episode at the published 640x360: the left hand is found and valid in most
    frames, its keypoints project within a few pixels of ARKit's and its shape matches after alignment; the
    camera's rotation between frames is much nearer ARKit's than assuming none."""
    import sys

    sys.path.insert(0, str(ROOT))
    from bench.hands_accuracy import camera_errors, frames_10hz, ground_truth, procrustes_error

    h5 = EGODEX / "basic_pick_and_place" / "1.hdf5"
    frames = frames_10hz(h5.with_suffix(".mp4"), 40, 640)
    K_full, gt, cam = ground_truth(h5, len(frames))
    K_small = K_full * [[1 / 3], [1 / 3], [1]]
    with backend.MediaPipeHands() as est:
        est.reset(K_small)
        results = [est.estimate(f) for f in frames]
    _, fits, _ = lift.lift([r.hands for r in results], K_small, 640, HandsConfig())
    rot_err = camera_errors(cam, [r.camera_rotation for r in results])
    still = camera_errors(cam, [np.eye(3)] * len(results))  # assuming the head does not turn
    assert len(rot_err) >= 35  # measured 39 of 39 steps
    assert np.median(rot_err) < 0.6 * np.median(still)  # measured 0.39 vs 1.06 degrees per step
    fit, ok = fits["left"], np.flatnonzero(fits["left"].valid)
    assert len(ok) >= 32  # measured 40 / 40
    wrist_px = [
        np.linalg.norm(project(K_small, fit.points[k, 0]) - project(K_small, gt["left"][k, 0])) for k in ok
    ]
    assert np.median(wrist_px) < 20  # measured ~8 px at 640 wide
    pa = [procrustes_error(fit.points[k], gt["left"][k]) for k in ok]
    assert np.mean(pa) < 0.03  # metres; measured ~17 mm


def _snapshot(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and ".work" not in p.parts)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _published_videos(tmp_path: Path) -> Path:
    """Two real egocentric clips (EgoDex's videos, no HDF5) through the `videos` section, without Ray."""
    from ingest.job import DEFAULT_PIPELINES, Publisher, convert_one
    from ingest.sources import videos
    from ingest.writer import finalize_meta
    from schemas.pipelines import PipelinesFile

    inp = tmp_path / "clips"
    inp.mkdir(parents=True)
    for name in ("basic_pick_and_place/1.mp4", "add_remove_lid/0.mp4"):
        (inp / name.replace("/", "_")).symlink_to(EGODEX / name)
    cfg = PipelinesFile.load(DEFAULT_PIPELINES).source("videos")
    root = tmp_path / "videos"
    pub = Publisher(root)
    for ref in videos.SOURCE.discover(inp, cfg):
        result = convert_one(ref, cfg, root / ".work")
        assert result.reject is None, result.reject
        pub.publish_all(result.staged)
    finalize_meta(root, "videos", cfg, [])
    return root


@needs_estimator
@pytest.mark.ray
def test_ingest_hands_upgrades_in_place_resumes_and_is_idempotent(tmp_path: Path, monkeypatch) -> None:
    from ingest.cli import app
    from ingest.hands import job
    from ingest.validate import validate_dataset

    whole = _published_videos(tmp_path / "a")
    assert CliRunner().invoke(app, ["hands", str(whole), "--workers", "1"]).exit_code == 0
    episodes = [json.loads(x) for x in (whole / "meta/episodes.jsonl").read_text().splitlines()]
    assert all(
        e["has_action"] and e["hands_source"] == "estimated" and e["quality_tier"] == "low" for e in episodes
    )
    assert all(e["quality_metrics"]["hands_valid_fraction"] > 0.3 for e in episodes)
    assert validate_dataset(whole) == []
    card = json.loads((whole / "meta/dataset_card.json").read_text())
    assert card["embodiment_kind"] == "human_action"
    assert card["hands_source"] == "estimated in 2 of 2 episodes"
    assert card["camera_motion"] == (
        "of 2 estimated episodes: camera poses from the source in 0, rotation estimated from video in 2 "
        "(translation unknown), none in 0"
    )
    assert all(0.8 < e["quality_metrics"]["camera_rotation_known"] <= 1 for e in episodes)
    first = _snapshot(whole)
    assert CliRunner().invoke(app, ["hands", str(whole), "--workers", "1"]).exit_code == 0
    assert _snapshot(whole) == first  # a second run changes nothing

    killed = _published_videos(tmp_path / "b")
    real_upgrade, calls = job.upgrade_episode, []

    def dies_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed halfway
        real_upgrade(*args, **kwargs)

    monkeypatch.setattr(job, "upgrade_episode", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        job.run_hands(job.HandsOptions(path=killed, pipelines=ROOT / "pipelines.yaml"))
    monkeypatch.setattr(job, "upgrade_episode", real_upgrade)
    # resumed on a Ray actor pool
    assert CliRunner().invoke(app, ["hands", str(killed), "--workers", "2"]).exit_code == 0
    assert _snapshot(killed) == first  # the same bytes as the uninterrupted, single-process run


@needs_estimator
def test_an_undecodable_video_is_a_hands_reject_and_the_rest_is_upgraded(tmp_path: Path) -> None:
    from ingest.cli import app

    root = _published_videos(tmp_path)
    broken = root / "videos/chunk-000/observation.images.ego/episode_000001.mp4"
    broken.write_bytes(b"not a video")
    result = CliRunner().invoke(app, ["hands", str(root), "--workers", "1"])
    assert result.exit_code == 1 and "1 failed" in result.output
    episodes = [json.loads(x) for x in (root / "meta/episodes.jsonl").read_text().splitlines()]
    assert [e["has_action"] for e in episodes] == [True, False]
    rejects = [json.loads(x) for x in (root / "meta/rejects.jsonl").read_text().splitlines()]
    assert [(r["stage"], Path(r["source_path"]).name) for r in rejects] == [("hands", "episode_000001.mp4")]
