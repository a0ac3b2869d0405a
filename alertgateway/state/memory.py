# -*- test-case-name: tests.unit.test_state_memory -*-
"""
The decider's state in this process's memory: a L{WorkingSet}, bounded
in count and in bytes, and the protocol that commits decisions on it.

A decision reads only committed state.  It takes the keys its alerts touch
(their dedup keys and correlation groups) for as long as it is being
committed: a decision on the same keys waits until the one before is
committed (its forwards queued: a durable queue answers once its disk has
them) or refused, then reads what is really there.  So two webhooks in
flight never both find an alert new, a refused write leaves nothing behind
that another decision built on, and decisions on other keys go on at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from alertgateway.core.decider import DeciderSettings, decide, tick, touched
from alertgateway.core.decision import Changes, Decision
from alertgateway.core.episodes import Delivery, Episode
from alertgateway.core.model import Alert
from alertgateway.core.storms import Group, Member, StormSettings
from alertgateway.state.locks import KeyLocks
from alertgateway.state.ports import Enqueue, Replay, StateWrite, Tracked
from alertgateway.state.working import MAX_GROUPS, WorkingSet

__all__ = ["MAX_GROUPS", "KeyLocks", "MemoryState"]

# How storms left from before storms were turned off are flushed: closed
# at the next tick, their members listed in as many events as they need.
_CLOSE_AT_ONCE = StormSettings(flush_interval=0.0, quiet_period=0.0)


class _TickView:
    """
    The committed state as a tick reads it: only the storms whose keys it
    holds.
    """

    def __init__(self, working: WorkingSet, storms: Iterable[str]) -> None:
        self._working = working
        self._storms = storms

    def episode(self, key: str) -> Episode | None:
        return self._working.episode(key)

    def group(self, group_id: str) -> Group | None:
        return self._working.group(group_id)

    def waiting(self, group_id: str, offset: int, count: int) -> Sequence[Member]:
        return self._working.waiting(group_id, offset, count)

    def storm_groups(self) -> Iterable[str]:
        return [group for group in self._storms if group in self._working.storms]


class MemoryState:
    """
    The state of every decision, in memory: lost with the process.

    @param max_bytes: The most the state's estimated size may be
        (C{state.max_bytes}); C{None}: no bound.
    @param on_evict: Told how many episodes were dropped, each time.
    """

    def __init__(
        self,
        settings: DeciderSettings,
        *,
        max_tracked: int,
        max_groups: int = MAX_GROUPS,
        max_bytes: int | None = None,
        on_evict: Callable[[int], object] | None = None,
    ) -> None:
        self.settings = settings
        self._working = working = WorkingSet(
            max_tracked=max_tracked,
            max_groups=max_groups,
            max_bytes=max_bytes,
            # Looked up when called: a store that writes elsewhere too
            # overrides it.
            on_drop=lambda key: self._dropped(key),
            on_evict=on_evict,
        )
        # The working set's own containers, which a store restoring its
        # state fills.
        self._episodes = working.episodes
        self._by_fingerprint = working.by_fingerprint
        self._watching = working.watching
        self._storms = working.storms
        self._waiting = working.members
        self._locks = KeyLocks()
        # Delivery outcomes that ended before their decision was committed
        # (a sink that answers at once), by key: recorded once it is.
        self._early: dict[str, list[tuple[str, Delivery]]] = {}

    @property
    def max_tracked(self) -> int:
        return self._working.max_tracked

    @max_tracked.setter
    def max_tracked(self, value: int) -> None:
        self._working.max_tracked = value

    @property
    def evictions(self) -> int:
        """
        Episodes dropped to respect C{max_tracked} or C{max_bytes}, ever.
        """
        return self._working.evictions

    @property
    def bytes(self) -> int:
        """
        The estimated size of the state (C{gateway_state_bytes}).
        """
        return self._working.bytes

    # Deciding.

    def decide(
        self, alerts: Sequence[Alert], now: float, enqueue: Enqueue, replay: Replay | None = None
    ) -> Deferred[Decision]:
        keys = touched(alerts, self.settings)

        def _decide(_: object) -> Deferred[Decision]:
            try:
                decision = self._working.admit(decide(self._working, alerts, now, self.settings))
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
        self._working.expire(now - self.settings.window)
        if self.settings.storms is not None:
            self._working.expire_groups(now - self.settings.storms.window)
        keys = sorted("g" + group for group in self._storms)
        return self._locks.acquire(keys).addCallback(lambda _: self._tick(keys, now, enqueue, max_events))

    def _tick(self, keys: list[str], now: float, enqueue: Enqueue, max_events: int | None) -> Deferred[Decision]:
        # Only the storms whose keys were taken: one started while the tick
        # waited is another decision's until it is committed, and due at the
        # next tick.
        view = _TickView(self._working, [key[1:] for key in keys])
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
        self._working.apply(changes)
        if not written:
            for key in changes.episodes:
                self._changed(key)
        if self._early:
            for key in changes.episodes:
                self._early_outcome(key)

    # Delivery outcomes.

    def delivered(self, key: str, idempotency_key: str, outcome: Delivery) -> Deferred[None]:
        episode = self._episodes.get(key)
        if episode is not None:
            # Not a change a store must write: its queue records it.
            self._working.replace(episode.delivered(idempotency_key, outcome))
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
        self._working.replace(episode)

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
