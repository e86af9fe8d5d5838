"""`catalog report ROOT`: the overview page's numbers are the catalog's, the mixture's effective weights
are `catalog resolve`'s, the plots are written, and a dataset's own report is linked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.cli import app
from catalog.mixture import load_mixture, resolve
from ingest.cli import app as ingest_app
from tests.test_report import make_dataset

MIXTURE = Path(__file__).resolve().parents[1] / "mixtures" / "ei30k.yaml"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("catalog-report")
    ds = make_dataset(base / "in", base / "root" / "egodex")
    assert CliRunner().invoke(ingest_app, ["report", str(ds)]).exit_code == 0
    assert CliRunner().invoke(app, ["build", str(ds.parent)]).exit_code == 0
    return ds.parent


def test_overview_numbers_weights_and_links(root: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(root), "--mixture", str(MIXTURE)])
    assert result.exit_code == 0, result.output
    out = root / "catalog" / "report"
    page = (out / "index.html").read_text()
    assert re.search(r'data-count="(\d+)"', page).group(1) == "3"
    assert (out / "ei30k.png").stat().st_size > 5000 and (out / "lengths.png").stat().st_size > 5000
    plan = resolve(root, load_mixture(MIXTURE))
    (entry,) = [e for e in plan.entries if e.episodes]
    assert entry.name == "human_action" and entry.weight == pytest.approx(1.0)
    assert f"<td>{entry.name}</td><td>egodex</td><td>3</td><td>{entry.hours:.4g}</td><td>1</td>" in page
    assert '<a href="../../egodex/report/index.html">egodex</a>' in page
    assert ">catalog</a>" not in page


def test_without_a_catalog_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "catalog build" in result.output
