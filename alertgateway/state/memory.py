# -*- test-case-name: tests.unit.test_state_memory -*-
"""
The decider's state in this process's memory.

Two layers.  The committed state: episodes ordered by last sighting
(least recently seen first out past C{max_tracked}), the correlation groups
watched for a storm (least recently active first out past C{max_groups}),
the groups in a storm and their waiting members.  On top, the changes of
decisions whose forwards are still being queued (a durable queue answers
once its disk has them), in the order they were decided: a later decision
sees them, so two webhooks in flight never both find an alert new.

A decision's changes are committed once its forwards are queued, after the
earlier decisions that touch the same keys.  When a queue write fails, that decision's changes are
dropped, and so are the changes later decisions made to the same keys
(they were decided on top of what is not kept); those later decisions are
refused too, so their senders retry against the state as it really is.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from alertgateway.core.decider import DeciderSettings, decide, tick
from alertgateway.core.decision import Decision, WaitingChange
from alertgateway.core.episodes import Delivery, Episode
from alertgateway.core.model import Alert
from alertgateway.core.storms import Group, Member
from alertgateway.state.errors import QueueFull
from alertgateway.state.ports import Enqueue, Replay, StateWrite, Tracked

__all__ = ["MemoryState"]

# Groups watched for a storm at once; the least recently active go first.
MAX_GROUPS = 10_000


@attrs.define(eq=False)
class _Staged:
    """
    A decision's changes, waiting for its forwards to be queued.

    @ivar tainted: Keys whose values here were decided on top of an earlier
        decision that could not be committed: never committed, never read.
    """

    episodes: dict[str, Episode | None]
    groups: dict[str, Group | None]
    waiting: dict[str, WaitingChange]
    settled: bool = False
    # Whether its changes were written with its queue write (a store that
    # keeps state elsewhere writes the others later).
    written: bool = False
    tainted: set[str] = attrs.field(factory=set)
    # Fires once the decision is committed (or fails when it is not).
    done: Deferred[None] = attrs.field(factory=Deferred)

    def touched(self) -> Iterator[str]:
        yield from ("e" + k for k in self.episodes)
        yield from ("g" + g for g in self.groups)
        yield from ("w" + g for g in self.waiting)


class MemoryState:
    """
    The state of every decision, in memory: lost with the process.

    @ivar evictions: Episodes dropped to respect C{max_tracked}, ever.
    @param on_evict: Told how many episodes were dropped, each time.
    """

    def __init__(
        self,
        settings: DeciderSettings,
        *,
        max_tracked: int,
        max_groups: int = MAX_GROUPS,
        on_evict: Callable[[int], object] | None = None,
    ) -> None:
        self.settings = settings
        self._on_evict = on_evict
        self.max_tracked = max_tracked
        self.max_groups = max_groups
        self._episodes: OrderedDict[str, Episode] = OrderedDict()
        self._by_fingerprint: dict[str, str] = {}
        self._watching: OrderedDict[str, Group] = OrderedDict()
        self._storms: dict[str, Group] = {}
        self._waiting: dict[str, deque[Member]] = {}
        self.evictions = 0
        self._pending: deque[_Staged] = deque()
        # Per key ("e", "g" or "w" and the name), the pending decisions
        # that change it, oldest first.
        self._touching: dict[str, list[_Staged]] = {}

    # Deciding.

    def decide(
        self, alerts: Sequence[Alert], now: float, enqueue: Enqueue, replay: Replay | None = None
    ) -> Deferred[Decision]:
        return self._commit(decide(self._view(), alerts, now, self.settings), enqueue, replay)

    def tick(self, now: float, enqueue: Enqueue) -> Deferred[Decision]:
        self._expire(now - self.settings.window)
        decision = tick(self._view(), now, self.settings)
        if not decision.changes and not decision.outgoing:
            return succeed(decision)
        return self._commit(decision, enqueue)

    def _view(self) -> _Overlay:
        return _Overlay(self)

    def _state_write(self, decision: Decision, replay: Replay | None, staged: _Staged) -> StateWrite | None:
        """
        What to commit with the decision's queue write: nothing, in memory.
        """
        return None

    # What a store that keeps the state elsewhere too must write later.

    def _changed(self, key: str) -> None:
        """
        The committed episode of C{key} changed without being written.
        """

    def _dropped(self, key: str) -> None:
        """
        The committed episode of C{key} was forgotten (evicted, expired).
        """

    def _group_dropped(self, group: str) -> None:
        """
        A watched group was forgotten (past C{max_groups}).
        """

    def _commit(self, decision: Decision, enqueue: Enqueue, replay: Replay | None = None) -> Deferred[Decision]:
        changes = decision.changes
        staged = _Staged(dict(changes.episodes), dict(changes.groups), dict(changes.waiting))
        write = self._state_write(decision, replay, staged)
        staged.written = write is not None
        self._stage(staged)
        try:
            queued = enqueue(decision, write)
        except Exception:
            self._drop(staged)
            return fail()
        queued.addCallbacks(self._written, self._refused, callbackArgs=(staged,), errbackArgs=(staged,))
        return staged.done.addCallback(lambda _: decision)

    def _stage(self, staged: _Staged) -> None:
        self._pending.append(staged)
        for key in staged.touched():
            self._touching.setdefault(key, []).append(staged)

    def _unstage(self, staged: _Staged) -> None:
        for key in staged.touched():
            stack = self._touching[key]
            stack.remove(staged)
            if not stack:
                del self._touching[key]

    def _written(self, _: object, staged: _Staged) -> None:
        staged.settled = True
        self._settle()

    def _refused(self, failure: Failure, staged: _Staged) -> None:
        self._drop(staged)
        staged.done.errback(failure)

    def _drop(self, staged: _Staged) -> None:
        """
        Forget a decision that was not queued; taint what later decisions
        built on it.
        """
        index = self._pending.index(staged)
        del self._pending[index]
        self._unstage(staged)
        keys = set(staged.touched())
        for later in itertools.islice(self._pending, index, None):
            later.tainted.update(keys.intersection(later.touched()))
        self._settle()

    def _settle(self) -> None:
        """
        Commit the decisions whose writes are done and that no earlier
        pending decision shares a key with, and answer them: a decision is
        answered only once it, and every earlier decision of its keys, is
        committed.
        """
        blocked: set[str] = set()
        for staged in list(self._pending):
            keys = set(staged.touched())
            if not staged.settled or not blocked.isdisjoint(keys):
                blocked.update(keys)
                continue
            self._pending.remove(staged)
            self._unstage(staged)
            self._apply(staged)
            if staged.tainted:
                staged.done.errback(QueueFull("decided on a batch the queue refused; retry"))
            else:
                staged.done.callback(None)

    # The committed state.

    def _apply(self, staged: _Staged) -> None:
        tainted = staged.tainted
        for key, episode in staged.episodes.items():
            if "e" + key in tainted:
                continue
            if episode is None:
                self._forget(key)
            else:
                self._put(episode)
            if not staged.written:
                self._changed(key)
        for group, value in staged.groups.items():
            if "g" + group not in tainted:
                self._put_group(group, value)
        for group, change in staged.waiting.items():
            if "w" + group not in tainted:
                self._change_waiting(group, change)

    def _put(self, episode: Episode) -> None:
        replaced = self._episodes.get(episode.key)
        if replaced is not None and replaced.fingerprint != episode.fingerprint:
            # A new episode of the key seen first under another fingerprint
            # (another replica): the old one's entry would otherwise outlive
            # the key and grow without bound.
            self._unindex(replaced)
        self._episodes[episode.key] = episode
        self._episodes.move_to_end(episode.key)
        self._by_fingerprint[episode.fingerprint] = episode.key
        while len(self._episodes) > self.max_tracked:
            _, evicted = self._episodes.popitem(last=False)
            self._unindex(evicted)
            self._dropped(evicted.key)
            self.evictions += 1
            if self._on_evict is not None:
                self._on_evict(1)

    def _forget(self, key: str) -> None:
        episode = self._episodes.pop(key, None)
        if episode is not None:
            self._unindex(episode)

    def _unindex(self, episode: Episode) -> None:
        if self._by_fingerprint.get(episode.fingerprint) == episode.key:
            del self._by_fingerprint[episode.fingerprint]

    def _put_group(self, group: str, value: Group | None) -> None:
        if value is None or value.storm is not None:
            self._watching.pop(group, None)
        if value is None or value.storm is None:
            self._storms.pop(group, None)
        if value is None:
            return
        if value.storm is not None:
            self._storms[group] = value
            return
        self._watching[group] = value
        self._watching.move_to_end(group)
        while len(self._watching) > self.max_groups:
            dropped, _ = self._watching.popitem(last=False)
            self._group_dropped(dropped)

    def _change_waiting(self, group: str, change: WaitingChange) -> None:
        if change.cleared:
            self._waiting.pop(group, None)
        waiting = self._waiting.get(group)
        if waiting is None:
            if not change.added:
                return
            waiting = self._waiting[group] = deque()
        for _ in range(min(change.taken, len(waiting))):
            waiting.popleft()
        waiting.extend(change.added)
        if not waiting:
            del self._waiting[group]

    def _expire(self, older_than: float) -> None:
        """
        Forget committed episodes last seen before C{older_than}.
        """
        episodes = self._episodes
        while episodes:
            key, episode = next(iter(episodes.items()))
            if episode.last_seen >= older_than:
                break
            del episodes[key]
            self._unindex(episode)
            self._dropped(key)

    # What the status API and the gauges read.

    def delivered(self, key: str, idempotency_key: str, outcome: Delivery) -> Deferred[None]:
        episode = self._episodes.get(key)
        if episode is not None:
            updated = episode.delivered(idempotency_key, outcome)
            if updated is not episode:
                self._episodes[key] = updated
                self._changed(key)
        # A delivery can end before its decision is committed (a sink that
        # answers at once): the pending versions learn it too.
        for staged in self._touching.get("e" + key, ()):
            pending = staged.episodes[key]
            if pending is not None:
                staged.episodes[key] = pending.delivered(idempotency_key, outcome)
                self._changed(key)
        return succeed(None)

    def episode(self, key: str) -> Deferred[Episode | None]:
        return succeed(self._view().episode(key))

    def by_fingerprint(self, fingerprint: str) -> Deferred[Episode | None]:
        key = self._by_fingerprint.get(fingerprint)
        return succeed(self._episodes.get(key) if key is not None else None)

    def page(self, status: str | None, after: str | None, limit: int) -> Deferred[list[Episode]]:
        chosen = sorted(
            (
                e
                for e in self._episodes.values()
                if (status is None or e.status == status) and (after is None or e.key > after)
            ),
            key=lambda e: e.key,
        )
        return succeed(chosen[:limit])

    def tracked(self) -> Deferred[Tracked]:
        return succeed(Tracked(len(self._episodes), self.evictions, len(self._storms)))

    @property
    def tracked_episodes(self) -> int:
        return len(self._episodes)

    @property
    def active_storms(self) -> int:
        return len(self._storms)

    @property
    def watched_groups(self) -> int:
        return len(self._watching)


class _Overlay:
    """
    The committed state with the pending decisions' changes on top: what
    the next decision is taken on.
    """

    def __init__(self, state: MemoryState) -> None:
        self._state = state

    def _latest(self, key: str) -> _Staged | None:
        stack = self._state._touching.get(key)
        if stack:
            for staged in reversed(stack):
                if key not in staged.tainted:
                    return staged
        return None

    def episode(self, key: str) -> Episode | None:
        staged = self._latest("e" + key)
        if staged is not None:
            return staged.episodes[key]
        return self._state._episodes.get(key)

    def group(self, group_id: str) -> Group | None:
        staged = self._latest("g" + group_id)
        if staged is not None:
            return staged.groups[group_id]
        state = self._state
        return state._storms.get(group_id) or state._watching.get(group_id)

    def waiting(self, group_id: str, offset: int, count: int) -> Sequence[Member]:
        state = self._state
        base: Sequence[Member] = state._waiting.get(group_id, ())
        skip = 0
        tail: list[Member] = []
        key = "w" + group_id
        for staged in state._touching.get(key, ()):
            if key in staged.tainted:
                continue
            change = staged.waiting[group_id]
            if change.cleared:
                base, skip, tail = (), 0, []
            dropped = min(change.taken, len(base) - skip)
            skip += dropped
            del tail[: change.taken - dropped]
            tail.extend(change.added)
        members = itertools.chain(itertools.islice(base, skip, None), tail)
        return list(itertools.islice(members, offset, offset + count))

    def storm_groups(self) -> Iterable[str]:
        state = self._state
        pending = (key[1:] for key in state._touching if key.startswith("g"))
        return set(state._storms).union(pending)
