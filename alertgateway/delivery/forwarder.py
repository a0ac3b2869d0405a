"""
The forwarder: takes envelopes off the queue and delivers them through a
sink, retrying what may succeed later.

C{max_in_flight} workers run at once; the queue guarantees that alerts of
one fingerprint are never delivered concurrently or out of order.  A failed
attempt is retried up to C{max_retries} times with exponential backoff and
jitter, honouring the receiver's C{Retry-After}.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from alertgateway.delivery.queue import Envelope, MemoryQueue
from alertgateway.delivery.sinks import Rejected, Retryable, Sink
from alertgateway.metrics import GatewayMetrics

__all__ = ["Backoff", "Forwarder"]


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
        Forwarder.log.failure("Sink failed unexpectedly", requestId=envelope.request_id)
        raise Retryable(f"{type(e).__name__}: {e}") from e


class Forwarder:
    """
    Deliver queued envelopes through C{sink}.
    """

    log = Logger()

    def __init__(
        self,
        queue: MemoryQueue,
        sink: Sink,
        *,
        clock: IReactorTime,
        metrics: GatewayMetrics,
        max_in_flight: int,
        max_retries: int,
        backoff: Backoff | None = None,
        on_outcome: Callable[[Envelope, str], None] = lambda envelope, outcome: None,
    ) -> None:
        self.queue = queue
        self.sink = sink
        self._clock = clock
        self._metrics = metrics
        self._max_in_flight = max_in_flight
        self._max_retries = max_retries
        self._backoff = backoff or Backoff()
        # Told how each envelope ended (delivered, rejected, failed), so the
        # alert status API can say it.
        self.on_outcome = on_outcome
        self._workers: list[Deferred[None]] = []
        # Set when the workers are told to stop: a worker that is running
        # (not waiting) when it is cancelled cannot be interrupted, so it
        # must see this and leave its loop by itself.
        self._stopping = False

    def submit(self, envelopes: list[Envelope]) -> Deferred[None]:
        """
        Queue envelopes for delivery.

        @raise alertgateway.delivery.queue.QueueFull: If they do not fit.
        """
        d = self.queue.put(envelopes)
        self._metrics.queue_depth.set(len(self.queue))
        return d

    def room(self) -> int:
        """
        How many more envelopes the queue takes now.
        """
        return self.queue.max_items - len(self.queue)

    def start(self) -> None:
        self._stopping = False
        for _ in range(self._max_in_flight):
            self._workers.append(Deferred.fromCoroutine(self._work()))

    async def _work(self) -> None:
        while not self._stopping:
            envelope = await self.queue.take()
            try:
                await self._deliver(envelope)
            finally:
                self.queue.done(envelope)
                self._metrics.queue_depth.set(len(self.queue))

    async def _deliver(self, envelope: Envelope) -> None:
        attempt = 0
        while True:
            started = self._clock.seconds()
            try:
                await _attempt(self.sink, envelope)
            except Retryable as e:
                self._metrics.forward_duration.observe(self._clock.seconds() - started)
                if self._stopping:
                    # The cancellation of a stopping worker may reach us
                    # disguised as a failed attempt; retrying would keep
                    # the worker (and so the shutdown) alive.
                    raise CancelledError() from e
                if attempt >= self._max_retries:
                    self._metrics.alerts_forwarded.labels(outcome="failed").inc()
                    self.on_outcome(envelope, "failed")
                    self.log.error(
                        "Giving up on alert {key} after {attempts} attempts: {reason}",
                        key=envelope.key,
                        attempts=attempt + 1,
                        reason=str(e),
                        requestId=envelope.request_id,
                    )
                    return
                delay = self._backoff.delay(attempt, e.retry_after)
                attempt += 1
                self._metrics.forward_retries.inc()
                self.log.warn(
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
                self._metrics.alerts_forwarded.labels(outcome="rejected").inc()
                self.on_outcome(envelope, "rejected")
                self.log.error(
                    "Alert Processor rejected alert {key}: {reason}",
                    key=envelope.key,
                    reason=str(e),
                    requestId=envelope.request_id,
                )
                return
            else:
                self._metrics.forward_duration.observe(self._clock.seconds() - started)
                self._metrics.alerts_forwarded.labels(outcome="delivered").inc()
                self.on_outcome(envelope, "delivered")
                return

    def stop(self, grace: float) -> Deferred[None]:
        """
        Let the workers empty the queue for up to C{grace} seconds, then
        stop them.  What is still queued after that is logged as lost.
        """
        drained = self.queue.when_empty()
        drained.addTimeout(grace, self._clock)

        def _stop_workers(result: object) -> Deferred[None]:
            self._stopping = True
            if len(self.queue):
                self.log.error("Shutting down with {count} alerts undelivered", count=len(self.queue))
            for worker in self._workers:
                worker.cancel()
            workers, self._workers = self._workers, []
            return DeferredList(workers, consumeErrors=True).addCallback(lambda _: None)

        drained.addErrback(lambda f: f.trap(CancelledError, DeferredTimeout))
        return drained.addCallback(_stop_workers)
