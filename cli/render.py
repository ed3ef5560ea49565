"""``serumrnn render`` and ``serumrnn compare``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from serumrnn.cli.common import console, friendly_errors, parse_fx, print_json

app = typer.Typer()


@app.command("render")
@friendly_errors
def render_command(
    source: Annotated[str, typer.Argument(help="Preset name (see `serumrnn presets`) or an audio file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="WAV file to write.")],
    fx: Annotated[list[str] | None, typer.Option("--fx", help='Effect step, e.g. "distortion:mode=tube,drive=0.7"; repeat in chain order.')] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Also save the dB mel spectrogram as PNG.")] = None,
    rack: Annotated[str, typer.Option("--rack", help="Rack to render with.")] = "builtin",
) -> None:
    """Render a preset (or audio file) through an effect chain to a WAV file."""
    from serumrnn.core import get_plugin_manager
    from serumrnn.core.audio import load_audio, looks_like_audio_path, write_wav

    the_rack = get_plugin_manager().rack(rack)
    chain = [parse_fx(text, the_rack) for text in fx or []]
    if looks_like_audio_path(source):
        audio_in = load_audio(source, sample_rate=the_rack.sample_rate, duration_s=the_rack.duration_s)
    else:
        the_rack.synth.preset(source)
        audio_in = source
    audio = the_rack.render(audio_in, chain)
    write_wav(output, audio, the_rack.sample_rate)
    if png is not None:
        from serumrnn.core.features import LibrosaFeatureExtractor
        from serumrnn.core.plots import plot_mels

        steps = " -> ".join(name for name, _ in chain) or "dry"
        try:
            plot_mels([(f"{Path(source).name}: {steps}", LibrosaFeatureExtractor().extract(audio).db_mel)], png)
        except BaseException:
            output.unlink(missing_ok=True)  # no half result: both files or none
            raise
    console.print(f"Wrote {output}" + (f" and {png}" if png else "") + f" ({len(chain)} effect(s)).")


@app.command("compare")
@friendly_errors
def compare_command(
    output: Annotated[Path, typer.Argument(help="The sound to judge.")],
    target: Annotated[Path, typer.Argument(help="The target sound.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """The six distances between two sounds (1 s, mono, 44.1 kHz; lower is closer, except PCC)."""
    from serumrnn.core.audio import load_audio
    from serumrnn.core.features import LibrosaFeatureExtractor
    from serumrnn.core.metrics import METRICS, TABLE_SCALE, all_metrics

    audio_a = load_audio(output)
    audio_b = load_audio(target, allow_silent=False)
    extractor = LibrosaFeatureExtractor()
    values = all_metrics(extractor.extract(audio_a), extractor.extract(audio_b), audio_a, audio_b)
    scaled = {name: values[name] * TABLE_SCALE[name] for name in METRICS}
    if as_json:
        print_json({"output": str(output), "target": str(target), "metrics": scaled,
                    "scale": dict(TABLE_SCALE), "raw": values})
        return
    table = Table(title=f"{output.name} vs {target.name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("better")
    for name in METRICS:
        label = f"{name.upper()}" + (" x100" if TABLE_SCALE[name] != 1 else "")
        table.add_row(label, f"{scaled[name]:.4f}", "higher" if name == "pcc" else "lower")
    console.print(table)
