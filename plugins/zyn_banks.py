"""ZynAddSubFX bank instruments played by the linux-vst rack's synth.

Debian's ``zynaddsubfx-data`` ships about 1,300 instruments (``.xiz``: an instrument's
XML, usually gzipped) in banks under ``/usr/share/zynaddsubfx/banks``. The rack plays a
preset by loading a plugin state (``.fxb``: a VST2 chunk holding ZynAddSubFX's whole
master XML); an instrument becomes such a state by putting its ``<INSTRUMENT>`` into part
0 of the rack's default patch. The document takes the instrument's version, because
ZynAddSubFX converts older instruments' values (LFO rates, volumes, filter frequencies)
by the version of the file they come in, as it does when it loads an ``.xiz`` itself.

Bank instruments draw random oscillator phases and detunes from the plugin's global
random generator, which is seeded once per process: the same instrument sounds
different on its second render in a process, but a process's first render is always the
same. ``render_instruments`` therefore plays each instrument in a fresh process. Even so,
instruments with a PADsynth part (about a quarter) sound different on every run, so
``bank_instruments`` leaves them out.
"""

from __future__ import annotations

import gzip
import re
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from serumrnn.core.errors import PluginError

BANKS_DIR = Path("/usr/share/zynaddsubfx/banks")
RACK = "linux-vst"
# The rack's preset that is the plugin's default patch with one AddSynth voice.
BASE_PRESET = "sine"
_CHUNK_SIZE_OFFSET = 156  # fxb header: 7 big-endian int32 fields, then 128 reserved bytes
_ROOT = re.compile(rb"<ZynAddSubFX-data\b[^>]*>")
_INSTRUMENT = re.compile(rb"<INSTRUMENT>.*?</INSTRUMENT>", re.S)
_PADSYNTH_ON = b'name="pad_enabled" value="yes"'


def bank_instruments(folder: Path | None = None) -> dict[str, list[Path]]:
    """Bank name -> its reproducible ``.xiz`` files (no PADsynth part), both sorted
    (``folder``: ``BANKS_DIR``); one sentence when none are installed."""
    folder = BANKS_DIR if folder is None else folder
    banks = {}
    if folder.is_dir():
        for bank in sorted(path for path in folder.iterdir() if path.is_dir()):
            files = [xiz for xiz in sorted(bank.glob("*.xiz")) if _reproducible(xiz)]
            if files:
                banks[bank.name] = files
    if not banks:
        raise PluginError(f"ZynAddSubFX's instrument banks are not installed (no .xiz files under {folder}); "
                          "install them with `apt-get install zynaddsubfx-data`.")
    return banks


def _reproducible(xiz: Path) -> bool:
    try:
        return _PADSYNTH_ON not in _instrument_xml(xiz)
    except (OSError, EOFError, gzip.BadGzipFile):
        return False  # unreadable: never chosen


def _instrument_xml(xiz: Path) -> bytes:
    raw = xiz.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def instrument_state(base_state: bytes, xiz: Path) -> bytes:
    """The plugin state (``.fxb`` bytes) of ``base_state`` with part 0 playing ``xiz``."""
    (size,) = struct.unpack(">I", base_state[_CHUNK_SIZE_OFFSET:_CHUNK_SIZE_OFFSET + 4])
    chunk = base_state[_CHUNK_SIZE_OFFSET + 4:]
    if size != len(chunk) or len(_INSTRUMENT.findall(chunk)) < 1 or not _ROOT.search(chunk):
        raise PluginError(f"The linux-vst rack's {BASE_PRESET} preset is not a ZynAddSubFX state this version "
                          "can read; reinstall serumrnn.")
    try:
        xml = _instrument_xml(xiz)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise PluginError(f"ZynAddSubFX instrument {xiz} cannot be read ({exc}).") from None
    instrument, root = _INSTRUMENT.search(xml), _ROOT.search(xml)
    if instrument is None or root is None:
        raise PluginError(f"ZynAddSubFX instrument {xiz} holds no <INSTRUMENT>; choose another instrument.")
    chunk = _INSTRUMENT.sub(lambda _: instrument.group(0), chunk, count=1)
    chunk = _ROOT.sub(lambda _: root.group(0), chunk, count=1)
    return base_state[:_CHUNK_SIZE_OFFSET] + struct.pack(">I", len(chunk)) + chunk


def _play_in_this_process(task: tuple[str, bytes, int, float, int]) -> np.ndarray:
    from serumrnn.core.registry import get_plugin_manager

    name, state, note, duration_s, sample_rate = task
    synth = get_plugin_manager().rack(RACK).synth
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{name}.fxb"
        path.write_bytes(state)
        return synth.render_state(path, note=note, duration_s=duration_s, sample_rate=sample_rate, scale=False)


def render_instruments(files: Sequence[Path], *, note: int = 60, duration_s: float = 1.0,
                       sample_rate: int = 44100, workers: int = 1) -> list[np.ndarray]:
    """Each instrument's note through the rack's synth at the plugin's own level (float32
    ``(n_samples,)``; the synth's ``scaled`` brings it to the rack's peak, which would
    also blow up a near-silent render), each in a fresh process so it is reproducible."""
    import multiprocessing

    from serumrnn.core.registry import get_plugin_manager

    synth = get_plugin_manager().rack(RACK).synth
    base_file = synth.preset_files.get(BASE_PRESET)
    if base_file is None or not base_file.is_file():
        raise PluginError(f"The linux-vst rack has no {BASE_PRESET} preset file; reinstall serumrnn.")
    base = base_file.read_bytes()
    tasks = [(f"instrument-{index}", instrument_state(base, Path(xiz)), note, duration_s, sample_rate)
             for index, xiz in enumerate(files)]
    if not tasks:
        return []
    # spawn: a forked child would inherit this process's random generator state
    with multiprocessing.get_context("spawn").Pool(processes=max(1, min(workers, len(tasks))),
                                                   maxtasksperchild=1) as pool:
        return pool.map(_play_in_this_process, tasks, chunksize=1)
