# -*- test-case-name: tests.unit.test_redis_commit -*-
"""
A decision's writes to the shared state as one call of the Lua script
C{state_commit.lua}: the entries it changed, only if none moved since they
were loaded (compare-and-set on versions), and the storm members it
appended to or took from its groups' waiting lists.

L{RedisCommit} is the state write (L{alertgateway.state.ports.StateWrite})
the Redis state hands the Redis queue with a decision's envelopes: the
queue adds its part (L{Appended}: the stream entries, and the shared
length they count in, bounded by C{queue.max_items}) to the same call, so
that a decision and its queue entries are written together or not at all.
With another queue the state makes the call alone, before queueing.

A version that moved makes the call write nothing and fail with
L{CommitConflict}, which the state catches to load, decide and try again;
envelopes that do not fit make it write nothing and answer so
(L{Committed.written} false), which the queue turns into C{QueueFull}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from alertgateway.redis import scripts as _lua
from alertgateway.redis._entries import GROUP, Doc, EntryWrite
from alertgateway.redis.client import RedisClient
from alertgateway.state.errors import StateContended

__all__ = ["Appended", "CommitConflict", "Committed", "RedisCommit"]


class CommitConflict(StateContended):
    """
    Another replica wrote an entry the decision loaded: nothing was written.
    """


@attrs.frozen
class Appended:
    """
    The queue's part of a commit: envelopes appended to their partitions'
    streams, all or none, counted in the shared length.

    @ivar streams: The stream of each envelope.
    @ivar documents: Each envelope as its stream entry's field holds it.
    """

    length: str
    max_items: int
    streams: tuple[str, ...]
    documents: tuple[str, ...]


@attrs.frozen
class Committed:
    """
    What a commit that found its versions unmoved did.

    @ivar written: C{False} when the envelopes did not fit: nothing was
        written.
    @ivar length: The queue's shared length afterwards (C{0} without a
        queue part).
    @ivar versions: Each entry's new version (C{"0"} for one deleted).
    """

    written: bool
    length: int
    versions: tuple[str, ...] = ()


@attrs.frozen
class RedisCommit:
    """
    A decision's state writes, as the arguments of one script call.

    @ivar writes: The entries written, in the order of the call.
    """

    writes: tuple[EntryWrite, ...]
    _keys: tuple[str, ...]
    _args: tuple[Any, ...]

    @classmethod
    def of(cls, prefix: str, max_tracked: int, writes: Sequence[EntryWrite], ttl_ms: Mapping[str, int]) -> RedisCommit:
        """
        The commit of C{writes}, under the key C{prefix}, evicting episodes
        past C{max_tracked}.

        @param ttl_ms: How long each kind of entry lives unless written
            again, in milliseconds.
        """
        keys = [w.entry.redis_key for w in writes]
        keys += [w.entry.waiting_key for w in writes if w.entry.kind == GROUP]
        args: list[Any] = [prefix, max_tracked, len(writes)]
        for write in writes:
            entry = write.entry
            doc = write.document if write.document is not None else Doc("")
            args += [entry.version, doc.text, ttl_ms[entry.kind], entry.kind, entry.name]
            args += [doc.extra, doc.score, doc.forwarded]
            if entry.kind == GROUP:
                waiting = write.waiting
                args += ["1" if waiting.drop else "0", waiting.trim, len(waiting.push), *waiting.push]
        return cls(tuple(writes), tuple(keys), tuple(args))

    def call(self, appended: Appended | None = None) -> tuple[list[str], list[Any]]:
        """
        The keys and arguments of the script call, with the queue's part if
        any.
        """
        prefix, max_tracked, count, *entries = self._args
        keys = list(self._keys)
        args: list[Any] = [prefix, max_tracked, count, "" if appended is None else appended.max_items, *entries]
        if appended is not None:
            keys += [appended.length, *appended.streams]
            args += appended.documents
        return keys, args

    async def run(self, client: RedisClient, appended: Appended | None = None) -> Committed:
        """
        Make the call.

        @raise CommitConflict: When an entry moved since it was loaded.
        @raise alertgateway.redis.client.RedisError: When Redis refused the
            call or could not answer (then it may or may not have been made).
        """
        reply = await client.script(_lua.COMMIT, *self.call(appended))
        status, length = int(reply[0]), int(reply[1])
        if status < 0:
            raise CommitConflict(f"{len(self.writes)} shared entries moved since they were loaded")
        return Committed(status > 0, length, tuple(str(v) for v in reply[2:]))
