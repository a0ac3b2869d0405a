"""
The forwarder: workers, retries with backoff, outcomes and stopping, over
a real HTTPSink talking to a stub processor through StubTreq.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import cast

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.delivery.backoff import Backoff
from alertgateway.delivery.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.forwarder import Forwarder
from alertgateway.delivery.http import HTTPSink, PostingClient
from alertgateway.delivery.queue import MemoryQueue
from alertgateway.delivery.sinks import Retryable
from alertgateway.delivery.timeouts import AdaptiveTimeout
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.state.errors import QueueFull
from alertgateway.testing import HANG, RESET, Answer, StubProcessor
from tests.unit._http import capture_events
from tests.unit._support import envelope


class BackoffTests(SynchronousTestCase):
    """
    Exponential backoff with jitter.
    """

    def test_growth_and_jitter(self) -> None:
        """
        Attempt n waits between half and all of base * 2**n.
        """
        low, high = Backoff(base=0.5, rand=lambda: 0.0), Backoff(base=0.5, rand=lambda: 1.0)
        self.assertEqual([low.delay(n) for n in range(4)], [0.25, 0.5, 1.0, 2.0])
        self.assertEqual([high.delay(n) for n in range(4)], [0.5, 1.0, 2.0, 4.0])

    def test_cap(self) -> None:
        """
        Delays stop growing at the cap.
        """
        self.assertEqual(Backoff(base=0.5, cap=3.0, rand=lambda: 1.0).delay(10), 3.0)

    def test_retry_after(self) -> None:
        """
        The receiver's Retry-After wins over the computed delay, within ten
        caps.
        """
        backoff = Backoff(base=0.5, cap=3.0, rand=lambda: 1.0)
        self.assertEqual(backoff.delay(0, 12.0), 12.0)
        self.assertEqual(backoff.delay(5, 0.0), 0.0)
        self.assertEqual(backoff.delay(0, 10_000.0), 30.0)


class Harness(SynchronousTestCase):
    """
    A forwarder over a stub processor, on a Clock.
    """

    def forwarder(
        self,
        *answers: Answer,
        max_retries: int = 3,
        max_in_flight: int = 1,
        max_items: int = 100,
        default_answer: Answer | None = None,
        breaker: Callable[[Clock], CircuitBreaker] | None = None,
        batch_size: int = 1,
        batch_linger: float = 0.0,
        timeouts: AdaptiveTimeout | None = None,
    ) -> Forwarder:
        self.clock = Clock()
        self.breaker = breaker(self.clock) if breaker is not None else None
        self.metrics = GatewayMetrics()
        self.processor = StubProcessor(*answers, default=default_answer or Answer(202))
        self.stub = StubTreq(self.processor)
        timeout = timeouts.current if timeouts is not None else 5.0
        sink = HTTPSink(cast(PostingClient, self.stub), "http://processor.test", clock=self.clock, timeout=timeout)
        forwarder = Forwarder(
            MemoryQueue(max_items),
            sink,
            clock=self.clock,
            metrics=self.metrics.delivery,
            max_in_flight=max_in_flight,
            max_retries=max_retries,
            backoff=Backoff(base=1.0, cap=30.0, rand=lambda: 0.0),
            breaker=self.breaker,
            batch_size=batch_size,
            batch_linger=batch_linger,
            timeouts=timeouts,
        )
        forwarder.start()
        return forwarder

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        value: float | None = self.metrics.registry.get_sample_value(name, labels or {})
        return value

    def outcome(self, outcome: str) -> float | None:
        return self.sample("gateway_alerts_forwarded_total", {"outcome": outcome})


class ForwarderTests(Harness):
    """
    Delivery outcomes and retries.
    """

    def test_delivered(self) -> None:
        """
        A queued alert is posted once, counted as delivered with one timed
        attempt, and leaves the queue.
        """
        forwarder = self.forwarder(Answer(202))
        self.successResultOf(forwarder.submit([envelope("A")]))
        self.assertEqual(len(self.processor.received), 1)
        self.assertEqual(self.outcome("delivered"), 1.0)
        self.assertEqual(self.sample("gateway_forward_duration_seconds_count"), 1.0)
        self.assertEqual(len(forwarder.queue), 0)
        self.assertEqual(self.sample("gateway_queue_depth"), 0.0)

    def test_queue_depth(self) -> None:
        """
        The depth gauge follows submissions and deliveries; a batch that
        does not fit raises QueueFull and changes nothing.
        """
        forwarder = self.forwarder(HANG, max_items=3)
        forwarder.submit([envelope("A"), envelope("B")])
        self.assertEqual(self.sample("gateway_queue_depth"), 2.0)
        self.assertRaises(QueueFull, forwarder.submit, [envelope("C"), envelope("D")])
        self.assertEqual(self.sample("gateway_queue_depth"), 2.0)

    def test_retries_with_backoff(self) -> None:
        """
        5xx, 429 and a dropped connection are retried after growing delays
        on the clock, with the same request id and idempotency key, until
        one succeeds.
        """
        forwarder = self.forwarder(Answer(503), Answer(429), RESET, Answer(200))
        forwarder.submit([envelope("A", request_id="req-9")])
        self.stub.flush()
        self.assertEqual(len(self.processor.received), 1)
        for delay, attempts in ((0.5, 2), (1.0, 3), (2.0, 4)):
            self.clock.advance(delay - 0.01)
            self.stub.flush()
            self.assertEqual(len(self.processor.received), attempts - 1)
            self.clock.advance(0.01)
            self.stub.flush()
            self.assertEqual(len(self.processor.received), attempts)
        self.assertEqual({r.header("x-request-id") for r in self.processor.received}, {"req-9"})
        self.assertEqual(len({r.header("idempotency-key") for r in self.processor.received}), 1)
        self.assertEqual(self.outcome("delivered"), 1.0)
        self.assertEqual(self.sample("gateway_forward_retries_total"), 3.0)
        self.assertEqual(self.sample("gateway_forward_duration_seconds_count"), 4.0)

    def test_retry_after(self) -> None:
        """
        A Retry-After from the processor sets the wait before the next
        attempt.
        """
        self.forwarder(Answer(503, {"Retry-After": "10"}), Answer(200)).submit([envelope("A")])
        self.clock.advance(9.9)
        self.assertEqual(len(self.processor.received), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.processor.received), 2)
        self.assertEqual(self.outcome("delivered"), 1.0)

    def test_rejected_not_retried(self) -> None:
        """
        A non-retryable 4xx ends the alert's delivery at once as rejected,
        logged as an error.
        """
        errors = capture_events(self, lambda e: e.get("log_level") == LogLevel.error)
        forwarder = self.forwarder(Answer(422, body=b"no such team"))
        forwarder.submit([envelope("A", request_id="req-4")])
        self.clock.advance(100)
        self.assertEqual(len(self.processor.received), 1)
        self.assertEqual(self.outcome("rejected"), 1.0)
        self.assertIsNone(self.outcome("delivered"))
        self.assertEqual(len(forwarder.queue), 0)
        [error] = errors
        self.assertEqual(error["requestId"], "req-4")
        self.assertIn("no such team", error["reason"])

    def test_postponed_after_quick_retries(self) -> None:
        """
        After max_retries quick retries the alert is not given up: it goes
        back to the queue and its key waits out the next backoff while the
        worker delivers the next alert; then it is tried again, with the
        same idempotency key, until it is delivered.
        """
        forwarder = self.forwarder(Answer(500), Answer(500), Answer(500), Answer(200), Answer(200), max_retries=2)
        forwarder.submit([envelope("A"), envelope("B")])
        self.clock.advance(0.5)
        self.clock.advance(1.0)
        # A failed three times; B went while A waits 2s in the queue.
        self.assertEqual([b'"alertname":"B"' in r.body for r in self.processor.received], [False] * 3 + [True])
        self.assertIsNone(self.outcome("failed"))
        self.assertEqual(len(forwarder.queue), 1)
        self.clock.advance(2.0)
        self.assertEqual(len(self.processor.received), 5)
        self.assertIn(b'"alertname":"A"', self.processor.received[4].body)
        self.assertEqual(self.outcome("delivered"), 2.0)
        self.assertEqual(self.sample("gateway_forward_retries_total"), 3.0)
        keys = {r.header("idempotency-key") for r in self.processor.received if b'"alertname":"A"' in r.body}
        self.assertEqual(len(keys), 1)
        self.assertEqual(len(forwarder.queue), 0)

    def test_no_retries(self) -> None:
        """
        With max_retries 0 every failure sends the alert back to the queue
        at once; it is tried again after the backoff, without limit.
        """
        forwarder = self.forwarder(*[Answer(503)] * 6, max_retries=0)
        forwarder.submit([envelope("A")])
        self.assertEqual(len(self.processor.received), 1)
        self.clock.pump([30.0] * 10)
        self.assertEqual(len(self.processor.received), 7)
        self.assertEqual(self.outcome("delivered"), 1.0)
        self.assertEqual(len(forwarder.queue), 0)

    def test_unlimited_in_time(self) -> None:
        """
        An alert is retried for as long as the processor fails (here an
        hour, backoff capped at 30s) and the postponed key holds back later
        alerts of the same fingerprint, which follow in order.
        """
        forwarder = self.forwarder(default_answer=Answer(503), max_retries=1)
        forwarder.submit([envelope("A", "firing"), envelope("A", "resolved")])
        for _ in range(120):
            self.clock.advance(30)
        self.assertGreater(len(self.processor.received), 100)
        self.assertTrue(all(b'"status":"firing"' in r.body for r in self.processor.received))
        self.processor.default = Answer(200)
        self.clock.advance(30)
        self.clock.advance(30)
        self.assertIn(b'"status":"resolved"', self.processor.received[-1].body)
        self.assertEqual(self.outcome("delivered"), 2.0)

    def test_dead_letter(self) -> None:
        """
        A non-retryable 4xx makes the alert a dead letter: buried in the
        queue with the reason, counted in gateway_dead_letters_total and as
        a rejected attempt of class 4xx; the next alert goes on.
        """
        buried: list[tuple[str, str, int]] = []

        class Recording(MemoryQueue):
            def bury(self, e: Envelope, reason: str, attempts: int) -> None:
                buried.append((e.key, reason, attempts))
                super().bury(e, reason, attempts)

        self.clock = Clock()
        self.metrics = GatewayMetrics()
        self.processor = StubProcessor(Answer(503), Answer(400, body=b"bad labels"), Answer(202))
        self.stub = StubTreq(self.processor)
        forwarder = Forwarder(
            Recording(10),
            HTTPSink(cast(PostingClient, self.stub), "http://processor.test", clock=self.clock, timeout=5.0),
            clock=self.clock,
            metrics=self.metrics.delivery,
            max_in_flight=1,
            max_retries=3,
            backoff=Backoff(base=1.0, rand=lambda: 0.0),
        )
        forwarder.start()
        a, b = envelope("A"), envelope("B")
        forwarder.submit([a, b])
        self.clock.advance(0.5)
        [(key, reason, attempts)] = buried
        self.assertEqual((key, attempts), (a.key, 2))
        self.assertIn("bad labels", reason)
        self.assertEqual(self.sample("gateway_dead_letters_total"), 1.0)
        self.assertEqual(self.sample("gateway_forward_attempts_total", {"outcome": "reject", "class": "4xx"}), 1.0)
        self.assertEqual(self.sample("gateway_forward_attempts_total", {"outcome": "retry", "class": "5xx"}), 1.0)
        self.assertEqual(self.sample("gateway_forward_attempts_total", {"outcome": "success", "class": "ok"}), 1.0)
        self.assertEqual(len(forwarder.queue), 0)

    def test_attempt_classes(self) -> None:
        """
        Failed attempts are metered by class (429, 5xx, connect, timeout)
        and the failure ratio gauge rises with them.
        """
        self.forwarder(Answer(429), Answer(500), RESET, HANG, Answer(200), max_retries=10).submit([envelope("A")])
        for _ in range(6):
            self.clock.advance(5)
            self.stub.flush()
        for kind in ("429", "5xx", "connect", "timeout"):
            self.assertEqual(
                self.sample("gateway_forward_attempts_total", {"outcome": "retry", "class": kind}), 1.0, kind
            )
        self.assertEqual(self.outcome("delivered"), 1.0)
        ratio = self.sample("gateway_forward_failure_ratio")
        assert ratio is not None
        self.assertGreater(ratio, 0.2)

    def test_order_per_fingerprint(self) -> None:
        """
        With several workers, alerts of different fingerprints go out in
        parallel, but the next alert of a fingerprint waits until the one
        before it is finished, even when that one is being retried.
        """
        forwarder = self.forwarder(Answer(503), Answer(202), Answer(202), Answer(202), max_in_flight=3)
        a1, b, a2 = envelope("A", "firing"), envelope("B"), envelope("A", "resolved")
        forwarder.submit([a1, b, a2])
        first, second = self.processor.received
        self.assertIn(b'"alertname":"A"', first.body)
        self.assertIn(b'"alertname":"B"', second.body)
        self.clock.advance(0.5)
        statuses = [r.body for r in self.processor.received]
        self.assertEqual(len(statuses), 4)
        self.assertIn(b'"status":"firing"', statuses[2])
        self.assertIn(b'"status":"resolved"', statuses[3])

    def test_unexpected_sink_error(self) -> None:
        """
        A sink that raises something unexpected costs an attempt, not the
        worker: the alert is retried and later alerts still go out.
        """
        calls: list[Envelope] = []

        class Flaky:
            batches = False

            def deliver_batch(self, envelopes: Sequence[Envelope]) -> Deferred[None]:
                raise NotImplementedError()

            def deliver(self, e: Envelope) -> Deferred[None]:
                calls.append(e)
                if len(calls) == 1:
                    raise RuntimeError("bug in sink")
                if len(calls) == 2:
                    return fail(KeyError("also a bug"))
                return succeed(None)

            def close(self) -> Deferred[None]:
                return succeed(None)

        clock, metrics = Clock(), GatewayMetrics()
        forwarder = Forwarder(
            MemoryQueue(10),
            Flaky(),
            clock=clock,
            metrics=metrics.delivery,
            max_in_flight=1,
            max_retries=3,
            backoff=Backoff(rand=lambda: 0.0),
        )
        forwarder.start()
        forwarder.submit([envelope("A"), envelope("B")])
        clock.pump([0.25, 0.5])
        self.assertEqual([e.body["labels"]["alertname"] for e in calls], ["A", "A", "A", "B"])
        self.assertEqual(
            metrics.registry.get_sample_value("gateway_alerts_forwarded_total", {"outcome": "delivered"}), 2.0
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError, KeyError)), 2)


class StopTests(SynchronousTestCase):
    """
    Forwarder.stop(grace): drain, then stop the workers.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.processor = StubProcessor(default=HANG)
        self.stub = StubTreq(self.processor)
        self.forwarder = self.start(Backoff(rand=lambda: 0.0))

    def start(self, backoff: Backoff) -> Forwarder:
        forwarder = Forwarder(
            MemoryQueue(10),
            HTTPSink(cast(PostingClient, self.stub), "http://processor.test", clock=self.clock, timeout=60.0),
            clock=self.clock,
            metrics=GatewayMetrics().delivery,
            max_in_flight=2,
            max_retries=3,
            backoff=backoff,
        )
        forwarder.start()
        return forwarder

    def answer(self, index: int, code: int = 202) -> None:
        request = self.processor.hanging[index]
        request.setResponseCode(code)
        request.finish()
        self.stub.flush()

    def test_idle(self) -> None:
        """
        With nothing queued, stop completes at once and the workers no
        longer take anything.
        """
        self.successResultOf(self.forwarder.stop(5))
        self.forwarder.queue.put([envelope("A")])
        self.assertEqual(self.processor.received, [])

    def test_drains_first(self) -> None:
        """
        Stop waits for queued and in-flight alerts to be delivered, then
        completes, even though the last delivery finishes inside a worker.
        """
        self.forwarder.submit([envelope("A"), envelope("B"), envelope("C")])
        stopped = self.forwarder.stop(5)
        self.assertEqual(len(self.processor.hanging), 2)
        self.answer(0)
        self.assertNoResult(stopped)
        self.answer(1)
        self.assertNoResult(stopped)
        self.answer(2)
        self.successResultOf(stopped)
        self.assertEqual(len(self.processor.received), 3)

    def test_grace_expires(self) -> None:
        """
        After the grace period, stop cancels deliveries in flight (their
        connections are dropped), logs how many alerts are left and
        completes; they stay queued, in order, for the next start.
        """
        warnings = capture_events(self, lambda e: e.get("log_level") == LogLevel.warn)
        self.forwarder.submit([envelope("A"), envelope("B"), envelope("C")])
        stopped = self.forwarder.stop(5)
        self.clock.advance(4.9)
        self.assertNoResult(stopped)
        self.clock.advance(0.1)
        self.successResultOf(stopped)
        self.stub.flush()
        self.assertEqual(len(self.processor.lost), 2)
        self.assertEqual([e["count"] for e in warnings if "count" in e], [3])
        self.assertEqual(len(self.forwarder.queue), 3)

    def test_stops_while_backing_off(self) -> None:
        """
        A worker waiting to retry is stopped at the end of the grace period
        instead of retrying.
        """
        self.processor.answers = [Answer(503)]
        self.processor.default = Answer(202)
        forwarder = self.start(Backoff(base=100.0, rand=lambda: 0.0))
        forwarder.submit([envelope("A")])
        stopped = forwarder.stop(5)
        self.clock.advance(5)
        self.successResultOf(stopped)
        self.clock.advance(1000)
        self.assertEqual(len(self.processor.received), 1)
        self.assertEqual(len(forwarder.queue), 1)

    def test_cancellation_disguised_as_failure(self) -> None:
        """
        A sink that reports its cancellation as a retryable failure does not
        keep a stopping worker alive: the stop completes and nothing is
        retried.
        """
        calls: list[Envelope] = []

        class Disguising:
            batches = False

            def deliver_batch(self, envelopes: Sequence[Envelope]) -> Deferred[None]:
                raise NotImplementedError()

            def deliver(self, e: Envelope) -> Deferred[None]:
                calls.append(e)
                return Deferred(lambda d: d.errback(Retryable("cancelled, says the sink")))

            def close(self) -> Deferred[None]:
                return succeed(None)

        forwarder = Forwarder(
            MemoryQueue(10),
            Disguising(),
            clock=self.clock,
            metrics=GatewayMetrics().delivery,
            max_in_flight=1,
            max_retries=3,
            backoff=Backoff(rand=lambda: 0.0),
        )
        forwarder.start()
        forwarder.submit([envelope("A")])
        stopped = forwarder.stop(5)
        self.clock.advance(5)
        self.successResultOf(stopped)
        self.clock.advance(100)
        self.assertEqual(len(calls), 1)


