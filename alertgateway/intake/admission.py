# -*- test-case-name: tests.unit.test_intake -*-
"""
Admission: a webhook's accepted alerts are decided and committed with the
envelopes they forward, in one step.

The state store loads what the alerts touch, the pure decider decides, and
the decision's state changes are committed only once its envelopes are
queued: a batch the queue refuses (full, or its disk failing) leaves the
state as it was, so the sender's retry is decided afresh.

A batch is refused before anything is decided when the queue might not
have room for everything it can produce (each alert yields at most one
envelope: itself, its escalation, its resolution or the storm it starts),
counting the room held for storm events that the last tick could not queue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from alertgateway.core.decision import Decision, Ruling, Verdict
from alertgateway.core.model import Alert
from alertgateway.delivery.envelope import Envelope
from alertgateway.intake.backlog import StormBacklog
from alertgateway.observability.metrics import DecisionMetrics
from alertgateway.state.errors import QueueFull
from alertgateway.state.ports import Replay, StateStore, StateWrite

__all__ = ["Admission"]

Headers = tuple[tuple[str, str], ...]


class Admission:
    """
    Decide on accepted alerts and queue what is to be forwarded.

    @param submit: Queues envelopes, all or none (the forwarder's).
    @param room: How many more envelopes the queue can take now.
    @param environments: The configured environments: only those become
        label values of the escalation metric (senders choose the
        environment label, and must not choose series).
    """

    def __init__(
        self,
        state: StateStore,
        *,
        clock: IReactorTime,
        submit: Callable[[list[Envelope], StateWrite | None], Deferred[None]],
        room: Callable[[], int],
        backlog: StormBacklog,
        metrics: DecisionMetrics,
        environments: frozenset[str],
        default_environment: str,
    ) -> None:
        self._state = state
        self._clock = clock
        self._submit = submit
        self._room = room
        self._backlog = backlog
        self._metrics = metrics
        self._environments = environments
        self._default_environment = default_environment

    def has_room(self) -> bool:
        """
        Whether the queue has room for one more alert, behind the storm
        events that wait for it.
        """
        return self._room() > self._backlog.reserved

    def accept(
        self, alerts: Sequence[Alert], request_id: str, headers: Headers = (), replay: Replay | None = None
    ) -> Deferred[list[Ruling]]:
        """
        Decide on C{alerts} and commit the decision with its envelopes (and
        the request's signature, C{replay}, where the state keeps them).

        @raise QueueFull: At once, before deciding anything, if they might
            not fit; through the Deferred if the queue refuses the write.
        @raise alertgateway.state.errors.StateUnavailable: Through the
            Deferred, when the state cannot be decided on now.
        """
        reserved = self._backlog.reserved
        if self._room() < reserved + len(alerts):
            raise QueueFull(f"no room for {len(alerts)} alerts behind {reserved} storm events")
        now = self._clock.seconds()

        def _enqueue(decision: Decision, write: StateWrite | None) -> Deferred[None]:
            if not decision.outgoing and write is None:
                return succeed(None)
            envelopes = [
                Envelope(o.key, o.body, o.idempotency_key, request_id, headers, accepted_at=now)
                for o in decision.outgoing
            ]
            return self._submit(envelopes, write)

        return self._state.decide(alerts, now, _enqueue, replay).addCallback(self._count)

    def _count(self, decision: Decision) -> list[Ruling]:
        metrics = self._metrics
        # Counted here, recorded once per source: a batch is one call.
        duplicates: dict[str, int] = {}
        for ruling in decision.rulings:
            if ruling.verdict is Verdict.DUPLICATE:
                source = ruling.alert.source
                duplicates[source] = duplicates.get(source, 0) + 1
            elif ruling.verdict is Verdict.ESCALATED:
                environment = (
                    ruling.environment if ruling.environment in self._environments else self._default_environment
                )
                metrics.escalations.labels(environment=environment, level=ruling.escalation or "").inc()
            elif ruling.verdict is Verdict.AGGREGATED:
                metrics.storm_alerts_aggregated.inc()
        for source, count in duplicates.items():
            metrics.deduplicated(source, count)
        return list(decision.rulings)
