"""`ingest report` and `ingest view` on every real sample of ../shared/realdata (each skips when absent): the
sample is ingested (`ingest run --limit 2`), its report opens in Chromium without an error with every image
decoded and the dataset's episode count, the hands are drawn wherever the data has a camera model with a pose
in the reference frame, and the `.rrd` of episode 0 reads back with one video frame reference per frame."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.report.build import write_report
from ingest.report.episode import StripOptions
from ingest.report.rrd import write_recording
from tests.browser import Browser, chromium

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"
pytestmark = [pytest.mark.ray, pytest.mark.realdata, pytest.mark.usefixtures("ray_local")]


def _same(folder: str) -> Callable[[Path, pytest.MonkeyPatch], Path]:
    return lambda _tmp, _mp: REAL / folder


def _hot3d(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from tests.fixtures import hot3d as fh
    from tests.fixtures import mano as fm

    fm.write_model(tmp / "mano")  # a generated MANO-like model (no real weights here), given as --mano-dir
    fh.real_stand_in(REAL / "hot3d" / "data_sample", tmp / "in")
    return tmp / "in"


def _ego4d(tmp: Path, _mp: pytest.MonkeyPatch) -> Path:
    from tests.fixtures import human

    human.write_ego4d_real(REAL / "ego4d_goalstep", tmp / "in")
    return tmp / "in"


def _epic(tmp: Path, _mp: pytest.MonkeyPatch) -> Path:
    from tests.fixtures import human

    human.write_epic_real(REAL / "epic_kitchens_100", tmp / "in", video_ids=("P02_13",))
    return tmp / "in"


# section: the folder that must exist, how to make the input, whether the hands are drawn on the video (None:
# the sample has no video)
SAMPLES = {
    "egodex": ("egodex", _same("egodex"), True),
    "oxe": ("oxe_bridge_rlds", _same("oxe_bridge_rlds/bridge_dataset/1.0.0"), False),
    "lerobot_gr00t_gr1": ("gr00t_demo_robot_sim.PickNPlace", _same("gr00t_demo_robot_sim.PickNPlace"), True),
    "lerobot_lda1b_sim": (
        "lerobot_v21_lda1b_sim_pick_place",
        _same("lerobot_v21_lda1b_sim_pick_place"),
        True,
    ),
    "lerobot_unitree_g1_inspire": (
        "lerobot_v21_unitree_g1_inspire",
        _same("lerobot_v21_unitree_g1_inspire"),
        False,
    ),
    "agibot": ("agibot_world", _same("agibot_world"), None),
    "agibot_a2d": ("agibot_world", _same("agibot_world"), None),
    "hot3d": ("hot3d", _hot3d, True),
    "ego4d": ("ego4d_goalstep", _ego4d, False),
    "epic": ("epic_kitchens_100", _epic, False),
    "ssv2": ("ssv2", _same("ssv2"), False),
}


@pytest.fixture(scope="module")
def browser():
    if chromium() is None and not os.environ.get("CI"):
        pytest.skip("needs chromium (tools/browser.sh installs it)")
    with Browser() as b:
        yield b


def _ingest(section: str, inp: Path, out: Path, mano: Path | None) -> Path:
    from ingest.job import RunOptions, run

    run(RunOptions(source=section, input=inp, output=out, workers=1, progress=False, limit=2, mano_dir=mano))
    return out / section


@pytest.mark.parametrize("section", list(SAMPLES))
def test_report_and_view_of_a_real_sample(
    section: str, tmp_path: Path, browser: Browser, monkeypatch
) -> None:
    folder, make_input, drawn = SAMPLES[section]
    if not (REAL / folder).is_dir():
        pytest.skip(f"needs ../shared/realdata/{folder}")
    mano = tmp_path / "mano"  # written by the hot3d input's maker
    root = _ingest(
        section, make_input(tmp_path, monkeypatch), tmp_path / "out", mano if mano.is_dir() else None
    )
    info = json.loads((root / "meta/info.json").read_text())
    write_report(root, tmp_path / "report", None, StripOptions(frames=3), workers=1)
    visit = browser.visit(
        tmp_path / "report/index.html", {"count": "document.getElementById('episode-count').dataset.count"}
    )
    assert visit.errors == [] and all(w > 0 for w in visit.image_widths), (visit.errors, visit.image_widths)
    assert len(visit.image_widths) == (0 if drawn is None else info["total_episodes"])  # a thumbnail each
    assert int(visit.values["count"]) == info["total_episodes"] > 0
    page = (tmp_path / "report/episodes/episode_000000.html").read_text()
    assert ("hands not drawn" not in page) == bool(drawn) or drawn is None, section
    _check_rrd(root, tmp_path / "ep0.rrd", info)


def _check_rrd(root: Path, out: Path, info: dict) -> None:
    from rerun.chunk import RrdReader

    write_recording(root, 0, out)
    rows: dict[str, int] = {}
    for chunk in RrdReader(out).stream():
        rows[chunk.entity_path] = rows.get(chunk.entity_path, 0) + chunk.num_rows
    length = json.loads((root / "meta/episodes.jsonl").read_text().splitlines()[0])["length"]
    videos = [k for k in rows if k.endswith("/video")]
    assert len(videos) == len([k for k, f in info["features"].items() if f["dtype"] == "video"])
    assert all(rows[k] == length + 1 for k in videos), (rows, length)
