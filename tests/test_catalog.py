"""`catalog build / query / stats` on datasets written by `ingest run`, checked against their own meta.

One EgoDex ingest per test session (`ingested`); the other categories are copies of it whose
`dataset_card.json`, `episodes.jsonl` and `info.json` are edited consistently (the catalog reads meta only).
Expected numbers are computed here from the JSON files with `json`, never through the catalog's code.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from catalog.cli import app
from catalog.index import build
from catalog.query import Query, run_query, totals
from catalog.stats import by_category, by_source

RUNNER = CliRunner()
EGO = "observation.images.ego"


@functools.cache
def ingested(base: Path) -> Path:
    """Ingest 4 EgoDex episodes (30 source frames -> 10 frames at 10 Hz) once per session."""
    from ingest.job import RunOptions, run
    from tests.fixtures.egodex import write_dataset

    write_dataset(base / "egodex-in", 4, 30)
    run(
        RunOptions(
            source="egodex", input=base / "egodex-in", output=base / "ingested", workers=1, progress=False
        )
    )
    return base / "ingested" / "egodex"


def derive(
    src: Path,
    dst: Path,
    *,
    category: str,
    source: str,
    embodiment: str,
    tiers: list[str],
    lengths: list[int],
    has_action: bool = True,
) -> Path:
    """A copy of `src` that looks like another source: card, episodes and info.json edited together."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".work"))
    meta = dst / "meta"
    eps = [json.loads(line) for line in (meta / "episodes.jsonl").read_text().splitlines()]
    for e, tier, n in zip(eps, tiers, lengths, strict=True):
        e.update(quality_tier=tier, embodiment=embodiment, has_action=has_action, length=n)
        e["caption"] = f"{dst.name}: {e['caption']}"
    (meta / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in eps))
    info = json.loads((meta / "info.json").read_text())
    info["total_frames"] = sum(lengths)
    (meta / "info.json").write_text(json.dumps(info))
    card = json.loads((meta / "dataset_card.json").read_text())
    card.update(embodiment_kind=category, source=source, frames=sum(lengths), hours=sum(lengths) / 36000)
    (meta / "dataset_card.json").write_text(json.dumps(card))
    return dst


def add_latents(ds: Path, episodes: list[int]) -> None:
    (ds / "meta" / "latents.json").write_text("{}")
    for i in episodes:
        f = ds / f"latents/chunk-000/{EGO}/episode_{i:06d}.safetensors"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")


