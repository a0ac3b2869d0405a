# -*- test-case-name: tests.unit.test_patterns -*-
"""
What recent deliveries say about the Alert Processor: an adaptive per-attempt
timeout and an exponentially weighted failure ratio.

The timeout follows observed latency, within a floor and the configured
timeout: a high percentile of recent successful attempts times a safety
factor is where it tends, slowly (a few percent per success), so a fast
processor is noticed when it hangs.  A timed-out attempt sends it back to
the configured timeout at once: a processor that became slower (5 ms, then
0.7 s) gets the next attempt with all the time the operator allowed, rather
than being cut off for ever by what it used to take.  The failure ratio
rises with every failure and decays with every success; a rising ratio is
logged as a warning before the circuit breaker opens.
"""

from __future__ import annotations

import math
from collections import deque

from twisted.logger import Logger

__all__ = ["AdaptiveTimeout", "FailureRatio"]

_log = Logger()


class AdaptiveTimeout:
    """
    Tends to C{quantile} of the last C{window} successful latencies times
    C{factor}, within [C{minimum}, C{maximum}]: down by at most C{decay} of
    itself per success, back to C{maximum} at once on a timeout.  Starts at
    C{maximum}, where it stays until C{min_samples} have been seen.
    """

    def __init__(
        self,
        *,
        minimum: float,
        maximum: float,
        factor: float = 4.0,
        quantile: float = 0.99,
        window: int = 200,
        min_samples: int = 20,
        decay: float = 0.05,
    ) -> None:
        self.minimum = min(minimum, maximum)
        self.maximum = maximum
        self.factor = factor
        self.quantile = quantile
        self.min_samples = min_samples
        self.decay = decay
        self._latencies: deque[float] = deque(maxlen=window)
        self._value = maximum

    def observe(self, seconds: float) -> None:
        """
        A successful attempt took C{seconds}.
        """
        self._latencies.append(seconds)
        if len(self._latencies) < self.min_samples:
            return
        ordered = sorted(self._latencies)
        index = min(len(ordered) - 1, math.ceil(self.quantile * len(ordered)) - 1)
        target = min(self.maximum, max(self.minimum, ordered[index] * self.factor))
        self._value = max(target, self._value * (1 - self.decay)) if target < self._value else target

    def timed_out(self) -> None:
        """
        An attempt got no answer in time: the next ones get all the time
        allowed, and what was learnt of the latency no longer holds.
        """
        self._value = self.maximum
        self._latencies.clear()

    @property
    def below_maximum(self) -> bool:
        return self._value < self.maximum

    def current(self) -> float:
        return self._value


class FailureRatio:
    """
    An exponentially weighted ratio of failed attempts.

    @param warn_at: Above this ratio, and rising, a warning is logged (once
        until it falls back under half of it).
    """

    def __init__(self, alpha: float = 0.1, warn_at: float = 0.2) -> None:
        self.alpha = alpha
        self.warn_at = warn_at
        self.value = 0.0
        self._warned = False

    def record(self, failed: bool, kind: str = "") -> float:
        previous = self.value
        self.value = (1 - self.alpha) * self.value + self.alpha * (1.0 if failed else 0.0)
        if not self._warned and self.value >= self.warn_at and self.value > previous:
            self._warned = True
            _log.warn(
                "Delivery failures are rising: {ratio:.0%} of recent attempts failed (last: {kind})",
                ratio=self.value,
                kind=kind or "-",
            )
        elif self._warned and self.value < self.warn_at / 2:
            self._warned = False
        return self.value