class BreakerWiringTests(Harness):
    """
    The forwarder asks the circuit breaker before every attempt.
    """

    def test_waits_while_open(self) -> None:
        """
        Failures open the breaker; while it is open nothing is sent and the
        alerts stay queued; the half-open probe's success closes it and the
        rest is delivered, in order.
        """
        forwarder = self.forwarder(
            Answer(503),
            Answer(503),
            max_retries=5,
            breaker=lambda clock: CircuitBreaker(
                clock, failure_threshold=2, recovery_timeout=60.0, half_open_requests=1
            ),
        )
        breaker = self.breaker
        assert breaker is not None
        forwarder.submit([envelope("A", "firing"), envelope("A", "resolved"), envelope("B")])
        self.clock.advance(1.0)
        self.assertEqual(breaker.state, OPEN)
        self.assertEqual(len(self.processor.received), 2)
        self.clock.advance(58)
        self.assertEqual(len(self.processor.received), 2)
        self.assertEqual(len(forwarder.queue), 3)
        self.clock.advance(2)
        self.assertEqual(breaker.state, CLOSED)
        self.assertEqual(len(self.processor.received), 5)
        of_a = [r.body for r in self.processor.received[2:] if b'"alertname":"A"' in r.body]
        self.assertEqual([b'"status":"resolved"' in b for b in of_a], [False, True])
        self.assertEqual(len(forwarder.queue), 0)

    def test_probe_failure_reopens(self) -> None:
        """
        A failed half-open probe opens the breaker again, for twice as
        long; the stop cancels the breaker's timer.
        """
        forwarder = self.forwarder(
            Answer(503),
            Answer(503),
            max_retries=5,
            breaker=lambda clock: CircuitBreaker(
                clock, failure_threshold=1, recovery_timeout=10.0, half_open_requests=1
            ),
        )
        breaker = self.breaker
        assert breaker is not None
        forwarder.submit([envelope("A")])
        self.assertEqual(breaker.state, OPEN)
        self.clock.advance(10)
        self.assertEqual(len(self.processor.received), 2)
        self.assertEqual((breaker.state, breaker.recovery_timeout), (OPEN, 20.0))
        self.assertNotEqual(breaker.state, HALF_OPEN)
        stopped = forwarder.stop(0)
        self.clock.advance(0)
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(forwarder.queue), 1)


