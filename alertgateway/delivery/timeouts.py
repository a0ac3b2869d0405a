# -*- test-case-name: tests.unit.test_patterns -*-
"""
What recent deliveries say about the Alert Processor: an adaptive per-attempt
timeout and an exponentially weighted failure ratio.

The timeout follows observed latency: a high percentile of recent successful
attempts times a safety factor, within configured bounds, so a slow but
healthy processor is not cut off and a hung one is noticed in proportion to
how fast it usually is.  The failure ratio rises with every failure and
decays with every success; a rising ratio is logged as a warning before
the circuit breaker opens.
"""

from __future__ import annotations

import math
from collections import deque

from twisted.logger import Logger

__all__ = ["AdaptiveTimeout", "FailureRatio"]

_log = Logger()


class AdaptiveTimeout:
    """
    C{quantile} of the last C{window} successful latencies times
    C{factor}, clamped to [C{minimum}, C{maximum}]; C{initial} until
    C{min_samples} have been seen.
    """

    def __init__(
        self,
        *,
        initial: float,
        minimum: float,
        maximum: float,
        factor: float = 4.0,
        quantile: float = 0.99,
        window: int = 200,
        min_samples: int = 20,
    ) -> None:
        self.initial = initial
        self.minimum = minimum
        self.maximum = maximum
        self.factor = factor
        self.quantile = quantile
        self.min_samples = min_samples
        self._latencies: deque[float] = deque(maxlen=window)

    def observe(self, seconds: float) -> None:
        self._latencies.append(seconds)

    def current(self) -> float:
        if len(self._latencies) < self.min_samples:
            return self.initial
        ordered = sorted(self._latencies)
        index = min(len(ordered) - 1, math.ceil(self.quantile * len(ordered)) - 1)
        return min(self.maximum, max(self.minimum, ordered[index] * self.factor))


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
