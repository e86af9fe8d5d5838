"""The step contract of `ingest run` (ingest/stages/base.py): every stage of the chain reports its counters
and its time into the run's summary, and the counters agree with what the published dataset shows."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from ingest.stages.base import Stage, StageLog, StageReport, run_chain
from ingest.stages.chain import STAGES, chain
from schemas.pipelines import PipelinesFile, config_sha256
from schemas.source_config import DEFAULT_STAGES
from tests.fixtures.egodex import write_dataset, write_episode

ROOT = Path(__file__).resolve().parents[1]


def _egodex(**update: object):
    cfg = PipelinesFile.load(ROOT / "pipelines.yaml").source("egodex")
    return cfg.model_validate({**cfg.model_dump(), **update})


# ------------------------------------------------------------------------------------------ the contract


def test_every_default_stage_is_registered_in_order() -> None:
    assert tuple(STAGES) == DEFAULT_STAGES
    assert [s.name for s in chain(_egodex())] == list(DEFAULT_STAGES)
    assert [s.name for s in chain(_egodex(stages=["quality"]))] == ["quality"]


@pytest.mark.parametrize("bad", [["caption", "quality"], ["quality", "quality"], ["dedupe"]])
def test_a_section_may_leave_stages_out_never_reorder_or_invent_them(bad: list[str]) -> None:
    with pytest.raises(ValidationError, match="stages"):
        _egodex(stages=bad)


def test_the_default_chain_keeps_the_section_hash() -> None:
    """A section without `stages:` hashes as before sections could name them (dataset cards unchanged)."""
    cfg = _egodex()
    before = cfg.model_dump(mode="json")
    del before["stages"]
    assert config_sha256(cfg) == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()
    assert config_sha256(_egodex(stages=["quality"])) != config_sha256(cfg)


def test_run_chain_times_counts_and_drops() -> None:
    def keep(ep, cfg, counts: Counter) -> object:
        counts["kept"] += 1
        return ep

    def drop(ep, cfg, counts: Counter) -> None:
        return None

    log = StageLog()
    for x in ("a", "b"):
        assert (
            run_chain(x, [Stage("keep", keep), Stage("drop", drop), Stage("never", keep)], None, log) is None
        )
    reports = log.ordered(["keep", "drop", "never"])
    assert [(r.name, r.seen, r.counters) for r in reports] == [
        ("keep", 2, {"kept": 2}),
        ("drop", 2, {"dropped": 2}),
        ("never", 0, {}),
    ]
    assert all(r.seconds > 0 for r in reports[:2]) and reports[2].seconds == 0


def test_logs_merge_by_stage() -> None:
    log = StageLog()
    log.merge([StageReport(name="quality", seen=2, seconds=0.5, counters={"low": 1, "high": 1})])
    log.merge([StageReport(name="quality", seen=1, seconds=0.25, counters={"high": 1, "actionless": 0})])
    (r,) = log.reports.values()
    assert (r.seen, r.seconds, r.counters) == (3, 0.75, {"high": 2, "low": 1})
    assert r.line() == "quality: 3 in, high 2, low 1 (0.75 s)"


def test_a_left_out_caption_stage_keeps_the_source_text(tmp_path: Path) -> None:
    """convert_one with `stages: [quality]`: no caption stage ran or reported, the caption is the source's."""
    from ingest import writer
    from ingest.job import convert_one
    from ingest.sources import get_source

    write_dataset(tmp_path / "in", 1, 40)
    cfg = _egodex(stages=["quality"])
    (ref,) = get_source("egodex").discover(tmp_path / "in", cfg)
    result = convert_one(ref, cfg, tmp_path / "work")
    assert [r.name for r in result.stages] == ["convert", "quality", "write"]
    meta = writer.read_staged(Path(result.staged[0])).meta
    assert meta.caption_source != "template" and meta.caption == meta.task_original


# ------------------------------------------------------------------------------------------ through the job


