"""The built-in selectors: choose the next effect of a session.

They are registered by the built-in plugin (``plugins/builtin.py``) like any plugin's,
and implement ``Selector`` (``core/interfaces.py``): ``probabilities(state)`` gives a
score per rack effect (higher = more likely next). The session engine takes the most
probable effect not yet used.
"""

from __future__ import annotations

import attrs
import numpy as np

from serumrnn.core.errors import ParameterError
from serumrnn.core.interfaces import SelectionState, Selector

__all__ = ["BUILTIN_SELECTORS", "ModelSelector", "OracleSelector", "RandomSelector"]


@attrs.frozen
class ModelSelector(Selector):
    """A selector backed by one of the bundle's selection models (rnn, ni, cnn)."""

    name: str
    description: str
    model_kind: str
    one_shot: bool = False
    needs_true_chain: bool = False

    def probabilities(self, state: SelectionState) -> np.ndarray:
        return state.bundle.selector_probabilities(self.model_kind, state.history, state.applied, state.target)


class RandomSelector(Selector):
    """Uniformly random among the unused effects (the paper's Random baseline)."""

    name = "random"
    description = "picks a random unused effect (baseline)"

    def probabilities(self, state: SelectionState) -> np.ndarray:
        return state.rng.random(len(state.effect_names))


class OracleSelector(Selector):
    """The true next effect of the chain that made the target (evaluation only)."""

    name = "oracle"
    description = "the true next effect (evaluation only: needs the true chain)"
    needs_true_chain = True

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


BUILTIN_SELECTORS: tuple[Selector, ...] = (
    ModelSelector("rnn", "SerumRNN: BiLSTM over every step so far (default)", "rnn"),
    ModelSelector("ni", "SerumRNN NI: the same network seeing only the input and target", "ni"),
    ModelSelector("cnn", "SerumCNN: multi-label CNN on input and target, most probable unused next", "cnn"),
    ModelSelector("cnn-1s", "SerumCNN one-shot: all effects chosen and predicted at once, rendered once",
                  "cnn", one_shot=True),
    RandomSelector(),
    OracleSelector(),
)
