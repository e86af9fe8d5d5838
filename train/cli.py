"""`train`: the LDA MM-DiT trainer (issue 5 builds the model and the loop)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Train the latent-dynamics action model.", no_args_is_help=True)

TRAINER_MISSING = (
    "the trainer itself comes with issue 5: the mixture is valid and resolved, nothing was trained"
)


@app.command()
def launch(
    mixture: Annotated[Path, typer.Option(help="Mixture YAML built with `catalog mixture`.")],
    root: Annotated[Path, typer.Option(help="The datasets root whose catalog the mixture resolves against.")],
) -> None:
    """Validate the mixture, resolve it against ROOT's catalog and print the plan (training: issue 5)."""
    from catalog.mixture import MixtureFileError, load_mixture, plan_lines, plan_table, resolve
    from catalog.query import CatalogMissing, console

    try:
        plan = resolve(root, load_mixture(mixture))
    except (MixtureFileError, CatalogMissing) as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from None
    out = console()
    out.print(plan_table(plan))
    for line in plan_lines(plan):
        out.print(line)
    if not plan.episodes:
        typer.echo(f"no episode of {root} matches the mixture {plan.mixture}", err=True)
        raise typer.Exit(1)
    typer.echo(TRAINER_MISSING, err=True)
    raise typer.Exit(2)


@app.callback()
def main() -> None:
    """Trainer commands."""


if __name__ == "__main__":
    app()
