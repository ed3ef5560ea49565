"""``serumrnn demo``: until trained bundles ship, render every preset of the built-in
rack through a random effect chain and write WAVs and a mel-spectrogram PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from serumrnn.cli.common import console, friendly_errors

app = typer.Typer()


@app.command("demo")
@friendly_errors
def demo_command(
    seed: Annotated[int, typer.Option("--seed", help="Random seed for the chains.")] = 0,
    effects: Annotated[int, typer.Option("--effects", min=0, max=5, help="Effects per chain.")] = 3,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("demo-out"),
) -> None:
    """Render every built-in preset through a random effect chain (WAVs + spectrogram PNG)."""
    import numpy as np

    from serumrnn.core import get_plugin_manager
    from serumrnn.core.audio import write_wav
    from serumrnn.core.errors import OutputError
    from serumrnn.core.features import LibrosaFeatureExtractor
    from serumrnn.core.params import sample_knobs
    from serumrnn.core.plots import plot_mels

    rack = get_plugin_manager().rack("builtin")
    extractor = LibrosaFeatureExtractor()
    rng = np.random.default_rng(seed)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create output folder '{out}' ({exc.strerror}); choose another --out.") from None
    table = Table(title=f"built-in rack: random chains (seed {seed})")
    for column in ("preset", "group", "chain"):
        table.add_column(column)
    panels = []
    presets = rack.synth.presets
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("rendering presets", total=len(presets))
        for preset in presets:
            names = list(rng.permutation(rack.effect_names)[:effects])
            chain = [(name, sample_knobs(rack.effect(name).params, rng)) for name in names]
            audio = rack.render(preset.name, chain)
            write_wav(out / f"{preset.name}-dry.wav", rack.dry(preset.name), rack.sample_rate)
            write_wav(out / f"{preset.name}-fx.wav", audio, rack.sample_rate)
            panels.append((f"{preset.name}\n" + " > ".join(names), extractor.extract(audio).db_mel))
            steps = " Then ".join(f"{rack.effect(n).label}: {rack.effect(n).describe_knobs(k)}" for n, k in chain)
            table.add_row(preset.name, preset.group, steps)
            progress.advance(task)
    plot_mels(panels, out / "spectrograms.png", suptitle="Each preset through a random effect chain", columns=4)
    console.print(table)
    console.print(f"Wrote {2 * len(presets)} WAVs and spectrograms.png to {out}/")
