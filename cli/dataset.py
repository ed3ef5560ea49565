"""``serumrnn generate`` and ``serumrnn dataset info``."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from serumrnn.cli.common import console, friendly_errors, print_json
from serumrnn.cli.progress import RichProgress

app = typer.Typer()
dataset_app = typer.Typer(help="Inspect generated datasets.", no_args_is_help=True)


def _size_text(n_bytes: int) -> str:
    size = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:,.1f} TiB"  # pragma: no cover


@app.command("generate")
@friendly_errors
def generate_command(
    out: Annotated[Path, typer.Option("--out", help="Dataset directory (created; rerun the same command to resume).")],
    group: Annotated[str, typer.Option("--group", help="Preset group: basic, advanced, modulating, all or varied (only generated patches).")],
    chains_per_combo: Annotated[int, typer.Option("--chains-per-combo", help="Chains per preset and effect subset.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same bytes).")] = 0,
    rack: Annotated[str, typer.Option("--rack", help="Rack to render with.")] = "builtin",
    workers: Annotated[int | None, typer.Option("--workers", help="Worker processes (default: all cores).")] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Run on Ray: 'local' or a cluster address (needs serumrnn\\[distributed]).")
    ] = None,
    varied: Annotated[int, typer.Option("--varied", min=0, help="Add this many generated patches (varied-<seed>).")] = 0,
    varied_first_seed: Annotated[
        int, typer.Option("--varied-first-seed", min=0, help="Seed of the first generated patch.")] = 0,
    varied_chains_per_combo: Annotated[
        int | None, typer.Option("--varied-chains-per-combo", min=1,
                                 help="Chains per generated patch and effect subset (default: --chains-per-combo).")
    ] = None,
) -> None:
    """Generate a training dataset: sampled effect chains, every sub-chain rendered, features stored."""
    from serumrnn.core.dataset import generate_dataset

    with RichProgress() as progress:
        summary = generate_dataset(
            out, rack=rack, group=group, chains_per_combo=chains_per_combo, seed=seed, workers=workers,
            ray_address=ray_address, progress=progress, varied=varied, varied_first_seed=varied_first_seed,
            varied_chains_per_combo=varied_chains_per_combo,
        )
    if summary["skipped"]:
        console.print(f"Dataset {out} is already complete ({summary['renders']:,} renders); nothing to do.")
        return
    reused = summary["renders"] - summary["rendered_now"]
    console.print(
        f"Wrote {summary['renders']:,} renders to {out}"
        + (f" ({reused:,} kept from an earlier run)" if reused else "")
        + f": {_size_text(summary['size_bytes'])} on disk, {summary['seconds']:.1f} s, "
        f"{summary['renders_per_s']:,.0f} renders/s."
    )


def dataset_info(path: Path) -> dict:
    """Counts per preset, subset and split, and the size on disk, of a dataset."""
    from serumrnn.core.dataset import size_on_disk
    from serumrnn.core.views import DatasetReader

    reader = DatasetReader(path)
    manifest = reader.manifest
    presets = manifest.column("preset").to_pylist()
    subsets = manifest.column("subset").to_pylist()
    splits = manifest.column("split").to_pylist()
    targets = manifest.column("is_target").to_pylist()

    def counts(keys: list[str]) -> dict[str, dict[str, int]]:
        renders = Counter(keys)
        chains = Counter(key for key, is_target in zip(keys, targets) if is_target)
        return {key: {"renders": renders[key], "chains": chains[key]} for key in renders}

    config = reader.metadata["config"]
    return {
        "path": str(path),
        "config": config,
        "fingerprint": reader.metadata["fingerprint"],
        "renders": manifest.num_rows,
        "chains": len(reader.chains),
        "shards": reader.metadata["counts"]["shards"],
        "size_bytes": size_on_disk(path),
        "presets": counts(presets),
        "subsets": counts(subsets),
        "splits": counts(splits),
    }


@dataset_app.command("info")
@friendly_errors
def info_command(
    path: Annotated[Path, typer.Argument(help="Dataset directory made by serumrnn generate.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Counts per preset, effect subset and split, and the size on disk."""
    info = dataset_info(path)
    if as_json:
        print_json(info)
        return
    config = info["config"]
    console.print(
        f"[bold]{os.fspath(path)}[/bold]: rack {config['rack']}, group {config['group']}, "
        f"{config['chains_per_combo']} chains per combo, seed {config['seed']}; "
        f"{info['renders']:,} renders, {info['chains']:,} chains, {info['shards']} shards, "
        f"{_size_text(info['size_bytes'])} on disk."
    )
    for title, key in (("preset", "presets"), ("split", "splits"), ("effect subset", "subsets")):
        table = Table(title=f"per {title}")
        for column in (title, "chains", "renders"):
            table.add_column(column, justify="left" if column == title else "right")
        for name, row in info[key].items():
            table.add_row(name, f"{row['chains']:,}", f"{row['renders']:,}")
        console.print(table)
