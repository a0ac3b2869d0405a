# -*- test-case-name: tests.unit.test_state_behaviour -*-
"""
The decider's state shared by every replica through Redis.

Load → decide → commit: the episodes and correlation groups a batch touches
are loaded in one script call, the pure decider decides on them, and what
changed is written back in one script call only if no other replica wrote
any of it meanwhile (compare-and-set on versions); if one did, it is loaded
and decided again.  So two replicas that receive the same alert at the same
moment take one decision each, in some order: the second sees a duplicate.

Then the decision's forwards are queued.  The queue is a separate store
here, so a decision whose forwards the queue refuses is taken back: each
entry it wrote is restored unless another replica wrote it since (an
episode is restored while what it last forwarded is still the refused
forward).  Redis unreachable at that moment, the taking back waits and runs
before anything else once Redis answers again.

Entries are hashes with a version C{v} and a JSON document C{d} (an
episode, or a group with its recent members and its storm, waiting members
included, bounded well below what one process keeps as every new member
rewrites the document).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from alertgateway.core.decider import DeciderSettings, decide, tick
from alertgateway.core.decision import Changes, Decision
from alertgateway.core.episodes import Delivery, Episode
from alertgateway.core.keys import dedup_key, group_id
from alertgateway.core.model import Alert
from alertgateway.redis import scripts as _lua
from alertgateway.redis._entries import (
    EPISODE,
    GROUP,
    Doc,
    Entry,
    Loaded,
    Written,
    new_forward,
    read_group,
    with_outcome,
)
from alertgateway.redis.client import RedisClient
from alertgateway.state.errors import StateContended
from alertgateway.state.ports import Enqueue, Replay, Tracked

__all__ = ["RedisState"]

# Decisions retried at most this many times when other replicas keep
# writing the same entries; past it the request is answered 503.
_MAX_ATTEMPTS = 8
# The first pause before a retry, doubling each time (1 ms, 2 ms, ... 64 ms
# for the last: about 0.13 s in all at worst, within Alertmanager's patience).
_RETRY_BASE = 0.0005
_jitter = random.Random()  # noqa: S311 -- spreading retries, not secrets
# Waiting storm members kept in a shared group's document at most.
_SHARED_PENDING = 500
# Shared entries outlive their window by this much (they are read with the
# window applied anyway; this only bounds memory in Redis).
_TTL_MARGIN = 60.0


_log = Logger()


class RedisState:
    """
    Decisions on state shared through Redis.

    @param pause: Waits before a decision is tried again after another
        replica wrote first (jittered, growing), so replicas contending for
        one storm group take turns instead of colliding eight times; C{None}
        retries at once.
    """

    def __init__(
        self,
        client: RedisClient,
        clock: IReactorTime,
        settings: DeciderSettings,
        *,
        max_tracked: int,
        pause: Callable[[float], Deferred[None]] | None = None,
    ) -> None:
        self._client = client
        self._clock = clock
        self._pause = pause
        storms = settings.storms
        if storms is not None:
            # A storm's waiting members travel in its group's document,
            # which every new member rewrites: bounded well below what one
            # process keeps (past it a member is only counted, and the
            # events say how many were never listed).
            pending = min(storms.max_pending, max(2 * storms.max_members_listed, _SHARED_PENDING))
            settings = attrs.evolve(settings, storms=attrs.evolve(storms, max_pending=pending))
        self.settings = settings
        # Per correlation group, the decision that may write it now.
        self._locks: dict[str, DeferredLock] = {}
        # Decisions to take back, oldest first.
        self._undos: list[list[Written]] = []
        # Storm events committed by a tick that the queue then refused: an
        # undo could not bring a closed storm back, so they are queued
        # first at the next tick instead.
        self._unqueued: Decision | None = None
        self._max_tracked = max_tracked
        self._episode_ttl = settings.window + _TTL_MARGIN
        self._group_ttl = (
            max(storms.window, storms.quiet_period, storms.flush_interval) + _TTL_MARGIN
            if storms is not None
            else _TTL_MARGIN
        )

    def _episode_key(self, key: str) -> str:
        return self._client.key("ep", key)

    def _group_key(self, group: str) -> str:
        return self._client.key("grp", group)

    def _wanted(self, alerts: Sequence[Alert]) -> list[tuple[str, str, str]]:
        s = self.settings
        wanted: dict[str, tuple[str, str, str]] = {}
        for alert in alerts:
            key = dedup_key(alert, s.ignore_labels)
            wanted.setdefault(EPISODE + key, (self._episode_key(key), key, EPISODE))
            if s.storms is not None:
                group = group_id(alert, s.group_by, s.use_sender_group)
                wanted.setdefault(GROUP + group, (self._group_key(group), group, GROUP))
        return list(wanted.values())

    async def _load(self, wanted: Sequence[tuple[str, str, str]]) -> Loaded:
        raw = await self._client.script(_lua.LOAD, [redis_key for redis_key, _, _ in wanted], [])
        entries: list[Entry] = []
        loaded = Loaded(entries)
        for index, (redis_key, name, kind) in enumerate(wanted):
            version, document, outcome = raw[3 * index], raw[3 * index + 1], raw[3 * index + 2]
            if not document:
                entries.append(Entry(redis_key, name, kind, str(version), None))
                continue
            data = json.loads(document)
            if kind == EPISODE:
                episode = Episode.from_json(data)
                doc = Doc(document, episode.fingerprint, repr(float(episode.last_seen)), episode.forwarded or "")
                loaded.episodes[name] = with_outcome(episode, outcome)
            else:
                group, members = read_group(data)
                doc = Doc(document, "1" if group.storm is not None else "0")
                loaded.groups[name] = group
                loaded.members[name] = members
            entries.append(Entry(redis_key, name, kind, str(version), doc))
        return loaded

    async def _commit(self, written: Sequence[tuple[Entry, Doc | None]]) -> list[Written] | None:
        """
        Write documents if nothing moved since they were loaded.

        @return: What was written, or C{None} when another replica wrote
            first.
        @raise alertgateway.redis.client.RedisUnavailable: Then the write
            may or may not have been made; what it would have forwarded is
            taken back (now or, Redis unreachable, as soon as it is back).
        """
        changed = [(e, d) for e, d in written if d != e.document]
        if not changed:
            return []
        args: list[Any] = [self._client.prefix, self._max_tracked]
        for entry, document in changed:
            args.extend(self._entry_args(entry, document))
        try:
            versions = await self._client.script(_lua.COMMIT, [e.redis_key for e, _ in changed], args)
        except Exception:
            # Unknown whether it was written: take back any forward it made,
            # or the sender's retry would find a duplicate of nothing sent.
            self._undos.append([Written(e, "", d) for e, d in changed if e.kind == EPISODE])
            raise
        if not versions:
            return None
        return [Written(e, str(v), d) for (e, d), v in zip(changed, versions, strict=True)]

    def _entry_args(self, entry: Entry, document: Doc | None) -> list[Any]:
        ttl = self._episode_ttl if entry.kind == EPISODE else self._group_ttl
        doc = document if document is not None else Doc("")
        return [entry.version, doc.text, int(ttl * 1000), entry.kind, entry.name, doc.extra, doc.score, doc.forwarded]

    # Deciding.

    def decide(
        self, alerts: Sequence[Alert], now: float, enqueue: Enqueue, replay: Replay | None = None
    ) -> Deferred[Decision]:
        return Deferred.fromCoroutine(self._decide(alerts, now, enqueue))

    async def _decide(self, alerts: Sequence[Alert], now: float, enqueue: Enqueue) -> Decision:
        # Undos that could not be made yet come first: this batch may be
        # the retry of the one they take back.
        await self._flush_undos()
        wanted = self._wanted(alerts)
        # One decision per correlation group at a time in this process: in
        # a storm every new member rewrites its group, and sixty requests
        # racing for it would mostly lose; across replicas, at most one
        # contender per replica is left, and the pauses sort those out.
        groups = sorted(name for _, name, kind in wanted if kind == GROUP)
        for group in groups:
            await self._group_lock(group).acquire()
        try:
            decision, written = await self._decide_loaded(alerts, wanted, now)
        finally:
            for group in reversed(groups):
                self._release_group(group)
        await self._queue(decision, written, enqueue)
        return decision

    def _group_lock(self, group: str) -> DeferredLock:
        lock = self._locks.get(group)
        if lock is None:
            lock = self._locks[group] = DeferredLock()
        return lock

    def _release_group(self, group: str) -> None:
        lock = self._locks[group]
        lock.release()
        if not lock.locked and not lock.waiting:
            del self._locks[group]

    async def _decide_loaded(
        self, alerts: Sequence[Alert], wanted: list[tuple[str, str, str]], now: float
    ) -> tuple[Decision, list[Written]]:
        for attempt in range(_MAX_ATTEMPTS):
            if attempt and self._pause is not None:
                await self._pause(_RETRY_BASE * 2**attempt * (0.5 + _jitter.random()))
            loaded = await self._load(wanted)
            decision = decide(loaded, alerts, now, self.settings)
            written = await self._commit(loaded.documents(decision.changes))
            if written is not None:
                return decision, written
        raise StateContended(f"{len(wanted)} shared entries kept changing")

    async def _queue(self, decision: Decision, written: list[Written], enqueue: Enqueue) -> None:
        """
        Queue a committed decision's forwards, taking the decision back if
        the queue refuses them.
        """
        try:
            await enqueue(decision, None)
        except BaseException:
            await self.undo(written)
            raise

    async def undo(self, written: list[Written]) -> None:
        """
        Take back a decision whose forwards could not be queued; kept for
        later if Redis cannot be reached now.
        """
        self._undos.append(written)
        try:
            await self._flush_undos()
        except Exception as e:
            # Taken back as soon as Redis answers, before any decision.
            _log.warn("Cannot undo a decision that was not queued: {error}", error=str(e))

    async def _flush_undos(self) -> None:
        while self._undos:
            written = self._undos[0]
            if written:
                args: list[Any] = [self._client.prefix]
                for w in written:
                    loaded = w.entry.document.text if w.entry.document is not None else ""
                    args.extend((w.entry.kind, w.version, new_forward(w), loaded))
                await self._client.script(_lua.UNDO, [w.entry.redis_key for w in written], args)
            self._undos.pop(0)

    def pending_undos(self) -> int:
        """
        Decisions still to be taken back once Redis answers.
        """
        return len(self._undos)

    def tick(self, now: float, enqueue: Enqueue, max_events: int | None = None) -> Deferred[Decision]:
        return Deferred.fromCoroutine(self._tick(now, enqueue, max_events))

    async def _tick(self, now: float, enqueue: Enqueue, max_events: int | None) -> Decision:
        """
        Forget lapsed episodes, then flush and close due storms: every
        replica ticks, and the compare-and-set lets one of them emit each
        event (the others find it already done).
        """
        nothing = Decision(Changes())
        await self._flush_undos()
        unqueued = self._unqueued
        if unqueued is not None:
            await enqueue(unqueued, None)
            self._unqueued = None
            if max_events is not None:
                max_events = max(0, max_events - len(unqueued.outgoing))
        await self._client.script(_lua.EXPIRE, [], [self._client.prefix, repr(now - self.settings.window)])
        if self.settings.storms is None:
            return unqueued or nothing
        groups = await self._client.command("storm_groups", "SMEMBERS", self._client.key("storms"))
        if not groups:
            return unqueued or nothing
        loaded = await self._load([(self._group_key(g), g, GROUP) for g in sorted(groups)])
        gone = [entry.name for entry in loaded.entries if entry.document is None]
        if gone:
            # Expired while every replica was away: nothing left to close.
            await self._client.command("storms_forget", "SREM", self._client.key("storms"), *gone)
        decision = tick(loaded, now, self.settings, max_events)
        if not decision.outgoing:
            return Decision(Changes(), (), unqueued.outgoing if unqueued else (), decision.held_back)
        written = await self._commit(loaded.documents(decision.changes))
        if written is None:
            # Another replica ticked the same storms first.
            return unqueued or nothing
        try:
            await enqueue(decision, None)
        except BaseException:
            self._unqueued = decision
            raise
        if unqueued is not None:
            return Decision(decision.changes, (), unqueued.outgoing + decision.outgoing, decision.held_back)
        return decision

    # What the status API and the gauges read.

    def delivered(self, key: str, idempotency_key: str, outcome: Delivery) -> Deferred[None]:
        d = self._client.script(_lua.DELIVERED, [self._episode_key(key)], [idempotency_key, outcome.value])
        return d.addCallback(lambda _: None)

    def episode(self, key: str) -> Deferred[Episode | None]:
        return Deferred.fromCoroutine(self._episode(key))

    async def _episode(self, key: str) -> Episode | None:
        episodes = await self._episodes([key])
        return episodes[0] if episodes else None

    async def _episodes(self, keys: Sequence[str]) -> list[Episode]:
        if not keys:
            return []
        raw = await self._client.script(_lua.LOAD, [self._episode_key(k) for k in keys], [])
        found = []
        lapsed = self._clock.seconds() - self.settings.window
        for index in range(len(keys)):
            document, outcome = raw[3 * index + 1], raw[3 * index + 2]
            if not document:
                continue
            episode = Episode.from_json(json.loads(document))
            # As the decider sees it: past its window, an episode is gone.
            if episode.last_seen >= lapsed:
                found.append(with_outcome(episode, outcome))
        return found

    def by_fingerprint(self, fingerprint: str) -> Deferred[Episode | None]:
        return Deferred.fromCoroutine(self._by_fingerprint(fingerprint))

    async def _by_fingerprint(self, fingerprint: str) -> Episode | None:
        key = await self._client.command("fingerprint", "GET", self._client.key("fp", fingerprint))
        if not key:
            return None
        episode = await self._episode(key)
        return episode if episode is not None and episode.fingerprint == fingerprint else None

    def page(self, status: str | None, after: str | None, limit: int) -> Deferred[list[Episode]]:
        return Deferred.fromCoroutine(self._page(status, after, limit))

    async def _page(self, status: str | None, after: str | None, limit: int) -> list[Episode]:
        chosen: list[Episode] = []
        start = "(" + after if after is not None else "-"
        # Keys come in order, a chunk at a time, until the page is full.
        chunk = max(limit, 100)
        while len(chosen) < limit:
            keys = await self._client.command(
                "list_keys", "ZRANGEBYLEX", self._client.key("keys"), start, "+", "LIMIT", 0, chunk
            )
            if not keys:
                break
            for episode in await self._episodes(keys):
                if status is None or episode.status == status:
                    chosen.append(episode)
            start = "(" + keys[-1]
            if len(keys) < chunk:
                break
        return chosen[:limit]

    def tracked(self) -> Deferred[Tracked]:
        return Deferred.fromCoroutine(self._tracked())

    async def _tracked(self) -> Tracked:
        now = self._clock.seconds()
        counts = await self._client.script(_lua.EXPIRE, [], [self._client.prefix, repr(now - self.settings.window)])
        storms = await self._client.command("storm_count", "SCARD", self._client.key("storms"))
        return Tracked(int(counts[0]), int(counts[1]), int(storms))
