# -*- test-case-name: tests.unit.test_queue -*-
"""
The queue between accepting an alert and delivering it.

Alerts of the same key (the fingerprint) leave in the order they were
accepted and never two at a time; different keys may be delivered in
parallel.  The queue is bounded in envelopes and in bytes of their JSON: a
batch that does not fit is refused whole, so the webhook can answer 503
and the sender retry it.  Envelopes are kept as their JSON text
(L{Envelope.compact}), which is what the bytes bound counts.

L{DeliveryQueue} is what the forwarder needs of a queue; this module's
L{MemoryQueue} is the in-memory one, and the durable one offers the same.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from alertgateway.delivery.envelope import Envelope
from alertgateway.state.errors import QueueFull

__all__ = ["DeliveryQueue", "Envelope", "MemoryQueue", "QueueFull"]


class DeliveryQueue(Protocol):
    """
    What the forwarder needs of a queue (memory or durable).
    """

    max_items: int

    def __len__(self) -> int: ...

    def put(self, envelopes: Sequence[Envelope], write: object | None = None) -> Deferred[None]: ...

    def take(self) -> Deferred[Envelope]: ...

    def take_now(self, limit: int) -> list[Envelope]: ...

    def done(self, envelope: Envelope) -> None: ...

    def release(self, envelope: Envelope) -> None: ...

    def postpone(self, envelope: Envelope, delay: float, clock: IReactorTime) -> None: ...

    def bury(self, envelope: Envelope, reason: str, attempts: int) -> None: ...

    def oldest(self) -> float | None: ...

    def stop_timers(self) -> None: ...

    def when_empty(self) -> Deferred[None]: ...


class MemoryQueue:
    """
    A bounded, per-key ordered queue in memory.
    """

    def __init__(self, max_items: int, max_bytes: int | None = None) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.bytes = 0
        self._by_key: dict[str, deque[Envelope]] = {}
        self._ready: deque[str] = deque()
        self._takers: deque[Deferred[Envelope]] = deque()
        self._empty_waiters: list[Deferred[None]] = []
        self._timers: list[IDelayedCall] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def put(self, envelopes: Sequence[Envelope], write: object | None = None) -> Deferred[None]:
        """
        Enqueue a batch, all or nothing.

        @param write: Must be C{None}: this queue keeps nothing else.

        @return: A Deferred that fires once the batch is queued.
        @raise QueueFull: If the batch does not fit.
        """
        if write is not None:
            raise TypeError("the memory queue keeps no state")
        if self._size + len(envelopes) > self.max_items:
            raise QueueFull(f"{self._size} queued, room for {self.max_items - self._size}")
        envelopes = [envelope.compact() for envelope in envelopes]
        size = sum(len(envelope.json_body()) for envelope in envelopes)
        if self.max_bytes is not None and self.bytes + size > self.max_bytes:
            raise QueueFull(f"{self._size} queued ({self.bytes} bytes)")
        self.bytes += size
        for envelope in envelopes:
            pending = self._by_key.get(envelope.key)
            if pending is None:
                self._by_key[envelope.key] = deque([envelope])
                self._ready.append(envelope.key)
            else:
                pending.append(envelope)
            self._size += 1
        self._dispatch()
        return succeed(None)

    def take(self) -> Deferred[Envelope]:
        """
        Wait for the next envelope whose key is not being delivered.  The
        caller must call L{done} with it once it is delivered or given up.
        """
        d: Deferred[Envelope] = Deferred(lambda d: self._takers.remove(d))
        self._takers.append(d)
        self._dispatch()
        return d

    def take_now(self, limit: int) -> list[Envelope]:
        """
        Take up to C{limit} envelopes that are ready now (one per key, as
        L{take} does), without waiting; each must be L{done} or given back
        like one from L{take}.
        """
        taken: list[Envelope] = []
        while self._ready and len(taken) < limit:
            taken.append(self._by_key[self._ready.popleft()][0])
        return taken

    def done(self, envelope: Envelope) -> None:
        """
        Remove a taken envelope and let the next one of its key go.
        """
        pending = self._by_key[envelope.key]
        self.bytes -= len(pending.popleft().json_body())
        self._size -= 1
        if pending:
            self._ready.append(envelope.key)
        else:
            del self._by_key[envelope.key]
        if not self._size:
            waiters, self._empty_waiters = self._empty_waiters, []
            for waiter in waiters:
                waiter.callback(None)
        self._dispatch()

    def release(self, envelope: Envelope) -> None:
        """
        Put a taken envelope back, first of its key, without removing it
        (its delivery was interrupted).
        """
        self._ready.appendleft(envelope.key)
        self._dispatch()

    def postpone(self, envelope: Envelope, delay: float, clock: IReactorTime) -> None:
        """
        Put a taken envelope back first of its key, but let its key be taken
        again only after C{delay} seconds: other keys go meanwhile, and the
        later envelopes of this key still wait behind it.
        """

        def _due() -> None:
            self._timers.remove(call)
            self._ready.append(envelope.key)
            self._dispatch()

        call = clock.callLater(delay, _due)
        self._timers.append(call)

    def bury(self, envelope: Envelope, reason: str, attempts: int) -> None:
        """
        The receiver refused the envelope for good; in memory there is
        nowhere to keep it, so it is dropped (and was logged and counted).
        """
        self.done(envelope)

    def oldest(self) -> float | None:
        """
        When the oldest envelope still queued was accepted.
        """
        heads = [pending[0].accepted_at for pending in self._by_key.values() if pending]
        return min(heads) if heads else None

    def stop_timers(self) -> None:
        for call in self._timers:
            if call.active():
                call.cancel()
        self._timers.clear()

    def when_empty(self) -> Deferred[None]:
        """
        A Deferred that fires once nothing is queued or being delivered.
        """
        if not self._size:
            return succeed(None)
        d: Deferred[None] = Deferred(lambda d: self._empty_waiters.remove(d))
        self._empty_waiters.append(d)
        return d

    def _dispatch(self) -> None:
        while self._ready and self._takers:
            key = self._ready.popleft()
            self._takers.popleft().callback(self._by_key[key][0])
