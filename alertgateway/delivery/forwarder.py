# -*- test-case-name: tests.unit.test_forwarder -*-
"""
The forwarder: takes envelopes off the queue and delivers them through a
sink, retrying what may succeed later.

C{max_in_flight} workers run at once; the queue guarantees that alerts of
one fingerprint are never delivered concurrently or out of order.  A failed
attempt is retried up to C{max_retries} times with exponential backoff and
jitter, honouring the receiver's C{Retry-After}.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import CancelledError, Deferred, DeferredList, DeferredLock, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from alertgateway.core.episodes import Delivery
from alertgateway.delivery.backoff import Backoff
from alertgateway.delivery.breaker import CircuitBreaker
from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.queue import DeliveryQueue
from alertgateway.delivery.sinks import AttemptClass, Rejected, Retryable, Sink
from alertgateway.delivery.timeouts import AdaptiveTimeout, FailureRatio
from alertgateway.observability.metrics import DeliveryMetrics

__all__ = ["Backoff", "DeliveryQueue", "Forwarder"]

_log = Logger()

# Answers to a batch that say the processor has no batch endpoint, and for
# how long alerts then go one by one before the endpoint is tried again.
_NO_BATCH_ENDPOINT = frozenset({404, 405, 501})
_NO_BATCHES_FOR = 600.0


async def _attempt(sink: Sink, envelope: Envelope) -> None:
    """
    One delivery attempt, where anything a sink raises other than
    L{Rejected} or a cancellation counts as L{Retryable}: a sink's bug or an
    unexpected I/O error must cost one attempt, not the worker.
    """
    try:
        await sink.deliver(envelope)
    except (Retryable, Rejected, CancelledError):
        raise
    except Exception as e:
        _log.failure("Sink failed unexpectedly", requestId=envelope.request_id)
        raise Retryable(f"{type(e).__name__}: {e}") from e


class Forwarder:
    """
    Deliver queued envelopes through C{sink}, without limit in time.

    Each envelope is tried up to C{1 + max_retries} times in a row, with
    backoff; after that it goes back to the queue (first of its key, so
    order holds) and its key waits out the next backoff while other keys are
    delivered.  Only a 2xx takes it out of the queue; a non-retryable 4xx
    makes it a dead letter.  The circuit breaker decides when attempts may
    be made at all.
    """

    def __init__(
        self,
        queue: DeliveryQueue,
        sink: Sink,
        *,
        clock: IReactorTime,
        metrics: DeliveryMetrics,
        max_in_flight: int,
        max_retries: int,
        backoff: Backoff | None = None,
        breaker: CircuitBreaker | None = None,
        timeouts: AdaptiveTimeout | None = None,
        failures: FailureRatio | None = None,
        batch_size: int = 1,
        batch_linger: float = 0.0,
    ) -> None:
        self.queue = queue
        self.sink = sink
        self._clock = clock
        self._metrics = metrics
        # Read when scraped: always what the queue holds, at no cost per
        # alert.
        metrics.queue_depth.set_function(lambda: len(self.queue))
        self._max_in_flight = max_in_flight
        self._max_retries = max_retries
        # Envelopes sent in one request when the sink can (HTTP).
        self._batch_size = batch_size
        self._batch_linger = batch_linger
        self._no_batches_until = 0.0
        # One worker at a time gathers what it will send, so that alerts
        # arriving while others are on the wire make one batch instead of
        # one request each for every idle worker.
        self._gathering = DeferredLock()
        self._in_flight = 0
        self._backoff = backoff or Backoff(cap=300.0)
        self.breaker = breaker
        self.timeouts = timeouts
        self.failures = failures or FailureRatio()
        # Told how each envelope ended, so that the alert status API can say
        # it and requests waiting for it can answer.
        self._subscribers: list[Callable[[Envelope, Delivery], None]] = []
        self._workers: list[Deferred[None]] = []
        # Attempts so far of envelopes that went back to the queue.
        self._attempts: dict[tuple[str, str, int | None], int] = {}
        # Set when the workers are told to stop: a worker that is running
        # (not waiting) when it is cancelled cannot be interrupted, so it
        # must see this and leave its loop by itself.
        self._stopping = False

    def subscribe(self, subscriber: Callable[[Envelope, Delivery], None]) -> None:
        """
        Tell C{subscriber} how each envelope's delivery ends.
        """
        self._subscribers.append(subscriber)

    def _publish(self, envelope: Envelope, outcome: Delivery) -> None:
        for subscriber in self._subscribers:
            subscriber(envelope, outcome)

    def submit(self, envelopes: list[Envelope], write: object | None = None) -> Deferred[None]:
        """
        Queue envelopes for delivery, and commit C{write} (state kept where
        the queue is) with them.

        @raise alertgateway.state.errors.QueueFull: If they do not fit.
        """
        return self.queue.put(envelopes, write)

    def room(self) -> int:
        """
        How many more envelopes the queue takes now.
        """
        return self.queue.max_items - len(self.queue)

    def start(self) -> None:
        self._stopping = False
        for _ in range(self._max_in_flight):
            self._workers.append(Deferred.fromCoroutine(self._work()))

    def _batching(self) -> bool:
        return self._batch_size > 1 and self.sink.batches and self._clock.seconds() >= self._no_batches_until

    async def _work(self) -> None:
        while not self._stopping:
            pending = await self._gather()
            if not pending:
                return
            self._in_flight += 1
            try:
                sending = Deferred.fromCoroutine(self._send(pending))
                # The next worker gathers only once this request is on its
                # way, so that requests leave in the order of the queue.
                self._gathering.release()
                await sending
            except GeneratorExit:
                raise
            except BaseException:
                # Interrupted (the service is stopping): what was not
                # delivered stays queued, and in the durable queue on disk
                # for the next start.
                self._give_back(pending)
                raise
            finally:
                self._in_flight -= 1

    async def _send(self, pending: list[Envelope]) -> None:
        if len(pending) > 1:
            await self._deliver_batch(pending)
        else:
            await self._deliver(pending[0])
            pending.clear()

    async def _gather(self) -> list[Envelope]:
        """
        Take what the next request carries: one alert when nothing else is
        being delivered (it goes at once), and under load whatever else is
        ready, up to C{batch_size}.

        An alert ready alone while other deliveries are on the wire waits up
        to C{batch_linger} for company: at a steady rate of single-alert
        webhooks that turns hundreds of requests to the processor a second,
        each costing more CPU than accepting the alert did, into a few.

        @return: Nothing when the forwarder is stopping; else the
            envelopes, with the gathering lock still held for the caller to
            release once their request is under way.
        """
        await self._gathering.acquire()
        pending: list[Envelope] = []
        try:
            envelope = await self.queue.take()
            pending.append(envelope)
            if self._stopping:
                # Handed over by another worker's release while all are
                # being stopped: it stays queued.
                self._give_back(pending)
                self._gathering.release()
                return []
            if self._batching():
                # What else is ready by the end of this reactor turn goes
                # along (one per key, as always): under load a turn brings
                # many webhooks, and one request carries them all.
                await deferLater(self._clock, 0)
                pending += self.queue.take_now(self._batch_size - len(pending))
                if self._in_flight and self._batch_linger > 0 and len(pending) < self._batch_size:
                    await deferLater(self._clock, self._batch_linger)
                    pending += self.queue.take_now(self._batch_size - len(pending))
        except GeneratorExit:
            # The worker itself is being thrown away, not stopped: nothing
            # may run on its behalf any more.
            raise
        except BaseException:
            self._give_back(pending)
            self._gathering.release()
            raise
        return pending

    def _give_back(self, pending: list[Envelope]) -> None:
        for unfinished in reversed(pending):
            self.queue.release(unfinished)
        pending.clear()

    async def _deliver_batch(self, pending: list[Envelope]) -> None:
        """
        Deliver several envelopes in one request; if that fails for any
        reason, deliver each on its own, with the usual retries, so one
        refused alert becomes one dead letter and order per key holds.

        @param pending: Emptied as envelopes are finished with.
        """
        if self.breaker is not None:
            await self.breaker.admit()
        started = self._clock.seconds()
        try:
            await self.sink.deliver_batch(pending)
        except CancelledError:
            raise
        except Exception as e:
            self._metrics.forward_duration.observe(self._clock.seconds() - started)
            if self._stopping:
                raise CancelledError() from e
            if getattr(e, "status", None) in _NO_BATCH_ENDPOINT:
                # A processor without the batch endpoint: each alert on its
                # own for a while, then the endpoint is tried again.
                if self._clock.seconds() >= self._no_batches_until:
                    _log.info(
                        "The Alert Processor has no batch endpoint ({reason}); sending alerts one by one"
                        " for {seconds:g}s",
                        reason=str(e),
                        seconds=_NO_BATCHES_FOR,
                    )
                self._no_batches_until = self._clock.seconds() + _NO_BATCHES_FOR
            elif isinstance(e, Retryable):
                self._failed(e)
            _log.info(
                "A batch of {count} alerts failed ({reason}); delivering them one by one",
                count=len(pending),
                reason=str(e),
            )
            while pending:
                await self._deliver(pending[0])
                pending.pop(0)
            return
        elapsed = self._clock.seconds() - started
        self._metrics.forward_duration.observe(elapsed)
        self._succeeded(elapsed, outcome="success", kind=AttemptClass.OK)
        delivered = self._metrics.child(self._metrics.alerts_forwarded, "delivered")
        while pending:
            envelope = pending.pop(0)
            delivered.inc()
            self._publish(envelope, Delivery.DELIVERED)
            self.queue.done(envelope)

    def _id(self, envelope: Envelope) -> tuple[str, str, int | None]:
        return (envelope.key, envelope.idempotency_key, envelope.id)

    async def _deliver(self, envelope: Envelope) -> None:
        ident = self._id(envelope)
        attempt = self._attempts.pop(ident, 0)
        quick = 0
        while True:
            if self.breaker is not None:
                await self.breaker.admit()
            started = self._clock.seconds()
            try:
                await _attempt(self.sink, envelope)
            except Retryable as e:
                elapsed = self._clock.seconds() - started
                self._metrics.forward_duration.observe(elapsed)
                if self._stopping:
                    # The cancellation of a stopping worker may reach us
                    # disguised as a failed attempt; retrying would keep
                    # the worker (and so the shutdown) alive.
                    raise CancelledError() from e
                self._failed(e)
                delay = self._backoff.delay(attempt, e.retry_after)
                attempt += 1
                quick += 1
                self._metrics.forward_retries.inc()
                if quick > self._max_retries:
                    self._attempts[ident] = attempt
                    _log.warn(
                        "Delivery of {key} failed {attempts} times ({reason}); it waits {delay:.1f}s in the queue",
                        key=envelope.key,
                        reason=str(e),
                        attempts=attempt,
                        delay=delay,
                        requestId=envelope.request_id,
                    )
                    self.queue.postpone(envelope, delay, self._clock)
                    return
                _log.warn(
                    "Delivery of {key} failed ({reason}); retry {attempt} in {delay:.2f}s",
                    key=envelope.key,
                    reason=str(e),
                    attempt=attempt,
                    delay=delay,
                    requestId=envelope.request_id,
                )
                await deferLater(self._clock, delay)
            except Rejected as e:
                self._metrics.forward_duration.observe(self._clock.seconds() - started)
                self._succeeded(None, outcome="reject", kind=AttemptClass.CLIENT)
                self._metrics.alerts_forwarded.labels(outcome="rejected").inc()
                self._metrics.dead_letters.inc()
                self._publish(envelope, Delivery.REJECTED)
                _log.error(
                    "Alert Processor refused {key} for good; kept as a dead letter: {reason}",
                    key=envelope.key,
                    reason=str(e),
                    requestId=envelope.request_id,
                )
                self.queue.bury(envelope, str(e), attempt + 1)
                return
            else:
                elapsed = self._clock.seconds() - started
                self._metrics.forward_duration.observe(elapsed)
                self._succeeded(elapsed, outcome="success", kind=AttemptClass.OK)
                self._metrics.alerts_forwarded.labels(outcome="delivered").inc()
                self._publish(envelope, Delivery.DELIVERED)
                self.queue.done(envelope)
                return

    def _failed(self, error: Retryable) -> None:
        kind = error.kind
        self._metrics.forward_attempts.labels(outcome="retry", **{"class": kind.value}).inc()
        self._metrics.forward_failure_ratio.set(self.failures.record(True, kind.value))
        timeouts = self.timeouts
        cut_short = False
        if kind is AttemptClass.TIMEOUT and timeouts is not None:
            # Cut off by what the processor used to take: the next attempt
            # gets the configured timeout, and this one says nothing yet of
            # the processor's health.
            cut_short = error.timeout is not None and error.timeout < timeouts.maximum
            timeouts.timed_out()
            self._metrics.forward_timeout.set(timeouts.current())
        if self.breaker is not None and not cut_short:
            self.breaker.failure()

    def _succeeded(self, latency: float | None, *, outcome: str, kind: AttemptClass) -> None:
        self._metrics.forward_attempts.labels(outcome=outcome, **{"class": kind.value}).inc()
        self._metrics.forward_failure_ratio.set(self.failures.record(False))
        if self.breaker is not None:
            self.breaker.success()
        if latency is not None and self.timeouts is not None:
            self.timeouts.observe(latency)
            self._metrics.forward_timeout.set(self.timeouts.current())

    def refresh_age(self) -> None:
        """
        Export the age of the oldest queued envelope.
        """
        oldest = self.queue.oldest()
        self._metrics.queue_oldest_age.set(max(0.0, self._clock.seconds() - oldest) if oldest is not None else 0.0)

    def stop(self, grace: float) -> Deferred[None]:
        """
        Let the workers empty the queue for up to C{grace} seconds, then
        stop them; what is left stays queued (on disk, with the durable
        queue, for the next start).
        """
        if not self._workers:
            # Not started, or stopped already.
            return succeed(None)
        drained = self.queue.when_empty()
        drained.addTimeout(grace, self._clock)

        def _stop_workers(result: object) -> Deferred[None]:
            self._stopping = True
            self.queue.stop_timers()
            if self.breaker is not None:
                self.breaker.stop()
            if len(self.queue):
                _log.warn("Stopping with {count} alerts still queued", count=len(self.queue))
            for worker in self._workers:
                worker.cancel()
            workers, self._workers = self._workers, []
            return DeferredList(workers, consumeErrors=True).addCallback(lambda _: None)

        drained.addErrback(lambda f: f.trap(CancelledError, DeferredTimeout))
        return drained.addCallback(_stop_workers)
