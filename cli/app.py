"""Root typer app: merges the command modules."""

from __future__ import annotations

import typer

from serumrnn.cli import budget, bundle, dataset, demo, evaluate, listing, render, serve, suggest, train

app = typer.Typer(
    name="serumrnn",
    help="Step-by-step sound design: from an input sound to a target, effect by effect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for module in (listing, render, suggest, demo, serve, dataset, train, evaluate, budget, bundle):
    app.add_typer(module.app)
app.add_typer(dataset.dataset_app, name="dataset", help="Inspect generated datasets.")


def main() -> None:
    app()
