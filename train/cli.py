"""`train`: the LDA MM-DiT trainer (issue 5 builds the model and the loop)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Train the latent-dynamics action model.", no_args_is_help=True)


@app.command()
def launch(mixture: Annotated[Path, typer.Option(help="Mixture YAML built with `catalog`.")]) -> None:
    """Train on a mixture (not built yet: issue 5)."""
    typer.echo(f"train launch is not implemented yet (issue 5); mixture: {mixture}", err=True)
    raise typer.Exit(2)


@app.callback()
def main() -> None:
    """Trainer commands."""


if __name__ == "__main__":
    app()
