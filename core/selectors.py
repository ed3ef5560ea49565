"""Effect selectors: choose the next effect of a session.

A selector is registered through ``serumrnn_register_selectors`` and answers
``probabilities(state)``: a score per rack effect (higher = more likely next). The
session engine takes the most probable effect not yet used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import attrs
import numpy as np

from serumrnn.core.errors import ParameterError
from serumrnn.core.features import Features


@attrs.define
class SelectionState:
    """What a selector may look at.

    history: features of the input, then after each applied effect
        (``len(history) == len(applied) + 1``).
    applied: effect names applied so far, in order.
    target: features of the target.
    effect_names: the rack's effects, in rack order (probabilities use this order).
    bundle: the loaded ``ModelBundle`` (None for selectors that need no model).
    true_chain: effect names of the chain that made the target (evaluation only).
    rng: random generator of the session.
    """

    history: Sequence[Features]
    applied: Sequence[str]
    target: Features
    effect_names: tuple[str, ...]
    bundle: Any = None
    true_chain: Sequence[str] | None = None
    rng: np.random.Generator = attrs.field(factory=lambda: np.random.default_rng(0))


class Selector(Protocol):
    name: str
    description: str
    # One-shot systems pick every effect from the input alone, before any render.
    one_shot: bool
    # Selectors that need the bundle's model of this kind (None: no model needed).
    model_kind: str | None
    # Evaluation-only selectors that read the true chain of the target.
    needs_true_chain: bool

    def probabilities(self, state: SelectionState) -> np.ndarray:
        """Scores, shape ``(len(state.effect_names),)``; higher is more likely next."""


@attrs.frozen
class ModelSelector:
    """A selector backed by one of the bundle's selection models (rnn, ni, cnn)."""

    name: str
    description: str
    model_kind: str
    one_shot: bool = False
    needs_true_chain: bool = False

    def probabilities(self, state: SelectionState) -> np.ndarray:
        return state.bundle.selector_probabilities(self.model_kind, state.history, state.applied, state.target)


@attrs.frozen
class RandomSelector:
    """Uniformly random among the unused effects (the paper's Random baseline)."""

    name: str = "random"
    description: str = "picks a random unused effect (baseline)"
    model_kind: str | None = None
    one_shot: bool = False
    needs_true_chain: bool = False

    def probabilities(self, state: SelectionState) -> np.ndarray:
        return state.rng.random(len(state.effect_names))


@attrs.frozen
class OracleSelector:
    """The true next effect of the chain that made the target (evaluation only)."""

    name: str = "oracle"
    description: str = "the true next effect (evaluation only: needs the true chain)"
    model_kind: str | None = None
    one_shot: bool = False
    needs_true_chain: bool = True

    def probabilities(self, state: SelectionState) -> np.ndarray:
        if state.true_chain is None:
            raise ParameterError(
                "The oracle selector needs the true effect chain of the target; it is for evaluation "
                "and the demo only, use rnn for your own sounds."
            )
        scores = np.zeros(len(state.effect_names))
        remaining = [name for name in state.true_chain if name not in state.applied]
        if remaining:
            scores[state.effect_names.index(remaining[0])] = 1.0
        return scores


BUILTIN_SELECTORS: tuple[Any, ...] = (
    ModelSelector("rnn", "SerumRNN: BiLSTM over every step so far (default)", "rnn"),
    ModelSelector("ni", "SerumRNN NI: the same network seeing only the input and target", "ni"),
    ModelSelector("cnn", "SerumCNN: multi-label CNN on input and target, most probable unused next", "cnn"),
    ModelSelector("cnn-1s", "SerumCNN one-shot: all effects chosen and predicted at once, rendered once",
                  "cnn", one_shot=True),
    RandomSelector(),
    OracleSelector(),
)
