"""Listing commands: plugins, racks, presets, effects."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from serumrnn.cli.common import console, friendly_errors, print_json

app = typer.Typer()

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
RackOption = Annotated[str, typer.Option("--rack", help="Rack to list.")]


def _prepend_plugin_path(folders: list[Path]) -> None:
    """Search ``folders`` first for plugin files, in this process (SERUMRNN_PLUGIN_PATH)."""
    import os

    from serumrnn.core.errors import ParameterError

    for folder in folders:
        if not folder.is_dir():
            raise ParameterError(f"Plugin folder {folder} does not exist; give a folder that holds plugin files.")
    current = [part for part in os.environ.get("SERUMRNN_PLUGIN_PATH", "").split(os.pathsep) if part]
    os.environ["SERUMRNN_PLUGIN_PATH"] = os.pathsep.join([*(str(f) for f in folders), *current])


def _manager():
    from serumrnn.core import get_plugin_manager

    return get_plugin_manager()


@app.command("plugins")
@friendly_errors
def plugins_command(as_json: JsonOption = False) -> None:
    """List loaded plugins and what each registers."""
    contributions = _manager().plugin_contributions()
    if as_json:
        print_json(contributions)
        return
    table = Table(title="serumrnn plugins")
    for column in ("plugin", "kind", "registers"):
        table.add_column(column)
    for plugin, kinds in contributions.items():
        for kind, names in (kinds or {"-": []}).items():
            table.add_row(plugin, kind, ", ".join(names))
    console.print(table)


@app.command("racks")
@friendly_errors
def racks_command(
    as_json: JsonOption = False,
    plugin_path: Annotated[
        list[Path] | None,
        typer.Option("--plugin-path", help="Folder with plugin files, searched first (repeat for more; "
                     "or set SERUMRNN_PLUGIN_PATH)."),
    ] = None,
) -> None:
    """List racks, whether they are available here, and their effects."""
    if plugin_path:
        _prepend_plugin_path(plugin_path)
    manager = _manager()
    rows = []
    for spec in manager.racks:
        available, reason = spec.availability()
        effects = list(manager.rack(spec.name).effect_names) if available else list(spec.effect_names)
        rows.append({"name": spec.name, "available": available, "reason": reason,
                     "description": spec.description, "effects": effects})
    if as_json:
        print_json(rows)
        return
    table = Table(title="serumrnn racks")
    for column in ("rack", "available", "effects", "description"):
        table.add_column(column)
    for row in rows:
        status = "yes" if row["available"] else f"no: {row['reason']}"
        table.add_row(row["name"], status, ", ".join(row["effects"]), row["description"])
    console.print(table)


@app.command("presets")
@friendly_errors
def presets_command(rack: RackOption = "builtin", as_json: JsonOption = False) -> None:
    """List the synth presets of a rack, by preset group."""
    synth = _manager().rack(rack).synth
    rows = [{"synth": synth.name, "group": p.group, "preset": p.name, "description": p.description,
             "generated": False} for p in synth.presets]
    # A generated family (varied-<seed>) is addressed by seed: one row for the whole group.
    rows += [{"synth": synth.name, "group": group, "preset": description.split(" ", 1)[0],
              "description": description.split(": ", 1)[-1], "generated": True}
             for group, description in synth.families.items()]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"presets of rack {rack} ({synth.label or synth.name})")
    for column in ("group", "preset", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["group"], row["preset"], row["description"])
    console.print(table)


def _range_text(spec) -> str:
    if spec.kind == "categorical":
        return f"{spec.n_classes} classes: " + ", ".join(spec.classes)
    return " U ".join(f"[{low:g}, {high:g}]" for low, high in spec.sample_ranges)


def _meaning(spec) -> str:
    if spec.kind == "categorical":
        return "class i of n owns knob [i/n, (i+1)/n)"
    if not spec.unit:
        return "0-100%"
    return f"{spec.describe(0.0)} .. {spec.describe(1.0)} ({spec.scale})"


@app.command("effects")
@friendly_errors
def effects_command(rack: RackOption = "builtin", as_json: JsonOption = False) -> None:
    """List the effects of a rack with every knob: sampled range, default, meaning."""
    the_rack = _manager().rack(rack)
    if as_json:
        print_json([{"name": e.name, "label": e.label, "description": e.description,
                     "knobs": [spec.to_json() for spec in e.params]} for e in the_rack.effects.values()])
        return
    table = Table(title=f"effects of rack {rack} (knobs are normalised to [0, 1])")
    for column in ("effect", "knob", "kind", "sampled range", "default", "physical meaning"):
        table.add_column(column)
    for effect in the_rack.effects.values():
        for index, spec in enumerate(effect.params):
            table.add_row(
                f"{effect.name} ({effect.label})" if index == 0 else "",
                spec.name,
                spec.kind,
                _range_text(spec) if spec.sampled else "not sampled",
                f"{spec.default:g} ({spec.describe(spec.default)})",
                _meaning(spec),
            )
        table.add_section()
    console.print(table)