class SlowerProcessorTests(Harness):
    """
    A processor whose latency jumps (5 ms, then 0.7 s) within the
    configured timeout.
    """

    def answer_all(self) -> None:
        for request in self.processor.hanging:
            if not request._disconnected:
                request.setResponseCode(202)
                request.finish()
        self.processor.hanging.clear()
        self.stub.flush()

    def test_delivered_at_most_twice(self) -> None:
        """
        The first attempts cut short by the adaptive timeout (learnt from
        fast answers) send it back to the configured timeout at once; the
        retries are given the time they need and succeed; the breaker,
        told nothing by the cut-short attempts, stays closed; every alert
        is received at most twice, and the queue is empty within seconds.
        """
        timeouts = AdaptiveTimeout(minimum=0.5, maximum=5.0, min_samples=5)
        forwarder = self.forwarder(
            max_in_flight=4,
            timeouts=timeouts,
            breaker=lambda clock: CircuitBreaker(
                clock, failure_threshold=2, recovery_timeout=60.0, half_open_requests=1
            ),
        )
        forwarder.submit([envelope(f"fast-{n}") for n in range(60)])
        self.assertEqual(timeouts.current(), 0.5)
        self.processor.default = HANG
        forwarder.submit([envelope(f"slow-{n}") for n in range(8)])
        for _ in range(40):
            self.clock.advance(0.7)
            self.answer_all()
        self.assertEqual(len(forwarder.queue), 0)
        slow = [r.body for r in self.processor.received if b"slow-" in r.body]
        self.assertLessEqual(max(slow.count(body) for body in slow), 2)
        self.assertEqual(len(set(slow)), 8)
        assert self.breaker is not None
        self.assertEqual(self.breaker.state, CLOSED)
        # Room for what the processor takes now, and it comes down slowly.
        self.assertGreater(timeouts.current(), 2.8)

    def test_timeout_at_the_maximum_counts(self) -> None:
        """
        An attempt that had the whole configured timeout and got no answer
        does count toward opening the breaker.
        """
        forwarder = self.forwarder(
            HANG,
            HANG,
            max_retries=5,
            timeouts=AdaptiveTimeout(minimum=0.5, maximum=5.0),
            breaker=lambda clock: CircuitBreaker(
                clock, failure_threshold=2, recovery_timeout=60.0, half_open_requests=1
            ),
        )
        forwarder.submit([envelope("A")])
        self.clock.advance(5)
        self.clock.advance(1)
        self.clock.advance(5)
        assert self.breaker is not None
        self.assertEqual(self.breaker.state, OPEN)


