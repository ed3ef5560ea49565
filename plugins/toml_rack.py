"""Racks of real plugins (VST2, VST3, AU) described by TOML files.

A rack file names a synth plugin with its presets and, per effect, the plugin file and,
for each knob, the plugin parameter it drives and how the [0, 1] knob maps onto that
parameter's normalised value. Shipped rack files live in ``plugins/racks/``; more come
from ``SERUMRNN_RACK_PATH`` (rack files or folders of them, separated by ``os.pathsep``).

Plugin files are looked up, by a path relative to a plugin folder, in the folders of
``SERUMRNN_PLUGIN_PATH`` first and then the rack file's ``plugin_roots``. A rack file
cannot reach outside the folders it names: absolute plugin or preset paths and ``..``
are refused.

Hosts: DawDreamer for VST2 (``.so``/``.dll``) and pedalboard for VST3/AU. Every render
starts from a reset plugin: a fresh instance (``reset = "reload"``) or the same
instance with every parameter set again and a stretch of silence rendered first
(``reset = "reuse"``, for plugins whose state a host reset clears).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from serumrnn.core import RackSpec, hookimpl
from serumrnn.core.errors import PluginError
from serumrnn.core.interfaces import Effect, Preset, Synth
from serumrnn.core.params import ParamSpec
from serumrnn.core.rack import Rack

PLUGIN_PATH_ENV = "SERUMRNN_PLUGIN_PATH"
RACK_PATH_ENV = "SERUMRNN_RACK_PATH"
SHIPPED_RACKS = Path(__file__).resolve().parent / "racks"
BLOCK_SIZE = 512
HOSTS = ("dawdreamer", "pedalboard")
VST3_SUFFIXES = (".vst3", ".component")


class RackFileError(PluginError):
    """A rack file that cannot be read or that asks for something it may not."""


# -- paths ----------------------------------------------------------------------------
def safe_relative(text: Any, *, what: str, rack_file: Path) -> PurePath:
    """``text`` as a relative path that cannot climb out of the folder it is joined to."""
    if not isinstance(text, str) or not text.strip():
        raise RackFileError(f"Rack file {rack_file}: {what} must be a non-empty path string.")
    path = PurePath(text)
    if path.is_absolute() or path.drive or ".." in path.parts or text.startswith("~"):
        raise RackFileError(
            f"Rack file {rack_file}: {what} {text!r} must be a path inside its folder, "
            "without '..' or a leading '/' or '~'."
        )
    return path


def plugin_search_path(roots: Sequence[str]) -> list[Path]:
    """Folders searched for plugin files: ``SERUMRNN_PLUGIN_PATH`` first, then ``roots``."""
    from_env = [part for part in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if part]
    return [Path(os.path.expanduser(folder)) for folder in [*from_env, *roots]]


# -- knob mappings --------------------------------------------------------------------
class KnobMapping:
    """One knob: its ``ParamSpec`` and how a knob value becomes a plugin parameter value
    (normalised [0, 1]): ``range = [at 0, at 1]`` (linear), ``points = [[knob, value],
    ...]`` (piecewise linear) or, for a categorical knob, ``values`` (one per class)."""

    def __init__(self, spec: ParamSpec, parameter: str | int, knob_points: np.ndarray, values: np.ndarray):
        self.spec = spec
        self.parameter = parameter
        self.knob_points = knob_points
        self.values = values

    def plugin_value(self, knob: float) -> float:
        if self.spec.kind == "categorical":
            return float(self.values[self.spec.class_index(knob)])
        return float(np.interp(knob, self.knob_points, self.values))

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, where: str) -> "KnobMapping":
        name = table.get("name")
        parameter = table.get("parameter", table.get("index"))
        if not isinstance(name, str) or parameter is None:
            raise RackFileError(f"{where}: every knob needs a name and a parameter (name or index).")
        classes = tuple(table.get("classes", ()))
        display = {key: table[key] for key in ("label", "unit", "physical_min", "physical_max", "scale") if key in table}
        try:
            spec = ParamSpec(
                name,
                "categorical" if classes else "continuous",
                tuple(tuple(r) for r in table.get("sample_ranges", [[0.0, 1.0]])),
                classes=classes,
                default=float(table.get("default", 0.5)),
                **display,
            )
        except (TypeError, ValueError) as exc:
            raise RackFileError(f"{where}: knob {name}: {exc}.") from None
        if classes:
            values = table.get("values", [i / (len(classes) - 1) for i in range(len(classes))])
            if len(values) != len(classes):
                raise RackFileError(f"{where}: knob {name} needs one value per class.")
            points = np.linspace(0.0, 1.0, len(values))
        elif "points" in table:
            pairs = np.asarray(table["points"], dtype=float)
            if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) < 2 or np.any(np.diff(pairs[:, 0]) <= 0):
                raise RackFileError(f"{where}: knob {name} points must be [[knob, value], ...] with rising knobs.")
            points, values = pairs[:, 0], pairs[:, 1]
        else:
            low, high = table.get("range", [0.0, 1.0])
            points, values = np.array([0.0, 1.0]), np.array([low, high], dtype=float)
        values = np.asarray(values, dtype=float)
        if not np.all((values >= 0.0) & (values <= 1.0)):
            raise RackFileError(f"{where}: knob {name} maps to plugin values outside [0, 1].")
        return cls(spec, parameter, np.asarray(points, dtype=float), values)


# -- hosts ----------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_native_output():
    """Silence what native plugin code prints to file descriptors 1 and 2 (DawDreamer and
    the plugins log every load), so the CLI's own output stays readable."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _host_for(path: Path, requested: str) -> str:
    if requested != "auto":
        return requested
    return "pedalboard" if path.suffix.lower() in VST3_SUFFIXES else "dawdreamer"


