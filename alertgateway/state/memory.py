# -*- test-case-name: tests.unit.test_state_memory -*-
"""
The decider's state in this process's memory.

Episodes ordered by last sighting (least recently seen first out past
C{max_tracked}), the correlation groups watched for a storm (least recently
active first out past C{max_groups}), the groups in a storm and their
waiting members.

A decision reads only committed state.  It takes the keys its alerts touch
(their dedup keys and correlation groups) for as long as it is being
committed: a decision on the same keys waits until the one before is
committed (its forwards queued: a durable queue answers once its disk has
them) or refused, then reads what is really there.  So two webhooks in
flight never both find an alert new, a refused write leaves nothing behind
that another decision built on, and decisions on other keys go on at once.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from alertgateway.core.decider import DeciderSettings, decide, tick, touched
from alertgateway.core.decision import Changes, Decision, WaitingChange
from alertgateway.core.episodes import Delivery, Episode
from alertgateway.core.model import Alert
from alertgateway.core.storms import Group, Member, StormSettings
from alertgateway.state.ports import Enqueue, Replay, StateWrite, Tracked

__all__ = ["MAX_GROUPS", "KeyLocks", "MemoryState"]

# Groups watched for a storm at once; the least recently active go first.
MAX_GROUPS = 10_000

# How storms left from before storms were turned off are flushed: closed
# at the next tick, their members listed in as many events as they need.
_CLOSE_AT_ONCE = StormSettings(flush_interval=0.0, quiet_period=0.0)


class KeyLocks:
    """
    Exclusive hold of keys, first come first served per key.  Keys are
    taken in sorted order, so two holders of overlapping keys never wait
    for each other in a circle.  Uncontended, taking keys allocates no
    Deferred per key.
    """

    def __init__(self) -> None:
        # Held keys, each with the holders waiting for it, in order.
        self._held: dict[str, deque[Deferred[None]]] = {}
        # Waiters whose turn came, woken in order by the outermost release:
        # a woken holder that releases at once (a duplicate needs no disk
        # write) must not wake the next from inside its own wake-up, or a
        # long line of them would exhaust the stack.
        self._woken: deque[Deferred[None]] = deque()
        self._waking = False

    def __contains__(self, key: str) -> bool:
        return key in self._held

    def __len__(self) -> int:
        return len(self._held)

    def acquire(self, keys: Sequence[str]) -> Deferred[None]:
        """
        Take every key of C{keys} (sorted, without repeats).
        """
        return self._take(keys, 0)

    def _take(self, keys: Sequence[str], start: int) -> Deferred[None]:
        held = self._held
        for index in range(start, len(keys)):
            key = keys[index]
            waiters = held.get(key)
            if waiters is None:
                held[key] = deque()
                continue
            turn: Deferred[None] = Deferred()
            waiters.append(turn)
            return turn.addCallback(self._took, keys, index + 1)
        return succeed(None)

    def _took(self, _: None, keys: Sequence[str], after: int) -> Deferred[None]:
        # This key is ours (handed over): on with the rest.
        return self._take(keys, after)

    def release(self, keys: Iterable[str]) -> None:
        """
        Give up C{keys}: each goes to its next waiter, if any.
        """
        for key in keys:
            waiters = self._held[key]
            if waiters:
                # Handed over: the key stays held, by the waiter.
                self._woken.append(waiters.popleft())
            else:
                del self._held[key]
        if self._waking:
            return
        self._waking = True
        try:
            while self._woken:
                self._woken.popleft().callback(None)
        finally:
            self._waking = False


class _View:
    """
    The committed state, as the decider reads it.
    """

    def __init__(self, state: MemoryState, storms: Iterable[str] | None = None) -> None:
        self._state = state
        # The storms a tick holds the keys of; every storm otherwise.
        self._storms = storms

    def episode(self, key: str) -> Episode | None:
        return self._state._episodes.get(key)

    def group(self, group_id: str) -> Group | None:
        state = self._state
        return state._storms.get(group_id) or state._watching.get(group_id)

    def waiting(self, group_id: str, offset: int, count: int) -> Sequence[Member]:
        members = self._state._waiting.get(group_id, ())
        return list(itertools.islice(members, offset, offset + count))

    def storm_groups(self) -> Iterable[str]:
        if self._storms is not None:
            return [group for group in self._storms if group in self._state._storms]
        return list(self._state._storms)


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
        self.max_tracked = max_tracked
        self.max_groups = max_groups
        self._on_evict = on_evict
        self._episodes: OrderedDict[str, Episode] = OrderedDict()
        self._by_fingerprint: dict[str, str] = {}
        self._watching: OrderedDict[str, Group] = OrderedDict()
        self._storms: dict[str, Group] = {}
        self._waiting: dict[str, deque[Member]] = {}
        self.evictions = 0
        self._locks = KeyLocks()
        # Delivery outcomes that ended before their decision was committed
        # (a sink that answers at once), by key: recorded once it is.
        self._early: dict[str, list[tuple[str, Delivery]]] = {}
        self._view = _View(self)

    # Deciding.

    def decide(
        self, alerts: Sequence[Alert], now: float, enqueue: Enqueue, replay: Replay | None = None
    ) -> Deferred[Decision]:
        keys = touched(alerts, self.settings)

        def _decide(_: object) -> Deferred[Decision]:
            try:
                decision = decide(self._view, alerts, now, self.settings)
            except BaseException:
                self._locks.release(keys)
                raise
            return self._commit(keys, decision, enqueue, replay)

        return self._locks.acquire(keys).addCallback(_decide)

    def tick(self, now: float, enqueue: Enqueue, max_events: int | None = None) -> Deferred[Decision]:
        """
        Expire lapsed episodes, then commit the storm events due (at most
        C{max_events} of them, storms whose events do not fit wait).
        """
        self._expire(now - self.settings.window)
        keys = sorted("g" + group for group in self._storms)
        return self._locks.acquire(keys).addCallback(lambda _: self._tick(keys, now, enqueue, max_events))

    def _tick(self, keys: list[str], now: float, enqueue: Enqueue, max_events: int | None) -> Deferred[Decision]:
        # Only the storms whose keys were taken: one started while the tick
        # waited is another decision's until it is committed, and due at the
        # next tick.
        view = _View(self, [key[1:] for key in keys])
        settings = self.settings
        if settings.storms is None and self._storms:
            # Storms restored from before storms were turned off: closed
            # now, every waiting member listed, rather than kept for ever.
            settings = attrs.evolve(settings, storms=_CLOSE_AT_ONCE)
        try:
            decision = tick(view, now, settings, max_events)
        except BaseException:
            self._locks.release(keys)
            raise
        if not decision.changes and not decision.outgoing:
            self._locks.release(keys)
            return succeed(decision)
        return self._commit(keys, decision, enqueue)

    def _commit(
        self, keys: Sequence[str], decision: Decision, enqueue: Enqueue, replay: Replay | None = None
    ) -> Deferred[Decision]:
        """
        Queue the decision's forwards (with its state write, if the store
        has one), then (only then) commit its changes; the keys are given
        up either way.
        """
        write = self._state_write(decision, replay)
        try:
            queued = enqueue(decision, write)
        except Exception:
            queued = Deferred()
            queued.errback()

        def _queued(_: object) -> Decision:
            self._apply(decision.changes, written=write is not None)
            return decision

        def _release(result: Decision | Failure) -> Decision | Failure:
            if self._early:
                # Outcomes of forwards that were never committed.
                for key in keys:
                    self._early.pop(key[1:], None)
            self._locks.release(keys)
            return result

        return queued.addCallback(_queued).addBoth(_release)

    def _state_write(self, decision: Decision, replay: Replay | None) -> StateWrite | None:
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

    # The committed state.

    def _apply(self, changes: Changes, *, written: bool = False) -> None:
        for key, episode in changes.episodes.items():
            if episode is None:
                self._forget(key)
            else:
                self._put(episode)
            if not written:
                self._changed(key)
        for group, value in changes.groups.items():
            self._put_group(group, value)
        for group, change in changes.waiting.items():
            self._change_waiting(group, change)
        if self._early:
            for key in changes.episodes:
                self._early_outcome(key)

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
            self._watching.popitem(last=False)

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
        Forget episodes last seen before C{older_than}.
        """
        episodes = self._episodes
        while episodes:
            key, episode = next(iter(episodes.items()))
            if episode.last_seen >= older_than:
                break
            del episodes[key]
            self._unindex(episode)
            self._dropped(key)

    # Delivery outcomes.

    def delivered(self, key: str, idempotency_key: str, outcome: Delivery) -> Deferred[None]:
        episode = self._episodes.get(key)
        if episode is not None:
            # Not a change a store must write: its queue records it.
            self._episodes[key] = episode.delivered(idempotency_key, outcome)
        if "e" + key in self._locks:
            # Its decision may still be being committed: recorded on what
            # it commits too.
            self._early.setdefault(key, []).append((idempotency_key, outcome))
        return succeed(None)

    def _early_outcome(self, key: str) -> None:
        outcomes = self._early.pop(key, None)
        episode = self._episodes.get(key)
        if outcomes is None or episode is None:
            return
        for idempotency_key, outcome in outcomes:
            episode = episode.delivered(idempotency_key, outcome)
        self._episodes[key] = episode

    # What the status API and the gauges read.

    def episode(self, key: str) -> Deferred[Episode | None]:
        return succeed(self._episodes.get(key))

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
