"""Spectrogram figures (matplotlib, headless)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from serumrnn.core.audio import atomic_output
from serumrnn.core.features import FeatureSettings, DEFAULT_SETTINGS


def plot_mels(
    panels: Sequence[tuple[str, np.ndarray]],
    path: str | os.PathLike,
    *,
    settings: FeatureSettings = DEFAULT_SETTINGS,
    suptitle: str = "",
    columns: int | None = None,
) -> Path:
    """Save dB mel spectrograms side by side, each titled, on one shared dB scale.

    ``panels``: ``(title, db_mel)`` with ``db_mel`` shape ``(n_mels, n_frames)``.
    ``columns``: panels per row (default: all in one row).
    """
    # A Figure without pyplot: pyplot's global figure list is not safe in the server's threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    count = len(panels)
    columns = min(columns or count, count)
    rows = -(-count // columns)
    figure = Figure(figsize=(2.6 * columns + 1.2, 2.7 * rows + 0.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    duration = panels[0][1].shape[1] * settings.hop_length / settings.sample_rate if count else 1.0
    low = min(float(np.min(db)) for _, db in panels)
    high = max(float(np.max(db)) for _, db in panels)
    image = None
    flat_axes = axes.ravel()
    for axis in flat_axes[count:]:
        axis.set_visible(False)
    for axis, (title, db_mel) in zip(flat_axes, panels):
        image = axis.imshow(db_mel, origin="lower", aspect="auto", cmap="magma", vmin=low, vmax=high,
                            extent=(0.0, duration, 0, db_mel.shape[0]))
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("time (s)", fontsize=8)
        axis.tick_params(labelsize=7)
    for row in axes:
        row[0].set_ylabel("mel bin (20 Hz - 16 kHz)", fontsize=8)
    if image is not None:
        figure.colorbar(image, ax=axes.ravel().tolist(), label="dB", shrink=0.9)
    if suptitle:
        figure.suptitle(suptitle, fontsize=10)
    target = Path(path)
    with atomic_output(target, suffix=".png") as temp:
        figure.savefig(temp, dpi=110, format="png")
    return target
