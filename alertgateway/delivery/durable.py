# -*- test-case-name: tests.unit.test_durable -*-
"""
The durable queue: the in-memory per-key ordered queue, backed by the
SQLite journal.

C{put} answers only once the envelopes are committed to disk; an envelope
leaves the journal only once it is delivered, or stays there as a dead
letter.  On start everything still pending is loaded again, in acceptance
order, so a crash or a restart loses nothing that was accepted.  Bounds:
C{max_items} envelopes and C{max_bytes} of bodies, counting writes still
being committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.journal import DiskWrite, JournalError, SQLiteJournal
from alertgateway.delivery.queue import MemoryQueue
from alertgateway.state.errors import QueueFull

__all__ = ["DurableQueue"]

_log = Logger()


def _size(envelope: Envelope) -> int:
    return len(envelope.json_body())


class DurableQueue:
    """
    A bounded, per-key ordered queue whose items survive the process.
    """

    def __init__(self, journal: SQLiteJournal, *, max_items: int, max_bytes: int) -> None:
        self.journal = journal
        self.max_items = max_items
        self.max_bytes = max_bytes
        # Unbounded in memory: the bounds are enforced on what is accepted,
        # and what the journal gives back on start must all be loaded.
        self._memory = MemoryQueue(max_items=2**62)
        self._bytes = 0
        self._reserved_items = 0
        self._reserved_bytes = 0
        self._sizes: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._memory) + self._reserved_items

    @property
    def bytes(self) -> int:
        return self._bytes + self._reserved_bytes

    def load(self) -> Deferred[int]:
        """
        Open the journal and queue what it holds.

        @return: How many envelopes were replayed.
        """

        # What memory held before (a restart) is on disk and comes back
        # with the rest, in order.
        self._memory = MemoryQueue(max_items=2**62)
        self._bytes = 0
        self._sizes.clear()

        def _loaded(envelopes: list[Envelope]) -> int:
            self._admit(envelopes)
            return len(envelopes)

        return self.journal.open().addCallback(_loaded)

    def _admit(self, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            size = _size(envelope)
            self._bytes += size
            if envelope.id is not None:
                self._sizes[envelope.id] = size
        self._memory.put(envelopes)

    def put(self, envelopes: Sequence[Envelope], write: object | None = None) -> Deferred[None]:
        """
        Write a batch to disk, all or nothing, then queue it.

        @param write: A L{DiskWrite} to commit in the same transaction (the
            decision state kept in this database).

        @raise QueueFull: If the batch does not fit; the Deferred fails with
            it when the disk refuses the write.
        """
        size = sum(_size(e) for e in envelopes)
        if len(self) + len(envelopes) > self.max_items or self.bytes + size > self.max_bytes:
            raise QueueFull(f"{len(self)} queued ({self.bytes} bytes)")
        self._reserved_items += len(envelopes)
        self._reserved_bytes += size

        def _release(result: object) -> object:
            self._reserved_items -= len(envelopes)
            self._reserved_bytes -= size
            return result

        def _written(stored: list[Envelope]) -> None:
            self._admit(stored)

        def _failed(failure: Failure) -> None:
            failure.trap(JournalError)
            raise QueueFull(f"the queue database refused the write: {failure.value}")

        if write is not None and not callable(write):
            raise TypeError(f"the SQLite queue cannot commit {write!r}")
        d = self.journal.append(envelopes, cast(DiskWrite | None, write)).addBoth(_release)
        return d.addCallbacks(_written, _failed)

    def take(self) -> Deferred[Envelope]:
        return self._memory.take()

    def take_now(self, limit: int) -> list[Envelope]:
        return self._memory.take_now(limit)

    def done(self, envelope: Envelope) -> None:
        """
        The envelope is delivered: forget it, on disk too.
        """
        self._forget(envelope)
        self.journal.remove(envelope).addErrback(
            lambda f: _log.error("Cannot remove delivered item {id}: {error}", id=envelope.id, error=str(f.value))
        )

    def bury(self, envelope: Envelope, reason: str, attempts: int) -> None:
        """
        The receiver refused the envelope for good: keep it as a dead letter.
        """
        self._forget(envelope)
        self.journal.bury(envelope, reason, attempts).addErrback(
            lambda f: _log.error("Cannot record dead letter {id}: {error}", id=envelope.id, error=str(f.value))
        )

    def _forget(self, envelope: Envelope) -> None:
        self._memory.done(envelope)
        if envelope.id is not None:
            self._bytes -= self._sizes.pop(envelope.id, 0)

    def adopt_retried(self) -> Deferred[int]:
        """
        Queue again the dead letters marked with C{alertgateway queue retry}.
        """

        def _adopted(envelopes: list[Envelope]) -> int:
            self._admit(envelopes)
            return len(envelopes)

        return self.journal.adopt_retried().addCallback(_adopted)

    def release(self, envelope: Envelope) -> None:
        self._memory.release(envelope)

    def postpone(self, envelope: Envelope, delay: float, clock: IReactorTime) -> None:
        self._memory.postpone(envelope, delay, clock)

    def oldest(self) -> float | None:
        return self._memory.oldest()

    def stop_timers(self) -> None:
        self._memory.stop_timers()

    def when_empty(self) -> Deferred[None]:
        return self._memory.when_empty()
