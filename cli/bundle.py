"""``serumrnn bundle``: maintain a model bundle folder (its ONNX exports)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from serumrnn.cli.common import console, friendly_errors, print_json

app = typer.Typer()
bundle_app = typer.Typer(help="Maintain model bundle folders.", no_args_is_help=True)
app.add_typer(bundle_app, name="bundle")


@bundle_app.command("export-onnx")
@friendly_errors
def export_onnx_command(
    folder: Annotated[Path, typer.Argument(help="Bundle folder (bundle.json and its weights files).")],
    model: Annotated[list[str] | None, typer.Option("--model", help="Export only this model (repeat for more; default: every model).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the exports as JSON.")] = False,
) -> None:
    """Write the ONNX export of each model from its stored weights (left as they are), so
    sessions run it with onnxruntime instead of torch."""
    from serumrnn.core.bundle import ModelBundle

    bundle = ModelBundle.load(folder, build_models=False, backend="torch")
    rows = bundle.export_onnx(model or None)
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"ONNX exports of bundle {folder}")
    for column in ("model", "file", "sha256", "changed"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["model"], row["file"], row["sha256"][:12], "yes" if row["changed"] else "no")
    console.print(table)
