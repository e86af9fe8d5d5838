"""Robot sources through the real job: an RLDS input with a corrupt record in one shard, and a LeRobot
input, both published as LeRobot v2.1 datasets that the validator accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from ingest.convert import kinematics
from ingest.job import DEFAULT_PIPELINES, RunOptions, run
from ingest.validate import validate_dataset
from schemas.pipelines import PipelinesFile
from tests.fixtures import rlds as rlds_fx

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]
REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def _pipelines(tmp: Path, section: str, **update: object) -> Path:
    """The shipped pipelines.yaml with one section adjusted to the fixture (its cameras, splits)."""
    shipped = PipelinesFile.load(DEFAULT_PIPELINES)
    cfg = shipped.source(section).model_copy(update=update)
    path = tmp / "pipelines.yaml"
    section_json = cfg.model_dump(mode="json", exclude={"quality"})  # tier rules come from `tiers:`
    path.write_text(yaml.safe_dump({"sources": {section: section_json}}))
    return path


def test_oxe_shards_publish_and_a_corrupt_record_is_one_reject(tmp_path: Path) -> None:
    fx = rlds_fx.write_rlds_dataset(tmp_path / "in", splits={"train": [3, 2]}, num_steps=6, corrupt="crc")
    cameras = [f"steps/observation/{c}" for c in rlds_fx.CAMERAS]
    pipelines = _pipelines(tmp_path, "oxe", cameras=cameras, splits=["train"], gripper_range=(0.0, 2.0))
    opts = RunOptions(source="oxe", input=fx.root, output=tmp_path / "out", workers=2, progress=False,
                      pipelines=pipelines, max_reject_ratio=1.0)  # fmt: skip
    summary = run(opts)
    root = tmp_path / "out" / "oxe"
    assert (summary.published, summary.rejected, summary.total_episodes) == (4, 1, 4)
    assert summary.reject_ratio == pytest.approx(1 / 5)
    ids = [
        json.loads(x)["source_episode_id"] for x in (root / "meta/episodes.jsonl").read_text().splitlines()
    ]
    bad, good = fx.shards["train"][0].name, fx.shards["train"][1].name
    assert ids == [f"train/{bad}#0", f"train/{bad}#2", f"train/{good}#0", f"train/{good}#1"]
    (reject,) = [json.loads(x) for x in (root / "meta/rejects.jsonl").read_text().splitlines()]
    assert reject["source_path"] == str(fx.shards["train"][0]) and reject["stage"] == "read"
    assert "record 1" in reject["error"] and "payload CRC32C mismatch" in reject["error"]
    table = pq.read_table(root / "data/chunk-000/episode_000002.parquet")
    native = [list(map(float, r)) for r in table.column("action.native").to_pylist()]
    source = fx.episodes["train"][1][0].steps["steps/action"]
    assert native[0] == pytest.approx(source[0].tolist()) and native[-1] == pytest.approx(source[-1].tolist())
    assert len(native) == 2 * 6 - 1  # 6 steps at 5 Hz -> 11 frames at 10 Hz
    assert validate_dataset(root) == []
    # a second run finds everything published and keeps the record's reject
    again = run(opts)
    assert (again.skipped_published, again.published, again.rejected) == (2, 0, 0)
    assert len((root / "meta/rejects.jsonl").read_text().splitlines()) == 1


@pytest.mark.realdata
@pytest.mark.skipif(
    not (REAL / "gr00t_demo_robot_sim.PickNPlace").is_dir(), reason="needs ../shared/realdata"
)
@pytest.mark.skipif(kinematics.assets_dir() is None, reason="needs the GR1 model (make setup)")
def test_gr00t_demo_through_the_job(tmp_path: Path) -> None:
    src = REAL / "gr00t_demo_robot_sim.PickNPlace"
    opts = RunOptions(source="lerobot_gr00t_gr1", input=src, output=tmp_path, workers=2, progress=False)
    summary = run(opts)
    root = tmp_path / "lerobot_gr00t_gr1"
    assert summary.total_episodes == 5 and validate_dataset(root) == []
    info = json.loads((root / "meta/info.json").read_text())
    assert info["features"]["observation.joints"]["shape"] == [44]
    metas = [json.loads(x) for x in (root / "meta/episodes.jsonl").read_text().splitlines()]
    assert all(m["has_action"] for m in metas)  # both hands by forward kinematics
    tasks = {json.loads(x)["task"] for x in (src / "meta/tasks.jsonl").read_text().splitlines()}
    captions = [json.loads(x)["caption"] for x in (root / "meta/episodes.jsonl").read_text().splitlines()]
    assert all(c in tasks and c != "valid" for c in captions)
