"""Waiting for something another thread or process does: one bounded poll, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout_s: float = 30.0, what: str = "the condition",
               interval_s: float = 0.02) -> T:
    """Calls `check` until it returns something truthy and returns that; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s:.0f} s"
        time.sleep(interval_s)
