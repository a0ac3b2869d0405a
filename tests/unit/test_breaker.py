"""
The circuit breaker, on a Clock.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.delivery.breaker import CLOSED, HALF_OPEN, OPEN, BreakerState, CircuitBreaker


class BreakerTests(SynchronousTestCase):
    """
    Closed, open, half-open and adaptive recovery.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.transitions: list[tuple[BreakerState, BreakerState]] = []
        self.breaker = CircuitBreaker(
            self.clock,
            failure_threshold=3,
            recovery_timeout=10.0,
            half_open_requests=2,
            max_recovery_timeout=35.0,
            on_transition=lambda old, new: self.transitions.append((old, new)),
        )

    def open(self) -> None:
        for _ in range(3):
            self.successResultOf(self.breaker.admit())
            self.breaker.failure()

    def test_closed_admits(self) -> None:
        """
        Closed, every request is admitted at once; failures below the
        threshold, or interrupted by a success, keep it closed.
        """
        for _ in range(2):
            self.breaker.failure()
        self.breaker.success()
        for _ in range(2):
            self.breaker.failure()
        self.assertEqual(self.breaker.state, CLOSED)
        self.successResultOf(self.breaker.admit())
        self.assertEqual(self.transitions, [])

    def test_opens_at_threshold(self) -> None:
        """
        failure_threshold consecutive failures open it: requests then wait
        for the recovery timeout.
        """
        self.open()
        self.assertEqual(self.breaker.state, OPEN)
        self.assertEqual(self.transitions, [(CLOSED, OPEN)])
        waiting = self.breaker.admit()
        self.clock.advance(9.9)
        self.assertNoResult(waiting)
        self.clock.advance(0.1)
        self.successResultOf(waiting)
        self.assertEqual(self.breaker.state, HALF_OPEN)

    def test_half_open_probes_limited(self) -> None:
        """
        Half-open lets half_open_requests probes through; the others wait
        until a probe succeeds, which closes it and releases them all.
        """
        self.open()
        waiting = [self.breaker.admit() for _ in range(4)]
        self.clock.advance(10)
        self.successResultOf(waiting[0])
        self.successResultOf(waiting[1])
        self.assertNoResult(waiting[2])
        self.assertNoResult(self.breaker.admit())
        self.breaker.success()
        self.assertEqual(self.breaker.state, CLOSED)
        self.successResultOf(waiting[2])
        self.successResultOf(waiting[3])
        self.assertEqual(self.transitions, [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)])

    def test_admitted_in_half_open(self) -> None:
        """
        A request asked for while half-open is admitted at once if a probe
        slot is free.
        """
        self.open()
        self.clock.advance(10)
        self.successResultOf(self.breaker.admit())
        self.successResultOf(self.breaker.admit())
        self.assertNoResult(self.breaker.admit())

    def test_failure_reopens_doubled(self) -> None:
        """
        A failed probe opens it again with the recovery timeout doubled, up
        to max_recovery_timeout; a success then resets it.
        """
        self.open()
        for expected in (20.0, 35.0, 35.0):
            self.clock.advance(self.breaker.recovery_timeout)
            self.successResultOf(self.breaker.admit())
            self.breaker.failure()
            self.assertEqual((self.breaker.state, self.breaker.recovery_timeout), (OPEN, expected))
        waiting = self.breaker.admit()
        self.clock.advance(34.9)
        self.assertNoResult(waiting)
        self.clock.advance(0.1)
        self.successResultOf(waiting)
        self.breaker.success()
        self.assertEqual((self.breaker.state, self.breaker.recovery_timeout), (CLOSED, 10.0))
        self.open()
        self.clock.advance(10)
        self.assertEqual(self.breaker.state, HALF_OPEN)

    def test_default_cap(self) -> None:
        """
        Without max_recovery_timeout the cap is sixteen recovery timeouts.
        """
        breaker = CircuitBreaker(self.clock, failure_threshold=1, recovery_timeout=2.0, half_open_requests=1)
        self.assertEqual(breaker.max_recovery_timeout, 32.0)

    def test_waiter_cancelled(self) -> None:
        """
        A waiting request that is cancelled (a stopping worker) is
        forgotten and does not take a probe slot.
        """
        self.open()
        cancelled = self.breaker.admit()
        cancelled.cancel()
        self.failureResultOf(cancelled)
        kept = self.breaker.admit()
        self.clock.advance(10)
        self.successResultOf(kept)
        self.successResultOf(self.breaker.admit())

    def test_stop_cancels_timer(self) -> None:
        """
        stop cancels the recovery timer: nothing stays scheduled.
        """
        self.open()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.breaker.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.breaker.stop()
