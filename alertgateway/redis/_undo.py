# -*- test-case-name: tests.unit.test_state_behaviour -*-
"""
The weaker combination: state in Redis, queue elsewhere (C{queue.backend:
sqlite} or C{memory} with C{state.backend: redis}).

A decision cannot be written in the same transaction as queue rows that
are not in Redis, so it is committed first (alone, compare-and-set as
always), then its forwards are queued, and a decision whose forwards the
queue refuses is taken back: each entry it wrote is restored unless
another replica wrote it since (an episode is restored while what it last
forwarded is still the refused forward; a group, with the members it
appended to or took from its waiting list, only if untouched).  With Redis
unreachable at that moment, the taking back waits and runs before anything
else once Redis answers again.  Between the commit and the taking back,
another replica may see the refused decision (a duplicate of a forward
that never left); with the Redis queue there is no such window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.logger import Logger

from alertgateway.core.decision import Decision
from alertgateway.redis import scripts as _lua
from alertgateway.redis._entries import EPISODE, GROUP, Written, new_forward
from alertgateway.redis.client import RedisClient
from alertgateway.redis.commit import CommitConflict, RedisCommit
from alertgateway.state.ports import Enqueue

__all__ = ["Undos"]

_log = Logger()


class Undos:
    """
    Commit decisions on their own, and take back those not queued.

    @param ttl_ms: How long each kind of entry lives, as the commits say.
    """

    def __init__(self, client: RedisClient, ttl_ms: Mapping[str, int]) -> None:
        self._client = client
        self._ttl_ms = ttl_ms
        # Decisions to take back, oldest first.
        self._pending: list[list[Written]] = []

    def __len__(self) -> int:
        return len(self._pending)

    async def commit(self, commit: RedisCommit) -> list[Written]:
        """
        Write a decision's state alone.

        @raise alertgateway.redis.commit.CommitConflict: When another
            replica wrote first.
        @raise alertgateway.redis.client.RedisError: When Redis refused or
            could not answer; then the write may or may not have been made,
            and what it would have forwarded is taken back (now or, Redis
            unreachable, as soon as it is back).
        """
        try:
            committed = await commit.run(self._client)
        except CommitConflict:
            raise
        except Exception:
            # Unknown whether it was written: take back any forward it made,
            # or the sender's retry would find a duplicate of nothing sent.
            self._pending.append([Written(w.entry, "", w) for w in commit.writes if w.entry.kind == EPISODE])
            raise
        return [Written(w.entry, v, w) for w, v in zip(commit.writes, committed.versions, strict=True)]

    async def queue(self, decision: Decision, written: list[Written], enqueue: Enqueue) -> None:
        """
        Queue a committed decision's forwards, taking the decision back if
        the queue refuses them.
        """
        try:
            await enqueue(decision, None)
        except BaseException:
            await self.take_back(written)
            raise

    async def take_back(self, written: list[Written]) -> None:
        """
        Take back a decision whose forwards could not be queued; kept for
        later if Redis cannot be reached now.
        """
        self._pending.append(written)
        try:
            await self.flush()
        except Exception as e:
            # Taken back as soon as Redis answers, before any decision.
            _log.warn("Cannot undo a decision that was not queued: {error}", error=str(e))

    async def flush(self) -> None:
        """
        Take back what is waiting to be, oldest first.
        """
        while self._pending:
            written = self._pending[0]
            if written:
                keys = [w.entry.redis_key for w in written]
                keys += [w.entry.waiting_key for w in written if w.entry.kind == GROUP]
                args: list[Any] = [self._client.prefix]
                for w in written:
                    args.extend(self._args(w))
                await self._client.script(_lua.UNDO, keys, args)
            self._pending.pop(0)

    def _args(self, written: Written) -> list[Any]:
        entry = written.entry
        before = entry.document
        args: list[Any] = [entry.kind, written.version, new_forward(written)]
        args += [before.text if before is not None else "", self._ttl_ms[entry.kind]]
        if entry.kind == GROUP:
            waiting = written.write.waiting
            args += [entry.name, before.extra if before is not None else "0", len(waiting.push)]
            args += [len(waiting.removed), *waiting.removed]
        return args
