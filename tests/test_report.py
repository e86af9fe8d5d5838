"""`ingest report` and `ingest view` on a small EgoDex-format dataset (no Ray): the projection and its
distortion models against hand-computed pixels, masked values drawn grey, the report's files and counts,
and the `.rrd` read back with rerun's own reader (values equal to the published Parquet)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ingest.cli import app
from ingest.convert.camera import AXIS_COLOURS, project
from ingest.job import DEFAULT_PIPELINES, Publisher, convert_one
from ingest.report.draw import MASKED, SIDE_COLOURS, overlay
from ingest.report.load import episode_columns
from ingest.report.projection import pixels
from ingest.sources import egodex
from ingest.writer import finalize_meta
from schemas.camera import CameraModel
from schemas.canonical import IDENTITY_ROT6D, VECTOR_DIM, keypoint_slice, part_slice
from schemas.errors import ExitCode, run_app
from schemas.pipelines import PipelinesFile
from tests.fixtures.egodex import write_episode

CAM = CameraModel(camera="observation.images.ego", width=100, height=100, fx=100, fy=100, cx=50, cy=50,
                  provenance="test")  # fmt: skip


def make_dataset(inp: Path, root: Path) -> Path:
    """Three EgoDex-format episodes, the third with its left hand lost for a while (masked), and a corrupt
    file (a reject), published without Ray (convert_one runs the quality stage), as `ingest run` would."""
    d = inp / "test" / "open_close"
    write_episode(d, 0, 64)
    write_episode(d, 1, 64, static="camera")
    write_episode(d, 2, 64, phase=1.0, low_confidence={"leftHand": list(range(10, 40))})
    write_episode(d, 3, 64, bad="corrupt_hdf5")
    cfg = PipelinesFile.load(DEFAULT_PIPELINES).source("egodex")
    pub, rejects = Publisher(root), []
    for ref in egodex.SOURCE.discover(inp, cfg):
        result = convert_one(ref, cfg, root / ".work")
        rejects += [result.reject] if result.reject else []
        pub.publish_all(result.staged)
    assert [r.source_path for r in rejects] == [str(d / "3.hdf5")]
    finalize_meta(root, "egodex", cfg, rejects)
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("report")
    return make_dataset(base / "in", base / "out" / "egodex")


@pytest.fixture(scope="module")
def report(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report-html")
    result = CliRunner().invoke(app, ["report", str(dataset), "--out", str(out), "--frames", "4"])
    assert result.exit_code == 0, result.output
    return out


def test_pinhole_pixels_are_the_projects_projection() -> None:
    pts = np.array([[0.1, -0.05, 0.5], [0.0, 0.0, 2.0], [0.2, 0.1, -1.0]])
    K = np.array([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]])
    np.testing.assert_allclose(pixels(CAM, pts), project(K, pts), equal_nan=True)
    assert np.isnan(pixels(CAM, pts)[2]).all()  # behind the camera


def test_opencv_distortion_by_hand() -> None:
    """k1 = 0.1, p1 = 0.01: x = 0.2, y = 0.1 -> r2 = 0.05, radial 1.005, dx = 2 p1 x y,
    dy = p1 (r2 + 2 y^2)."""
    cam = CAM.model_copy(update={"distortion_model": "opencv", "distortion": [0.1, 0.0, 0.01, 0.0, 0.0]})
    u, v = pixels(cam, np.array([0.2, 0.1, 1.0]))
    x = 0.2 * 1.005 + 2 * 0.01 * 0.2 * 0.1
    y = 0.1 * 1.005 + 0.01 * (0.05 + 2 * 0.01)
    assert (u, v) == pytest.approx((50 + 100 * x, 50 + 100 * y))


def test_fisheye624_without_coefficients_is_equidistant() -> None:
    """With zero coefficients the Aria model is r_d = theta (as HOT3D's real-data test projects)."""
    cam = CAM.model_copy(update={"distortion_model": "fisheye624", "distortion": [0.0] * 12})
    p = np.array([0.3, -0.4, 1.0])
    theta, r = np.arctan(0.5), 0.5
    assert tuple(pixels(cam, p)) == pytest.approx((50 + 100 * theta * 0.3 / r, 50 - 100 * theta * 0.4 / r))


def _state(valid: bool) -> tuple[np.ndarray, np.ndarray]:
    """The right wrist 0.5 m ahead, identity rotation, index tip 5 cm to its left (-x)."""
    state, mask = np.zeros(VECTOR_DIM), np.zeros(VECTOR_DIM, dtype=bool)
    state[part_slice("right", "position")] = [0.0, 0.0, 0.5]
    state[part_slice("right", "rotation")] = IDENTITY_ROT6D
    state[keypoint_slice("right", 8)] = [-0.05, 0.0, 0.0]
    mask[part_slice("right", "position").start : part_slice("right", "keypoints").stop] = valid
    return state, mask


@pytest.mark.parametrize("valid", [True, False])
def test_hands_drawn_where_they_project_masked_grey(valid: bool) -> None:
    """x axis (red) from (50, 50) to (60, 50); the index tip at (40, 50) filled in the side's colour, or a
    grey ring when masked; the wrist axes grey when masked."""
    img = np.asarray(overlay(np.zeros((100, 100, 3), np.uint8), CAM, np.eye(4), *_state(valid)))
    assert tuple(img[50, 57]) == (AXIS_COLOURS[0] if valid else MASKED)
    tip = tuple(img[50, 40])
    assert tip == (SIDE_COLOURS["right"] if valid else (0, 0, 0))  # a masked point is a ring, hollow
    assert (img[47:54, 37:44] == MASKED).all(axis=-1).any() != valid


def test_report_files_and_counts(dataset: Path, report: Path) -> None:
    episodes = [json.loads(x) for x in (dataset / "meta/episodes.jsonl").read_text().splitlines()]
    index = (report / "index.html").read_text()
    assert re.search(r'id="episode-count" data-count="(\d+)"', index).group(1) == str(len(episodes)) == "3"
    for e in episodes:
        i = e["episode_index"]
        page = (report / f"episodes/episode_{i:06d}.html").read_text()
        assert e["tier_reason"] in html.unescape(page) and f"episode {i}" in page
        assert (report / f"img/thumb_{i:06d}.jpg").is_file()
        assert len(list((report / "img").glob(f"ep{i:06d}_ego_*.jpg"))) == 4
    assert index.count('loading="lazy"') == 3 and "<script src" not in index and "http" not in index
    assert "jerk_rms &lt;= 30" in index  # the section's rules are shown
    (reject,) = [json.loads(x) for x in (dataset / "meta/rejects.jsonl").read_text().splitlines()]
    assert "<h2>Rejects (1)</h2>" in index and f"<td>{html.escape(reject['source_path'])}</td>" in index


def test_view_rrd_read_back_with_rerun(dataset: Path, tmp_path: Path) -> None:
    from rerun.chunk import RrdReader

    out = tmp_path / "ep2.rrd"
    result = CliRunner().invoke(app, ["view", str(dataset), "--episode", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (store,) = RrdReader(out).recordings()
    assert store.recording_id == "egodex/episode_000002"
    rows: dict[str, list] = {}
    for chunk in RrdReader(out).stream():
        rows.setdefault(chunk.entity_path, []).append(chunk.to_record_batch())
    cols = episode_columns(dataset, 2)
    n = len(cols["observation.state"])
    assert sum(b.num_rows for b in rows["/world/ego/video"]) == n + 1  # the asset + a frame reference each
    assert sum(b.num_rows for b in rows["/world/hands/right/keypoints"]) == n
    dim = part_slice("left", "gripper").start
    valid = cols["observation.state_mask"][:, dim].astype(bool)
    assert 0 < valid.sum() < n  # the left hand is lost for a while: masked frames are not in the series
    (batch,) = rows["/series/state/left/gripper"]
    assert batch.column("frame").to_pylist() == np.flatnonzero(valid).tolist()
    got = [v[0] for v in batch.column("Scalars:scalars").to_pylist()]
    np.testing.assert_allclose(got, cols["observation.state"][valid, dim], rtol=1e-6)


def test_bad_paths_refused_in_one_line(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for args, says in ((["report", str(tmp_path)], "holds no dataset"),
                       (["view", str(dataset), "--episode", "9"], "has no episode 9")):  # fmt: skip
        assert run_app(app, "ingest", args) == ExitCode.REFUSED
        err = capsys.readouterr().err
        assert err.startswith("ingest: ") and says in err and err.count("\n") == 1, err