def _host_importable(host: str) -> bool:
    return importlib.util.find_spec(host) is not None


def _install_hint(host: str) -> str:
    return "pip install 'serumrnn[vst]'" if host == "dawdreamer" else "pip install pedalboard"


class _DawDreamerHost:
    """DawDreamer engines for one process and sample rate: one engine per plugin file,
    because an engine spends time on every processor it holds, in the graph or not."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.engines: dict[str, Any] = {}
        self.instances: dict[str, Any] = {}
        self.indices: dict[str, dict[str, int]] = {}

    def engine(self, path: Path) -> Any:
        key = str(path)
        if key not in self.engines:
            import dawdreamer

            self.engines[key] = dawdreamer.RenderEngine(self.sample_rate, BLOCK_SIZE)
        return self.engines[key]

    def instance(self, path: Path, *, fresh: bool) -> Any:
        key = str(path)
        if fresh or key not in self.instances:
            # a fixed processor name: the engine drops the previous instance
            processor = self.engine(path).make_plugin_processor("plugin", key)
            self.instances[key] = processor
            if key not in self.indices:
                self.indices[key] = {d["name"]: int(d["index"]) for d in processor.get_plugin_parameters_description()}
        return self.instances[key]

    def parameter_index(self, path: Path, parameter: str | int) -> int:
        names = self.indices[str(path)]
        if isinstance(parameter, int):
            if not 0 <= parameter < len(names):
                raise PluginError(f"Plugin {path} has no parameter index {parameter}; it has {len(names)}.")
            return parameter
        if parameter not in names:
            raise PluginError(
                f"Plugin {path} has no parameter {parameter!r}; its parameters start {', '.join(list(names)[:12])}."
            )
        return names[parameter]

    def process(self, path: Path, settings: Mapping[str | int, float], audio: np.ndarray, *,
                fresh: bool, preroll_s: float) -> np.ndarray:
        plugin = self.instance(path, fresh=fresh)
        for parameter, value in settings.items():
            plugin.set_parameter(self.parameter_index(path, parameter), float(value))
        preroll = np.zeros(int(round(preroll_s * self.sample_rate)), dtype=np.float32)
        signal = np.concatenate([preroll, audio])
        channels = max(1, plugin.get_num_input_channels())
        engine = self.engine(path)
        source = engine.make_playback_processor("source", np.tile(signal, (channels, 1)))
        engine.load_graph([(source, []), (plugin, ["source"])])
        engine.render(signal.shape[0] / self.sample_rate)
        out = np.asarray(engine.get_audio(), dtype=np.float32)
        return out.mean(axis=0)[preroll.shape[0] : preroll.shape[0] + audio.shape[0]]

    def play(self, path: Path, preset_file: Path | None, settings: Mapping[str | int, float], *,
             note: int, velocity: int, note_s: float, duration_s: float) -> np.ndarray:
        plugin = self.instance(path, fresh=True)
        if preset_file is not None:
            plugin.load_preset(str(preset_file))
        for parameter, value in settings.items():
            plugin.set_parameter(self.parameter_index(path, parameter), float(value))
        plugin.add_midi_note(int(note), int(velocity), 0.0, float(note_s))
        engine = self.engine(path)
        engine.load_graph([(plugin, [])])
        engine.render(duration_s)
        return np.asarray(engine.get_audio(), dtype=np.float32).mean(axis=0)


class _PedalboardHost:
    """pedalboard's ``load_plugin`` (VST3 and AU); parameters set by raw [0, 1] value."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.instances: dict[str, Any] = {}

    def instance(self, path: Path, *, fresh: bool) -> Any:
        import pedalboard

        key = str(path)
        if fresh or key not in self.instances:
            self.instances[key] = pedalboard.load_plugin(key)
        return self.instances[key]

    @staticmethod
    def _set(plugin: Any, path: Path, settings: Mapping[str | int, float]) -> None:
        by_name = {param.name: param for param in plugin.parameters.values()}
        ordered = list(plugin.parameters.values())
        for parameter, value in settings.items():
            param = ordered[parameter] if isinstance(parameter, int) and parameter < len(ordered) else by_name.get(parameter)
            if param is None:
                raise PluginError(f"Plugin {path} has no parameter {parameter!r}.")
            param.raw_value = float(value)

    def process(self, path: Path, settings: Mapping[str | int, float], audio: np.ndarray, *,
                fresh: bool, preroll_s: float) -> np.ndarray:
        plugin = self.instance(path, fresh=fresh)
        self._set(plugin, path, settings)
        plugin.reset()
        preroll = np.zeros(int(round(preroll_s * self.sample_rate)), dtype=np.float32)
        signal = np.concatenate([preroll, audio])
        out = plugin.process(np.tile(signal, (2, 1)), self.sample_rate, reset=True)
        return np.asarray(out, dtype=np.float32).mean(axis=0)[preroll.shape[0] : preroll.shape[0] + audio.shape[0]]

    def play(self, path: Path, preset_file: Path | None, settings: Mapping[str | int, float], *,
             note: int, velocity: int, note_s: float, duration_s: float) -> np.ndarray:
        plugin = self.instance(path, fresh=True)
        if preset_file is not None:
            if preset_file.suffix.lower() in (".vstpreset", ".aupreset"):
                plugin.load_preset(str(preset_file))
            else:
                plugin.raw_state = preset_file.read_bytes()
        self._set(plugin, path, settings)
        messages = [(bytes([0x90, note, velocity]), 0.0), (bytes([0x80, note, 0]), note_s)]
        out = plugin(messages, duration=duration_s, sample_rate=self.sample_rate, reset=True)
        return np.asarray(out, dtype=np.float32).mean(axis=0)


