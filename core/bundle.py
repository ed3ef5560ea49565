"""Model bundles: trained models for one (rack, preset group).

A bundle is a folder::

    bundle.json                     what the bundle is for, and every model in it
    params-<effect>.safetensors     one effect parameter model per effect
    selector-rnn.safetensors        SerumRNN (and selector-ni, selector-cnn)
    <model>.onnx                    its ONNX export, what sessions run (optional)
    logs/<model>/train_log.csv      per-epoch training log
    .checkpoints/<model>/           training checkpoints (resume), removed when done

``bundle.json`` records the format version, rack, effects with their ``ParamSpec`` JSON,
feature settings, preset group, dataset fingerprint, and per model: its file, task,
size and layer config, storage dtype, SHA-256 of the file, validation metrics and
training facts (time, epochs, device, why it stopped), and its ONNX export: file,
SHA-256, and the SHA-256 of the weights it was exported from.

Loading checks all of it and refuses, with one sentence, a bundle for another rack,
effect set or feature setting, a corrupt or truncated file, a missing file or a file
name that leaves the folder. Weights are safetensors only; nothing is unpickled. A
model's network is built when it is first used (``ModelBundle.model``), so a session
builds only the models it asks for; each kind of model is fed and read as
``core/model_kinds.py`` says. On the CPU a model with an up-to-date ONNX export runs
with onnxruntime and torch is never imported; otherwise its torch module runs
(``docs/design.md``, Inference backends).
A bundle may hold any subset of the models; training adds to it, one atomic write at a
time (a lock file serialises concurrent writers).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serumrnn.core.errors import BundleError, OutputError, ParameterError
from serumrnn.core.features import Features, FeatureSettings
from serumrnn.core.loudness import NONE as NONE_LOUDNESS, LoudnessConvention, convention_from_json
from serumrnn.core.model_kinds import PARAMS, SELECTOR_KINDS, ModelKind, model_kind_for
from serumrnn.core.onnx_backend import OPSET, OnnxModel, export_onnx
from serumrnn.core.params import ParamSpec
from serumrnn.core.runtime import file_lock, write_bytes_atomic, write_json_atomic

BUNDLE_FORMAT = "serumrnn-bundle"
FORMAT_VERSION = 1
META_FILE = "bundle.json"
LOCK_FILE = ".lock"
# Longest wait for another writer's lock on a bundle (it holds it for one JSON write).
LOCK_WAIT_S = 60.0
# ParamSpec fields that change what a model learnt; display fields (label, unit) do not.
_MODEL_SPEC_FIELDS = ("name", "kind", "sample_ranges", "classes", "default", "sampled")
_MODEL_NAME = re.compile(r"^(params|selector)-[A-Za-z0-9][A-Za-z0-9_-]*$")
# auto: a model's ONNX export where it is usable (CPU, up to date), else torch.
BACKENDS = ("auto", "torch")
EXPORT_HINT = "export it again with `serumrnn bundle export-onnx FOLDER`"


def param_model_name(effect: str) -> str:
    return f"params-{effect}"


def selector_model_name(kind: str) -> str:
    return f"selector-{kind}"


def model_spec_key(spec_json: Mapping) -> dict:
    """The fields of a knob's ``ParamSpec`` JSON that change what a model learns (a
    model fits another rack or dataset when these are equal)."""
    return {field: json.loads(json.dumps(spec_json.get(field))) for field in _MODEL_SPEC_FIELDS}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run torch CPU ops on ``threads`` intra-op threads, then restore the setting.
    One example is too small to gain from more threads, and OpenMP threads waiting on a
    busy core can turn 2 ms into 150 ms, so inference uses one thread by default."""
    import torch

    if not threads:
        yield
        return
    before = torch.get_num_threads()
    if before == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _locked(folder: Path) -> contextlib.AbstractContextManager[None]:
    """Exclusive lock on ``folder/.lock``, so concurrent trainings do not lose each
    other's ``bundle.json`` updates. A writer holds it for one read and write of
    ``bundle.json``, so waiting is short; a lock held far longer is refused in one sentence."""
    return file_lock(folder / LOCK_FILE, wait_s=LOCK_WAIT_S, busy=BundleError(
        f"Another serumrnn command has held '{folder / LOCK_FILE}' for over {LOCK_WAIT_S:.0f} s; "
        "wait for it to finish, or train into another --out folder."))


