# -*- test-case-name: tests.unit.test_intake -*-
"""
The periodic state work, and the room it holds in the queue for storm
events.

Every C{dedup.expire_interval} the state store forgets lapsed episodes and
commits the storm updates and closings that are due, with their events, as
many storms as the queue has room for.  The storms whose events do not fit
are not committed (they keep their waiting members, and their events are
due again at the next tick), and as many places as they need are held: new
webhooks are refused (503 with C{Retry-After}) rather than take them, so
that a storm's events reach the processor in the order they happened and
are not starved by a steady stream of new alerts.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

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
            decision = await state.tick(now, self._enqueue, max(0, self._room()))
        except QueueFull as e:
            _log.warn(
                "Queue full: {count} storm events wait for the next tick ({reason})",
                count=self.reserved,
                reason=str(e),
            )
        except StorageError as e:
            _log.warn("Periodic state work skipped: {error}", error=str(e))
        except Exception:
            _log.failure("Periodic state work failed")
        else:
            held = decision.held_back
            if held:
                _log.warn("Queue full: {count} storm events wait for room", count=held)
            elif self.reserved and not held:
                _log.info("Queued the storm events that waited for room ({count} now)", count=len(decision.outgoing))
            # Held from now on: webhooks must not take these places.
            self.reserved = held
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
            queued = self._submit(envelopes, write)
        except QueueFull:
            self.reserved = count
            raise

        def _full(failure: Failure) -> Failure:
            if failure.check(QueueFull):
                self.reserved = count
            return failure

        return queued.addErrback(_full)