_HOSTS: dict[tuple[int, str, int], Any] = {}


def _host(name: str, sample_rate: int) -> Any:
    # keyed by process id: a forked or spawned worker builds its own instances
    key = (os.getpid(), name, int(sample_rate))
    if key not in _HOSTS:
        if not _host_importable(name):
            raise PluginError(f"Plugin host {name} is not installed; install it with {_install_hint(name)}.")
        _HOSTS[key] = (_DawDreamerHost if name == "dawdreamer" else _PedalboardHost)(int(sample_rate))
    return _HOSTS[key]


# -- the rack file --------------------------------------------------------------------
class PluginRef:
    """A plugin file named in a rack file: candidates relative to the plugin folders."""

    def __init__(self, table: Mapping[str, Any], *, roots: Sequence[str], host: str, where: str, rack_file: Path):
        candidates = table.get("plugin")
        candidates = [candidates] if isinstance(candidates, str) else list(candidates or [])
        if not candidates:
            raise RackFileError(f"{where}: name the plugin file (plugin = \"...\").")
        self.candidates = [safe_relative(c, what=f"{where} plugin", rack_file=rack_file) for c in candidates]
        self.roots = roots
        self.host_name = str(table.get("host", host))
        if self.host_name not in (*HOSTS, "auto"):
            raise RackFileError(f"{where}: host {self.host_name!r} is not one of auto, {', '.join(HOSTS)}.")

    def find(self) -> Path | None:
        for folder in plugin_search_path(self.roots):
            for candidate in self.candidates:
                path = folder / candidate
                if path.exists():
                    return path
        return None

    def describe_missing(self) -> str:
        folders = ", ".join(str(folder) for folder in plugin_search_path(self.roots)) or "no folders"
        return f"{' or '.join(str(c) for c in self.candidates)} not found in {folders}"

    def resolve(self) -> tuple[Path, str]:
        path = self.find()
        if path is None:
            raise PluginError(
                f"Plugin {self.describe_missing()}; install it or point {PLUGIN_PATH_ENV} at its folder."
            )
        return path, _host_for(path, self.host_name)


def _fixed_settings(table: Mapping[str, Any], where: str) -> dict[str | int, float]:
    fixed: dict[str | int, float] = {}
    for key, value in dict(table.get("fixed", {})).items():
        parameter: str | int = int(key) if str(key).isdigit() else str(key)
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise RackFileError(f"{where}: fixed parameter {key!r} must be a number in [0, 1].")
        fixed[parameter] = float(value)
    return fixed


