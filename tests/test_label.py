"""`ingest label PATH` on a dataset ingested through the quality stage (no Ray): the rules of the card's
section decide again, overrides win and are recorded, labelling twice changes no byte, and the catalog
carries the tiers and their reasons."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ingest.cli import app
from ingest.job import DEFAULT_PIPELINES, Publisher, convert_one
from ingest.sources import egodex
from ingest.validate import validate_dataset
from ingest.writer import finalize_meta
from schemas.pipelines import PipelinesFile
from tests.fixtures.egodex import write_episode

GOOD, STILL, HIDDEN = "test/open_close/0", "test/open_close/1", "test/open_close/2"


def _ingest(inp: Path, root: Path) -> None:
    """`ingest run` without Ray: convert_one (the quality stage included), publish, finalize."""
    cfg = PipelinesFile.load(DEFAULT_PIPELINES).source("egodex")
    pub = Publisher(root)
    for ref in egodex.SOURCE.discover(inp, cfg):
        result = convert_one(ref, cfg, root / ".work")
        assert result.reject is None, result.reject
        pub.publish_all(result.staged)
    finalize_meta(root, "egodex", cfg, [])


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    inp = tmp_path_factory.mktemp("egodex-tiers")
    d = inp / "test" / "open_close"
    write_episode(d, 0, 94)  # moving hands, fully tracked
    write_episode(d, 1, 94, static="camera")  # hands never move
    write_episode(d, 2, 94, phase=1.0, low_confidence={"leftHand": list(range(10, 60))})  # left hand lost
    return inp


@pytest.fixture
def root(source: Path, tmp_path: Path) -> Path:
    root = tmp_path / "egodex"
    _ingest(source, root)
    return root


def _episodes(root: Path) -> dict[str, dict]:
    lines = (root / "meta/episodes.jsonl").read_text().splitlines()
    return {e["source_episode_id"]: e for e in map(json.loads, lines)}


def _snapshot(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and ".work" not in p.parts)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _label(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["label", str(root), *args])
    return result.exit_code, result.output


def _csv(tmp_path: Path, *rows: str, header: str = "source_episode_id,tier,reason") -> Path:
    path = tmp_path / "overrides.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_run_records_tiers_with_reasons(root: Path) -> None:
    eps = _episodes(root)
    assert {k: (e["quality_tier"], e["tier_rule"]) for k, e in eps.items()} == {
        GOOD: ("high", "all_passed"),
        STILL: ("low", "idle_ratio <= 0.5"),
        HIDDEN: ("low", "valid_fraction >= 0.8"),
    }
    assert eps[HIDDEN]["tier_reason"].startswith("valid_fraction = 0.75 fails valid_fraction >= 0.8")
    assert eps[STILL]["quality_metrics"]["active_steps"] == 0  # nothing cut from an all-idle episode
    assert eps[STILL]["length"] == 32 and eps[STILL]["quality_metrics"]["cut_frames_start"] == 0
    assert validate_dataset(root) == []


def test_labelling_a_fresh_dataset_twice_changes_no_byte(root: Path) -> None:
    before = _snapshot(root)
    code, out = _label(root)
    assert code == 0 and "0 episodes changed; tiers: high 1, low 2, actionless 0" in out
    assert _snapshot(root) == before
    assert _label(root)[0] == 0 and _snapshot(root) == before


def test_override_wins_is_recorded_and_stays(root: Path, tmp_path: Path) -> None:
    csv = _csv(tmp_path, f"{STILL},high,operator checked: the lid was already open", f"{GOOD},high,ok")
    code, out = _label(root, "--overrides", str(csv))
    assert code == 0 and "2 episodes changed" in out and "2 decided by overrides" in out, out
    still = _episodes(root)[STILL]
    assert (still["quality_tier"], still["tier_rule"]) == ("high", "override")
    assert still["tier_reason"] == "override: operator checked: the lid was already open"
    assert still["quality_metrics"]["idle_ratio"] == 1.0  # the metrics stay what was measured
    assert validate_dataset(root) == []
    after = _snapshot(root)
    assert _label(root)[0] == 0 and _snapshot(root) == after  # no --overrides: they are kept
    assert _label(root, "--overrides", str(csv))[0] == 0 and _snapshot(root) == after
    code, out = _label(root, "--reset-overrides")
    assert code == 0 and "2 episodes changed" in out
    assert _episodes(root)[STILL]["tier_rule"] == "idle_ratio <= 0.5"


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (
            ["test/nope/7,low,bad", "test/nope/8,low,bad"],
            None,
            "source_episode_id 'test/nope/7', 'test/nope/8'",
        ),
        ([f"{GOOD},actionless,no"], None, "tier 'actionless', but the episode can only be high or low"),
        ([f"{GOOD},medium,no"], None, "line 2: tier: Input should be 'high', 'low' or 'actionless'"),
        ([f"{GOOD},low,  "], None, "line 2: reason: Value error, must not be blank"),
        ([f"{GOOD},low,a", f"{GOOD},high,b"], None, "line 3: 'test/open_close/0' is overridden twice"),
        ([f"{GOOD},low"], "id,tier", "header must be source_episode_id,tier,reason"),
    ],
)
def test_bad_overrides_fail_before_anything_is_written(
    root: Path, tmp_path: Path, rows: list[str], header: str | None, message: str
) -> None:
    before = _snapshot(root)
    csv = _csv(tmp_path, *rows) if header is None else _csv(tmp_path, *rows, header=header)
    code, out = _label(root, "--overrides", str(csv))
    assert code == 2 and message in out, out
    assert _snapshot(root) == before


def test_the_rules_of_the_card_section_decide(root: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_PIPELINES.read_text())
    strict = {"metric": "jerk_rms", "op": "<=", "value": 0.001, "why": "stricter"}
    raw["tiers"]["human_action"]["rules"].insert(0, strict)
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, out = _label(root, "--pipelines", str(path))
    assert (
        code == 0
        and "tiers: high 0, low 3, actionless 0 (low by idle_ratio <= 0.5: 1, jerk_rms <= 0.001: 2)" in out
    ), out
    good = _episodes(root)[GOOD]
    assert good["tier_rule"] == "jerk_rms <= 0.001" and good["tier_reason"].endswith("(stricter)")
    card = json.loads((root / "meta/dataset_card.json").read_text())
    assert card["pipeline_config_sha256"] != _card_hash_of(DEFAULT_PIPELINES)  # the card names the rules used


def _card_hash_of(pipelines: Path) -> str:
    from schemas.pipelines import config_sha256

    return config_sha256(PipelinesFile.load(pipelines).source("egodex"))


def test_catalog_shows_the_tiers_and_reasons(root: Path) -> None:
    from catalog.index import build
    from catalog.query import scan
    from catalog.stats import by_source

    build(root.parent)
    row = by_source(root.parent).row(0, named=True)
    assert (row["source"], row["high"], row["low"], row["actionless"]) == ("egodex", 1, 2, 0)
    rules = dict(scan(root.parent).select("source_episode_id", "tier_rule").collect().iter_rows())
    assert rules[HIDDEN] == "valid_fraction >= 0.8"
