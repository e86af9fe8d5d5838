"""The reports looked at as a user does: opened from disk in headless Chromium (tests/browser.py), screenshot
taken, no console error or failed load, every image decoded, the episode count shown equal to the dataset's,
the filter answering. Skips without Chromium, except in CI (CI=true), where `make test` installed it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingest.cli import app
from tests.browser import Browser, chromium
from tests.test_report import make_dataset

pytestmark = pytest.mark.skipif(
    chromium() is None and not os.environ.get("CI"), reason="needs chromium (tools/browser.sh installs it)"
)
COUNT_JS = "document.getElementById('episode-count').dataset.count"
ROWS_JS = "document.querySelectorAll('#episodes tbody tr').length"
FILTER_JS = """(() => { const box = document.getElementById('filter'); box.value = 'low';
  box.dispatchEvent(new Event('input')); return document.getElementById('shown').textContent; })()"""


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("browser")
    root = make_dataset(base / "in", base / "out" / "egodex")
    result = CliRunner().invoke(app, ["report", str(root), "--out", str(base / "report")])
    assert result.exit_code == 0, result.output
    return root, base / "report"


def check_page(browser: Browser, page: Path, shot: Path, expressions: dict | None = None) -> dict:
    """Open `page`: no error, every image decoded, a screenshot; the values of `expressions`."""
    visit = browser.visit(page, expressions, screenshot=shot)
    assert visit.errors == [], visit.errors
    assert visit.image_widths and min(visit.image_widths) > 0, visit.image_widths
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    return visit.values


def test_index_opens_with_every_thumbnail_and_the_count(browser: Browser, report, tmp_path: Path) -> None:
    root, out = report
    episodes = [json.loads(x) for x in (root / "meta/episodes.jsonl").read_text().splitlines()]
    values = check_page(browser, out / "index.html", tmp_path / "index.png",
                        {"count": COUNT_JS, "rows": ROWS_JS, "low": FILTER_JS})  # fmt: skip
    info = json.loads((root / "meta/info.json").read_text())
    assert int(values["count"]) == values["rows"] == info["total_episodes"] == len(episodes) == 3
    assert int(values["low"]) == sum(e["quality_tier"] == "low" for e in episodes) >= 1


def test_every_episode_page_opens(browser: Browser, report, tmp_path: Path) -> None:
    _, out = report
    pages = sorted((out / "episodes").glob("episode_*.html"))
    assert len(pages) == 3
    for page in pages:
        values = check_page(
            browser,
            page,
            tmp_path / f"{page.stem}.png",
            {"curves": "document.querySelectorAll('svg.curve').length"},
        )
        assert values["curves"] >= 6  # position, angle, gripper of at least one side, state and action


def test_a_broken_image_is_caught(browser: Browser, report, tmp_path: Path) -> None:
    """The check itself: a page whose image is missing reports the failed load and a zero width."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img src="missing.jpg"><p>x</p></body></html>')
    visit = browser.visit(page)
    assert visit.image_widths == [0] and any(
        "missing.jpg" in e or "ERR_FILE_NOT_FOUND" in e for e in visit.errors
    )


def test_catalog_report_opens_with_the_roots_count(browser: Browser, report, tmp_path: Path) -> None:
    from catalog.cli import app as catalog_app

    root, _ = report
    runner = CliRunner()
    assert runner.invoke(catalog_app, ["build", str(root.parent)]).exit_code == 0
    out = tmp_path / "catalog"
    args = ["report", str(root.parent), "--out", str(out), "--mixture", "mixtures/ei30k.yaml"]
    result = runner.invoke(catalog_app, args)
    assert result.exit_code == 0, result.output
    values = check_page(browser, out / "index.html", tmp_path / "catalog.png", {"count": COUNT_JS})
    assert int(values["count"]) == 3
