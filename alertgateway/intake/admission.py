"""
From accepted alerts to queued envelopes: decide, then queue.

Decisions are taken by L{alertgateway.state.decisions} on this process's
state or on state shared by the replicas; either way a decision that could
not be queued is undone.

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

from twisted.internet.defer import Deferred, gatherResults, race, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger

from alertgateway.core.decider import AGGREGATED, DUPLICATE, ESCALATED, Decider, Outgoing, Verdict
from alertgateway.core.model import Alert
from alertgateway.delivery.envelope import Envelope
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.redis.client import RedisUnavailable
from alertgateway.state.decisions import Decisions, MemoryDecisions, Tracked
from alertgateway.state.errors import QueueFull, StateContended, StateUnavailable

__all__ = ["Intake"]

_log = Logger()


class Intake:
    """
    Decide on accepted alerts and queue what is to be forwarded.

    @param submit: Queues envelopes (L{alertgateway.delivery.forwarder.Forwarder.submit}).
    @param room: How many more envelopes the queue can take now.
    @param poll_interval: With a queue shared by replicas, another replica
        may deliver what this one accepted: synchronous requests then learn
        the outcome by reading the shared state this often.  C{None}: this
        process delivers what it accepts, and is told directly.
    """

    def __init__(
        self,
        decisions: Decisions | Decider,
        submit: Callable[[list[Envelope]], Deferred[None]],
        room: Callable[[], int],
        metrics: GatewayMetrics,
        poll_interval: float | None = None,
    ) -> None:
        self.decisions: Decisions = MemoryDecisions(decisions) if isinstance(decisions, Decider) else decisions
        self._submit = submit
        self._room = room
        self._metrics = metrics
        self._poll_interval = poll_interval
        self._pending: list[Outgoing] = []
        # Requests waiting for deliveries, by idempotency key (sync mode).
        self._waiters: dict[str, list[Deferred[str]]] = {}
        self._evictions_counted = 0
        # In memory the gauges read the state when scraped, at no cost per
        # request; in Redis counting is a round trip, done by the tick.
        self._local = self.decisions if isinstance(self.decisions, MemoryDecisions) else None
        if self._local is not None:
            local = self._local
            metrics.dedup_tracked.set_function(lambda: len(local.decider.episodes))
            metrics.storms_active.set_function(
                lambda: len(local.decider.storms.storms) if local.decider.storms is not None else 0
            )

    @property
    def decider(self) -> Decider:
        return self.decisions.decider

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
        return Deferred.fromCoroutine(self._accept(alerts, request_id, headers))

    async def _accept(
        self, alerts: Sequence[Alert], request_id: str, headers: tuple[tuple[str, str], ...]
    ) -> list[Verdict]:
        decided = await self.decisions.decide(alerts)
        now = self.decider.clock.seconds()
        waiting = list(self._pending)
        held, self._pending = self._storm_envelopes(self._pending), []
        envelopes = [
            Envelope(o.key, o.body, o.idempotency_key, request_id, headers, accepted_at=now) for o in decided.outgoing
        ]
        try:
            await self._submit(held + envelopes)
        except BaseException:
            # Nothing of the batch was queued: forget it was decided, so
            # the sender's retry is decided afresh, and keep the held
            # storm events for the next chance.
            self._pending = waiting + self._pending
            try:
                await decided.undo()
            except Exception as e:
                _log.warn("Cannot undo a decision that was not queued: {error}", error=str(e))
            raise
        self._count(decided.verdicts)
        return decided.verdicts

    def _storm_envelopes(self, outgoing: Sequence[Outgoing]) -> list[Envelope]:
        now = self.decider.clock.seconds()
        return [Envelope(o.key, o.body, o.idempotency_key, "storm", accepted_at=now) for o in outgoing]

    def _count(self, verdicts: Sequence[Verdict]) -> None:
        metrics = self._metrics
        for verdict in verdicts:
            if verdict.result == DUPLICATE:
                metrics.child(metrics.alerts_deduplicated, verdict.alert.source).inc()
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
        if self._local is not None:
            self._count_evictions(self._local.episodes.evictions)

    def _count_evictions(self, evictions: int) -> None:
        if evictions > self._evictions_counted:
            self._metrics.dedup_evictions.inc(evictions - self._evictions_counted)
            self._evictions_counted = evictions

    def _gauges(self) -> Deferred[None]:
        if self._local is not None:
            self._count_evictions(self._local.episodes.evictions)
            return succeed(None)

        def _set(tracked: Tracked) -> None:
            self._metrics.dedup_tracked.set(tracked.episodes)
            self._count_evictions(tracked.evictions)
            self._metrics.storms_active.set(tracked.storms)

        return self.decisions.tracked().addCallback(_set)

    def delivered(self, envelope: Envelope, outcome: str) -> None:
        """
        Record how the delivery of an alert ended, for the status API (on
        its episode, if that is still the one it was forwarded for) and for
        requests waiting for it (sync delivery).
        """
        self.decisions.delivered(envelope.key, envelope.idempotency_key, outcome).addErrback(
            lambda f: _log.warn("Cannot record the delivery of {key}: {error}", key=envelope.key, error=str(f.value))
        )
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
        waits = [Deferred.fromCoroutine(self._outcome(v.dedup_key)) for v in verdicts]
        d = gatherResults(waits, consumeErrors=True)
        return d.addCallback(lambda outcomes: [o for o in outcomes if o is not None])

    async def _outcome(self, key: str) -> str | None:
        episode = await self.decisions.episode(key)
        if episode is None or episode.forwarded is None or episode.delivery != "queued":
            return None
        forwarded = episode.forwarded
        waiter = self._wait_for(forwarded)
        if self._poll_interval is None:
            return await waiter
        # Told directly when this replica delivers it; read from the state
        # when another one does.
        _, outcome = await race([waiter, Deferred.fromCoroutine(self._poll(key, forwarded, self._poll_interval))])
        return outcome

    async def _poll(self, key: str, forwarded: str, interval: float) -> str:
        while True:
            await deferLater(self.decider.clock, interval)
            episode = await self.decisions.episode(key)
            if episode is None or episode.forwarded != forwarded:
                # Its episode ended or moved on: what it forwarded left.
                return "delivered"
            if episode.delivery != "queued":
                return episode.delivery

    def tick(self) -> Deferred[None]:
        """
        Periodic work: expire episodes, flush storm updates and queue them
        (holding them for the next tick while the queue is full).
        """
        return Deferred.fromCoroutine(self._tick())

    async def _tick(self) -> None:
        # Whatever fails here, the next tick tries again: a tick that
        # raised would stop the LoopingCall for good.
        try:
            self._pending.extend(await self.decisions.tick())
            await self._gauges()
        except (RedisUnavailable, StateUnavailable, StateContended) as e:
            _log.warn("Periodic state work skipped: {error}", error=str(e))
        except Exception:
            _log.failure("Periodic state work failed")
        if not self._pending:
            return
        room = self._room()
        ready, self._pending = self._pending[:room], self._pending[room:]
        if self._pending:
            _log.warn("Queue full: {count} storm events wait for the next tick", count=len(self._pending))
        if not ready:
            return
        try:
            await self._submit(self._storm_envelopes(ready))
        except Exception as e:
            # Not queued (full, or the queue's store unreachable): they
            # wait for the next tick, ahead of anything found later.
            self._pending = ready + self._pending
            _log.warn("Storm events wait for the next tick: {error}", error=str(e))
