# -*- test-case-name: tests.unit.test_breaker -*-
"""
A circuit breaker for deliveries to the Alert Processor, on an injected
clock.

Closed: everything goes through; C{failure_threshold} consecutive failures
open it.  Open: nothing is sent (the queue holds the alerts) for the
recovery timeout.  Half-open: C{half_open_requests} probes go through; a
success closes the breaker and resets the recovery timeout, a failure opens
it again with the recovery timeout doubled, up to C{max_recovery_timeout}
(adaptive recovery: a processor that keeps failing is probed less often).

Senders do not fail fast while it is open: L{CircuitBreaker.admit} returns a
Deferred that fires when a request may be sent, so delivery workers simply
wait their turn.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable

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
        on_transition: Callable[[BreakerState, BreakerState], None] = lambda old, new: None,
    ) -> None:
        self._clock = clock
        self.failure_threshold = failure_threshold
        self.base_recovery_timeout = recovery_timeout
        self.recovery_timeout = recovery_timeout
        self.max_recovery_timeout = max_recovery_timeout or recovery_timeout * 16
        self.half_open_requests = half_open_requests
        self._on_transition = on_transition
        self.state = CLOSED
        self.consecutive_failures = 0
        self._probes_in_flight = 0
        self._waiting: deque[Deferred[None]] = deque()
        self._timer: IDelayedCall | None = None
        self.opened_at: float | None = None

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
            self._move(CLOSED)
            self._release_all()
        self.consecutive_failures = 0

    def failure(self) -> None:
        self.consecutive_failures += 1
        if self.state == HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self.recovery_timeout = min(self.recovery_timeout * 2, self.max_recovery_timeout)
            self._open()
        elif self.state == CLOSED and self.consecutive_failures >= self.failure_threshold:
            self._open()

    def _open(self) -> None:
        self._move(OPEN)
        self.opened_at = self._clock.seconds()
        _log.warn(
            "Circuit breaker open after {failures} consecutive failures; next probe in {timeout:g}s",
            failures=self.consecutive_failures,
            timeout=self.recovery_timeout,
        )
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
