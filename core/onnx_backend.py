"""The ONNX inference backend: a bundle model exported to ONNX (``export_onnx``, torch)
and run with onnxruntime (``OnnxModel``, no torch).

Sessions run the bundle's ONNX exports, so a session never imports torch (about 3 s
of start-up); training, the evaluation on datasets and bundles without exports run the
torch modules. What each kind feeds and reads is ``core/model_kinds.py``'s
(``onnx_inputs``, ``onnx_outputs``, ``export_module``); ``core/bundle.py`` decides which
backend runs a model (``docs/design.md``, Inference backends).

torch and onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serumrnn.core.errors import BundleError

# The ONNX opset of exports (onnxruntime 1.17 and later run it).
OPSET = 17
# Inputs traced at export: any batch or step count other than 1, so neither is fixed.
_EXAMPLE_ROWS = 2


def export_onnx(kind: Any, model: Any, settings: Any) -> bytes:
    """ONNX bytes of ``model`` (a torch module of ``kind``, float32 on the CPU, as the
    bundle builds it) with a dynamic batch (parameter models, cnn) or step count (rnn,
    ni). The same weights give the same bytes."""
    import warnings

    import torch

    module = kind.export_module(model).eval()
    rng = np.random.default_rng(0)
    example = kind.onnx_example(settings, _EXAMPLE_ROWS, rng)
    args = tuple(torch.from_numpy(example[name]) for name in kind.onnx_inputs)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of dynamo's, which needs
        # onnxscript; its tracer warnings (shapes read as Python ints) are expected too.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buffer, dynamo=False, input_names=list(kind.onnx_inputs),
                          output_names=list(kind.onnx_outputs), dynamic_axes=kind.onnx_dynamic_axes(),
                          opset_version=OPSET, do_constant_folding=True)
    return buffer.getvalue()


class OnnxModel:
    """One onnxruntime session of a bundle model (CPU provider).

    ``threads``: intra-op threads (None: onnxruntime's default); ``what`` names the file in
    errors. A file onnxruntime cannot load, or whose inputs are not ``inputs``, is refused
    in one sentence."""

    def __init__(self, data: bytes, *, inputs: Sequence[str], threads: int | None, what: str) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: a session prints nothing else
        self.what = what
        try:
            self.session = onnxruntime.InferenceSession(data, sess_options=options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own error types
            raise BundleError(f"{what} is not a valid ONNX model ({type(exc).__name__}); "
                              "export it again with `serumrnn bundle export-onnx`.") from None
        names = [node.name for node in self.session.get_inputs()]
        if names != list(inputs):
            raise BundleError(f"{what} takes inputs {', '.join(names)}, not {', '.join(inputs)}; "
                              "export it again with `serumrnn bundle export-onnx`.")

    def run(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(None, dict(feed))
        except Exception as exc:  # shapes the export does not fit
            raise BundleError(f"{self.what} failed on its inputs ({type(exc).__name__}); "
                              "export it again with `serumrnn bundle export-onnx`.") from None
