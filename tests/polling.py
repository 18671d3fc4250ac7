"""Waiting in tests for something another thread or process does, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(check: Callable[[], bool], seconds: float = 5) -> None:
    """Poll ``check`` until it holds; fail the test if ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)
