# -*- test-case-name: tests.unit.test_breaker -*-
"""
A circuit breaker for deliveries to the Alert Processor, on an injected
clock.

Closed: everything goes through; C{failure_threshold} consecutive failures
open it, and so does a failure ratio of C{failure_ratio} or more over the
last C{window} seconds once at least C{min_attempts} were made there (a
processor failing every other request never fails five in a row).  Open:
nothing is sent (the queue holds the alerts) for the recovery timeout, or
until L{CircuitBreaker.probe_now} (the processor's health check answered).
Half-open: C{half_open_requests} probes go through; a success closes the
breaker and resets the recovery timeout, a failure opens it again with the
recovery timeout doubled, up to C{max_recovery_timeout} (a processor that
keeps failing is probed less often, but never so rarely that delivery
resumes long after it is back).

Senders do not fail fast while it is open: L{CircuitBreaker.admit} returns a
Deferred that fires when a request may be sent, so delivery workers simply
wait their turn.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "BreakerState", "CircuitBreaker"]

_log = Logger()


class BreakerState(enum.Enum):
    """
    Where the breaker is; C{gauge} is its value in
    C{gateway_circuit_breaker_state}.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def gauge(self) -> int:
        return {"closed": 0, "open": 1, "half_open": 2}[self.value]


CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN


class _Stoppable(Protocol):
    def stop(self) -> None: ...


class CircuitBreaker:
    """
    Decide when deliveries may be attempted.

    @param on_transition: Told C{(old, new)} at every change of state.
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        failure_threshold: int,
        recovery_timeout: float,
        half_open_requests: int,
        max_recovery_timeout: float | None = None,
        failure_ratio: float | None = None,
        window: float = 60.0,
        min_attempts: int = 20,
        on_transition: Callable[[BreakerState, BreakerState], None] = lambda old, new: None,
    ) -> None:
        self._clock = clock
        self.failure_threshold = failure_threshold
        self.failure_ratio = failure_ratio
        self.window = window
        self.min_attempts = min_attempts
        # Outcomes within the window, oldest first: (when, failed).
        self._recent: deque[tuple[float, bool]] = deque()
        self._recent_failures = 0
        self.base_recovery_timeout = recovery_timeout
        self.recovery_timeout = recovery_timeout
        self.max_recovery_timeout = max(max_recovery_timeout or recovery_timeout * 16, recovery_timeout)
        self.half_open_requests = half_open_requests
        self._on_transition = on_transition
        self.state = CLOSED
        self.consecutive_failures = 0
        self._probes_in_flight = 0
        self._waiting: deque[Deferred[None]] = deque()
        self._timer: IDelayedCall | None = None
        self.opened_at: float | None = None
        # The processor's health check, run while open (stopped with us).
        self.probe: _Stoppable | None = None

    def admit(self) -> Deferred[None]:
        """
        Fires when one request may be sent; the caller must then report its
        outcome with L{success} or L{failure}.
        """
        if self.state == CLOSED:
            return succeed(None)
        if self.state == HALF_OPEN and self._probes_in_flight < self.half_open_requests:
            self._probes_in_flight += 1
            return succeed(None)
        d: Deferred[None] = Deferred(lambda d: self._waiting.remove(d))
        self._waiting.append(d)
        return d

    def success(self) -> None:
        if self.state == HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self.recovery_timeout = self.base_recovery_timeout
            self._recent.clear()
            self._recent_failures = 0
            self._move(CLOSED)
            self._release_all()
        elif self.state == CLOSED:
            self._record(False)
        self.consecutive_failures = 0

    def failure(self) -> None:
        self.consecutive_failures += 1
        if self.state == HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self.recovery_timeout = min(self.recovery_timeout * 2, self.max_recovery_timeout)
            self._open(f"a failed probe; next probe in {self.recovery_timeout:g}s")
        elif self.state == CLOSED:
            self._record(True)
            if self.consecutive_failures >= self.failure_threshold:
                failures = self.consecutive_failures
                self._open(f"{failures} consecutive failures; next probe in {self.recovery_timeout:g}s")
            elif self._ratio_crossed():
                failed, attempts = self._recent_failures, len(self._recent)
                self._open(
                    f"{failed} of {attempts} attempts in {self.window:g}s failed;"
                    f" next probe in {self.recovery_timeout:g}s"
                )

    def _record(self, failed: bool) -> None:
        now = self._clock.seconds()
        recent = self._recent
        recent.append((now, failed))
        self._recent_failures += failed
        while recent and recent[0][0] < now - self.window:
            _, old = recent.popleft()
            self._recent_failures -= old

    def _ratio_crossed(self) -> bool:
        attempts = len(self._recent)
        return (
            self.failure_ratio is not None
            and attempts >= self.min_attempts
            and self._recent_failures >= self.failure_ratio * attempts
        )

    def probe_now(self) -> None:
        """
        The processor says it is healthy again: probe it at once, rather
        than at the end of the recovery timeout.
        """
        if self.state != OPEN:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._half_open()

    def _open(self, why: str) -> None:
        self._move(OPEN)
        self.opened_at = self._clock.seconds()
        _log.warn("Circuit breaker open after {why}", why=why)
        self._timer = self._clock.callLater(self.recovery_timeout, self._half_open)

    def _half_open(self) -> None:
        self._timer = None
        self._move(HALF_OPEN)
        while self._waiting and self._probes_in_flight < self.half_open_requests:
            self._probes_in_flight += 1
            self._waiting.popleft().callback(None)

    def _release_all(self) -> None:
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.callback(None)

    def _move(self, new: BreakerState) -> None:
        old, self.state = self.state, new
        if old != new:
            self._on_transition(old, new)

    def stop(self) -> None:
        """
        Cancel the recovery timer (the service is stopping).
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.probe is not None:
            self.probe.stop()