def make_root(base: Path, root: Path) -> Path:
    """Four datasets, one per category, with known tiers, lengths and latents."""
    ego = ingested(base)
    shutil.copytree(ego, root / "egodex", ignore=shutil.ignore_patterns(".work"))
    derive(
        ego,
        root / "robot_a",
        category="real_robot",
        source="robosrc",
        embodiment="franka",
        tiers=["high", "low", "high", "low"],
        lengths=[10, 20, 30, 40],
    )
    derive(
        ego,
        root / "sim_b",
        category="sim_robot",
        source="simsrc",
        embodiment="franka",
        tiers=["high", "high", "high", "low"],
        lengths=[25, 25, 25, 25],
    )
    derive(
        ego,
        root / "video_c",
        category="human_actionless",
        source="vidsrc",
        embodiment="human_ego",
        tiers=["actionless"] * 4,
        lengths=[50, 60, 70, 80],
        has_action=False,
    )
    add_latents(root / "robot_a", [0, 1])
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built catalog over four datasets; tests that change files work on a copy (`fresh`)."""
    r = make_root(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("catalog") / "root")
    build(r)
    return r


@pytest.fixture
def fresh(root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "root"
    shutil.copytree(root, dst)
    return dst


def jsonl(ds: Path) -> list[dict]:
    return [json.loads(line) for line in (ds / "meta/episodes.jsonl").read_text().splitlines()]


def card(ds: Path) -> dict:
    return json.loads((ds / "meta/dataset_card.json").read_text())


def all_episodes(root: Path) -> list[dict]:
    """Every episode line of every dataset, with its dataset name and card category added."""
    out = []
    for ds in sorted(p for p in root.iterdir() if (p / "meta/info.json").exists()):
        out += [{**e, "dataset": ds.name, "category": card(ds)["embodiment_kind"]} for e in jsonl(ds)]
    return out


# --------------------------------------------------------------------------- build


@pytest.mark.ray
def test_rows_match_each_datasets_meta(root: Path) -> None:
    df = pl.read_parquet(root / "catalog/episodes.parquet")
    want = all_episodes(root)
    got = df.select(
        "dataset",
        "episode_index",
        "source_episode_id",
        "category",
        "quality_tier",
        "embodiment",
        "has_action",
        "length",
        "seconds",
        "caption",
        "task",
    ).rows(named=True)
    assert len(got) == len(want) == 16
    for g, w in zip(got, want, strict=True):
        assert (g["dataset"], g["episode_index"], g["source_episode_id"]) == (
            w["dataset"],
            w["episode_index"],
            w["source_episode_id"],
        )
        assert (g["category"], g["quality_tier"], g["embodiment"]) == (
            w["category"],
            w["quality_tier"],
            w["embodiment"],
        )
        assert (g["has_action"], g["length"], g["caption"], g["task"]) == (
            w["has_action"],
            w["length"],
            w["caption"],
            w["task_original"],
        )
        assert g["seconds"] == pytest.approx(w["length"] / 10)
    paths = df.filter(pl.col("dataset") == "egodex")["path"].to_list()
    assert all((root / p).is_file() for p in paths) and len(paths) == 4


@pytest.mark.ray
def test_dataset_hours_agree_with_info_json(root: Path) -> None:
    ds = pl.read_parquet(root / "catalog/datasets.parquet")
    assert ds["dataset"].to_list() == ["egodex", "robot_a", "sim_b", "video_c"]
    for row in ds.iter_rows(named=True):
        info = json.loads((root / row["dataset"] / "meta/info.json").read_text())
        assert row["hours"] == pytest.approx(info["total_frames"] / 10 / 3600)
        assert (row["episodes"], row["frames"]) == (info["total_episodes"], info["total_frames"])
    assert ds.filter(pl.col("dataset") == "robot_a")["frames"].item() == 100


@pytest.mark.ray
def test_valid_dims_and_latents(root: Path) -> None:
    from schemas.canonical import dimension_names

    df = pl.read_parquet(root / "catalog/episodes.parquet")
    ego = df.filter(pl.col("dataset") == "egodex").row(0, named=True)
    names = dimension_names()
    valid = {n for n, b in zip(names, ego["valid_action_dims"], strict=True) if b == "1"}
    assert valid == set(card(root / "egodex")["valid_action_dims"])
    robot = df.filter(pl.col("dataset") == "robot_a")["latents_present"].to_list()
    assert robot == [True, True, False, False]  # latents written for episodes 0 and 1 only
    assert not df.filter(pl.col("dataset") != "robot_a")["latents_present"].any()
    ds = pl.read_parquet(root / "catalog/datasets.parquet").filter(pl.col("dataset") == "robot_a")
    assert ds["latent_episodes"].item() == 2 and ds["latents"].item()


@pytest.mark.ray
def test_unchanged_dataset_is_not_read_again(fresh: Path) -> None:
    again = build(fresh)
    assert again.read == [] and sorted(again.unchanged) == ["egodex", "robot_a", "sim_b", "video_c"]
    assert not again.written
    # Corrupt robot_a's episodes.jsonl keeping its size and mtime: the fingerprint does not change, so the
    # file is not read again and the catalog keeps the rows it had (a re-read would report it broken).
    f = fresh / "robot_a/meta/episodes.jsonl"
    st = f.stat()
    f.write_bytes(b"{" * st.st_size)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    touch = build(fresh)
    assert touch.read == [] and touch.broken == []
    df = pl.read_parquet(fresh / "catalog/episodes.parquet")
    assert df.filter(pl.col("dataset") == "robot_a").height == 4


@pytest.mark.ray
def test_changed_dataset_is_read_again(fresh: Path) -> None:
    f = fresh / "sim_b/meta/episodes.jsonl"
    eps = jsonl(fresh / "sim_b")
    eps[2]["caption"] = "a new caption"
    f.write_text("".join(json.dumps(e) + "\n" for e in eps))
    report = build(fresh)
    assert report.read == ["sim_b"] and sorted(report.unchanged) == ["egodex", "robot_a", "video_c"]
    df = pl.read_parquet(fresh / "catalog/episodes.parquet")
    assert df.filter(pl.col("dataset") == "sim_b")["caption"].to_list()[2] == "a new caption"
    assert df.height == 16


@pytest.mark.ray
def test_broken_dataset_is_reported_and_others_indexed(fresh: Path) -> None:
    broken = fresh / "zz_broken"
    shutil.copytree(fresh / "egodex", broken)
    eps = jsonl(broken)
    eps[1]["quality_tier"] = "medium"
    (broken / "meta/episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in eps))
    shutil.rmtree(fresh / "video_c")
    report = build(fresh)
    assert [b.dataset for b in report.broken] == ["zz_broken"]
    assert "episodes.jsonl line 2" in report.broken[0].error and "quality_tier" in report.broken[0].error
    assert report.removed == ["video_c"]
    df = pl.read_parquet(fresh / "catalog/episodes.parquet")
    assert sorted(df["dataset"].unique().to_list()) == ["egodex", "robot_a", "sim_b"]
    result = RUNNER.invoke(app, ["build", str(fresh)])
    assert result.exit_code == 0 and "broken, skipped: zz_broken" in result.output


@pytest.mark.ray
def test_inconsistent_meta_is_broken(fresh: Path) -> None:
    info = json.loads((fresh / "sim_b/meta/info.json").read_text())
    info["total_frames"] += 1
    (fresh / "sim_b/meta/info.json").write_text(json.dumps(info))
    report = build(fresh)
    assert [b.dataset for b in report.broken] == ["sim_b"]
    assert "total_frames 101" in report.broken[0].error


# --------------------------------------------------------------------------- query


@pytest.mark.ray
@pytest.mark.parametrize(
    ("where", "keep"),
    [
        (
            'category == "real_robot" and quality_tier == "high"',
            lambda e: e["category"] == "real_robot" and e["quality_tier"] == "high",
        ),
        (
            'quality_tier in ["high", "low"] and seconds > 2',
            lambda e: e["quality_tier"] in ("high", "low") and e["length"] / 10 > 2,
        ),
        ("not has_action or length >= 30", lambda e: not e["has_action"] or e["length"] >= 30),
        (
            'contains(caption, "lid") and dataset != "egodex"',
            lambda e: "lid" in e["caption"] and e["dataset"] != "egodex",
        ),
        (
            '2 < seconds <= 6 and category not in ["sim_robot"]',
            lambda e: 2 < e["length"] / 10 <= 6 and e["category"] != "sim_robot",
        ),
    ],
)
def test_query_counts_match_json(root: Path, where: str, keep: Callable[[dict], bool]) -> None:
    want = sorted((e["dataset"], e["episode_index"]) for e in all_episodes(root) if keep(e))
    df = run_query(root, Query(where=where, columns=["dataset", "episode_index"]))
    assert sorted(df.rows()) == want and want  # never an empty (trivially equal) answer
    t = totals(root, where)
    lengths = {(e["dataset"], e["episode_index"]): e["length"] for e in all_episodes(root)}
    assert t["hours"] == pytest.approx(sum(lengths[k] for k in want) / 36000)


@pytest.mark.ray
def test_group_by_hours_against_info_json(root: Path) -> None:
    result = RUNNER.invoke(app, ["query", "--root", str(root), "--group-by", "category", "--format", "json"])
    assert result.exit_code == 0, result.output
    got = {r["category"]: r for r in json.loads(result.output)}
    for ds in ("egodex", "robot_a", "sim_b", "video_c"):
        info = json.loads((root / ds / "meta/info.json").read_text())
        row = got[card(root / ds)["embodiment_kind"]]
        assert row["hours"] == pytest.approx(info["total_frames"] / 10 / 3600)
        assert (row["episodes"], row["frames"]) == (info["total_episodes"], info["total_frames"])


@pytest.mark.ray
def test_query_csv_and_table(root: Path) -> None:
    where = 'quality_tier == "low"'
    csv = RUNNER.invoke(
        app,
        [
            "query",
            "--root",
            str(root),
            "--where",
            where,
            "--format",
            "csv",
            "--columns",
            "dataset,episode_index,quality_tier",
        ],
    )
    lines = csv.output.strip().splitlines()
    want = [
        f"{e['dataset']},{e['episode_index']},low" for e in all_episodes(root) if e["quality_tier"] == "low"
    ]
    assert lines == ["dataset,episode_index,quality_tier", *want]
    table = RUNNER.invoke(app, ["query", "--root", str(root), "--where", where, "--limit", "1"])
    assert table.exit_code == 0 and f"{len(want)} episodes (first 1 shown)" in table.output


@pytest.mark.ray
def test_state_valid_selects_by_dimension(fresh: Path) -> None:
    c = card(fresh / "sim_b")
    c["valid_action_dims"] = [n for n in c["valid_action_dims"] if not n.startswith("left.")]
    (fresh / "sim_b/meta/dataset_card.json").write_text(json.dumps(c))
    build(fresh)
    df = run_query(fresh, Query(where='action_valid("left.gripper")', columns=["dataset"]))
    assert sorted(set(df["dataset"])) == ["egodex", "robot_a", "video_c"]
    df = run_query(fresh, Query(where='action_valid("right.keypoint")', columns=["dataset"]))
    assert df.height == 16


@pytest.mark.ray
@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("__import__('os').system('touch PWNED')", "unknown function"),
        ("seconds.__class__ == 1", "expected a column name"),
        ("(lambda: 1)()", "unknown function"),
        ("episodes > 3", "unknown column 'episodes'"),
        ('quality_tier == "hgh"', "quality_tier has no value 'hgh'"),
        ("seconds > ", "syntax error"),
    ],
)
def test_unsafe_or_bad_query_rejected(
    root: Path, where: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = RUNNER.invoke(app, ["query", "--root", str(root), "--where", where])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "PWNED").exists()


def test_query_without_catalog_says_build_first(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["query", "--root", str(tmp_path), "--where", "seconds > 1"])
    assert result.exit_code == 2 and "catalog build" in result.output


# --------------------------------------------------------------------------- stats


@pytest.mark.ray
def test_stats_per_category_and_source(root: Path) -> None:
    cats = {r["category"]: r for r in by_category(root).iter_rows(named=True)}
    for ds in ("egodex", "robot_a", "sim_b", "video_c"):
        info = json.loads((root / ds / "meta/info.json").read_text())
        row = cats[card(root / ds)["embodiment_kind"]]
        assert row["hours"] == pytest.approx(info["total_frames"] / 36000)
        tiers = [e["quality_tier"] for e in jsonl(root / ds)]
        assert [row["high"], row["low"], row["actionless"]] == [
            tiers.count(t) for t in ("high", "low", "actionless")
        ]
    total_frames = sum(
        json.loads((root / d / "meta/info.json").read_text())["total_frames"]
        for d in ("egodex", "robot_a", "sim_b", "video_c")
    )
    assert cats["total"]["hours"] == pytest.approx(total_frames / 36000)
    assert (cats["total"]["episodes"], cats["total"]["datasets"]) == (16, 4)
    src = by_source(root)
    assert src.select("category", "source").rows()[0] == ("real_robot", "robosrc")


@pytest.mark.ray
def test_stats_cli_and_plot(root: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "ei30k.png"
    result = RUNNER.invoke(app, ["stats", "--root", str(root), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "per category" in result.output and "human_actionless" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
