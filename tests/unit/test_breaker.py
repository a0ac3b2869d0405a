"""
The circuit breaker, on a Clock: consecutive failures and the failure
ratio, recovery, and the processor's health check.
"""

from __future__ import annotations

from typing import Any, cast

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.delivery.breaker import CLOSED, HALF_OPEN, OPEN, BreakerState, CircuitBreaker
from alertgateway.delivery.probe import GettingClient, ProcessorProbe
from alertgateway.testing import HANG, Answer, StubProcessor


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


class FailureRatioTests(SynchronousTestCase):
    """
    circuit_breaker.failure_ratio: a processor failing often, but never
    failure_threshold times in a row.
    """

    def make(self, **overrides: Any) -> CircuitBreaker:
        self.clock = Clock()
        settings: dict[str, Any] = {
            "failure_threshold": 5,
            "failure_ratio": 0.5,
            "window": 60.0,
            "min_attempts": 10,
            "recovery_timeout": 5.0,
            "half_open_requests": 1,
            **overrides,
        }
        return CircuitBreaker(self.clock, **settings)

    def alternate(self, breaker: CircuitBreaker, rounds: int, every: float = 1.0) -> None:
        for _ in range(rounds):
            breaker.success()
            breaker.failure()
            self.clock.advance(every)

    def test_every_other_attempt_failing_opens_it(self) -> None:
        """
        Half the attempts of the window failing opens it, once min_attempts
        were made there.
        """
        breaker = self.make()
        self.alternate(breaker, 4)
        self.assertEqual(breaker.state, CLOSED)
        self.alternate(breaker, 1)
        self.assertEqual(breaker.state, OPEN)

    def test_only_the_window_counts(self) -> None:
        """
        Failures older than the window are forgotten: the same pattern
        spread thinly never reaches min_attempts within it.
        """
        breaker = self.make(window=5.0)
        self.alternate(breaker, 20, every=3.0)
        self.assertEqual(breaker.state, CLOSED)

    def test_off_without_a_ratio(self) -> None:
        """
        Without failure_ratio only consecutive failures count.
        """
        breaker = self.make(failure_ratio=None)
        self.alternate(breaker, 20)
        self.assertEqual(breaker.state, CLOSED)


class ProbeNowTests(SynchronousTestCase):
    """
    probe_now: the processor's health check says it is back.
    """

    def test_half_open_at_once(self) -> None:
        """
        Open, probe_now moves to half-open without waiting for the recovery
        timeout, and a waiting request goes through; closed, it does
        nothing.
        """
        clock = Clock()
        breaker = CircuitBreaker(clock, failure_threshold=1, recovery_timeout=30.0, half_open_requests=1)
        breaker.probe_now()
        self.assertEqual(breaker.state, CLOSED)
        breaker.failure()
        waiting = breaker.admit()
        breaker.probe_now()
        self.assertEqual(breaker.state, HALF_OPEN)
        self.successResultOf(waiting)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_cap_never_below_the_recovery_timeout(self) -> None:
        """
        A max_recovery_timeout below recovery_timeout does not shorten it.
        """
        breaker = CircuitBreaker(
            Clock(), failure_threshold=1, recovery_timeout=60.0, half_open_requests=1, max_recovery_timeout=30.0
        )
        self.assertEqual(breaker.max_recovery_timeout, 60.0)


class ProcessorProbeTests(SynchronousTestCase):
    """
    The health check asked while the breaker is open.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.processor = StubProcessor(default=Answer(503))
        self.stub = StubTreq(self.processor)
        self.healthy: list[None] = []
        self.states: list[bool] = []
        self.probe = ProcessorProbe(
            cast(GettingClient, self.stub),
            "http://processor.test/healthz",
            clock=self.clock,
            interval=1.0,
            timeout=0.5,
            on_healthy=lambda: self.healthy.append(None),
            on_state=self.states.append,
        )

    def test_checks_until_healthy(self) -> None:
        """
        Started, it asks at once and every interval; a 2xx answer calls
        on_healthy; stopped, it asks no more.
        """
        self.probe.start()
        self.clock.advance(1)
        self.processor.default = Answer(200)
        self.clock.advance(1)
        self.assertEqual((self.states, len(self.healthy)), ([False, False, True], 1))
        self.assertEqual([r.path for r in self.processor.received], ["/healthz"] * 3)
        self.probe.stop()
        self.clock.advance(5)
        self.assertEqual(len(self.processor.received), 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_no_answer_is_down(self) -> None:
        """
        A check not answered within its timeout says down, and the next
        check still runs.
        """
        self.processor.default = HANG
        self.probe.start()
        self.clock.advance(0.5)
        self.assertEqual(self.states, [False])
        self.assertFalse(self.probe.up)
        self.clock.advance(0.5)
        self.assertEqual(len(self.processor.received), 2)
        self.probe.stop()

    def test_credential(self) -> None:
        """
        The gateway's credential for the processor (alert_processor.auth_secret)
        goes with each health check, as with each delivery.
        """
        probe = ProcessorProbe(
            cast(GettingClient, self.stub),
            "http://processor.test/healthz",
            clock=self.clock,
            interval=1.0,
            timeout=0.5,
            on_healthy=lambda: None,
            headers={"Authorization": ["Bearer proc-token"]},
        )
        self.successResultOf(probe.check())
        [received] = self.processor.received
        self.assertEqual(received.header("authorization"), "Bearer proc-token")