class BatchTests(Harness):
    """
    alert_processor.batch_size: alerts ready together go in one request.
    """

    def test_one_request(self) -> None:
        """
        Alerts of different keys ready at once are posted in one request to
        /api/v1/alerts/batch, each with its idempotency key, request id,
        forwarded headers and body, and all leave the queue delivered.
        """
        forwarder = self.forwarder(Answer(200), batch_size=10)
        batch = [envelope(key) for key in "ABC"]
        self.successResultOf(forwarder.submit(batch))
        # They go at the end of the reactor turn that queued them.
        self.assertEqual(self.processor.received, [])
        self.clock.advance(0)
        self.clock.advance(0)
        [request] = self.processor.received
        self.assertEqual(request.path, "/api/v1/alerts/batch")
        items = json.loads(request.body)
        self.assertEqual([i["idempotencyKey"] for i in items], [e.idempotency_key for e in batch])
        self.assertEqual([i["alert"] for i in items], [e.body for e in batch])
        self.assertEqual([i["requestId"] for i in items], [e.request_id for e in batch])
        self.assertTrue((request.header("idempotency-key") or "").startswith("batch-"))
        self.assertEqual(self.outcome("delivered"), 3.0)
        self.assertEqual(len(forwarder.queue), 0)

    def test_one_per_key(self) -> None:
        """
        Two alerts of one key never share a batch: the second waits for the
        first, so their order holds.
        """
        forwarder = self.forwarder(batch_size=10)
        self.successResultOf(forwarder.submit([envelope("A"), envelope("B"), envelope("A", "resolved")]))
        self.clock.advance(0)
        first, second = self.processor.received
        self.assertEqual(len(json.loads(first.body)), 2)
        self.assertEqual(second.path, "/api/v1/alerts")
        self.assertEqual(self.outcome("delivered"), 3.0)

    def test_no_batch_endpoint(self) -> None:
        """
        A processor without the batch endpoint (404) gets the batch's
        alerts one by one, and the next ones too, without the batch being
        tried for ten minutes; then it is tried again.
        """
        forwarder = self.forwarder(Answer(404), batch_size=10)
        self.successResultOf(forwarder.submit([envelope(key) for key in "AB"]))
        self.clock.advance(0)
        self.clock.advance(0)
        self.successResultOf(forwarder.submit([envelope(key) for key in "CD"]))
        self.clock.advance(0)
        self.clock.advance(0)
        paths = [r.path for r in self.processor.received]
        self.assertEqual(paths, ["/api/v1/alerts/batch"] + ["/api/v1/alerts"] * 4)
        self.assertEqual(self.outcome("delivered"), 4.0)
        self.clock.advance(600)
        self.successResultOf(forwarder.submit([envelope(key) for key in "EF"]))
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(self.processor.received[-1].path, "/api/v1/alerts/batch")

    def test_refused_batch_delivered_one_by_one(self) -> None:
        """
        A batch the processor refuses is delivered alert by alert, so only
        the alert it refuses on its own becomes a dead letter.
        """
        forwarder = self.forwarder(Answer(400), Answer(202), Answer(400), Answer(202), batch_size=10)
        self.successResultOf(forwarder.submit([envelope(key) for key in "ABC"]))
        self.clock.advance(0)
        paths = [r.path for r in self.processor.received]
        self.assertEqual(paths, ["/api/v1/alerts/batch"] + ["/api/v1/alerts"] * 3)
        self.assertEqual((self.outcome("delivered"), self.outcome("rejected")), (2.0, 1.0))
        self.assertEqual(len(forwarder.queue), 0)

    def test_failed_batch_retried_one_by_one(self) -> None:
        """
        A batch that fails (503) counts as a failed attempt and its alerts
        are then delivered on their own, with the usual retries.
        """
        forwarder = self.forwarder(Answer(503), Answer(503), batch_size=10)
        self.successResultOf(forwarder.submit([envelope(key) for key in "AB"]))
        self.clock.advance(0)
        self.clock.advance(1)
        self.assertEqual(self.outcome("delivered"), 2.0)
        self.assertEqual(self.sample("gateway_forward_attempts_total", {"outcome": "retry", "class": "5xx"}), 2.0)


