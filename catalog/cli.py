"""`catalog`: the index of ingested episodes (issue 4 adds the index, queries and mixtures)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Query ingested datasets and build training mixtures.", no_args_is_help=True)


@app.command()
def datasets(
    root: Annotated[Path, typer.Argument(help="A datasets root (the --output of ingest run).")],
) -> None:
    """List the LeRobot datasets under ROOT with their episode and frame counts."""
    from schemas.lerobot import INFO_PATH, InfoJson

    found = sorted(p.parent.parent for p in root.glob(f"*/{INFO_PATH}"))
    for ds in found:
        info = InfoJson.model_validate_json((ds / INFO_PATH).read_text())
        typer.echo(f"{ds.name}\t{info.total_episodes} episodes\t{info.total_frames} frames\t{info.fps} fps")
    if not found:
        typer.echo(f"no dataset under {root}", err=True)
        raise typer.Exit(1)


@app.callback()
def main() -> None:
    """Catalog commands."""


if __name__ == "__main__":
    app()
