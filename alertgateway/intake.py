"""
From accepted alerts to queued envelopes: decide, then queue.

Deciding changes the deduplication state, so it happens only once the queue
is known to have room for everything the batch can produce (each alert
yields at most one envelope: itself, its escalation, its resolution or the
storm it starts).  A batch that does not fit is refused whole with nothing
decided, and the sender's retry finds the state unchanged.

Storm updates found by the periodic tick wait here while the queue is full;
they are queued before anything decided later, so that the events of one
storm key (an update, the closing summary, the next storm's start) reach
the processor in the order they happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from alertgateway.decide.engine import AGGREGATED, DUPLICATE, ESCALATED, Decider, Outgoing, Verdict
from alertgateway.delivery.queue import Envelope, QueueFull
from alertgateway.metrics import GatewayMetrics
from alertgateway.model import Alert

__all__ = ["Intake"]

_log = Logger()


class Intake:
    """
    Decide on accepted alerts and queue what is to be forwarded.

    @param submit: Queues envelopes (L{alertgateway.delivery.forwarder.Forwarder.submit}).
    @param room: How many more envelopes the queue can take now.
    """

    def __init__(
        self,
        decider: Decider,
        submit: Callable[[list[Envelope]], Deferred[None]],
        room: Callable[[], int],
        metrics: GatewayMetrics,
    ) -> None:
        self.decider = decider
        self._submit = submit
        self._room = room
        self._metrics = metrics
        self._pending: list[Outgoing] = []
        # Requests waiting for deliveries, by idempotency key (sync mode).
        self._waiters: dict[str, list[Deferred[str]]] = {}
        self._evictions_counted = 0

    def accept(
        self, alerts: Sequence[Alert], request_id: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> Deferred[list[Verdict]]:
        """
        Decide on C{alerts} and queue their envelopes.

        @raise QueueFull: Before deciding anything, if they might not fit
            (behind the storm events waiting for room); the Deferred fails
            with it if the queue refuses the write (its byte bound, a disk
            error), and then the decision is undone.
        """
        if self._room() < len(self._pending) + len(alerts):
            raise QueueFull(f"no room for {len(alerts)} alerts behind {len(self._pending)} storm events")
        snapshot = self.decider.snapshot(alerts)
        waiting = list(self._pending)
        held, self._pending = self._storm_envelopes(self._pending), []
        verdicts, outgoing = self.decider.decide(alerts)
        now = self.decider.clock.seconds()
        envelopes = [Envelope(o.key, o.body, o.idempotency_key, request_id, headers, accepted_at=now) for o in outgoing]

        def _undo(failure: Failure) -> Failure:
            # Nothing of the batch was queued: forget it was decided, so
            # the sender's retry is decided afresh, and keep the held
            # storm events for the next chance.
            self.decider.restore(snapshot)
            self._pending = waiting + self._pending
            return failure

        try:
            d = self._submit(held + envelopes)
        except QueueFull:
            _undo(Failure())
            raise

        def _queued(_: object) -> list[Verdict]:
            self._count(verdicts)
            return verdicts

        return d.addCallbacks(_queued, _undo)

    def _storm_envelopes(self, outgoing: Sequence[Outgoing]) -> list[Envelope]:
        now = self.decider.clock.seconds()
        return [Envelope(o.key, o.body, o.idempotency_key, "storm", accepted_at=now) for o in outgoing]

    def _count(self, verdicts: Sequence[Verdict]) -> None:
        metrics = self._metrics
        for verdict in verdicts:
            if verdict.result == DUPLICATE:
                metrics.alerts_deduplicated.labels(source=verdict.alert.source).inc()
            elif verdict.result == ESCALATED:
                # Only configured environments become label values: senders
                # choose the environment label, and must not choose series.
                rules = self.decider.settings.rules
                environment = (
                    verdict.environment if verdict.environment in rules else self.decider.settings.default_environment
                )
                metrics.escalations.labels(environment=environment, level=verdict.escalation or "").inc()
            elif verdict.result == AGGREGATED:
                metrics.storm_alerts_aggregated.inc()
        self._gauges()

    def _gauges(self) -> None:
        self._metrics.dedup_tracked.set(len(self.decider.episodes))
        evictions = getattr(self.decider.episodes, "evictions", 0)
        if evictions > self._evictions_counted:
            self._metrics.dedup_evictions.inc(evictions - self._evictions_counted)
            self._evictions_counted = evictions
        storms = self.decider.storms
        self._metrics.storms_active.set(len(storms.storms) if storms is not None else 0)

    def delivered(self, envelope: Envelope, outcome: str) -> None:
        """
        Record how the delivery of an alert ended, for the status API (on
        its episode, if that is still the one it was forwarded for) and for
        requests waiting for it (sync delivery).
        """
        episode = self.decider.episodes.get(envelope.key)
        if episode is not None and episode.forwarded == envelope.idempotency_key:
            episode.delivery = outcome
        for waiter in self._waiters.pop(envelope.idempotency_key, []):
            waiter.callback(outcome)

    def _wait_for(self, idempotency_key: str) -> Deferred[str]:
        waiters = self._waiters.setdefault(idempotency_key, [])

        def _cancel(d: Deferred[str]) -> None:
            # The request gave up (its deadline, or the client left).
            waiters.remove(d)
            if not waiters:
                self._waiters.pop(idempotency_key, None)

        waiter: Deferred[str] = Deferred(_cancel)
        waiters.append(waiter)
        return waiter

    def outcomes(self, verdicts: Sequence[Verdict]) -> Deferred[list[str]]:
        """
        Wait until what was forwarded for each verdict, or is still pending
        for its episode (a duplicate of something not yet delivered), has
        been delivered or refused; fires with the outcomes.
        """
        waits: list[Deferred[str]] = []
        for verdict in verdicts:
            episode = self.decider.episodes.get(verdict.dedup_key)
            if episode is None or episode.forwarded is None or episode.delivery != "queued":
                continue
            waits.append(self._wait_for(episode.forwarded))
        return gatherResults(waits, consumeErrors=True).addCallback(list)

    def tick(self) -> None:
        """
        Periodic work: expire episodes, flush storm updates and queue them
        (holding them for the next tick while the queue is full).
        """
        self._pending.extend(self.decider.tick())
        self._gauges()
        if not self._pending:
            return
        room = self._room()
        ready, self._pending = self._pending[:room], self._pending[room:]
        if self._pending:
            _log.warn("Queue full: {count} storm events wait for the next tick", count=len(self._pending))
        if ready:
            self._submit(self._storm_envelopes(ready))