class LingerTests(Harness):
    """
    alert_processor.batch_linger: under load an alert ready alone waits a
    little for others, while an idle processor gets it at once.
    """

    def linger_forwarder(self) -> Forwarder:
        return self.forwarder(batch_size=10, batch_linger=0.005, max_in_flight=4, default_answer=HANG)

    def test_idle_goes_at_once(self) -> None:
        """
        With nothing on the wire, a single alert goes at the end of the
        reactor turn that queued it, without waiting for the linger.
        """
        forwarder = self.linger_forwarder()
        self.successResultOf(forwarder.submit([envelope("A")]))
        self.clock.advance(0)
        self.assertEqual([r.path for r in self.processor.received], ["/api/v1/alerts"])

    def test_busy_gathers(self) -> None:
        """
        While a delivery is on the wire, alerts queued one by one within
        the linger go together in one batch, not one request each as idle
        workers would take them.
        """
        forwarder = self.linger_forwarder()
        self.successResultOf(forwarder.submit([envelope("A")]))
        self.clock.advance(0)
        for key in "BCD":
            self.successResultOf(forwarder.submit([envelope(key)]))
            self.clock.advance(0.001)
        self.assertEqual(len(self.processor.received), 1)
        self.clock.advance(0.005)
        first, second = self.processor.received
        self.assertEqual(first.path, "/api/v1/alerts")
        self.assertEqual(second.path, "/api/v1/alerts/batch")
        self.assertEqual(
            [i["idempotencyKey"] for i in json.loads(second.body)], [envelope(k).idempotency_key for k in "BCD"]
        )

    def test_stopping_while_gathering_keeps_alerts(self) -> None:
        """
        A forwarder stopped while a worker lingers gives the gathered
        alerts back to the queue: none is lost or left taken.
        """
        forwarder = self.linger_forwarder()
        self.successResultOf(forwarder.submit([envelope("A")]))
        self.clock.advance(0)
        self.successResultOf(forwarder.submit([envelope("B")]))
        self.clock.advance(0)
        stopped = forwarder.stop(0.0)
        self.clock.advance(0)
        self.successResultOf(stopped)
        self.assertEqual(len(forwarder.queue), 2)
        self.assertEqual(
            sorted(e.key for e in forwarder.queue.take_now(10)), sorted([envelope("A").key, envelope("B").key])
        )
