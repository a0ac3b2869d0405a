"""
Deciding on alerts against state kept in this process or shared by every
replica in Redis.

The decision logic is one, L{alertgateway.core.decider.Decider}; this
module gives it the state to decide on.  L{MemoryDecisions} hands it the
process's own episodes and storms.  L{RedisDecisions} loads the episodes and
correlation groups a batch touches (one script call), lets a L{Decider}
decide on that view, and writes back what changed only if no other replica
wrote any of it meanwhile (one script call, compare-and-set on versions);
if one did, it loads and decides again.  So two replicas that receive the
same alert at the same moment take one decision each, in some order: the
second one sees a duplicate.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, DeferredLock, succeed
from twisted.internet.interfaces import IReactorTime

from alertgateway.core.decider import Decider, DeciderSettings, Outgoing, Verdict
from alertgateway.core.episodes import Episode, MemoryEpisodes
from alertgateway.core.keys import dedup_key, group_id
from alertgateway.core.model import Alert
from alertgateway.core.storms import StormTracker
from alertgateway.redis import scripts as _lua
from alertgateway.redis.client import RedisClient, RedisUnavailable
from alertgateway.state.errors import StateContended

__all__ = ["Decided", "Decisions", "MemoryDecisions", "RedisDecisions", "StateContended", "Tracked"]

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


@attrs.frozen
class Decided:
    """
    What deciding on a batch gave, and how to take it back if its forwards
    cannot be queued.
    """

    verdicts: list[Verdict]
    outgoing: list[Outgoing]
    undo: Callable[[], Deferred[None]]


@attrs.frozen
class Tracked:
    """
    Figures for the gauges.
    """

    episodes: int
    evictions: int
    storms: int


class Decisions(Protocol):
    """
    Where decisions are taken and what the status API reads.
    """

    decider: Decider

    def decide(self, alerts: Sequence[Alert]) -> Deferred[Decided]: ...

    def tick(self) -> Deferred[list[Outgoing]]: ...

    def delivered(self, key: str, idempotency_key: str, outcome: str) -> Deferred[None]: ...

    def episode(self, key: str) -> Deferred[Episode | None]: ...

    def by_fingerprint(self, fingerprint: str) -> Deferred[Episode | None]: ...

    def page(self, status: str | None, after: str | None, limit: int) -> Deferred[list[Episode]]: ...

    def tracked(self) -> Deferred[Tracked]: ...


class MemoryDecisions:
    """
    Decisions on this process's own state.
    """

    def __init__(self, decider: Decider) -> None:
        self.decider = decider

    @property
    def episodes(self) -> MemoryEpisodes:
        episodes = self.decider.episodes
        assert isinstance(episodes, MemoryEpisodes)
        return episodes

    def decide(self, alerts: Sequence[Alert]) -> Deferred[Decided]:
        snapshot = self.decider.snapshot(alerts)
        verdicts, outgoing = self.decider.decide(alerts)

        def _undo() -> Deferred[None]:
            self.decider.restore(snapshot)
            return succeed(None)

        return succeed(Decided(verdicts, outgoing, _undo))

    def tick(self) -> Deferred[list[Outgoing]]:
        return succeed(self.decider.tick())

    def delivered(self, key: str, idempotency_key: str, outcome: str) -> Deferred[None]:
        episode = self.decider.episodes.get(key)
        if episode is not None and episode.forwarded == idempotency_key:
            episode.delivery = outcome
        return succeed(None)

    def episode(self, key: str) -> Deferred[Episode | None]:
        return succeed(self.decider.episodes.get(key))

    def by_fingerprint(self, fingerprint: str) -> Deferred[Episode | None]:
        return succeed(self.decider.episodes.by_fingerprint(fingerprint))

    def page(self, status: str | None, after: str | None, limit: int) -> Deferred[list[Episode]]:
        chosen = sorted(
            (
                e
                for e in self.decider.episodes
                if (status is None or e.status == status) and (after is None or e.key > after)
            ),
            key=lambda e: e.key,
        )
        return succeed(chosen[:limit])

    def tracked(self) -> Deferred[Tracked]:
        storms = self.decider.storms
        return succeed(
            Tracked(
                len(self.decider.episodes),
                getattr(self.decider.episodes, "evictions", 0),
                len(storms.storms) if storms is not None else 0,
            )
        )


@attrs.frozen
class _Doc:
    """
    A shared entry's JSON document, with the few fields the scripts need
    taken out when it is made or loaded (so it is never parsed again).

    @ivar extra: An episode's fingerprint, or C{1}/C{0}: whether a group is
        in a storm.
    @ivar score: An episode's last sighting (its rank for expiry).
    @ivar forwarded: The idempotency key of what an episode last forwarded.
    """

    text: str
    extra: str = attrs.field(default="", eq=False)
    score: str = attrs.field(default="0", eq=False)
    forwarded: str = attrs.field(default="", eq=False)

    @classmethod
    def of(cls, kind: str, data: Mapping[str, Any], text: str | None = None) -> _Doc:
        if text is None:
            text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        if kind == "e":
            return cls(text, data["fingerprint"], repr(float(data["last_seen"])), data.get("forwarded") or "")
        return cls(text, "1" if data.get("storm") else "0")


@attrs.frozen
class _Written:
    """
    One entry as a decision wrote it: the version it got and the document.
    """

    entry: _Entry
    version: str
    document: _Doc | None


@attrs.define
class _Entry:
    """
    One shared entry as loaded: its Redis key, name, version and document.
    """

    redis_key: str
    name: str
    kind: str
    version: str
    document: _Doc | None


class _View:
    """
    The entries a batch touches, loaded from Redis, and a decider on them.
    """

    def __init__(self, decider: Decider, entries: list[_Entry]) -> None:
        self.decider = decider
        self.entries = entries

    def documents(self) -> list[_Doc | None]:
        """
        Each entry's document as the decider left it.
        """
        found: list[_Doc | None] = []
        for entry in self.entries:
            found.append(_document(self.decider, entry))
        return found


def _document(decider: Decider, entry: _Entry) -> _Doc | None:
    if entry.kind == "e":
        episode = decider.episodes.get(entry.name)
        return _Doc.of("e", episode.to_json()) if episode is not None else None
    assert decider.storms is not None
    group = decider.storms.export(entry.name)
    return _Doc.of("g", group) if group is not None else None


class RedisDecisions:
    """
    Decisions on state shared through Redis.

    @param storms: The configured tracker (a template: each decision works
        on a fresh one holding the groups it loaded), or C{None}.
    @param pause: Waits before a decision is tried again after another
        replica wrote first (jittered, growing), so replicas contending
        for one storm group take turns instead of colliding eight times;
        C{None} retries at once.
    """

    def __init__(
        self,
        client: RedisClient,
        clock: IReactorTime,
        settings: DeciderSettings,
        storms: StormTracker | None,
        *,
        max_tracked: int,
        pause: Callable[[float], Deferred[None]] | None = None,
    ) -> None:
        self._client = client
        self._clock = clock
        self._pause = pause
        # Per correlation group, the decision that may write it now.
        self._locks: dict[str, DeferredLock] = {}
        if storms is not None:
            # A storm's waiting members travel in its group's document,
            # which every new member rewrites: bounded well below what one
            # process keeps (past it a member is only counted, and the
            # events say how many were never listed).
            storms = storms.fresh()
            storms.max_pending = min(storms.max_pending, max(2 * storms.max_members_listed, _SHARED_PENDING))
        self._storms = storms
        # Decisions to take back, oldest first (see _undo).
        self._undos: list[list[_Written]] = []
        self._max_tracked = max_tracked
        # For what reads the settings (metrics by environment); its state
        # is never used.
        self.decider = Decider(clock, MemoryEpisodes(1), settings, storms)
        self._episode_ttl = settings.window + _TTL_MARGIN
        self._group_ttl = (
            max(storms.window, storms.quiet_period, storms.flush_interval) + _TTL_MARGIN
            if storms is not None
            else _TTL_MARGIN
        )

    @property
    def settings(self) -> DeciderSettings:
        return self.decider.settings

    def _episode_key(self, key: str) -> str:
        return self._client.key("ep", key)

    def _group_key(self, group: str) -> str:
        return self._client.key("grp", group)

    def _wanted(self, alerts: Sequence[Alert]) -> list[tuple[str, str, str]]:
        s = self.settings
        wanted: dict[str, tuple[str, str, str]] = {}
        for alert in alerts:
            key = dedup_key(alert, s.ignore_labels)
            wanted.setdefault("e" + key, (self._episode_key(key), key, "e"))
            if self._storms is not None:
                group = group_id(alert, s.group_by, s.use_sender_group)
                wanted.setdefault("g" + group, (self._group_key(group), group, "g"))
        return list(wanted.values())

    async def _load(self, wanted: Sequence[tuple[str, str, str]]) -> _View:
        raw = await self._client.script(_lua.LOAD, [redis_key for redis_key, _, _ in wanted], [])
        episodes = MemoryEpisodes(max_tracked=2**62)
        storms = self._storms.fresh() if self._storms is not None else None
        entries = []
        for index, (redis_key, name, kind) in enumerate(wanted):
            version, document, outcome = raw[3 * index], raw[3 * index + 1], raw[3 * index + 2]
            if not document:
                entries.append(_Entry(redis_key, name, kind, str(version), None))
                continue
            data = json.loads(document)
            entries.append(_Entry(redis_key, name, kind, str(version), _Doc.of(kind, data, document)))
            if kind == "e":
                episode = Episode.from_json(data)
                _apply_outcome(episode, outcome)
                episodes.put(episode)
            elif storms is not None:
                storms.adopt(name, data)
        return _View(Decider(self._clock, episodes, self.settings, storms), entries)

    async def _commit(self, entries: Sequence[_Entry], documents: Sequence[_Doc | None]) -> list[_Written] | None:
        """
        Write what changed if nothing moved since it was loaded.

        @return: What was written, or C{None} when another replica wrote
            first.
        @raise RedisUnavailable: Then the write may or may not have been
            made; what it would have forwarded is taken back (now or, Redis
            unreachable, as soon as it is back).
        """
        changed = [(e, d) for e, d in zip(entries, documents, strict=True) if d != e.document]
        if not changed:
            return []
        args: list[Any] = [self._client.prefix, self._max_tracked]
        for entry, document in changed:
            args.extend(self._entry_args(entry, document))
        try:
            versions = await self._client.script(_lua.COMMIT, [e.redis_key for e, _ in changed], args)
        except RedisUnavailable:
            # Unknown whether it was written: take back any forward it made,
            # or the sender's retry would find a duplicate of nothing sent.
            self._undos.append([_Written(e, "", d) for e, d in changed if e.kind == "e"])
            raise
        if not versions:
            return None
        return [_Written(e, str(v), d) for (e, d), v in zip(changed, versions, strict=True)]

    def _entry_args(self, entry: _Entry, document: _Doc | None) -> list[Any]:
        ttl = self._episode_ttl if entry.kind == "e" else self._group_ttl
        doc = document if document is not None else _Doc("")
        return [entry.version, doc.text, int(ttl * 1000), entry.kind, entry.name, doc.extra, doc.score, doc.forwarded]

    def decide(self, alerts: Sequence[Alert]) -> Deferred[Decided]:
        return Deferred.fromCoroutine(self._decide(alerts))

    async def _decide(self, alerts: Sequence[Alert]) -> Decided:
        # Undos that could not be made yet come first: this batch may be
        # the retry of the one they take back.
        await self._flush_undos()
        wanted = self._wanted(alerts)
        # One decision per correlation group at a time in this process: in
        # a storm every new member rewrites its group, and sixty requests
        # racing for it would mostly lose; across replicas, at most one
        # contender per replica is left, and the pauses sort those out.
        groups = sorted(name for _, name, kind in wanted if kind == "g")
        for group in groups:
            await self._group_lock(group).acquire()
        try:
            return await self._decide_loaded(alerts, wanted)
        finally:
            for group in reversed(groups):
                self._release_group(group)

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

    async def _decide_loaded(self, alerts: Sequence[Alert], wanted: list[tuple[str, str, str]]) -> Decided:
        for attempt in range(_MAX_ATTEMPTS):
            if attempt and self._pause is not None:
                await self._pause(_RETRY_BASE * 2**attempt * (0.5 + _jitter.random()))
            view = await self._load(wanted)
            verdicts, outgoing = view.decider.decide(alerts)
            written = await self._commit(view.entries, view.documents())
            if written is not None:
                return Decided(verdicts, outgoing, _undoer(self, written))
        raise StateContended(f"{len(wanted)} shared entries kept changing")

    async def undo(self, written: list[_Written]) -> None:
        """
        Take back a decision whose forwards could not be queued; kept for
        later if Redis cannot be reached now.
        """
        self._undos.append(written)
        await self._flush_undos()

    async def _flush_undos(self) -> None:
        while self._undos:
            written = self._undos[0]
            if written:
                args: list[Any] = [self._client.prefix]
                for w in written:
                    loaded = w.entry.document.text if w.entry.document is not None else ""
                    args.extend((w.entry.kind, w.version, _new_forward(w), loaded))
                await self._client.script(_lua.UNDO, [w.entry.redis_key for w in written], args)
            self._undos.pop(0)

    def pending_undos(self) -> int:
        """
        Decisions still to be taken back once Redis answers.
        """
        return len(self._undos)

    def tick(self) -> Deferred[list[Outgoing]]:
        return Deferred.fromCoroutine(self._tick())

    async def _tick(self) -> list[Outgoing]:
        """
        Forget lapsed episodes, then flush and close due storms: every
        replica ticks, and the compare-and-set lets one of them emit each
        event (the others find it already done).
        """
        now = self._clock.seconds()
        await self._flush_undos()
        await self._client.script(_lua.EXPIRE, [], [self._client.prefix, repr(now - self.settings.window)])
        if self._storms is None:
            return []
        groups = await self._client.command("storm_groups", "SMEMBERS", self._client.key("storms"))
        if not groups:
            return []
        view = await self._load([(self._group_key(g), g, "g") for g in sorted(groups)])
        gone = [entry.name for entry in view.entries if entry.document is None]
        if gone:
            # Expired while every replica was away: nothing left to close.
            await self._client.command("storms_forget", "SREM", self._client.key("storms"), *gone)
        assert view.decider.storms is not None
        events = view.decider.storms.tick(now)
        if not events:
            return []
        if await self._commit(view.entries, view.documents()) is None:
            # Another replica ticked the same storms first.
            return []
        return [self.decider.storm_outgoing(e) for e in events]

    def delivered(self, key: str, idempotency_key: str, outcome: str) -> Deferred[None]:
        d = self._client.script(_lua.DELIVERED, [self._episode_key(key)], [idempotency_key, outcome])
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
        now = self._clock.seconds()
        for index in range(len(keys)):
            document, outcome = raw[3 * index + 1], raw[3 * index + 2]
            if not document:
                continue
            episode = Episode.from_json(json.loads(document))
            # As the decider sees it: past its window, an episode is gone.
            if episode.last_seen < now - self.settings.window:
                continue
            _apply_outcome(episode, outcome)
            found.append(episode)
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


def _apply_outcome(episode: Episode, outcome: str | None) -> None:
    """
    Take the delivery outcome recorded beside an episode, if it is of what
    the episode last forwarded.
    """
    if not outcome:
        return
    forwarded, _, result = outcome.partition("\n")
    if forwarded == episode.forwarded:
        episode.delivery = result


def _new_forward(written: _Written) -> str:
    """
    The idempotency key of what the decision newly forwarded for an
    episode, or C{""}: an episode only counted as a duplicate is not worth
    taking back (and taking it back could erase another replica's count).
    """
    after = written.document.forwarded if written.document is not None else ""
    before = written.entry.document.forwarded if written.entry.document is not None else ""
    return after if after and after != before else ""


def _undoer(decisions: RedisDecisions, written: list[_Written]) -> Callable[[], Deferred[None]]:
    return lambda: Deferred.fromCoroutine(decisions.undo(written))
