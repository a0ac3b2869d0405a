# -*- test-case-name: tests.unit.test_redis_queue -*-
"""
L{Buffer}: what this replica has read from Redis (or taken from its local
fallback queue) and not yet delivered, in a L{MemoryQueue} that hands out
one envelope of a key at a time, in order, different keys in parallel.

The buffer also keeps which stream entries it holds, and whether each is
in delivery, so that the queue can read only what it does not hold yet,
give a partition back once nothing of it is here, and drop what is waiting
of a partition whose lease it lost.  A dropped entry's copy cannot be taken
out of the L{MemoryQueue}: it stays there as I{stale} and is skipped when
its turn comes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.queue import MemoryQueue
from alertgateway.redis.queue.codec import Ident, ident_of

__all__ = ["Buffer"]

# The bound is on reading (the reader stops while the buffer is full
# enough): what is read must all be queued.
_UNBOUNDED = 2**62


class Buffer:
    """
    Envelopes waiting or in delivery here.  Those read from Redis carry
    their L{Ident}; those from the fallback queue do not, and are only
    queued.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """
        Forget everything: the queue starts afresh.
        """
        self._queue = MemoryQueue(max_items=_UNBOUNDED)
        # The current copy of each entry here: True while taken.
        self._entries: dict[Ident, bool] = {}
        self._per_partition: Counter[int] = Counter()
        # Copies still queued of entries dropped since: skipped when their
        # turn comes.  A key's copies leave the queue in order, so a stale
        # copy always comes before a fresh one of the same entry.
        self._stale: Counter[Ident] = Counter()

    def __len__(self) -> int:
        """
        The stream entries here.
        """
        return len(self._entries)

    def __contains__(self, ident: Ident) -> bool:
        return ident in self._entries

    def busy(self, partition: int) -> int:
        """
        The entries of C{partition} here, waiting or in delivery.
        """
        return self._per_partition[partition]

    def put(self, envelopes: Sequence[Envelope]) -> None:
        """
        Queue envelopes, after those of their keys already here.
        """
        for envelope in envelopes:
            ident = ident_of(envelope)
            if ident is not None:
                self._entries[ident] = False
                self._per_partition[ident[0]] += 1
        self._queue.put(envelopes)

    def take(self) -> Deferred[Envelope]:
        """
        The next envelope of a key not in delivery (see L{MemoryQueue.take});
        one that comes from Redis must then be L{claim}ed.
        """
        return self._queue.take()

    def take_now(self, limit: int) -> list[Envelope]:
        return self._queue.take_now(limit)

    def claim(self, ident: Ident) -> bool:
        """
        Mark a taken entry as in delivery, unless this copy is stale: then
        C{False}, and the caller must L{skip} it.
        """
        if self._stale[ident]:
            self._stale[ident] -= 1
            if not self._stale[ident]:
                del self._stale[ident]
            return False
        self._entries[ident] = True
        return True

    def skip(self, envelope: Envelope) -> None:
        """
        Let a taken copy go without delivering it: the next of its key
        comes.
        """
        self._queue.done(envelope)

    def done(self, envelope: Envelope) -> None:
        """
        A taken envelope is delivered (or given up): it leaves.
        """
        self._queue.done(envelope)
        ident = ident_of(envelope)
        if ident is not None and self._entries.pop(ident, None) is not None:
            self._per_partition[ident[0]] -= 1

    def release(self, envelope: Envelope, *, held: bool) -> None:
        """
        Put a taken envelope back, first of its key.

        @param held: Whether its partition is still held here; if not, the
            envelope is dropped instead, to be skipped.
        """
        self._untake(envelope, held)
        self._queue.release(envelope)

    def postpone(self, envelope: Envelope, delay: float, clock: IReactorTime, *, held: bool) -> None:
        """
        Put a taken envelope back, first of its key, whose key waits
        C{delay} seconds (see L{release} for C{held}).
        """
        self._untake(envelope, held)
        self._queue.postpone(envelope, delay, clock)

    def _untake(self, envelope: Envelope, held: bool) -> None:
        ident = ident_of(envelope)
        if ident is None or ident not in self._entries:
            return
        if held:
            self._entries[ident] = False
        else:
            self._drop(ident)

    def lose(self, partition: int) -> None:
        """
        Drop what waits here of a partition no longer held: its next holder
        delivers it.  What is in delivery finishes (its acknowledgement is
        harmless).
        """
        for ident, taken in list(self._entries.items()):
            if ident[0] == partition and not taken:
                self._drop(ident)

    def _drop(self, ident: Ident) -> None:
        del self._entries[ident]
        self._per_partition[ident[0]] -= 1
        self._stale[ident] += 1

    def oldest(self) -> float | None:
        return self._queue.oldest()

    def stop_timers(self) -> None:
        self._queue.stop_timers()

    def when_empty(self) -> Deferred[None]:
        return self._queue.when_empty()
