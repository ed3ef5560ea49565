"""For tests that need something installed (the linux-vst plugins, a browser): skipped
without it on a user's machine, failing under CI (CI=1), which must have it."""

from __future__ import annotations

import os

import pytest


def require(available: bool, message: str) -> None:
    """Skip with ``message`` when not ``available``; fail instead under CI."""
    if not available:
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
