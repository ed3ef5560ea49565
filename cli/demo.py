"""``serumrnn demo``: a hidden random effect chain turns a preset into a target; the
shipped model bundle finds the steps back, shown beside the hidden truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from serumrnn.cli.common import console, friendly_errors
from serumrnn.cli.suggest import print_session

app = typer.Typer()


@app.command("demo")
@friendly_errors
def demo_command(
    seed: Annotated[int, typer.Option("--seed", help="Seed of the preset, the hidden chain and its knobs.")] = 0,
    preset: Annotated[str | None, typer.Option("--preset", help="Preset to start from (default: picked by the seed).")] = None,
    effects: Annotated[int, typer.Option("--effects", min=1, max=5, help="Effects in the hidden chain.")] = 3,
    bundle: Annotated[str | None, typer.Option("--bundle", help="Shipped bundle name or folder (default: all).")] = None,
    selector: Annotated[str, typer.Option("--selector", help="Selector to use.")] = "rnn",
    out: Annotated[Path, typer.Option("--out", help="Output folder (replaced if it exists).")] = Path("demo-out"),
) -> None:
    """Hide a random effect chain on a preset, then let serumrnn find the steps back."""
    import numpy as np

    from serumrnn.core import get_plugin_manager
    from serumrnn.core.params import sample_knobs
    from serumrnn.core.runtime import check_output_dir
    from serumrnn.core.session import Instruction, resolve_bundle, suggest, write_session

    check_output_dir(out, replace=True)
    rack = get_plugin_manager().rack("builtin")
    loaded = resolve_bundle(bundle, rack)
    rng = np.random.default_rng(seed)
    # Presets of the bundle's group: a group bundle has only seen those.
    names = list(rack.synth.groups().get(loaded.preset_group, [p.name for p in rack.synth.presets]))
    chosen = preset if preset is not None else names[int(rng.integers(len(names)))]
    rack.synth.preset(chosen)
    order = [str(name) for name in rng.permutation(rack.effect_names)[:effects]]
    hidden = [(name, sample_knobs(rack.effect(name).params, rng)) for name in order]
    target = rack.render(chosen, hidden)
    with console.status(f"Finding the steps from {chosen} to the hidden target...", spinner="dots"):
        session = suggest(chosen, target, bundle=loaded, selector=selector, seed=seed)

    truth = Table(title=f"The hidden chain on preset {chosen} (seed {seed})")
    truth.add_column("step", justify="right")
    truth.add_column("hidden effect and knobs")
    described = []
    for index, (name, knobs) in enumerate(hidden, start=1):
        effect = rack.effect(name)
        sampled = {spec.name: knobs[spec.name] for spec in effect.sampled_params}
        described.append(Instruction.of(index, effect, sampled).action)
        truth.add_row(str(index), described[-1])
    console.print(truth)
    print_session(session, title=f"What serumrnn suggests ({selector}, bundle {loaded.path.name}, "
                                 f"preset group {loaded.preset_group})")
    found = [step.effect for step in session.steps[: session.best_index]]
    hits = len(set(found) & set(order))
    console.print(f"Hidden effects among the kept steps: {hits} of {len(order)} "
                  f"(kept: {', '.join(found) or 'none'}; hidden: {', '.join(order)}).")
    if session.revision is not None and session.revision.changes:
        revised = [name for name, _ in session.revision.chain]
        console.print(f"Revised chain: {', '.join(revised)} ({len(set(revised) & set(order))} of {len(order)} hidden "
                      f"effects{', in the hidden order' if revised == order else ''}).")
    write_session(session, out, replace=True, extra_json={
        "demo": {"seed": seed, "preset": chosen,
                 "hidden_chain": [{"effect": n, "knobs": k, "instruction": text}
                                  for (n, k), text in zip(hidden, described)]}
    })
    console.print(f"Wrote the input, each step and the target as WAV, session.json and progression.png to {out}/")
    # soft_wrap: a wrapped link cannot be clicked or pasted
    console.print(f"Listen to every step: open {(out / 'index.html').resolve().as_uri()}", soft_wrap=True)
