"""Write the ZynAddSubFX preset states shipped with the linux-vst rack.

Each preset is the plugin's own default patch (one AddSynth voice) with the voice
oscillator's base function changed: sine, triangle, saw and square (pulse at 50%).
The files are what the host saves (``save_state``): a VST2 chunk whose payload is
ZynAddSubFX's XML, so they load into the plugin with ``load_state``.

Run from the repository root after ``apt-get install zynaddsubfx-vst``::

    .venv/bin/python plugins/racks/linux-vst/make_presets.py
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import dawdreamer

PLUGIN = "/usr/lib/vst/ZynAddSubFX.so"
HERE = Path(__file__).resolve().parent
# ZynAddSubFX OscilGen base functions: 0 sine, 1 triangle, 2 pulse (par 64 = 50% duty), 3 saw.
PRESETS = {"sine": 0, "triangle": 1, "saw": 3, "square": 2}
CHUNK_SIZE_OFFSET = 156  # fxb header: 7 big-endian int32 fields and 128 reserved bytes


def default_state() -> bytes:
    engine = dawdreamer.RenderEngine(44100, 512)
    synth = engine.make_plugin_processor("zyn", PLUGIN)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "default.state"
        synth.save_state(str(path))
        return path.read_bytes()


def with_base_function(state: bytes, base_function: int) -> bytes:
    header, chunk = state[:CHUNK_SIZE_OFFSET], state[CHUNK_SIZE_OFFSET + 4 :]
    (size,) = struct.unpack(">I", state[CHUNK_SIZE_OFFSET : CHUNK_SIZE_OFFSET + 4])
    assert size == len(chunk), "unexpected state layout"
    old = b'<par name="base_function" value="0" />'
    assert chunk.count(old) == 1, "expected one oscillator in the default patch"
    chunk = chunk.replace(old, f'<par name="base_function" value="{base_function}" />'.encode())
    return header + struct.pack(">I", len(chunk)) + chunk


def main() -> None:
    state = default_state()
    for name, base_function in PRESETS.items():
        (HERE / f"{name}.state").write_bytes(with_base_function(state, base_function))
        print(f"wrote {name}.state")


if __name__ == "__main__":
    main()