def _write_json_atomic(path: Path, data: Mapping) -> None:
    write_json_atomic(path, data, suffix=".json")


class ModelBundle:
    """A loaded (or new) model bundle.

    Attributes
    ----------
    path: the bundle folder.
    meta: parsed ``bundle.json``.
    rack_name, effect_names, preset_group, feature_settings: what the bundle is for.
    """

    def __init__(self, path: Path, meta: dict, *, device: str = "cpu", threads: int | None = 1,
                 backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ParameterError(f"Unknown inference backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
        self.path = Path(path)
        self.meta = meta
        self.device = device
        self.backend = backend
        # CPU threads for inference (None: leave torch's setting alone).
        self.threads = threads if str(device).startswith("cpu") else None
        self.rack_name: str = meta["rack"]
        self.effect_names: tuple[str, ...] = tuple(meta["effect_order"])
        self.preset_group: str = meta["preset_group"]
        self.feature_settings = FeatureSettings.from_json(meta["feature_settings"])
        # Bundles from before the convention existed record none: they use sounds as they come.
        self.loudness = convention_from_json(meta.get("loudness"), where=f"Bundle '{self.path}'")
        self.effect_specs: dict[str, tuple[ParamSpec, ...]] = {
            name: tuple(ParamSpec.from_json(spec) for spec in meta["effects"][name]) for name in self.effect_names
        }
        self._models: dict[str, Any] = {}
        # Weights (numpy arrays) read and verified by load, kept until their model is first built.
        self._weights: dict[str, dict] = {}
        # ONNX exports: bytes verified by load, then one onnxruntime session per model.
        self._onnx_bytes: dict[str, bytes] = {}
        self._sessions: dict[str, OnnxModel] = {}

    # -- creation ---------------------------------------------------------------------
    @classmethod
    def new_meta(
        cls,
        *,
        rack_name: str,
        effects: Mapping[str, Sequence[ParamSpec]],
        preset_group: str,
        feature_settings: FeatureSettings,
        dataset_fingerprint: str = "",
        loudness: LoudnessConvention = NONE_LOUDNESS,
    ) -> dict:
        """``bundle.json`` content of an empty bundle."""
        return {
            "loudness": loudness.to_json(),
            "format": BUNDLE_FORMAT,
            "format_version": FORMAT_VERSION,
            "rack": rack_name,
            "preset_group": preset_group,
            "effect_order": list(effects),
            "effects": {name: [spec.to_json() for spec in specs] for name, specs in effects.items()},
            "feature_settings": feature_settings.to_json(),
            "dataset_fingerprint": dataset_fingerprint,
            "created": _now(),
            "models": {},
        }

    @classmethod
    def open_or_create(cls, path: str | os.PathLike, *, device: str = "cpu", **identity: Any) -> "ModelBundle":
        """Open the bundle at ``path`` for adding models, creating it when absent.

        ``identity`` are the keyword arguments of ``new_meta``; an existing bundle must
        match them (rack, effects and specs, preset group, feature settings)."""
        path = Path(path)
        wanted = cls.new_meta(**identity)
        if path.exists() and not path.is_dir():
            raise BundleError(f"Bundle path '{path}' is a file; give a folder for the model bundle.")
        if (path / META_FILE).exists():
            bundle = cls.load(path, device=device, build_models=False)
            bundle._check_same_identity(wanted)
            return bundle
        if path.exists() and any(p.name not in (".lock", ".checkpoints", "logs") for p in path.iterdir()):
            raise BundleError(
                f"Folder '{path}' is not empty and holds no {META_FILE}; give a new or existing bundle folder."
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"Cannot create bundle folder '{path}' ({exc.strerror}); choose a writable location.") from None
        with _locked(path):
            if not (path / META_FILE).exists():
                _write_json_atomic(path / META_FILE, wanted)
        return cls.load(path, device=device, build_models=False)

    def _check_same_identity(self, wanted: Mapping) -> None:
        where = f"Bundle '{self.path}'"
        if wanted["rack"] != self.rack_name:
            raise BundleError(f"{where} is for rack {self.rack_name}, not {wanted['rack']}; use another --out folder.")
        if wanted["preset_group"] != self.preset_group:
            raise BundleError(
                f"{where} is for preset group {self.preset_group}, not {wanted['preset_group']}; use another --out folder."
            )
        if FeatureSettings.from_json(wanted["feature_settings"]) != self.feature_settings:
            raise BundleError(f"{where} was made with other feature settings than this dataset; use another --out folder.")
        if wanted["loudness"] != self.loudness.to_json():
            raise BundleError(f"{where} was trained under loudness convention {self.loudness.name}, this dataset under "
                              f"{wanted['loudness']['name']}; use another --out folder.")
        self._check_effects(wanted["effect_order"], wanted["effects"], "this dataset")

    def _check_effects(self, names: Sequence[str], specs: Mapping[str, Sequence[Mapping]], other: str) -> None:
        where = f"Bundle '{self.path}'"
        if tuple(names) != self.effect_names:
            raise BundleError(
                f"{where} has effects {', '.join(self.effect_names)} but {other} has {', '.join(names)}; "
                "train a bundle for it."
            )
        for name in names:
            mine = [model_spec_key(s) for s in self.meta["effects"][name]]
            theirs = [model_spec_key(s) for s in specs[name]]
            if mine != theirs:
                raise BundleError(
                    f"{where} was trained for other knobs of effect {name} than {other} has; train a bundle for it."
                )

    # -- loading ----------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        rack: Any = None,
        device: str = "cpu",
        feature_settings: FeatureSettings | None = None,
        build_models: bool = True,
        threads: int | None = 1,
        backend: str = "auto",
    ) -> "ModelBundle":
        """Load and validate a bundle.

        Parameters
        ----------
        rack: a ``Rack``; when given, the bundle must be for its name, effects (order and
            model-relevant knob specs), sample rate and clip duration.
        device: torch device for inference (``"cpu"``, ``"cuda"``).
        feature_settings: when given, must equal the bundle's.
        build_models: True also reads and verifies every model's weights file; each
            network is built when first used (``model``). False only checks
            ``bundle.json`` (training uses it to add models).
        threads: CPU threads during inference, torch's or onnxruntime's (1 is fastest for
            single examples on a busy machine); ``None`` keeps torch's setting (and
            onnxruntime's default).
        backend: ``auto`` runs a model's ONNX export with onnxruntime when the device is
            the CPU and the export is up to date (made from the current weights), its
            torch module otherwise; ``torch`` always runs the torch modules.

        Raises
        ------
        BundleError: one sentence on any mismatch, corruption, missing or truncated file.
        """
        path = Path(path)
        meta_path = path / META_FILE
        if not path.exists():
            raise BundleError(f"Model bundle '{path}' does not exist; train one with `serumrnn train` or check the path.")
        if not path.is_dir():
            raise BundleError(f"Model bundle '{path}' is not a folder; give the bundle folder.")
        if not meta_path.exists():
            raise BundleError(f"Model bundle '{path}' has no {META_FILE}; it is not a bundle or was not finished.")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{META_FILE} of bundle '{path}' is unreadable or corrupt ({type(exc).__name__}); retrain the bundle.") from None
        cls._check_meta_shape(path, meta)
        bundle = cls(path, meta, device=device, threads=threads, backend=backend)
        if rack is not None:
            bundle.check_rack(rack)
        if feature_settings is not None and feature_settings != bundle.feature_settings:
            raise BundleError(f"Bundle '{path}' was trained with other feature settings than requested; use a matching bundle.")
        if build_models:
            for name in meta["models"]:
                bundle._description(name)  # a model described inconsistently is refused here
                data = bundle._read_checked(name)
                if bundle.uses_onnx(name):  # the weights' checksum suffices; torch never parses them
                    bundle._onnx_bytes[name] = bundle._read_onnx(name)
                else:
                    bundle._weights[name] = bundle._parse_weights(name, data)
        return bundle

    @staticmethod
    def _check_meta_shape(path: Path, meta: Any) -> None:
        broken = f"{META_FILE} of bundle '{path}'"
        if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{broken} is not a serumrnn model bundle description; give a bundle folder.")
        if meta.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"Bundle '{path}' has format version {meta.get('format_version')}, this serumrnn reads {FORMAT_VERSION}; retrain it."
            )
        needed = ("rack", "preset_group", "effect_order", "effects", "feature_settings", "models")
        missing = [key for key in needed if key not in meta]
        if missing:
            raise BundleError(f"{broken} lacks {', '.join(missing)}; the bundle is corrupt, retrain it.")
        unsafe = [name for name in meta["effect_order"] if not isinstance(name, str) or not _MODEL_NAME.match(param_model_name(name))]
        if unsafe:  # effect names become model file names
            raise BundleError(f"{broken} names an invalid effect {unsafe[0]!r}; the bundle is corrupt, retrain it.")
        try:
            FeatureSettings.from_json(meta["feature_settings"])
            for name in meta["effect_order"]:
                [ParamSpec.from_json(spec) for spec in meta["effects"][name]]
        except (TypeError, ValueError, KeyError) as exc:
            raise BundleError(f"{broken} has invalid effects or feature settings ({exc}); retrain the bundle.") from None
        if not isinstance(meta["models"], dict):
            raise BundleError(f"{broken} has no valid model list; retrain the bundle.")
        for name, entry in meta["models"].items():
            if not isinstance(name, str) or not _MODEL_NAME.match(name) or not isinstance(entry, dict):
                raise BundleError(f"{broken} names an invalid model {name!r}; the bundle is corrupt, retrain it.")
            if entry.get("file") != f"{name}.safetensors":
                raise BundleError(
                    f"{broken} points model {name} at file {entry.get('file')!r}, outside its naming scheme; refusing to read it."
                )
            export = entry.get("onnx")
            if export is None:
                continue
            if not isinstance(export, dict) or not all(isinstance(export.get(key), str) for key in ("sha256", "weights_sha256")):
                raise BundleError(f"{broken} describes the ONNX export of model {name} inconsistently; {EXPORT_HINT}.")
            if export.get("file") != f"{name}.onnx":
                raise BundleError(
                    f"{broken} points the ONNX export of model {name} at file {export.get('file')!r}, outside its "
                    "naming scheme; refusing to read it."
                )

    def check_rack(self, rack: Any) -> None:
        """Refuse a rack this bundle was not trained for (name, effects, specs, audio settings)."""
        if rack.name != self.rack_name:
            raise BundleError(f"Bundle '{self.path}' is for rack {self.rack_name}, not {rack.name}; use a bundle trained for {rack.name}.")
        specs = {name: [spec.to_json() for spec in rack.effect(name).params] for name in rack.effect_names}
        self._check_effects(list(rack.effect_names), specs, f"rack {rack.name}")
        settings = self.feature_settings
        if int(rack.sample_rate) != settings.sample_rate or float(rack.duration_s) != settings.duration_s:
            raise BundleError(
                f"Bundle '{self.path}' expects {settings.sample_rate} Hz, {settings.duration_s:g} s clips but rack "
                f"{rack.name} renders {rack.sample_rate} Hz, {rack.duration_s:g} s; use a matching bundle."
            )

    def _model_file(self, name: str, file_name: str) -> Path:
        file = (self.path / file_name).resolve()
        if file.parent != self.path.resolve():
            raise BundleError(f"Bundle '{self.path}' model {name} points outside the bundle folder; refusing to read it.")
        return file

    def _read_checked(self, name: str) -> bytes:
        """The bytes of model ``name``'s weights file, checked against its recorded
        checksum (not parsed)."""
        entry = self.meta["models"][name]
        file = self._model_file(name, entry["file"])
        if not file.exists():
            raise BundleError(f"Bundle '{self.path}' lists model {name} but its file {entry['file']} is missing; retrain that model.")
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise BundleError(f"Cannot read {entry['file']} of bundle '{self.path}' ({exc.strerror}).") from None
        expected = entry.get("sha256")
        if expected and _sha256(data) != expected:
            raise BundleError(
                f"{entry['file']} of bundle '{self.path}' is corrupt or truncated (checksum mismatch); retrain that model."
            )
        return data

    def _parse_weights(self, name: str, data: bytes) -> dict[str, np.ndarray]:
        import safetensors.numpy  # numpy, not torch: loading a bundle does not import torch

        try:
            return safetensors.numpy.load(data)
        except Exception as exc:  # safetensors raises its own error types
            raise BundleError(
                f"{self.meta['models'][name]['file']} of bundle '{self.path}' is not a valid safetensors file "
                f"({type(exc).__name__}); retrain that model."
            ) from None

    def read_weights(self, name: str) -> dict[str, np.ndarray]:
        """Model ``name``'s weights as numpy arrays (stored dtype), checksum verified."""
        return self._parse_weights(name, self._read_checked(name))

    def uses_onnx(self, name: str) -> bool:
        """Whether model ``name`` runs its ONNX export: backend ``auto`` on the CPU, and an
        export recorded, present, and made from the weights the bundle records. A stale
        export (weights changed since) or a missing one leaves the model to torch."""
        entry = self.meta["models"][name]
        export = entry.get("onnx")
        return (self.backend == "auto" and str(self.device).startswith("cpu") and isinstance(export, dict)
                and bool(entry.get("sha256")) and export.get("weights_sha256") == entry.get("sha256")
                and self._model_file(name, export["file"]).is_file())

    def _read_onnx(self, name: str) -> bytes:
        """The bytes of model ``name``'s ONNX export, checked against its recorded checksum."""
        export = self.meta["models"][name]["onnx"]
        try:
            data = self._model_file(name, export["file"]).read_bytes()
        except OSError as exc:
            raise BundleError(f"Cannot read {export['file']} of bundle '{self.path}' ({exc.strerror}).") from None
        if _sha256(data) != export["sha256"]:
            raise BundleError(f"{export['file']} of bundle '{self.path}' is corrupt or truncated (checksum mismatch); "
                              f"{EXPORT_HINT}.")
        return data

    def _description(self, name: str) -> tuple[ModelKind, Any]:
        """The kind and layer config ``bundle.json`` records for model ``name``."""
        from serumrnn.core.model_config import ModelConfig

        entry = self.meta["models"][name]
        try:
            return model_kind_for(entry["task"], self.effect_specs, entry.get("effect")), ModelConfig.from_json(entry["config"])
        except (KeyError, TypeError, ValueError, ParameterError) as exc:
            raise BundleError(f"Bundle '{self.path}' describes model {name} inconsistently ({exc}); retrain that model.") from None

    def model_kind(self, name: str) -> ModelKind:
        """How model ``name`` is built, fed and read (``core/model_kinds.py``)."""
        self._check_has(name)
        return self._description(name)[0]

    def _build(self, name: str):
        import torch

        kind, config = self._description(name)
        model = self._new_module(name, kind, config)
        self._load_weights(name, model, self._weights.pop(name, None) or self.read_weights(name))
        model.to(torch.device(self.device)).eval()
        return model

    def _new_module(self, name: str, kind: ModelKind, config: Any):
        """A fresh torch module of model ``name`` as ``kind`` and ``config`` describe it."""
        try:
            return kind.build(self.feature_settings, config)
        except (TypeError, ValueError, ParameterError) as exc:
            raise BundleError(f"Bundle '{self.path}' describes model {name} inconsistently ({exc}); retrain that model.") from None

    def _load_weights(self, name: str, model: Any, weights: Mapping[str, np.ndarray]) -> None:
        """Load ``weights`` (arrays as ``_parse_weights`` gives them) into ``model``."""
        import torch

        try:
            # copies: the arrays safetensors parses are read-only views of the file's bytes
            model.load_state_dict({key: torch.from_numpy(np.array(value)) for key, value in weights.items()}, strict=True)
        except RuntimeError:
            raise BundleError(
                f"Weights of model {name} in bundle '{self.path}' do not fit its recorded architecture; retrain that model."
            ) from None

    # -- writing ----------------------------------------------------------------------
    def add_model(
        self,
        name: str,
        model: Any,
        *,
        task: str,
        config: Any,
        effect: str | None = None,
        metrics: Mapping | None = None,
        training: Mapping | None = None,
        dataset_fingerprint: str = "",
        float16: bool = True,
        onnx: bool = True,
    ) -> Path:
        """Write ``model``'s weights as ``<name>.safetensors`` and record it in
        ``bundle.json`` (both atomically; a model of the same name is replaced).

        ``float16`` stores floating weights in half precision (half the size; inference
        converts back to float32). ``onnx`` also writes ``<name>.onnx``, the ONNX export of
        the stored weights that sessions run; when the export fails the entry records
        why (``onnx_error``) and the model runs with torch."""
        import safetensors.torch
        import torch

        if not _MODEL_NAME.match(name):
            raise ParameterError(f"Model name {name!r} is not valid; use params-<effect> or selector-<kind>.")
        if task == PARAMS and effect not in self.effect_names:
            raise ParameterError(f"Bundle '{self.path}' has no effect {effect!r}; its effects are {', '.join(self.effect_names)}.")
        state = {}
        for key, tensor in model.state_dict().items():
            tensor = tensor.detach().to("cpu")
            if float16 and tensor.is_floating_point():
                tensor = tensor.to(torch.float16)
            state[key] = tensor.contiguous().clone()
        file_name = f"{name}.safetensors"
        # One metadata key only: safetensors orders several keys arbitrarily, and equal weights
        # should give equal bytes (and checksums).
        data = safetensors.torch.save(state, metadata={"serumrnn_model": name})
        write_bytes_atomic(self.path / file_name, data, ".safetensors")
        entry = {
            "file": file_name,
            "task": task,
            "effect": effect,
            "size": config.size,
            "config": config.to_json(),
            "dtype": "float16" if float16 else "float32",
            "sha256": _sha256(data),
            "n_parameters": int(sum(p.numel() for p in model.parameters())),
            "metrics": dict(metrics or {}),
            "training": dict(training or {}),
            "dataset_fingerprint": dataset_fingerprint,
            "saved": _now(),
        }
        if onnx:
            try:
                entry["onnx"] = self._export(name, model_kind_for(task, self.effect_specs, effect), config, data)
            except Exception as exc:  # the weights are kept; sessions then run torch
                entry["onnx_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        with _locked(self.path):
            # Re-read: another training may have added its model since we opened the bundle.
            current = json.loads((self.path / META_FILE).read_text())
            current["models"][name] = entry
            if dataset_fingerprint and not current.get("dataset_fingerprint"):
                current["dataset_fingerprint"] = dataset_fingerprint
            _write_json_atomic(self.path / META_FILE, current)
        self.meta = current
        self._forget(name)
        return self.path / file_name

    def _forget(self, name: str) -> None:
        for cache in (self._models, self._weights, self._onnx_bytes, self._sessions):
            cache.pop(name, None)

    def _export(self, name: str, kind: ModelKind, config: Any, weights: bytes) -> dict:
        """Write ``<name>.onnx``, the export of the model that ``weights`` (safetensors
        bytes) hold, built as inference builds it; its ``bundle.json`` record."""
        model = self._new_module(name, kind, config)
        self._load_weights(name, model, self._parse_weights(name, weights))
        data = export_onnx(kind, model.to("cpu").eval(), self.feature_settings)
        file_name = f"{name}.onnx"
        write_bytes_atomic(self.path / file_name, data, ".onnx")
        return {"file": file_name, "sha256": _sha256(data), "weights_sha256": _sha256(weights), "opset": OPSET}

    def export_onnx(self, names: Sequence[str] | None = None) -> list[dict]:
        """Write the ONNX export of each model in ``names`` (default: every model) from its
        stored weights, leaving the weights as they are, and record them in ``bundle.json``.
        Returns a row per model: model, file, sha256, and whether the file changed."""
        names = self.model_names if names is None else list(names)
        exports, rows = {}, []
        for name in names:
            self._check_has(name)
            kind, config = self._description(name)
            weights = self._read_checked(name)
            previous = self.meta["models"][name].get("onnx") or {}
            existed = (self.path / f"{name}.onnx").is_file()
            export = self._export(name, kind, config, weights)
            exports[name] = (_sha256(weights), export)
            rows.append({"model": name, "file": export["file"], "sha256": export["sha256"],
                         "changed": not existed or previous.get("sha256") != export["sha256"]
                         or previous.get("weights_sha256") != export["weights_sha256"]})
        with _locked(self.path):
            current = json.loads((self.path / META_FILE).read_text())
            for name, (weights_sha, export) in exports.items():
                entry = current["models"].get(name)
                if entry is not None and entry.get("sha256", weights_sha) == weights_sha:  # not retrained meanwhile
                    entry["onnx"] = export
                    entry.pop("onnx_error", None)
            _write_json_atomic(self.path / META_FILE, current)
        self.meta = current
        for name in names:
            self._forget(name)
        return rows

    def save(self) -> None:
        """Rewrite ``bundle.json`` from ``meta`` (atomically)."""
        with _locked(self.path):
            _write_json_atomic(self.path / META_FILE, self.meta)

    # -- queries ----------------------------------------------------------------------
    @property
    def model_names(self) -> list[str]:
        return list(self.meta["models"])

    def has_param_model(self, effect: str) -> bool:
        return param_model_name(effect) in self.meta["models"]

    def has_selector(self, kind: str) -> bool:
        return selector_model_name(kind) in self.meta["models"]

    def _check_has(self, name: str) -> None:
        if name not in self.meta["models"]:
            raise BundleError(f"Bundle '{self.path}' has no model {name}; it holds {', '.join(self.model_names) or 'none'}.")

    def model(self, name: str):
        """The torch module of model ``name`` (built and cached on first use)."""
        self._check_has(name)
        if name not in self._models:
            self._models[name] = self._build(name)
        return self._models[name]

    def runner(self, name: str):
        """What runs model ``name`` in sessions: its onnxruntime session (``OnnxModel``)
        where ``uses_onnx``, else its torch module; created and cached on first use, so a
        broken file is refused before any work."""
        self._check_has(name)
        if name in self._sessions:
            return self._sessions[name]
        if not self.uses_onnx(name):
            return self.model(name)
        kind, _ = self._description(name)
        data = self._onnx_bytes.pop(name, None)
        if data is None:  # not verified by load: the weights' checksum too, as the torch path checks it
            self._read_checked(name)
            data = self._read_onnx(name)
        self._sessions[name] = OnnxModel(data, inputs=kind.onnx_inputs, threads=self.threads,
                                         what=f"{self.meta['models'][name]['onnx']['file']} of bundle '{self.path}'")
        return self._sessions[name]

    def _inference(self, runner: Any) -> contextlib.AbstractContextManager[None]:
        """torch's thread setting around a torch module's pass (onnxruntime's is per session)."""
        return contextlib.nullcontext() if isinstance(runner, OnnxModel) else _torch_threads(self.threads)

    # -- inference --------------------------------------------------------------------
    def _check_features(self, features: Features, what: str) -> None:
        s = self.feature_settings
        mel_shape, mfcc_shape = (s.n_mels, s.n_frames), (s.n_mfcc, s.n_frames)
        if tuple(features.db_mel.shape) != mel_shape or tuple(features.mfcc.shape) != mfcc_shape:
            raise BundleError(
                f"Features of the {what} have shapes {tuple(features.db_mel.shape)}/{tuple(features.mfcc.shape)} but "
                f"bundle '{self.path}' expects {mel_shape}/{mfcc_shape}; extract them with the bundle's feature settings."
            )

    def _check_inputs(self, currents: Sequence[Features], targets: Sequence[Features]) -> None:
        for features in currents:
            self._check_features(features, "current sound")
        for features in targets:
            self._check_features(features, "target sound")

    def predict_knobs(self, effect: str, current: Features, target: Features) -> dict[str, float]:
        """Knobs of ``effect`` that turn ``current`` toward ``target``: its sampled knobs
        only; continuous in [0, 1], categorical at the centre of the predicted class."""
        return self.predict_knobs_batch(effect, [current], [target])[0]

    def predict_knobs_batch(self, effect: str, currents: Sequence[Features], targets: Sequence[Features]) -> list[dict[str, float]]:
        """``predict_knobs`` for many (current, target) pairs in one forward pass."""
        return [knobs for knobs, _ in self.predict_knobs_ranked(effect, currents, targets)]

    def predict_knobs_ranked(self, effect: str, currents: Sequence[Features], targets: Sequence[Features]
                             ) -> list[tuple[dict[str, float], dict[str, list[tuple[float, float]]]]]:
        """``predict_knobs_batch`` plus, per categorical knob, every class as ``(knob value,
        probability)``, most probable first (the search tries the runners-up)."""
        if effect not in self.effect_specs:
            raise ParameterError(f"Bundle '{self.path}' has no effect {effect!r}; its effects are {', '.join(self.effect_names)}.")
        if len(currents) != len(targets):
            raise ParameterError(f"Got {len(currents)} current sounds but {len(targets)} targets; give one target per sound.")
        if not currents:
            return []
        name = param_model_name(effect)
        model, kind = self.runner(name), self.model_kind(name)
        self._check_inputs(currents, targets)
        with self._inference(model):
            return kind.predict(model, currents, targets, device=self.device)

    def selector_probabilities(self, kind: str, history: Sequence[Features], applied: Sequence[str],
                               target: Features) -> np.ndarray:
        """Probabilities of the NEXT effect, shape ``(n_effects,)`` in rack effect order.

        Parameters
        ----------
        kind: ``rnn`` (whole history), ``ni`` (only ``history[0]``, with the applied
            effects) or ``cnn`` (independent sigmoid per effect from ``history[0]`` and
            the target; they need not sum to 1).
        history: features of the initial input, then after each applied effect
            (``len(history) == len(applied) + 1``).
        applied: effect names applied so far, in order.
        target: features of the target.
        """
        if kind not in SELECTOR_KINDS:
            raise ParameterError(f"Unknown selector {kind!r}; choose one of {', '.join(SELECTOR_KINDS)}.")
        if len(history) != len(applied) + 1:
            raise ParameterError(
                f"History has {len(history)} sounds for {len(applied)} applied effects; give one more sound than effects."
            )
        unknown = [name for name in applied if name not in self.effect_names]
        if unknown:
            raise ParameterError(f"Bundle '{self.path}' has no effect {unknown[0]!r}; its effects are {', '.join(self.effect_names)}.")
        name = selector_model_name(kind)
        model, model_kind = self.runner(name), self.model_kind(name)
        self._check_inputs(history, [target])
        with self._inference(model):
            return model_kind.predict(model, history, [self.effect_names.index(name) for name in applied], target,
                                      device=self.device)

    def describe(self) -> list[dict]:
        """One row per model: name, task, size, dtype, parameters, key metrics, training time."""
        rows = []
        for name, entry in self.meta["models"].items():
            rows.append({
                "model": name, "task": entry.get("task"), "size": entry.get("size"), "dtype": entry.get("dtype"),
                "n_parameters": entry.get("n_parameters"), "metrics": entry.get("metrics", {}),
                "training": entry.get("training", {}),
            })
        return rows