@pytest.mark.ray
@pytest.mark.usefixtures("ray_local")
def test_every_stage_reports_into_the_summary_what_the_dataset_shows(tmp_path: Path) -> None:
    """Three moving episodes, one whose hands never move (no interaction: `low`), one bad (a reject): the
    summary printed by `ingest run` and `.work/stages.json` carry each stage's counters and time, and the
    counters are the dataset's own tiers, cuts, captions and frames."""
    from ingest.cli import app

    inp = tmp_path / "in"
    write_dataset(inp, 3, 40)
    write_episode(inp / "test" / "still", 0, 40, static="camera")
    write_episode(inp / "test" / "zz_bad", 0, 40, bad="nan_pose")
    args = ["run", "egodex", "-i", str(inp), "-o", str(tmp_path / "out"), "--workers", "2", "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--max-reject-ratio", "1"])
    assert result.exit_code == 0, result.output
    root = tmp_path / "out" / "egodex"
    reports = {
        r["name"]: StageReport.model_validate(r) for r in json.loads((root / ".work/stages.json").read_text())
    }
    assert list(reports) == ["convert", *DEFAULT_STAGES, "write"]
    for r in reports.values():
        assert f"{root}: stage {r.name}: {r.seen} in" in result.output and r.seconds > 0

    episodes = [json.loads(x) for x in (root / "meta/episodes.jsonl").read_text().splitlines()]
    info = json.loads((root / "meta/info.json").read_text())
    tiers = Counter(e["quality_tier"] for e in episodes)
    cut = [
        e["quality_metrics"]["cut_frames_start"] + e["quality_metrics"]["cut_frames_end"] for e in episodes
    ]
    assert (reports["convert"].seen, reports["convert"].counters) == (
        5,
        {"episodes": 4},
    )  # zero counts are left out
    quality = reports["quality"]
    assert quality.seen == len(episodes) == 4 and tiers == {"high": 3, "low": 1}
    want = {
        **tiers,
        **({"cut_episodes": sum(c > 0 for c in cut), "cut_frames": sum(cut)} if any(cut) else {}),
    }
    assert quality.counters == want
    templated = sum(e["caption_source"] == "template" for e in episodes)
    assert reports["caption"].counters == {"template": templated} and templated == 4
    assert (reports["write"].seen, reports["write"].counters) == (4, {"frames": info["total_frames"]})

    again = CliRunner().invoke(app, [*args, "--max-reject-ratio", "1"])  # only the reject is tried again
    reports = json.loads((root / ".work/stages.json").read_text())
    assert [(r["name"], r["seen"]) for r in reports] == [
        ("convert", 1),
        ("quality", 0),
        ("caption", 0),
        ("write", 0),
    ]
    assert "stage quality: 0 in" in again.output


def test_pipelines_yaml_section_names_its_stages(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "pipelines.yaml").read_text())
    raw["sources"]["egodex"]["stages"] = ["quality"]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    assert PipelinesFile.load(tmp_path / "p.yaml").source("egodex").stage_names == ("quality",)


def test_the_toolkit_sits_below_the_stages() -> None:
    """ingest/convert/ (what sources call) imports nothing else of ingest/; ingest/stages/ imports the
    toolkit and the template captioner, never a source or a job."""
    from tests.test_structure import import_graph

    graph = import_graph(ROOT)
    toolkit = ("ingest.convert",)
    allowed = {
        "ingest.convert": toolkit,
        "ingest.stages": (*toolkit, "ingest.stages", "ingest.captions.template"),
    }
    bad = [
        f"{m} -> {t}"
        for m, targets in graph.items()
        for pkg, ok in allowed.items()
        if m.startswith(pkg)
        for t in targets
        if t.startswith("ingest") and not t.startswith(ok)
    ]
    assert bad == []


def test_the_quality_stage_counts_what_it_cut_and_tiered() -> None:
    """Idle ends of 2 s and 1.5 s around a reach are cut (cut mode) and counted; a still arm is `low`."""
    from ingest.stages import quality
    from tests.test_tiers import IDLE_ENDS, REACH, cfg, grasp, robot, still

    counts: Counter[str] = Counter()
    ep = quality.stage(robot(IDLE_ENDS, grasp(95, [(50, 95)])), cfg(), counts)
    quality.stage(robot(still(40, REACH[0])), cfg(), counts)
    m = ep.meta.quality_metrics
    cut = int(m["cut_frames_start"] + m["cut_frames_end"])
    assert cut == 95 - ep.length >= 35
    assert counts == {"cut_episodes": 1, "cut_frames": cut, "high": 1, "low": 1}