class VstEffect(Effect):
    """An effect played by a plugin; knobs drive plugin parameters (see ``KnobMapping``)."""

    # A hosted plugin may keep state between calls (reset = "reuse"), so a session search
    # re-renders whole chains rather than continuing one from an earlier output.
    pure = False

    def __init__(self, table: Mapping[str, Any], *, roots: Sequence[str], host: str, rack_file: Path):
        self.name = str(table.get("name", ""))
        where = f"Rack file {rack_file}, effect {self.name or '?'}"
        if not self.name:
            raise RackFileError(f"{where}: every effect needs a name.")
        self.label = str(table.get("label", self.name.capitalize()))
        self.description = str(table.get("description", ""))
        self.plugin = PluginRef(table, roots=roots, host=host, where=where, rack_file=rack_file)
        self.mappings = [KnobMapping.from_table(knob, where=where) for knob in table.get("knobs", [])]
        if not self.mappings:
            raise RackFileError(f"{where}: an effect needs at least one knob.")
        self.params = tuple(mapping.spec for mapping in self.mappings)
        self.fixed = _fixed_settings(table, where)
        self.reset = str(table.get("reset", "reload"))
        if self.reset not in ("reload", "reuse"):
            raise RackFileError(f"{where}: reset must be \"reload\" or \"reuse\".")
        self.preroll_s = float(table.get("preroll_s", 0.0))

    def settings(self, knobs: Mapping[str, float]) -> dict[str | int, float]:
        """Plugin parameter -> normalised value for resolved ``knobs`` (fixed ones included)."""
        out = dict(self.fixed)
        for mapping in self.mappings:
            out[mapping.parameter] = mapping.plugin_value(knobs[mapping.spec.name])
        return out

    def _process(self, audio: np.ndarray, sample_rate: int, knobs: dict[str, float]) -> np.ndarray:
        path, host = self.plugin.resolve()
        with quiet_native_output():
            return _host(host, sample_rate).process(
                path, self.settings(knobs), audio, fresh=self.reset == "reload", preroll_s=self.preroll_s
            )


class VstSynth(Synth):
    """A synth plugin with presets given as preset/state files and/or parameter values.

    Renders hold the note for ``note_s`` seconds and are scaled to ``peak`` (like the
    built-in synth, so racks give sources of the same level)."""

    def __init__(self, table: Mapping[str, Any], *, roots: Sequence[str], host: str, rack_file: Path):
        self.name = str(table.get("name", ""))
        where = f"Rack file {rack_file}, synth {self.name or '?'}"
        if not self.name:
            raise RackFileError(f"{where}: the synth needs a name.")
        self.label = str(table.get("label", self.name))
        self.plugin = PluginRef(table, roots=roots, host=host, where=where, rack_file=rack_file)
        self.note_s = float(table.get("note_s", 0.75))
        self.peak = float(table.get("peak", 0.8))
        self.preset_files: dict[str, Path | None] = {}
        self.preset_settings: dict[str, dict[str | int, float]] = {}
        presets = []
        for entry in table.get("presets", []):
            name, group = entry.get("name"), entry.get("group")
            if not isinstance(name, str) or not isinstance(group, str):
                raise RackFileError(f"{where}: every preset needs a name and a group.")
            presets.append(Preset(name, group, str(entry.get("description", ""))))
            preset_file = None
            if "file" in entry:
                relative = safe_relative(entry["file"], what=f"{where} preset {name} file", rack_file=rack_file)
                preset_file = rack_file.parent / relative
            self.preset_files[name] = preset_file
            self.preset_settings[name] = _fixed_settings(entry, f"{where}, preset {name}")
        if not presets:
            raise RackFileError(f"{where}: the synth needs at least one preset.")
        self.presets = tuple(presets)

    def render(self, preset: str, *, note: int = 60, velocity: int = 127, duration_s: float = 1.0,
               sample_rate: int = 44100) -> np.ndarray:
        self.preset(preset)
        preset_file = self.preset_files[preset]
        if preset_file is not None and not preset_file.is_file():
            raise PluginError(f"Preset file {preset_file} of preset {preset} is missing; reinstall serumrnn.")
        return self.render_state(preset_file, self.preset_settings[preset], note=note, velocity=velocity,
                                 duration_s=duration_s, sample_rate=sample_rate)

    def render_state(self, preset_file: Path | None, settings: Mapping[str | int, float] | None = None, *,
                     note: int = 60, velocity: int = 127, duration_s: float = 1.0,
                     sample_rate: int = 44100, scale: bool = True) -> np.ndarray:
        """Play a preset or state file that is not one of the rack's presets (and/or
        parameter values) exactly as ``render`` plays a preset; float32 ``(n_samples,)``.
        ``scale=False`` leaves the plugin's own level (``scaled`` applies the rack's)."""
        path, host = self.plugin.resolve()
        n_samples = round(duration_s * sample_rate)
        with quiet_native_output():
            audio = _host(host, sample_rate).play(
                path, preset_file, dict(settings or {}), note=note, velocity=velocity,
                note_s=min(self.note_s, duration_s), duration_s=duration_s,
            )
        audio = np.nan_to_num(np.asarray(audio, dtype=np.float32)[:n_samples])
        audio = np.pad(audio, (0, n_samples - audio.shape[0]))
        return self.scaled(audio, velocity) if scale else audio.astype(np.float32)

    def scaled(self, audio: np.ndarray, velocity: int = 127) -> np.ndarray:
        """``audio`` scaled to the rack's peak at ``velocity``, as every render of this synth."""
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > 0:
            audio = audio * np.float32(self.peak * velocity / 127 / peak)
        return np.asarray(audio, dtype=np.float32)


