"""Mixtures: build, write, load, resolve against a catalog; bad mixtures rejected naming entry and field;
`train launch` reads the file. The catalog is `tests/test_catalog.py`'s four datasets (one ingest)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from catalog.cli import app as catalog_app
from catalog.index import build
from catalog.mixture import MixtureFileError, build_mixture, load_mixture, resolve, write_mixture
from catalog.mixture_file import Mixture, MixtureError
from tests.test_catalog import all_episodes, make_root
from train.cli import app as train_app

RUNNER = CliRunner()
REPO = Path(__file__).resolve().parents[1]
EI30K = REPO / "mixtures" / "ei30k.yaml"
SELECT = [("robots", 'category in ["real_robot", "sim_robot"]'), ("video", 'category == "human_actionless"')]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = make_root(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("mixture") / "root")
    build(r)
    return r


def hours_of(root: Path, keep: Callable[[dict], bool]) -> dict[str, float]:
    """Hours per dataset of the episodes `keep` accepts, from episodes.jsonl lengths at 10 fps."""
    out: dict[str, float] = {}
    for e in all_episodes(root):
        if keep(e):
            out[e["dataset"]] = out.get(e["dataset"], 0.0) + e["length"] / 36000
    return out


@pytest.mark.ray
def test_round_trip(root: Path, tmp_path: Path) -> None:
    m = build_mixture(
        root,
        "mix",
        SELECT,
        weighting="explicit",
        temperature=2.0,
        weights={"robots": 3.0, "video": 1.0},
        tasks={
            "robots": {"high": ["policy", "forward_dynamics"], "low": ["forward_dynamics"]},
            "video": {"actionless": ["visual_forecasting"]},
        },
    )
    path = write_mixture(m, tmp_path / "mix.yaml")
    back = load_mixture(path)
    assert back == m
    assert back.entries[0].tasks == {"high": ["policy", "forward_dynamics"], "low": ["forward_dynamics"]}
    assert yaml.safe_load(path.read_text())["entries"][1]["weight"] == 1.0


def test_ei30k_loads_and_round_trips(tmp_path: Path) -> None:
    m = load_mixture(EI30K)
    assert [e.name for e in m.entries] == ["real_robot", "sim_robot", "human_action", "human_actionless"]
    assert m.entries[3].tasks == {"actionless": ["visual_forecasting"]}
    assert "policy" not in m.entries[0].tasks["low"] and "policy" in m.entries[0].tasks["high"]
    assert load_mixture(write_mixture(m, tmp_path / "again.yaml")) == m


@pytest.mark.ray
def test_resolve_hours_weighting(root: Path) -> None:
    m = build_mixture(root, "mix", SELECT, weighting="hours")
    plan = resolve(root, m)
    robots = hours_of(root, lambda e: e["category"] in ("real_robot", "sim_robot"))
    video = hours_of(root, lambda e: e["category"] == "human_actionless")
    total = sum(robots.values()) + sum(video.values())
    by_name = {e.name: e for e in plan.entries}
    assert by_name["robots"].hours == pytest.approx(sum(robots.values()))
    assert by_name["robots"].episodes == 8 and by_name["video"].episodes == 4
    assert {d.dataset: d.weight for d in by_name["robots"].datasets} == pytest.approx(
        {k: v / total for k, v in robots.items()}
    )
    assert by_name["video"].weight == pytest.approx(sum(video.values()) / total)
    assert {t.tier: t.episodes for t in by_name["robots"].tiers} == {"high": 5, "low": 3}
    assert plan.missing == [] and plan.overlap_episodes == 0 and plan.episodes == 12


@pytest.mark.ray
def test_resolve_explicit_with_temperature(root: Path) -> None:
    m = build_mixture(
        root, "mix", SELECT, weighting="explicit", temperature=2.0, weights={"robots": 3.0, "video": 1.0}
    )
    plan = resolve(root, m)
    robots = hours_of(root, lambda e: e["category"] in ("real_robot", "sim_robot"))
    tempered = {k: v**0.5 for k, v in robots.items()}
    want = {k: 0.75 * v / sum(tempered.values()) for k, v in tempered.items()}
    got = {d.dataset: d.weight for d in plan.entries[0].datasets}
    assert got == pytest.approx(want) and plan.entries[1].weight == pytest.approx(0.25)


@pytest.mark.ray
def test_resolve_uniform_and_tier_narrowing(root: Path) -> None:
    m = build_mixture(
        root,
        "mix",
        [("robots", SELECT[0][1]), ("all", "")],
        weighting="uniform",
        tasks={"robots": {"low": ["forward_dynamics"]}},
    )
    plan = resolve(root, m)
    robots, everything = plan.entries
    low = [
        e
        for e in all_episodes(root)
        if e["category"] in ("real_robot", "sim_robot") and e["quality_tier"] == "low"
    ]
    assert robots.episodes == len(low) == 3  # only the tier its tasks name
    assert len(robots.datasets) == 2 and len(everything.datasets) == 4
    assert all(d.weight == pytest.approx(1 / 6) for d in [*robots.datasets, *everything.datasets])
    assert plan.overlap_episodes == 3 and any("more than one entry" in n for n in plan.notes)


@pytest.mark.ray
def test_ei30k_reports_what_is_missing(root: Path, tmp_path: Path) -> None:
    only_ego = tmp_path / "root"
    shutil.copytree(root / "egodex", only_ego / "egodex")
    build(only_ego)
    plan = resolve(only_ego, load_mixture(EI30K))
    assert plan.missing == ["real_robot", "sim_robot", "human_actionless"]
    ego = {e.name: e for e in plan.entries}["human_action"]
    assert ego.weight == pytest.approx(1.0) and ego.episodes == 4 and ego.missing_tiers == ["low"]
    result = RUNNER.invoke(catalog_app, ["resolve", "--root", str(only_ego), "--mixture", str(EI30K)])
    assert result.exit_code == 0 and "missing (no episode matched): real_robot, sim_robot" in result.output
    strict = RUNNER.invoke(
        catalog_app, ["resolve", "--root", str(only_ego), "--mixture", str(EI30K), "--strict"]
    )
    assert strict.exit_code == 2 and "entry 'real_robot', field 'where'" in strict.output
    full = resolve(root, load_mixture(EI30K))
    weights = {e.name: e.weight for e in full.entries}
    want = {"real_robot": 0.4, "sim_robot": 0.2, "human_action": 0.25, "human_actionless": 0.15}
    assert full.missing == [] and weights == pytest.approx(want)


# --------------------------------------------------------------------------- bad mixtures


def mixture_dict(**entry_changes: object) -> dict:
    entry = {
        "name": "video",
        "where": 'category == "human_actionless"',
        "tasks": {"actionless": ["visual_forecasting"]},
        **entry_changes,
    }
    return {"name": "bad", "weighting": "hours", "entries": [entry]}


def load_error(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(MixtureFileError) as err:
        load_mixture(path)
    return str(err.value)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"taks": ["policy"]}, "entry 'video', field 'taks': Extra inputs are not permitted"),
        (
            {"tasks": {"actionless": ["policy", "visual_forecasting"]}},
            "entry 'video', field 'tasks': tier actionless may not train policy",
        ),
        ({"tasks": {"low": ["policy"]}}, "entry 'video', field 'tasks': tier low may not train policy"),
        ({"tasks": {"medium": ["policy"]}}, "entry 'video', field 'tasks.medium.[key]'"),
        ({"where": "__import__('os')"}, "entry 'video', field 'where': unknown function __import__"),
        ({"where": "hours > 2"}, "entry 'video', field 'where': unknown column 'hours'"),
        ({"weight": 2.0}, "entry 'video', field 'weight': weighting is hours: remove the weight"),
        ({"tasks": {"high": []}}, "entry 'video', field 'tasks': the entry trains nothing"),
    ],
)
def test_bad_entry_names_entry_and_field(tmp_path: Path, changes: dict, expected: str) -> None:
    assert expected in load_error(tmp_path, mixture_dict(**changes))


def test_bad_mixture_level_fields(tmp_path: Path) -> None:
    assert "field 'colour': Extra inputs are not permitted" in load_error(
        tmp_path, {**mixture_dict(), "colour": 1}
    )
    explicit = {**mixture_dict(), "weighting": "explicit"}
    assert "entry 'video', field 'weight': weighting is explicit" in load_error(tmp_path, explicit)
    two = mixture_dict()
    two["entries"] = two["entries"] * 2
    assert "entry 'video', field 'name': two entries have this name" in load_error(tmp_path, two)


def test_post_training_may_widen_low_but_never_actionless() -> None:
    low_policy = {**mixture_dict(tasks={"low": ["policy"]}), "stage": "post_training"}
    assert Mixture.model_validate(low_policy).entries[0].tasks == {"low": ["policy"]}
    with pytest.raises(ValueError, match="tier actionless may not train policy at post_training"):
        Mixture.model_validate({**mixture_dict(tasks={"actionless": ["policy"]}), "stage": "post_training"})


@pytest.mark.ray
def test_selection_matching_nothing_is_rejected(root: Path, tmp_path: Path) -> None:
    with pytest.raises(MixtureError) as err:
        build_mixture(root, "mix", [*SELECT, ("none", 'embodiment == "unicorn"')])
    assert (err.value.entry, err.value.field) == ("none", "where")
    out = tmp_path / "m.yaml"
    result = RUNNER.invoke(
        catalog_app,
        [
            "mixture",
            "--root",
            str(root),
            "--name",
            "m",
            "--out",
            str(out),
            "--select",
            'none=embodiment == "unicorn"',
        ],
    )
    assert result.exit_code == 2 and "entry 'none', field 'where': matches no episode" in result.output
    assert not out.exists()


# --------------------------------------------------------------------------- CLI and train launch


@pytest.mark.ray
def test_mixture_cli_writes_what_was_asked(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "mix.yaml"
    args = [
        "mixture",
        "--root",
        str(root),
        "--name",
        "cli",
        "--out",
        str(out),
        "--select",
        'robots=category == "real_robot"',
        "--select",
        "video=not has_action",
        "--weighting",
        "explicit",
        "--weight",
        "robots=2",
        "--weight",
        "video=1",
        "--temperature",
        "1.5",
        "--tasks",
        "robots=high:policy,inverse_dynamics",
        "--tasks",
        "robots=low:forward_dynamics",
        "--tasks",
        "video=actionless:visual_forecasting",
    ]
    result = RUNNER.invoke(catalog_app, args)
    assert result.exit_code == 0, result.output
    m = load_mixture(out)
    assert (m.name, m.weighting, m.temperature) == ("cli", "explicit", 1.5)
    assert [(e.name, e.where, e.weight) for e in m.entries] == [
        ("robots", 'category == "real_robot"', 2.0),
        ("video", "not has_action", 1.0),
    ]
    assert m.entries[0].tasks == {"high": ["policy", "inverse_dynamics"], "low": ["forward_dynamics"]}
    bad = RUNNER.invoke(
        catalog_app, [*args[:7], "--select", "video=not has_action", "--tasks", "video=actionless:policy"]
    )
    assert (
        bad.exit_code == 2
        and "entry 'video', field 'tasks': tier actionless may not train policy" in bad.output
    )


@pytest.mark.ray
def test_train_launch_prints_the_plan_first(root: Path, tmp_path: Path) -> None:
    # This root's latents are not a real cache, so training stops with a clear error after the plan.
    result = RUNNER.invoke(train_app, ["launch", "--mixture", str(EI30K), "--root", str(root), "--out",
                                       str(tmp_path / "run"), "--no-progress"])  # fmt: skip
    assert result.exit_code == 2 and "train launch:" in result.output
    assert "16 episodes" in result.output and "real_robot" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mixture_dict(tasks={"actionless": ["policy"]})))
    refused = RUNNER.invoke(train_app, ["launch", "--mixture", str(bad), "--root", str(root)])
    assert refused.exit_code == 2 and "entry 'video', field 'tasks'" in refused.output


@pytest.mark.ray
def test_resolve_json_plan(root: Path) -> None:
    result = RUNNER.invoke(
        catalog_app, ["resolve", "--root", str(root), "--mixture", str(EI30K), "--format", "json"]
    )
    plan = json.loads(result.output)
    assert sum(d["weight"] for e in plan["entries"] for d in e["datasets"]) == pytest.approx(1.0)
    assert plan["episodes"] == len(all_episodes(root))
