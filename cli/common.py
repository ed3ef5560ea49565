"""Shared CLI helpers: error handling, consoles, JSON output, chain parsing."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from serumrnn.core.errors import ParameterError, SerumRNNError

console = Console()
error_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 70


def friendly_errors(function: F) -> F:
    """Turn errors into one sentence on stderr and a non-zero exit, never a traceback.
    ``SERUMRNN_DEBUG=1`` re-raises unexpected errors to show their traceback."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except SerumRNNError as exc:
            error_console.print(f"Error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            error_console.print("Interrupted; nothing partial was kept.", markup=False)
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("SERUMRNN_DEBUG"):
                raise
            message = str(exc).splitlines()[0] if str(exc) else ""
            error_console.print(
                f"Internal error ({type(exc).__name__}: {message}); please report it, "
                "and set SERUMRNN_DEBUG=1 to see the traceback.",
                markup=False, highlight=False, soft_wrap=True,
            )
            raise typer.Exit(EXIT_INTERNAL_ERROR) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def parse_fx(text: str, rack) -> tuple[str, dict[str, float]]:
    """``"distortion:mode=tube,drive=0.7"`` -> ``("distortion", {"mode": 0.0416.., "drive": 0.7})``.
    A bare effect name keeps every knob at its default."""
    name, _, knob_text = text.partition(":")
    name = name.strip().lower()
    if not name:
        raise ParameterError(f"--fx {text!r} names no effect; write it as effect:knob=value,knob=value.")
    effect = rack.effect(name)
    knobs: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in knob_text.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip() or not value.strip():
            raise ParameterError(
                f"--fx {text!r} has {item!r}, which is not knob=value; write it as effect:knob=value,knob=value."
            )
        spec = effect.param(key.strip().lower())
        knobs[spec.name] = spec.parse(value, effect=name)
    return name, knobs
