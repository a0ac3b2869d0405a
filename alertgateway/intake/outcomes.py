# -*- test-case-name: tests.unit.test_sync_delivery -*-
"""
How deliveries ended, for the status API (recorded on the alert's episode)
and for requests that wait for them (endpoints with C{delivery: sync}).

With a queue shared by replicas another replica may deliver what this one
accepted: a waiting request then learns the outcome by reading the shared
state every C{poll_interval}.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred, gatherResults, race
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from alertgateway.core.decision import Ruling
from alertgateway.core.episodes import Delivery
from alertgateway.delivery.envelope import Envelope
from alertgateway.state.ports import StateStore

__all__ = ["Outcomes"]

_log = Logger()


class Outcomes:
    """
    Follow deliveries: record them, and wake the requests waiting for them.

    @param poll_interval: C{None} when this process delivers what it
        accepts, and is told directly.
    """

    def __init__(self, state: StateStore, *, clock: IReactorTime, poll_interval: float | None = None) -> None:
        self._state = state
        self._clock = clock
        self._poll_interval = poll_interval
        # Requests waiting for deliveries, by idempotency key.
        self._waiters: dict[str, list[Deferred[Delivery]]] = {}

    def delivered(self, envelope: Envelope, outcome: Delivery) -> None:
        """
        Record how the delivery of an envelope ended (on its episode, if
        that is still the one it was forwarded for) and tell the requests
        waiting for it.
        """
        self._state.delivered(envelope.key, envelope.idempotency_key, outcome).addErrback(
            lambda f: _log.warn("Cannot record the delivery of {key}: {error}", key=envelope.key, error=str(f.value))
        )
        for waiter in self._waiters.pop(envelope.idempotency_key, []):
            waiter.callback(outcome)

    def wait(self, rulings: Sequence[Ruling]) -> Deferred[list[Delivery]]:
        """
        Wait until what was forwarded for each ruling, or is still pending
        for its episode (a duplicate of something not yet delivered), has
        been delivered or refused; fires with the outcomes.
        """
        waits = [Deferred.fromCoroutine(self._outcome(r.dedup_key)) for r in rulings]
        d = gatherResults(waits, consumeErrors=True)
        return d.addCallback(lambda outcomes: [o for o in outcomes if o is not None])

    def _wait_for(self, idempotency_key: str) -> Deferred[Delivery]:
        waiters = self._waiters.setdefault(idempotency_key, [])

        def _cancel(d: Deferred[Delivery]) -> None:
            # The request gave up (its deadline, or the client left).
            waiters.remove(d)
            if not waiters:
                self._waiters.pop(idempotency_key, None)

        waiter: Deferred[Delivery] = Deferred(_cancel)
        waiters.append(waiter)
        return waiter

    async def _outcome(self, key: str) -> Delivery | None:
        episode = await self._state.episode(key)
        if episode is None or episode.forwarded is None or episode.delivery is not Delivery.QUEUED:
            return None
        forwarded = episode.forwarded
        waiter = self._wait_for(forwarded)
        if self._poll_interval is None:
            return await waiter
        # Told directly when this replica delivers it; read from the state
        # when another one does.
        _, outcome = await race([waiter, Deferred.fromCoroutine(self._poll(key, forwarded, self._poll_interval))])
        return outcome

    async def _poll(self, key: str, forwarded: str, interval: float) -> Delivery:
        while True:
            await deferLater(self._clock, interval)
            episode = await self._state.episode(key)
            if episode is None or episode.forwarded != forwarded:
                # Its episode ended or moved on: what it forwarded left.
                return Delivery.DELIVERED
            if episode.delivery is not Delivery.QUEUED:
                return episode.delivery
