"""
The queue between accepting an alert and delivering it.

Alerts of the same key (the fingerprint) leave in the order they were
accepted and never two at a time; different keys may be delivered in
parallel.  The queue is bounded: a batch that does not fit is refused whole,
so the webhook can answer 503 and the sender retry it.

This is the in-memory queue; a durable one offers the same methods.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from alertgateway.core.model import Alert

__all__ = ["Envelope", "MemoryQueue", "QueueFull"]


@attrs.frozen
class Envelope:
    """
    One thing on its way to the processor (an alert, an escalation, a storm
    event), with the request that brought it.

    @ivar key: Envelopes of one key are delivered in order, one at a time:
        an alert's fingerprint, or C{storm:<groupId>}.
    @ivar body: The JSON object to send.
    @ivar idempotency_key: The same for every delivery of this thing.
    @ivar headers: Headers to send with it (webhook.forward_headers,
        add_headers).
    """

    key: str
    body: Mapping[str, Any]
    idempotency_key: str
    request_id: str
    headers: tuple[tuple[str, str], ...] = ()
    # The row in the durable queue, once written there.
    id: int | None = None
    # When the gateway accepted it (seconds since the epoch).
    accepted_at: float = 0.0
    # The body as compact JSON, made once: sized by the queue, written by
    # the journal and sent by the sink, all from the same text.
    _json: str | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def json_body(self) -> str:
        """
        The body as compact JSON text.
        """
        if self._json is None:
            object.__setattr__(self, "_json", json.dumps(self.body, separators=(",", ":")))
        assert self._json is not None
        return self._json

    # The Redis Streams entry it was read from, and that stream's partition
    # (the Redis queue; None elsewhere).
    entry: str | None = None
    partition: int | None = None

    @classmethod
    def for_alert(cls, alert: Alert, request_id: str, headers: tuple[tuple[str, str], ...] = ()) -> Envelope:
        return cls(alert.fingerprint, alert.to_json(), alert.idempotency_key, request_id, headers)


class QueueFull(Exception):
    """
    The queue cannot take the whole batch.
    """


class MemoryQueue:
    """
    A bounded, per-key ordered queue in memory.
    """

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._by_key: dict[str, deque[Envelope]] = {}
        self._ready: deque[str] = deque()
        self._takers: deque[Deferred[Envelope]] = deque()
        self._empty_waiters: list[Deferred[None]] = []
        self._timers: list[IDelayedCall] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def put(self, envelopes: Sequence[Envelope]) -> Deferred[None]:
        """
        Enqueue a batch, all or nothing.

        @return: A Deferred that fires once the batch is queued.
        @raise QueueFull: If the batch does not fit.
        """
        if self._size + len(envelopes) > self.max_items:
            raise QueueFull(f"{self._size} queued, room for {self.max_items - self._size}")
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
        pending.popleft()
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
