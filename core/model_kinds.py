"""The four kinds of model, one object each: ``params``, ``rnn``, ``ni`` and ``cnn``.

A kind holds everything that differs between them, so that training
(``core/training.py``), the bundle's inference (``core/bundle.py``) and evaluation
(``core/evaluation.py``) take the same path for each:

- ``build``: a fresh network of ``core/models.py`` for the feature settings and a size;
- ``training_view``: its torch ``Dataset`` over a generated dataset (``core/views.py``);
- ``forward``, ``batch_weight``, ``loss``, ``new_meter``, ``measure``, ``metrics``: what
  the training loop and validation need;
- ``encode`` (sounds' features into a batch), ``infer`` (the one batched forward pass
  in inference mode, of a torch module or an ONNX export), ``decode`` (outputs into
  knobs or probabilities, in numpy for both backends) and ``predict`` (the three in a row);
- ``export_module``, ``onnx_inputs``, ``onnx_outputs``, ``onnx_dynamic_axes`` and
  ``onnx_example``: what the ONNX export traces and runs (``core/onnx_backend.py``).

The two rules every path shares live here too: the applied-effects encoding of a
selector's steps (``applied_before_steps``) and the choice of the next effect from a
selector's scores (``most_probable_unused``).

torch is imported inside the functions that need it (``docs/design.md``, Layers), so the
session engine imports the selection rule without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serumrnn.core.errors import ParameterError
from serumrnn.core.features import Features, FeatureSettings
from serumrnn.core.onnx_backend import OnnxModel
from serumrnn.core.params import ParamSpec
from serumrnn.core.search import ranked_unused

PARAMS = "params"
SELECTOR_KINDS = ("rnn", "ni", "cnn")
IGNORE_INDEX = -100  # label of padded steps (torch's cross-entropy ignore_index)


# -- rules shared by every path -----------------------------------------------------------------
def most_probable_unused(scores: np.ndarray, effect_names: Sequence[Any], applied: Sequence[Any]) -> tuple[Any, float]:
    """The highest-scoring effect not applied yet and its score (ties go to the first in
    rack order): how a session, evaluation and the training metrics turn a selector's
    scores into the next effect, so a used effect is never repeated."""
    ranked = ranked_unused(np.asarray(scores, dtype=np.float64), effect_names, applied)
    if not ranked:
        raise ParameterError("Every effect has been applied already.")
    return ranked[0]


def applied_before_steps(applied: Sequence[int], n_effects: int, steps: int, rows: int | None = None) -> np.ndarray:
    """A selector's applied-effects input, float32 ``(rows, n_effects + 1)`` as
    ``[start, effect_1..n]``: step 0 is ``start``, step ``t < steps`` marks every effect
    of ``applied[:t]`` (rack indices; cumulative), rows from ``steps`` on are padding."""
    encoded = np.zeros((steps if rows is None else rows, n_effects + 1), dtype=np.float32)
    encoded[0, 0] = 1.0
    for step in range(1, steps):
        encoded[step, [1 + index for index in applied[:step]]] = 1.0
    return encoded


def split_specs(specs: Sequence[ParamSpec]) -> tuple[list[ParamSpec], list[ParamSpec]]:
    """The sampled knobs of an effect, in ``ParamSpec`` order: (continuous, categorical)."""
    sampled = [spec for spec in specs if spec.sampled]
    return ([s for s in sampled if s.kind == "continuous"], [s for s in sampled if s.kind == "categorical"])


def encode_pair(current: Features, target: Features) -> tuple[np.ndarray, np.ndarray]:
    """Two-channel model inputs: mel ``(2, n_mels, n_frames)`` and mfcc ``(2, n_mfcc, n_frames)``."""
    mel = np.stack([current.norm_mel, target.norm_mel]).astype(np.float32, copy=False)
    mfcc = np.stack([current.mfcc, target.mfcc]).astype(np.float32, copy=False)
    return mel, mfcc


def _encode_pairs(pairs: Sequence[tuple[Features, Features]]) -> dict[str, np.ndarray]:
    encoded = [encode_pair(current, target) for current, target in pairs]
    return {"mel": np.stack([mel for mel, _ in encoded]), "mfcc": np.stack([mfcc for _, mfcc in encoded])}


def to_numpy(outputs: Any) -> Any:
    """Outputs of ``infer`` as numpy arrays (torch tensors as float32, lists and tuples
    kept), so one ``decode`` reads both backends."""
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(to_numpy(item) for item in outputs)
    if hasattr(outputs, "detach"):  # a torch tensor; torch itself need not be imported here
        return outputs.detach().float().cpu().numpy()
    return np.asarray(outputs)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax in float32, the largest logit subtracted first (equal to torch's within
    float32 rounding)."""
    logits = np.asarray(logits, dtype=np.float32)
    exp = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return exp / exp.sum(axis=axis, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Logistic function in float32 (a large negative logit gives 0, not a warning)."""
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float32)))).astype(np.float32)


def batch_on_device(batch: Mapping[str, Any], device: Any) -> dict:
    """``batch`` with its arrays and tensors on ``device`` (anything else as it is)."""
    import torch

    def moved(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        return value.to(device, non_blocking=True) if torch.is_tensor(value) else value

    return {key: moved(value) for key, value in batch.items()}


class Meter:
    """Sums of one validation pass, as float64 tensors (training all-reduces them over ranks)."""

    def __init__(self, sums: dict[str, Any]) -> None:
        self.sums = sums

    def add(self, key: str, value: Any) -> None:
        import torch

        value = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
        self.sums[key] = self.sums[key] + value


def _zeros(*shape: int) -> Any:
    import torch

    return torch.zeros(shape, dtype=torch.float64)


# -- the kinds -----------------------------------------------------------------------------------
class ModelKind:
    """What training, the bundle and evaluation need to know about one kind of model.

    Subclasses set ``name`` and implement ``build``, ``training_view``, ``loss``,
    ``new_meter``, ``measure``, ``metrics``, ``encode`` and ``decode``; a batch holds
    tensors (or arrays) under the keys of the kind's view items.
    """

    name: str
    default_batch_size = 128
    # ONNX exports: input names (batch keys, in ``forward`` order) and output names.
    onnx_inputs: tuple[str, ...] = ("mel", "mfcc")
    onnx_outputs: tuple[str, ...] = ("logits",)

    def build(self, settings: FeatureSettings, size: Any) -> Any:
        """A fresh network for ``settings`` and model size ``size`` (name or ``ModelConfig``)."""
        raise NotImplementedError

    def training_view(self, reader: Any, split: str) -> Any:
        """The torch ``Dataset`` of this kind over a ``DatasetReader``'s ``split``."""
        raise NotImplementedError

    def forward(self, model: Any, batch: Mapping) -> Any:
        return model(batch["mel"], batch["mfcc"])

    def batch_weight(self, batch: Mapping) -> int:
        """How much a batch's mean loss weighs in the epoch's mean."""
        return int(batch["mel"].shape[0])

    def infer(self, model: Any, batch: Mapping, device: Any) -> Any:
        """The outputs of ``model`` for ``batch``: a torch module (in eval mode) runs
        in inference mode on ``device`` and gives tensors; an ``OnnxModel`` (an export of
        ``export_module``) gives numpy arrays in the same structure (``from_onnx``)."""
        if isinstance(model, OnnxModel):
            return self.from_onnx(model.run({name: np.ascontiguousarray(batch[name], dtype=np.float32)
                                             for name in self.onnx_inputs}))
        import torch

        with torch.inference_mode():
            return self.forward(model, batch_on_device(batch, device))

    # -- ONNX export -------------------------------------------------------------------------------
    def export_module(self, model: Any) -> Any:
        """The torch module the ONNX export traces: ``forward(*onnx_inputs)``."""
        return model

    def onnx_dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Axes of the export's inputs and outputs that vary: the batch."""
        return {name: {0: "batch"} for name in (*self.onnx_inputs, *self.onnx_outputs)}

    def onnx_example(self, settings: FeatureSettings, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Inputs to trace the export with: ``rows`` examples of ``settings``' shapes."""
        return {"mel": rng.random((rows, 2, settings.n_mels, settings.n_frames), dtype=np.float32),
                "mfcc": rng.standard_normal((rows, 2, settings.n_mfcc, settings.n_frames), dtype=np.float32)}

    def from_onnx(self, outputs: list[np.ndarray]) -> Any:
        """onnxruntime's outputs (``onnx_outputs`` order) as ``forward`` structures them."""
        return outputs[0]

    def encode(self, *inputs: Any) -> dict[str, np.ndarray]:
        """A batch of arrays from sounds' features (arguments differ by kind)."""
        raise NotImplementedError

    def decode(self, outputs: Any) -> Any:
        """What the outputs of ``infer`` say: knobs, or probabilities of effects."""
        raise NotImplementedError

    def predict(self, model: Any, *inputs: Any, device: Any = "cpu") -> Any:
        """``decode(infer(encode(*inputs)))``: the one inference path of the bundle.
        Parameter models take ``(currents, targets)``; selectors ``(history, applied,
        target)``: the sounds so far (one more than ``applied``, the rack indices of the
        effects applied) and the target."""
        return self.decode(self.infer(model, self.encode(*inputs), device))


class ParameterKind(ModelKind):
    """An effect parameter model: sampled knobs of one effect from ``[input, target]``.

    ``specs`` are the effect's ``ParamSpec``s (all of them: knobs are reported in their
    order); ``effect`` names it in datasets (needed for ``training_view`` only).
    """

    name = PARAMS

    def __init__(self, specs: Sequence[ParamSpec], effect: str | None = None) -> None:
        self.specs = tuple(specs)
        self.effect = effect
        self.continuous_specs, self.categorical_specs = split_specs(self.specs)
        # forward's (continuous, [logits per categorical knob]), flattened
        self.onnx_outputs = ("continuous", *(f"logits_{i}" for i in range(len(self.categorical_specs))))

    def build(self, settings: FeatureSettings, size: Any) -> Any:
        from serumrnn.core.model_config import model_config
        from serumrnn.core.models import EffectParameterModel

        return EffectParameterModel(settings, model_config(size), self.continuous_specs, self.categorical_specs)

    def training_view(self, reader: Any, split: str) -> Any:
        from serumrnn.core.views import ParameterPairs

        if self.effect is None:
            raise ParameterError("A parameter model's training view needs its effect's name.")
        return ParameterPairs(reader, self.effect, split)

    def loss(self, outputs: Any, batch: Mapping) -> Any:
        import torch
        import torch.nn.functional as F

        continuous, logits = outputs
        total = continuous.new_zeros((), dtype=torch.float32)
        if self.continuous_specs:
            total = total + F.mse_loss(continuous.float(), batch["continuous"].float())
        for index, head in enumerate(logits):
            total = total + F.cross_entropy(head.float(), batch["categorical"][:, index].long())
        return total

    def new_meter(self) -> Meter:
        n_continuous = len(self.continuous_specs)
        sums = {"count": _zeros(), "abs_error": _zeros(n_continuous), "sq_error": _zeros(n_continuous),
                "target_sum": _zeros(n_continuous), "target_sq_sum": _zeros(n_continuous)}
        for index, spec in enumerate(self.categorical_specs):
            sums[f"correct_{index}"] = _zeros()
            sums[f"nll_{index}"] = _zeros()
            sums[f"class_counts_{index}"] = _zeros(spec.n_classes)
        return Meter(sums)

    def measure(self, meter: Meter, outputs: Any, batch: Mapping) -> None:
        import torch
        import torch.nn.functional as F

        continuous, logits = outputs
        meter.add("count", batch["mel"].shape[0])
        if self.continuous_specs:
            target = batch["continuous"].double()
            error = continuous.double() - target
            meter.add("abs_error", error.abs().sum(0))
            meter.add("sq_error", (error**2).sum(0))
            meter.add("target_sum", target.sum(0))
            meter.add("target_sq_sum", (target**2).sum(0))
        for index, head in enumerate(logits):
            labels = batch["categorical"][:, index].long()
            meter.add(f"correct_{index}", (head.argmax(1) == labels).sum())
            meter.add(f"nll_{index}", F.cross_entropy(head.double(), labels, reduction="sum"))
            meter.add(f"class_counts_{index}", torch.bincount(labels.cpu(), minlength=head.shape[1]).double())

    def metrics(self, meter: Meter) -> dict:
        s = meter.sums
        count = max(float(s["count"]), 1.0)
        out: dict[str, Any] = {"validation_samples": int(s["count"])}
        loss = baseline = 0.0
        if self.continuous_specs:
            mean = s["target_sum"] / count
            variance = (s["target_sq_sum"] / count - mean**2).clamp(min=0.0)
            loss += float((s["sq_error"] / count).mean())
            # Predicting each knob's mean scores its variance (MSE loss averages over knobs).
            baseline += float(variance.mean())
            out["knob_mae"] = {spec.name: float(s["abs_error"][i] / count) for i, spec in enumerate(self.continuous_specs)}
            out["knob_rmse"] = {
                spec.name: math.sqrt(float(s["sq_error"][i] / count)) for i, spec in enumerate(self.continuous_specs)
            }
            # Predicting a knob's mean has an RMSE equal to the knob's standard deviation.
            out["knob_rmse_baseline"] = {
                spec.name: math.sqrt(float(variance[i])) for i, spec in enumerate(self.continuous_specs)
            }
        accuracy = {}
        for index, spec in enumerate(self.categorical_specs):
            loss += float(s[f"nll_{index}"]) / count
            frequencies = s[f"class_counts_{index}"] / count
            baseline += float(-(frequencies[frequencies > 0] * frequencies[frequencies > 0].log()).sum())
            accuracy[spec.name] = float(s[f"correct_{index}"]) / count
        if accuracy:
            out["class_accuracy"] = accuracy
            out["class_accuracy_baseline"] = {
                spec.name: float((s[f"class_counts_{i}"] / count).max()) for i, spec in enumerate(self.categorical_specs)
            }
        out["validation_loss"] = loss
        out["baseline_loss"] = baseline
        return out

    # -- inference -------------------------------------------------------------------------------
    def encode(self, currents: Sequence[Features], targets: Sequence[Features]) -> dict[str, np.ndarray]:
        """A batch of (current, target) pairs."""
        return _encode_pairs(list(zip(currents, targets)))

    def export_module(self, model: Any) -> Any:
        from serumrnn.core.models import FlatParameterOutputs

        return FlatParameterOutputs(model)

    def from_onnx(self, outputs: list[np.ndarray]) -> Any:
        return outputs[0], list(outputs[1:])

    def decode(self, outputs: Any) -> list[tuple[dict[str, float], dict[str, list[tuple[float, float]]]]]:
        """Per row: the sampled knobs (continuous in [0, 1], categorical at the centre of
        the most probable class, in ``specs`` order) and, per categorical knob, every class
        as ``(knob value, probability)``, the chosen one first, then by probability."""
        continuous, logits = to_numpy(outputs)
        continuous = np.clip(continuous.astype(np.float32), 0.0, 1.0)
        classes = [head.argmax(axis=1) for head in logits]
        probabilities = [softmax(head, axis=1) for head in logits]
        results = []
        for row in range(len(continuous)):
            values = {spec.name: float(continuous[row, i]) for i, spec in enumerate(self.continuous_specs)}
            values.update({spec.name: spec.class_knob(int(classes[i][row])) for i, spec in enumerate(self.categorical_specs)})
            ranked = {}
            for i, spec in enumerate(self.categorical_specs):
                row_probabilities = probabilities[i][row]
                order = [int(classes[i][row]), *(int(c) for c in np.argsort(-row_probabilities, kind="stable")
                                                 if c != classes[i][row])]
                ranked[spec.name] = [(spec.class_knob(c), float(row_probabilities[c])) for c in order]
            results.append(({spec.name: values[spec.name] for spec in self.specs if spec.name in values}, ranked))
        return results


class SequenceSelectorKind(ModelKind):
    """SerumRNN (``rnn``) or its non-iterative baseline (``ni``): the next effect from
    the sounds so far and the effects applied, over ``n_effects`` rack effects."""

    default_batch_size = 32
    onnx_inputs = ("mel", "mfcc", "applied")

    def __init__(self, name: str, n_effects: int) -> None:
        self.name = name
        self.n_effects = n_effects
        self.first_step_only = name == "ni"

    def build(self, settings: FeatureSettings, size: Any) -> Any:
        from serumrnn.core.model_config import model_config
        from serumrnn.core.models import EffectSelectionModel

        return EffectSelectionModel(settings, model_config(size), self.n_effects, first_step_only=self.first_step_only)

    def training_view(self, reader: Any, split: str) -> Any:
        from serumrnn.core.views import SelectionSequences

        return SelectionSequences(reader, split)

    def forward(self, model: Any, batch: Mapping) -> Any:
        return model(batch["mel"], batch["mfcc"], batch["applied"], batch["length"])

    def batch_weight(self, batch: Mapping) -> int:
        return int((batch["labels"] != IGNORE_INDEX).sum())

    def loss(self, outputs: Any, batch: Mapping) -> Any:
        import torch.nn.functional as F

        return F.cross_entropy(outputs.float().reshape(-1, self.n_effects), batch["labels"].reshape(-1).long(),
                               ignore_index=IGNORE_INDEX)

    def new_meter(self) -> Meter:
        return Meter({"nll": _zeros(), "correct_unused": _zeros(), "correct_per_step": _zeros(self.n_effects),
                      "count_per_step": _zeros(self.n_effects), "remaining_per_step": _zeros(self.n_effects),
                      "label_counts": _zeros(self.n_effects)})

    def measure(self, meter: Meter, outputs: Any, batch: Mapping) -> None:
        import torch
        import torch.nn.functional as F

        labels = batch["labels"].long()
        valid = labels != IGNORE_INDEX
        logits = outputs.double()
        meter.add("nll", F.cross_entropy(logits.reshape(-1, self.n_effects), labels.reshape(-1),
                                         ignore_index=IGNORE_INDEX, reduction="sum"))
        correct = (logits.argmax(2) == labels) & valid
        meter.add("correct_unused", self._correct_among_unused(logits, labels, batch["applied"]))
        # Chains are applied in random order, so any effect the target still lacks is a
        # right next step: the label of this step or of any later one.
        later = F.one_hot(labels.clamp(min=0), self.n_effects) * valid.unsqueeze(2)
        remaining = torch.flip(torch.cumsum(torch.flip(later, [1]), dim=1), [1]) > 0
        in_remaining = remaining.gather(2, logits.argmax(2, keepdim=True)).squeeze(2) & valid
        steps = labels.shape[1]
        remaining_per_step, per_step, counts = _zeros(self.n_effects), _zeros(self.n_effects), _zeros(self.n_effects)
        remaining_per_step[:steps] = in_remaining.sum(0).double().cpu()
        per_step[:steps] = correct.sum(0).double().cpu()
        counts[:steps] = valid.sum(0).double().cpu()
        meter.add("remaining_per_step", remaining_per_step)
        meter.add("correct_per_step", per_step)
        meter.add("count_per_step", counts)
        meter.add("label_counts", torch.bincount(labels[valid].cpu(), minlength=self.n_effects).double())

    def _correct_among_unused(self, logits: Any, labels: Any, applied: Any) -> int:
        """Steps whose label is the session's pick (``most_probable_unused``) from the logits."""
        import torch

        from serumrnn.core.models import per_step_one_hot

        # ``applied`` may be cumulative or per step: per_step_one_hot reads both.
        used = (torch.cumsum(per_step_one_hot(applied.double())[..., 1:], dim=1) > 0).cpu().numpy()
        scores, labels = logits.cpu().numpy(), labels.cpu().numpy()
        effects = range(self.n_effects)
        return sum(
            most_probable_unused(scores[row, step], effects, np.flatnonzero(used[row, step]).tolist())[0]
            == labels[row, step]
            for row, step in zip(*np.nonzero(labels != IGNORE_INDEX))
        )

    def metrics(self, meter: Meter) -> dict:
        s = meter.sums
        total = max(float(s["count_per_step"].sum()), 1.0)
        frequencies = s["label_counts"] / total
        positive = frequencies[frequencies > 0]

        def per_step(key: str) -> dict[str, float]:
            return {str(step + 1): float(s[key][step] / s["count_per_step"][step])
                    for step in range(self.n_effects) if s["count_per_step"][step] > 0}

        return {
            "validation_steps": int(total),
            "validation_loss": float(s["nll"]) / total,
            "baseline_loss": float(-(positive * positive.log()).sum()),
            "accuracy": float(s["correct_per_step"].sum()) / total,
            "accuracy_per_step": per_step("correct_per_step"),
            "accuracy_among_unused": float(s["correct_unused"]) / total,
            "accuracy_remaining": float(s["remaining_per_step"].sum()) / total,
            "accuracy_remaining_per_step": per_step("remaining_per_step"),
        }

    # -- inference -------------------------------------------------------------------------------
    def encode(self, history: Sequence[Features], applied: Sequence[int], target: Features) -> dict[str, np.ndarray]:
        """A batch of one sequence: a step per sound of ``history`` (NI reads only the
        first), ``applied`` the rack indices of the effects applied so far."""
        if len(applied) >= self.n_effects:
            raise ParameterError("Every effect has been applied already; there is no next effect to choose.")
        steps = history if not self.first_step_only else [history[0]] * len(history)
        pairs = _encode_pairs([(step, target) for step in steps])
        return {"mel": pairs["mel"][None], "mfcc": pairs["mfcc"][None],
                "applied": applied_before_steps(applied, self.n_effects, len(steps))[None],
                "length": np.array([len(steps)], dtype=np.int64)}

    def decode(self, outputs: Any) -> np.ndarray:
        """Probabilities of the next effect after the last step of the one sequence,
        float64 ``(n_effects,)`` in rack order."""
        return softmax(to_numpy(outputs)[0, -1]).astype(np.float64)

    # The export reads the last step of one sequence of valid steps, all a session asks:
    # the LSTM then runs unpacked (``LastStepSelector``), and the step count varies.
    def export_module(self, model: Any) -> Any:
        from serumrnn.core.models import LastStepSelector

        return LastStepSelector(model)

    def onnx_dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {name: {1: "steps"} for name in self.onnx_inputs}

    def onnx_example(self, settings: FeatureSettings, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        pairs = super().onnx_example(settings, rows, rng)
        return {"mel": pairs["mel"][None], "mfcc": pairs["mfcc"][None],
                "applied": applied_before_steps(list(range(rows - 1)), self.n_effects, rows)[None]}

    def from_onnx(self, outputs: list[np.ndarray]) -> Any:
        """``(1, 1, n_effects)``: the logits of the last step only, which ``decode`` reads."""
        return outputs[0][:, None, :]


class MultiLabelKind(ModelKind):
    """The SerumCNN baseline: which of ``n_effects`` effects turn the dry input into the
    target (an independent probability each)."""

    name = "cnn"

    def __init__(self, n_effects: int) -> None:
        self.n_effects = n_effects

    def build(self, settings: FeatureSettings, size: Any) -> Any:
        from serumrnn.core.model_config import model_config
        from serumrnn.core.models import MultiLabelEffectModel

        return MultiLabelEffectModel(settings, model_config(size), self.n_effects)

    def training_view(self, reader: Any, split: str) -> Any:
        from serumrnn.core.views import MultiLabelTargets

        return MultiLabelTargets(reader, split)

    def loss(self, outputs: Any, batch: Mapping) -> Any:
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(outputs.float(), batch["labels"].float())

    def new_meter(self) -> Meter:
        return Meter({"count": _zeros(), "bce": _zeros(), "correct_labels": _zeros(self.n_effects),
                      "exact": _zeros(), "positives": _zeros(self.n_effects)})

    def measure(self, meter: Meter, outputs: Any, batch: Mapping) -> None:
        import torch.nn.functional as F

        labels = batch["labels"].double()
        logits = outputs.double()
        predicted = (logits > 0).double()
        meter.add("count", labels.shape[0])
        meter.add("bce", F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / self.n_effects)
        meter.add("correct_labels", (predicted == labels).double().sum(0))
        meter.add("exact", (predicted == labels).all(1).double().sum())
        meter.add("positives", labels.sum(0))

    def metrics(self, meter: Meter) -> dict:
        s = meter.sums
        count = max(float(s["count"]), 1.0)
        rate = (s["positives"] / count).clamp(1e-12, 1 - 1e-12)
        baseline = float((-(rate * rate.log() + (1 - rate) * (1 - rate).log())).mean())
        return {
            "validation_samples": int(s["count"]),
            "validation_loss": float(s["bce"]) / count,
            "baseline_loss": baseline,
            "label_accuracy": float(s["correct_labels"].sum()) / (count * self.n_effects),
            "exact_set_accuracy": float(s["exact"]) / count,
        }

    # -- inference -------------------------------------------------------------------------------
    def encode(self, history: Sequence[Features], applied: Sequence[int], target: Features) -> dict[str, np.ndarray]:
        """A batch of one (dry input, target) pair: the one-shot baseline reads only the
        first sound of ``history`` and none of ``applied``."""
        return _encode_pairs([(history[0], target)])

    def probabilities(self, outputs: Any) -> Any:
        """Per row and effect, the probability that the target has it (a tensor)."""
        import torch

        return torch.sigmoid(outputs.float())

    def decode(self, outputs: Any) -> np.ndarray:
        """The first row's probabilities, float64 ``(n_effects,)`` (they need not sum to 1)."""
        return sigmoid(to_numpy(outputs)[0]).astype(np.float64)


def model_kind(name: str, *, specs: Sequence[ParamSpec] = (), n_effects: int = 0,
               effect: str | None = None) -> ModelKind:
    """The kind ``name``: ``params`` (with the effect's ``specs``, and its name ``effect``
    for training) or a selector kind ``rnn``/``ni``/``cnn`` (with ``n_effects``)."""
    if name == PARAMS:
        return ParameterKind(specs, effect)
    if name in ("rnn", "ni"):
        return SequenceSelectorKind(name, n_effects)
    if name == "cnn":
        return MultiLabelKind(n_effects)
    raise ParameterError(f"Unknown model task {name!r}; choose params or one of {', '.join(SELECTOR_KINDS)}.")


def model_kind_for(name: str, effects: Mapping[str, Sequence[ParamSpec]], effect: str | None = None) -> ModelKind:
    """The kind ``name`` for a rack's ``effects`` (name -> specs, in rack order);
    ``effect`` is the parameter model's effect (a ``KeyError`` when ``effects`` lacks it)."""
    specs = effects[effect] if name == PARAMS else ()  # type: ignore[index]
    return model_kind(name, specs=specs, n_effects=len(effects), effect=effect)
