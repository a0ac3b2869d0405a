# -*- test-case-name: tests.unit.test_forwarder -*-
"""
How long the forwarder waits before trying a failed delivery again.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """
    Exponential backoff with jitter: attempt I{n} waits between half and all
    of C{min(cap, base * 2**n)} seconds, so retries from many alerts spread
    out instead of arriving together.
    """

    def __init__(self, base: float = 0.5, cap: float = 30.0, rand: Callable[[], float] = random.random) -> None:
        self.base = base
        self.cap = cap
        self._rand = rand

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cap * 10)
        ceiling = min(self.cap, self.base * 2.0**attempt)
        return ceiling / 2 + self._rand() * ceiling / 2
