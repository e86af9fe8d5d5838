"""The console scripts: `--help` everywhere, lazy imports, `ingest validate` exit status, `catalog`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.cli import app as catalog_app
from ingest.cli import app as ingest_app
from ingest.job import RunOptions, run
from tests.fixtures.egodex import write_dataset
from train.cli import app as train_app

RUNNER = CliRunner()


@pytest.mark.parametrize(
    ("app", "args"),
    [(ingest_app, [c]) for c in ("run", "validate", "sources", "latents")]
    + [(catalog_app, [c]) for c in ("datasets", "build", "query", "stats", "mixture", "resolve")]
    + [(train_app, [c]) for c in ("launch", "eval", "viz")],
)  # fmt: skip
def test_every_command_has_help(app, args: list[str]) -> None:
    result = RUNNER.invoke(app, [*args, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_cli_modules_import_no_heavy_dependency() -> None:
    heavy = "{'ray', 'torch', 'av', 'h5py', 'transformers'}"
    code = f"import sys, ingest.cli, catalog.cli, train.cli; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    write_dataset(tmp / "in", 2, 30)
    run(RunOptions(source="egodex", input=tmp / "in", output=tmp / "out", workers=1, progress=False))
    return tmp / "out"


@pytest.mark.ray
def test_validate_exit_status_names_file_and_field(dataset: Path, tmp_path: Path) -> None:
    ok = RUNNER.invoke(ingest_app, ["validate", str(dataset / "egodex")])
    assert ok.exit_code == 0 and "valid" in ok.output
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(dataset / "egodex"), str(broken)], check=True)
    lines = (broken / "meta/episodes.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["length"] += 1
    (broken / "meta/episodes.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    bad = RUNNER.invoke(ingest_app, ["validate", str(broken)])
    assert bad.exit_code == 1
    assert "meta/episodes.jsonl" in bad.output and "length" in bad.output


@pytest.mark.ray
def test_catalog_lists_datasets(dataset: Path) -> None:
    result = RUNNER.invoke(catalog_app, ["datasets", str(dataset)])
    frames = json.loads((dataset / "egodex/meta/info.json").read_text())["total_frames"]
    assert result.exit_code == 0
    assert result.output.split("\t")[:3] == ["egodex", "2 episodes", f"{frames} frames"]


@pytest.mark.parametrize("source", ["agibot", "egodex", "lerobot_gr00t_gr1", "videos"])
def test_run_that_discovers_nothing_fails_naming_the_layout(source: str, tmp_path: Path) -> None:
    """An input where discovery finds nothing: exit 2, one line naming what the source looks for, and
    no dataset folder written."""
    from ingest.sources import get_source
    from schemas.pipelines import PipelinesFile

    empty = tmp_path / "in"
    (empty / "unrelated").mkdir(parents=True)
    result = RUNNER.invoke(ingest_app, ["run", source, "-i", str(empty), "-o", str(tmp_path / "out")])
    fmt = PipelinesFile.load(Path(__file__).resolve().parents[1] / "pipelines.yaml").source(source).format
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    layout = get_source(fmt).layout
    assert lines[0] in (
        f"ingest run: {empty}: no {fmt} episode found; it expects {layout}",  # discovery found nothing
        f"ingest run: {empty}: meta/info.json: no LeRobot dataset here or below ({fmt} expects {layout})",
    )
    assert not (tmp_path / "out").exists()
