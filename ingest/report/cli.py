"""`ingest report` and `ingest view`, registered on the `ingest` CLI (ingest/cli.py); thin, imports lazy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from schemas.errors import Refused

if TYPE_CHECKING:
    from schemas.tiers import QualityConfig

PathArg = Annotated[Path, typer.Argument(help="A dataset folder (ROOT/NAME).")]
REPORT_DIR = "report"


def _dataset(path: Path) -> Path:
    if not (path / "meta/info.json").is_file():
        raise Refused(
            f"{path} holds no dataset (no meta/info.json)", "give ROOT/NAME, a folder `ingest run` wrote"
        )
    return path


def _quality(path: Path, pipelines: Path | None) -> QualityConfig | None:
    """The tier rules of the card's section, from `pipelines` (default: the project's pipelines.yaml)."""
    from ingest.job import DEFAULT_PIPELINES
    from ingest.report.load import read_model
    from schemas.card import DatasetCard
    from schemas.lerobot import CARD_PATH
    from schemas.pipelines import PipelinesFile

    card = read_model(path, CARD_PATH, DatasetCard)
    sources = PipelinesFile.load(pipelines or DEFAULT_PIPELINES).sources
    return sources[card.source].quality if card.source in sources else None


def report_command(
    path: PathArg,
    out: Annotated[Path | None, typer.Option(help="Folder to write (default: PATH/report).")] = None,
    frames: Annotated[int, typer.Option(min=1, max=32, help="Filmstrip frames per episode and camera.")] = 6,
    width: Annotated[int, typer.Option(min=64, max=1920, help="Filmstrip frame width, pixels.")] = 320,
    workers: Annotated[
        int, typer.Option(min=0, help="Processes drawing episodes (0: this machine's CPUs).")
    ] = 0,
    pipelines: Annotated[
        Path | None, typer.Option(help="pipelines.yaml holding the tier rules shown.")
    ] = None,
) -> None:
    """Write a static HTML report of a dataset (open OUT/index.html in a browser; no server needed)."""
    from ingest.report.build import write_report
    from ingest.report.episode import StripOptions

    root = _dataset(path)
    summary = write_report(
        root, out or root / REPORT_DIR, _quality(root, pipelines), StripOptions(frames, width), workers
    )
    index = summary.out / "index.html"
    typer.echo(f"report of {summary.episodes} episodes written to {index} ({summary.seconds:.1f} s)")


def view_command(
    path: PathArg,
    episode: Annotated[int, typer.Option(min=0, help="The episode_index to record.")],
    out: Annotated[
        Path | None, typer.Option(help="The .rrd file (default: PATH/report/episode_N.rrd).")
    ] = None,
) -> None:
    """Write one episode as a rerun recording (.rrd): video, 3D hands and wrist frames, state and action."""
    from ingest.report.rrd import write_recording

    root = _dataset(path)
    target = out or root / REPORT_DIR / f"episode_{episode:06d}.rrd"
    write_recording(root, episode, target)
    typer.echo(f"recording written to {target}; open it with: rerun {target}")