class RackFile:
    """A parsed rack file: its synth and effects, and whether its plugins are here."""

    def __init__(self, path: Path):
        self.path = path
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise RackFileError(f"Rack file {path} cannot be read ({exc}).") from None
        except tomllib.TOMLDecodeError as exc:
            raise RackFileError(f"Rack file {path} is not valid TOML ({exc}).") from None
        self.name = str(data.get("name", path.stem))
        self.description = str(data.get("description", ""))
        roots = data.get("plugin_roots", [])
        if isinstance(roots, dict):  # per platform: {darwin = [...], win32 = [...], linux = [...]}
            roots = next((folders for key, folders in roots.items() if sys.platform.startswith(key)), [])
        if not isinstance(roots, list) or not all(isinstance(root, str) for root in roots):
            raise RackFileError(f"Rack file {path}: plugin_roots must be a list of folders (or a table of "
                                "such lists by platform).")
        host = str(data.get("host", "auto"))
        if "synth" not in data or not data.get("effects"):
            raise RackFileError(f"Rack file {path} needs a [synth] table and [[effects]] entries.")
        self.synth = VstSynth(data["synth"], roots=roots, host=host, rack_file=path)
        self.effects = [VstEffect(table, roots=roots, host=host, rack_file=path) for table in data["effects"]]
        names = [effect.name for effect in self.effects]
        if len(set(names)) != len(names):
            raise RackFileError(f"Rack file {path} names an effect twice.")

    def availability(self) -> tuple[bool, str]:
        missing = [ref for ref in [self.synth.plugin, *(e.plugin for e in self.effects)] if ref.find() is None]
        if missing:
            return False, (f"{missing[0].describe_missing()}; point {PLUGIN_PATH_ENV} at its folder "
                           "(try one with `serumrnn racks --plugin-path FOLDER`)")
        for ref in [self.synth.plugin, *(e.plugin for e in self.effects)]:
            host = _host_for(ref.find(), ref.host_name)  # type: ignore[arg-type]
            if not _host_importable(host):
                return False, f"plugin host {host} is not installed ({_install_hint(host)})"
        return True, ""

    def build(self, manager: Any = None) -> Rack:
        available, reason = self.availability()
        if not available:
            raise PluginError(f"Rack {self.name} is not available here: {reason}.")
        return Rack(self.name, self.synth, self.effects, description=self.description)

    def spec(self) -> RackSpec:
        return RackSpec(name=self.name, description=self.description, build=self.build,
                        availability=self.availability, effect_names=[e.name for e in self.effects])


def rack_files() -> list[Path]:
    """Shipped rack files, then those named by ``SERUMRNN_RACK_PATH``."""
    files = sorted(SHIPPED_RACKS.glob("*.toml"))
    for part in os.environ.get(RACK_PATH_ENV, "").split(os.pathsep):
        if not part:
            continue
        path = Path(os.path.expanduser(part))
        files.extend(sorted(path.glob("*.toml")) if path.is_dir() else [path])
    return files


def load_rack_file(path: str | os.PathLike[str]) -> RackFile:
    """Parse one rack file (errors are one sentence: ``RackFileError``)."""
    return RackFile(Path(path))


@hookimpl
def serumrnn_register_racks(register):
    for path in rack_files():
        register(load_rack_file(path).spec())
