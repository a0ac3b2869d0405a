# -*- test-case-name: tests.unit.test_intake -*-
"""
The periodic state work, and the room it holds in the queue for storm
events.

Every C{dedup.expire_interval} the state store forgets lapsed episodes and
commits the storm updates and closings that are due, with their events.
When the queue has no room for those events, nothing of them is committed
(the storms keep their waiting members, and the events are due again at
the next tick), and as many places as there were events are held: new
webhooks are refused (503 with C{Retry-After}) rather than take them, so
that a storm's events reach the processor in the order they happened and
are not starved by a steady stream of new alerts.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from alertgateway.core.decision import Decision
from alertgateway.delivery.envelope import Envelope
from alertgateway.state.errors import QueueFull, StorageError
from alertgateway.state.ports import StateStore, StateWrite, Tracked

__all__ = ["StormBacklog"]

_log = Logger()


class StormBacklog:
    """
    Run the state store's tick, holding room for the events it could not
    queue.

    @param gauges: Refreshes the state gauges after each tick, or C{None}
        when they read the state when scraped.
    @ivar reserved: Places held in the queue for storm events.
    """

    def __init__(
        self,
        *,
        clock: IReactorTime,
        submit: Callable[[list[Envelope], StateWrite | None], Deferred[None]],
        room: Callable[[], int],
        gauges: Callable[[Tracked], None] | None = None,
    ) -> None:
        self._clock = clock
        self._submit = submit
        self._room = room
        self._gauges = gauges
        self.reserved = 0
        self._state: StateStore | None = None

    def attach(self, state: StateStore) -> None:
        """
        Tick C{state} (the store and the admission share this backlog).
        """
        self._state = state

    def tick(self) -> Deferred[None]:
        """
        Periodic work: expire, flush and close storms, refresh the gauges.
        Never fails: a failed tick is logged and the next one tries again
        (a LoopingCall whose call fails stops for good).
        """
        return Deferred.fromCoroutine(self._tick())

    async def _tick(self) -> None:
        state = self._state
        if state is None:
            return
        now = self._clock.seconds()
        try:
            decision = await state.tick(now, self._enqueue)
            if decision.outgoing and self.reserved:
                _log.info("Queued {count} storm events that waited for room", count=len(decision.outgoing))
            self.reserved = 0
        except QueueFull as e:
            _log.warn("Queue full: storm events wait for the next tick ({reason})", reason=str(e))
        except StorageError as e:
            _log.warn("Periodic state work skipped: {error}", error=str(e))
        except Exception:
            _log.failure("Periodic state work failed")
        if self._gauges is None:
            return
        try:
            self._gauges(await state.tracked())
        except StorageError as e:
            _log.warn("Cannot read the state figures: {error}", error=str(e))

    def _enqueue(self, decision: Decision, write: StateWrite | None) -> Deferred[None]:
        if not decision.outgoing:
            return self._submit([], write) if write is not None else succeed(None)
        count = len(decision.outgoing)
        if self._room() < count:
            # Held from now on: webhooks must not take these places.
            self.reserved = count
            raise QueueFull(f"{count} storm events, room for {self._room()}")
        now = self._clock.seconds()
        envelopes = [Envelope(o.key, o.body, o.idempotency_key, "storm", accepted_at=now) for o in decision.outgoing]
        try:
            return self._submit(envelopes, write)
        except QueueFull:
            self.reserved = count
            raise
