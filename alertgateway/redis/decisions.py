# -*- test-case-name: tests.unit.test_state_behaviour,tests.unit.test_redis_commit -*-
"""
The decider's state shared by every replica through Redis.

Load → decide → commit: the episodes and correlation groups a batch touches
are loaded in one script call, the pure decider decides on them, and what
changed is written back in one script call only if no other replica wrote
any of it meanwhile (compare-and-set on versions); if one did, it is loaded
and decided again.  So two replicas that receive the same alert at the same
moment take one decision each, in some order: the second sees a duplicate.

With the Redis queue (C{queue.backend: redis}) that one call is the queue
write too: the decision's L{RedisCommit} goes to the queue with its
envelopes, and the queue appends them to its streams in the same script, so
a decision and its queue entries exist together or not at all (nothing to
take back).  A conflict fails the queue write with L{CommitConflict}, caught
here to decide again.  With a queue elsewhere the decision is committed
first and taken back if the queue refuses it (L{alertgateway.redis._undo}).

Entries are hashes with a version C{v} and a JSON document C{d} (an
episode, or a group with its recent members and its storm's header); the
members waiting in a storm are a list of their own beside their group's
hash (L{alertgateway.redis._entries}).  A webhook's load reads how many
wait; the tick's reads the first of them, as many as one tick can list.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable, Sequence

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IReactorTime

from alertgateway.core.decider import DeciderSettings, decide, tick
from alertgateway.core.decision import Changes, Decision
from alertgateway.core.episodes import Delivery, Episode
from alertgateway.core.keys import dedup_key, group_id
from alertgateway.core.model import Alert
from alertgateway.redis import scripts as _lua
from alertgateway.redis._entries import EPISODE, GROUP, Doc, Entry, Loaded, Waiting, Written, read_group, with_outcome
from alertgateway.redis._undo import Undos
from alertgateway.redis.client import RedisClient
from alertgateway.redis.commit import CommitConflict, RedisCommit
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
# Shared entries outlive their window by this much (they are read with the
# window applied anyway; this only bounds memory in Redis).
_TTL_MARGIN = 60.0

# What the entries a decision wants are: their Redis key, name and kind.
Wanted = Sequence[tuple[str, str, str]]


class RedisState:
    """
    Decisions on state shared through Redis.

    @param queue_in_redis: Whether the queue is the Redis queue on the same
        Redis (and prefix): then each decision's state write goes to it with
        the envelopes, to be written in the same script call; otherwise the
        decision is committed before it is queued, and taken back if the
        queue refuses it.
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
        queue_in_redis: bool = False,
        pause: Callable[[float], Deferred[None]] | None = None,
    ) -> None:
        self._client = client
        self._clock = clock
        self._pause = pause
        self.queue_in_redis = queue_in_redis
        self.settings = settings
        storms = settings.storms
        # Per correlation group, the decision that may write it now.
        self._locks: dict[str, DeferredLock] = {}
        self._max_tracked = max_tracked
        group_ttl = (
            max(storms.window, storms.quiet_period, storms.flush_interval) + _TTL_MARGIN
            if storms is not None
            else _TTL_MARGIN
        )
        self._ttl_ms = {EPISODE: int((settings.window + _TTL_MARGIN) * 1000), GROUP: int(group_ttl * 1000)}
        self._undos = Undos(client, self._ttl_ms)
        # Storm events a tick committed on its own that the queue then
        # refused (a queue outside Redis): taking them back is not safe (a
        # member folded meanwhile by another replica would make the undo a
        # no-op, and the events would be lost), so they are queued first at
        # the next tick instead.
        self._unqueued: Decision | None = None

    def _episode_key(self, key: str) -> str:
        return self._client.key("ep", key)

    def _group_key(self, group: str) -> str:
        return self._client.key("grp", group)

    def _waiting_key(self, group: str) -> str:
        return self._client.key("grp", group, "w")

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

    async def _load(self, wanted: Wanted, head: int = 0) -> Loaded:
        """
        Load entries, and the first C{head} members waiting in each group.
        """
        keys = [redis_key for redis_key, _, _ in wanted]
        lists = [self._waiting_key(name) for _, name, kind in wanted if kind == GROUP]
        # Where in KEYS each entry's waiting list is (0: an episode has none).
        places: list[int] = []
        groups = 0
        for _, _, kind in wanted:
            if kind == GROUP:
                groups += 1
            places.append(len(keys) + groups if kind == GROUP else 0)
        raw = await self._client.script(_lua.LOAD, keys + lists, [head, *places])
        entries: list[Entry] = []
        loaded = Loaded(entries)
        for index, (redis_key, name, kind) in enumerate(wanted):
            version, document, outcome, count, first = raw[5 * index : 5 * index + 5]
            waiting_key = self._waiting_key(name) if kind == GROUP else ""
            if not document:
                waiting = Waiting(int(count), tuple(first or ()))
                entries.append(Entry(redis_key, name, kind, str(version), None, waiting_key, waiting))
                continue
            data = json.loads(document)
            if kind == EPISODE:
                episode = Episode.from_json(data)
                doc = Doc(document, episode.fingerprint, repr(float(episode.last_seen)), episode.forwarded or "")
                loaded.episodes[name] = with_outcome(episode, outcome)
                waiting = Waiting()
            else:
                group, waiting = read_group(data, int(count), first or ())
                doc = Doc(document, "1" if group.storm is not None else "0")
                loaded.groups[name] = group
            entries.append(Entry(redis_key, name, kind, str(version), doc, waiting_key, waiting))
        return loaded

    # Deciding.

    def decide(
        self, alerts: Sequence[Alert], now: float, enqueue: Enqueue, replay: Replay | None = None
    ) -> Deferred[Decision]:
        return Deferred.fromCoroutine(self._decide(alerts, now, enqueue))

    async def _decide(self, alerts: Sequence[Alert], now: float, enqueue: Enqueue) -> Decision:
        # Undos that could not be made yet come first: this batch may be
        # the retry of the one they take back.
        await self._undos.flush()
        wanted = self._wanted(alerts)
        groups = [name for _, name, kind in wanted if kind == GROUP]
        return await self._locked(
            groups, lambda: self._load(wanted), lambda loaded: decide(loaded, alerts, now, self.settings), enqueue
        )

    def tick(self, now: float, enqueue: Enqueue, max_events: int | None = None) -> Deferred[Decision]:
        return Deferred.fromCoroutine(self._tick(now, enqueue, max_events))

    async def _tick(self, now: float, enqueue: Enqueue, max_events: int | None) -> Decision:
        """
        Forget lapsed episodes, then flush and close due storms: every
        replica ticks, and the compare-and-set lets one of them emit each
        event (the others find it already done when they decide again).
        """
        await self._undos.flush()
        unqueued = self._unqueued
        if unqueued is not None:
            await enqueue(unqueued, None)
            self._unqueued = None
            if max_events is not None:
                max_events = max(0, max_events - len(unqueued.outgoing))
        decision = await self._tick_storms(now, enqueue, max_events)
        if unqueued is None:
            return decision
        return Decision(decision.changes, (), unqueued.outgoing + decision.outgoing, decision.held_back)

    async def _tick_storms(self, now: float, enqueue: Enqueue, max_events: int | None) -> Decision:
        await self._client.script(_lua.EXPIRE, [], [self._client.prefix, repr(now - self.settings.window)])
        storms = self.settings.storms
        if storms is None:
            return Decision(Changes())
        groups = sorted(await self._client.command("storm_groups", "SMEMBERS", self._client.key("storms")))
        if not groups:
            return Decision(Changes())
        # An open storm is closed by a tick, never by Redis: its events may
        # be held back for as long as the queue is full, and its members
        # must not expire with it meanwhile.  (A decision that writes the
        # group gives it a time to live again, taken away by the next tick.)
        for group in groups:
            await self._client.command("storm_keep", "PERSIST", self._group_key(group))
            await self._client.command("storm_keep", "PERSIST", self._waiting_key(group))
        wanted = [(self._group_key(g), g, GROUP) for g in groups]

        async def _load() -> Loaded:
            # An update and a closing in one tick list at most this many.
            loaded = await self._load(wanted, head=2 * storms.max_members_listed)
            gone = [entry.name for entry in loaded.entries if entry.document is None]
            if gone:
                # Expired while every replica was away: nothing left to close.
                await self._client.command("storms_forget", "SREM", self._client.key("storms"), *gone)
            return loaded

        return await self._locked(
            groups, _load, lambda loaded: tick(loaded, now, self.settings, max_events), enqueue, take_back=False
        )

    async def _locked(
        self,
        groups: Sequence[str],
        load: Callable[[], Awaitable[Loaded]],
        deciding: Callable[[Loaded], Decision],
        enqueue: Enqueue,
        *,
        take_back: bool = True,
    ) -> Decision:
        """
        Decide and commit, holding this process's locks of the groups.
        With a queue outside Redis, a decision whose forwards the queue
        refuses is taken back, or (C{take_back} false: storm events) kept
        to be queued first at the next tick.

        One decision per correlation group at a time in this process: in a
        storm every new member rewrites its group, and sixty requests racing
        for it would mostly lose; across replicas, at most one contender per
        replica is left, and the pauses sort those out.
        """
        ordered = sorted(groups)
        for group in ordered:
            await self._group_lock(group).acquire()
        try:
            decision, written = await self._attempts(load, deciding, enqueue)
        finally:
            for group in reversed(ordered):
                self._release_group(group)
        if written is None:
            return decision
        # Committed alone: queued now.
        if take_back:
            await self._undos.queue(decision, written, enqueue)
            return decision
        try:
            await enqueue(decision, None)
        except BaseException:
            self._unqueued = decision
            raise
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

    async def _attempts(
        self, load: Callable[[], Awaitable[Loaded]], deciding: Callable[[Loaded], Decision], enqueue: Enqueue
    ) -> tuple[Decision, list[Written] | None]:
        """
        Load, decide and commit until no other replica wrote first.

        @return: The decision, and what it wrote if it was committed alone
            (its forwards still to be queued), C{None} if it was queued with
            its commit or wrote nothing.
        @raise StateContended: After L{_MAX_ATTEMPTS} conflicts.
        """
        for attempt in range(_MAX_ATTEMPTS):
            if attempt and self._pause is not None:
                await self._pause(_RETRY_BASE * 2**attempt * (0.5 + _jitter.random()))
            loaded = await load()
            decision = deciding(loaded)
            writes = loaded.writes(decision.changes)
            if not writes and not decision.outgoing:
                return decision, None
            commit = RedisCommit.of(self._client.prefix, self._max_tracked, writes, self._ttl_ms)
            try:
                if self.queue_in_redis:
                    await enqueue(decision, commit)
                    return decision, None
                return decision, await self._undos.commit(commit)
            except CommitConflict:
                continue
        raise StateContended(f"{len(loaded.entries)} shared entries kept changing")

    def pending_undos(self) -> int:
        """
        Decisions still to be taken back once Redis answers (with a queue
        outside Redis).
        """
        return len(self._undos)

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
        raw = await self._client.script(_lua.LOAD, [self._episode_key(k) for k in keys], [0] * (len(keys) + 1))
        found = []
        lapsed = self._clock.seconds() - self.settings.window
        for index in range(len(keys)):
            document, outcome = raw[5 * index + 1], raw[5 * index + 2]
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
