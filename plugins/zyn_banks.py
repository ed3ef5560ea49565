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

``case_set()`` is the unseen set ``zynaddsubfx`` (``core/unseen.py``): bank instruments (a
synth no one here designed; not the linux-vst rack's four presets) through random chains
of built-in effects. Register it with ``core.unseen.register_case_set``.
"""

from __future__ import annotations

import functools
import gzip
import re
import struct
import tempfile
import zlib
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
SET_NAME = "zynaddsubfx"
MAX_INSTRUMENTS = 24
# A raw ZynAddSubFX render quieter than this (-60 dBFS) does not sound at C4.
INSTRUMENT_SILENT_PEAK = 1e-3
INSTRUMENT_TRIES = 4


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


# -- the unseen set ------------------------------------------------------------------------
def _check_cases() -> None:
    from serumrnn.core.unseen import vst_rack

    vst_rack(SET_NAME)
    bank_instruments()


def pick_instruments(seed: int, count: int, *, workers: int = 1) -> list[tuple[str, np.ndarray]]:
    """``count`` bank instruments that sound at C4, as ``(bank/name, raw audio)``: one
    bank per instrument in a seeded order of the banks (so they spread over banks), a
    seeded instrument within it, the next one of that bank when it is silent, and an
    instrument of the following banks when a bank stays silent."""
    banks = bank_instruments()
    names = list(banks)
    order = np.random.default_rng([seed, zlib.crc32(b"zynaddsubfx")]).permutation(len(names))
    slots = [names[int(order[slot % len(names)])] for slot in range(count)]
    candidates = []
    for slot, bank in enumerate(slots):
        sharing = [other for other in range(count) if slots[other] == bank]
        shuffled = np.random.default_rng([seed, zlib.crc32(bank.encode())]).permutation(len(banks[bank]))
        candidates.append([banks[bank][int(i)] for i in shuffled[sharing.index(slot)::len(sharing)]])
    chosen: list[tuple[str, np.ndarray] | None] = [None] * count
    for attempt in range(INSTRUMENT_TRIES):
        waiting = [slot for slot in range(count) if chosen[slot] is None and attempt < len(candidates[slot])]
        renders = render_instruments([candidates[slot][attempt] for slot in waiting], workers=workers)
        for slot, audio in zip(waiting, renders):
            if float(np.max(np.abs(audio))) >= INSTRUMENT_SILENT_PEAK:
                xiz = candidates[slot][attempt]
                chosen[slot] = (f"{xiz.parent.name}/{xiz.stem}", audio)
    # A bank that stays silent at C4 (drum kits, effects) gives its slot to the next banks
    # in the seeded order, one instrument each, until one sounds.
    taken = {name for name, _ in filter(None, chosen)}
    for slot in [slot for slot in range(count) if chosen[slot] is None]:
        start = list(order).index(names.index(slots[slot]))
        for step in range(1, len(names)):
            bank = names[int(order[(start + step) % len(names)])]
            pick = np.random.default_rng([seed, zlib.crc32(bank.encode()), slot]).permutation(len(banks[bank]))[0]
            xiz = banks[bank][int(pick)]
            if f"{xiz.parent.name}/{xiz.stem}" in taken:
                continue
            audio = render_instruments([xiz], workers=1)[0]
            if float(np.max(np.abs(audio))) >= INSTRUMENT_SILENT_PEAK:
                chosen[slot] = (f"{xiz.parent.name}/{xiz.stem}", audio)
                taken.add(chosen[slot][0])
                break
    silent = [slots[slot] for slot in range(count) if chosen[slot] is None]
    if silent:
        raise PluginError(f"No instrument of ZynAddSubFX bank {silent[0]} sounded at C4 in {INSTRUMENT_TRIES} tries; "
                          "try another --seed.")
    return chosen  # type: ignore[return-value]


def _cases(count: int, seed: int, rack, loudness, workers: int = 1) -> list:
    """``count`` cases: bank instruments (``MAX_INSTRUMENTS`` at most, repeated) through
    random chains of ``rack``'s effects."""
    from serumrnn.core.unseen import case_rng, chain_length, make_case, random_chain, vst_rack

    synth = vst_rack(SET_NAME).synth
    instruments = pick_instruments(seed, min(count, MAX_INSTRUMENTS), workers=workers)
    cases = []
    for index in range(count):
        name, raw = instruments[index % len(instruments)]
        rng = case_rng(seed, SET_NAME, index)
        cases.append(make_case(SET_NAME, index, name, synth.scaled(raw), random_chain(rng, rack, chain_length(index)),
                               rack, rack, loudness))
    return cases


@functools.cache
def case_set():
    """The unseen set ``zynaddsubfx`` (one object, so registering it twice is harmless).
    core.unseen is imported here, not at the top: each instrument renders in a fresh
    process that imports this module, and should start fast."""
    from serumrnn.core.unseen import CaseSet

    return CaseSet(SET_NAME, "ZynAddSubFX bank instruments (linux-vst rack's synth), built-in effects", _cases,
                   _check_cases)
