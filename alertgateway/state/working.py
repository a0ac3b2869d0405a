# -*- test-case-name: tests.unit.test_state_bytes,tests.unit.test_state_memory -*-
"""
The committed state a store keeps in this process's memory, within its
bounds, as the decider reads it (a L{StateView}).

Episodes ordered by last sighting (least recently seen first out past
C{max_tracked}, forgotten once their window lapsed), the correlation groups
watched for a storm (least recently active first out past C{max_groups},
forgotten once their members lapsed from the storm window), the groups in
a storm and their waiting members.

Their size is estimated as they change (L{alertgateway.core.footprint}):
past C{max_bytes}, the least recently active of the episodes and watched
groups goes first, whichever it is.  Storms and their waiting members are
never evicted (that would lose members no event listed yet); instead a
decision's new members wait only while storms take at most half of
C{max_bytes} (L{WorkingSet.admit}): past it a member is only counted, as
past a storm's own bounds.  So deduplication always keeps at least half.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence

import attrs

from alertgateway.core.decision import Changes, Decision, WaitingChange
from alertgateway.core.episodes import Episode
from alertgateway.core.footprint import admit_waiting, episode_bytes, group_bytes, member_bytes
from alertgateway.core.storms import Group, Member

__all__ = ["MAX_GROUPS", "WorkingSet"]

# Groups watched for a storm at once; the least recently active go first.
MAX_GROUPS = 10_000


def _last_active(group: Group) -> float:
    """
    When a watched group last saw a new member.
    """
    return group.recent[-1].seen_at if group.recent else float("-inf")


class WorkingSet:
    """
    Episodes, watched groups, storms and their waiting members, bounded.

    @ivar bytes: The estimated size of everything kept.
    @ivar evictions: Episodes dropped to respect C{max_tracked} or
        C{max_bytes}, ever.
    @param max_bytes: The most C{bytes} may be; C{None}: no bound.
    @param on_drop: Told the dedup key of each episode forgotten (evicted
        or expired).
    @param on_evict: Told how many episodes were evicted, each time.
    """

    def __init__(
        self,
        *,
        max_tracked: int,
        max_groups: int = MAX_GROUPS,
        max_bytes: int | None = None,
        on_drop: Callable[[str], object],
        on_evict: Callable[[int], object] | None = None,
    ) -> None:
        self.max_tracked = max_tracked
        self.max_groups = max_groups
        self.max_bytes = max_bytes
        self._on_drop = on_drop
        self._on_evict = on_evict
        self.episodes: OrderedDict[str, Episode] = OrderedDict()
        self.by_fingerprint: dict[str, str] = {}
        self.watching: OrderedDict[str, Group] = OrderedDict()
        self.storms: dict[str, Group] = {}
        self.members: dict[str, deque[Member]] = {}
        self.bytes = 0
        # Of those, the storms' headers and waiting members.
        self.storm_bytes = 0
        self.evictions = 0

    # As the decider reads it.

    def episode(self, key: str) -> Episode | None:
        return self.episodes.get(key)

    def group(self, group_id: str) -> Group | None:
        return self.storms.get(group_id) or self.watching.get(group_id)

    def waiting(self, group_id: str, offset: int, count: int) -> Sequence[Member]:
        members = self.members.get(group_id, ())
        return list(itertools.islice(members, offset, offset + count))

    def storm_groups(self) -> Iterable[str]:
        return list(self.storms)

    # Changing it.

    def admit(self, decision: Decision) -> Decision:
        """
        The decision with only the waiting members that keep the storms
        within half of C{max_bytes} (before it is written anywhere).
        """
        if self.max_bytes is None or not decision.changes.waiting:
            return decision
        changes, _ = admit_waiting(decision.changes, max(0, self.max_bytes // 2 - self.storm_bytes))
        return attrs.evolve(decision, changes=changes)

    def apply(self, changes: Changes) -> None:
        """
        Commit C{changes}, then evict what the bounds do not let stay.
        """
        for key, episode in changes.episodes.items():
            if episode is None:
                self.forget(key)
            else:
                self.put(episode)
        for group, value in changes.groups.items():
            self._put_group(group, value)
        for group, change in changes.waiting.items():
            self._change_waiting(group, change)
        self.fit()

    def put(self, episode: Episode) -> None:
        """
        Keep C{episode} as its key's, the most recently seen.
        """
        replaced = self.episodes.get(episode.key)
        if replaced is not None:
            self.bytes -= episode_bytes(replaced)
            if replaced.fingerprint != episode.fingerprint:
                # A new episode of the key seen first under another
                # fingerprint (another replica): the old one's entry would
                # otherwise outlive the key and grow without bound.
                self._unindex(replaced)
        self.bytes += episode_bytes(episode)
        self.episodes[episode.key] = episode
        self.episodes.move_to_end(episode.key)
        self.by_fingerprint[episode.fingerprint] = episode.key
        while len(self.episodes) > self.max_tracked:
            self._evict_episode()

    def replace(self, episode: Episode) -> None:
        """
        Record a delivery's outcome on C{episode}: same key, same place in
        the order, same size.
        """
        self.episodes[episode.key] = episode

    def forget(self, key: str) -> None:
        episode = self.episodes.pop(key, None)
        if episode is not None:
            self.bytes -= episode_bytes(episode)
            self._unindex(episode)

    def _unindex(self, episode: Episode) -> None:
        if self.by_fingerprint.get(episode.fingerprint) == episode.key:
            del self.by_fingerprint[episode.fingerprint]

    def _evict_episode(self) -> None:
        """
        Drop the least recently seen episode, to respect a bound.
        """
        _, evicted = self.episodes.popitem(last=False)
        self.bytes -= episode_bytes(evicted)
        self._unindex(evicted)
        self._on_drop(evicted.key)
        self.evictions += 1
        if self._on_evict is not None:
            self._on_evict(1)

    def fit(self) -> None:
        """
        Evict the least recently active episodes and watched groups,
        whichever was active last, until the state is within C{max_bytes}.
        """
        if self.max_bytes is None:
            return
        while self.bytes > self.max_bytes:
            group = next(iter(self.watching.values()), None)
            episode = next(iter(self.episodes.values()), None)
            if group is not None and (episode is None or _last_active(group) <= episode.last_seen):
                _, group = self.watching.popitem(last=False)
                self.bytes -= group_bytes(group)
            elif episode is not None:
                self._evict_episode()
            else:
                # Only storms are left: admission bounds them.
                return

    def _put_group(self, group: str, value: Group | None) -> None:
        watched = self.watching.pop(group, None)
        if watched is not None:
            self.bytes -= group_bytes(watched)
        stormy = self.storms.pop(group, None)
        if stormy is not None:
            self._count_storm(-group_bytes(stormy))
        if value is None:
            return
        if value.storm is not None:
            self.storms[group] = value
            self._count_storm(group_bytes(value))
            return
        self.watching[group] = value
        self.bytes += group_bytes(value)
        while len(self.watching) > self.max_groups:
            _, dropped = self.watching.popitem(last=False)
            self.bytes -= group_bytes(dropped)

    def _count_storm(self, size: int) -> None:
        self.bytes += size
        self.storm_bytes += size

    def _change_waiting(self, group: str, change: WaitingChange) -> None:
        if change.cleared:
            dropped = self.members.pop(group, ())
            self._count_storm(-sum(member_bytes(member) for member in dropped))
        waiting = self.members.get(group)
        if waiting is None:
            if not change.added:
                return
            waiting = self.members[group] = deque()
        for _ in range(min(change.taken, len(waiting))):
            self._count_storm(-member_bytes(waiting.popleft()))
        waiting.extend(change.added)
        self._count_storm(sum(member_bytes(member) for member in change.added))
        if not waiting:
            del self.members[group]

    def expire(self, older_than: float) -> None:
        """
        Forget episodes last seen before C{older_than}.
        """
        episodes = self.episodes
        while episodes:
            key, episode = next(iter(episodes.items()))
            if episode.last_seen >= older_than:
                break
            del episodes[key]
            self.bytes -= episode_bytes(episode)
            self._unindex(episode)
            self._on_drop(key)

    def expire_groups(self, older_than: float) -> None:
        """
        Forget the watched groups without a new member since
        C{older_than}: all their recent members lapsed, so they hold
        nothing a storm could start from.
        """
        watching = self.watching
        while watching:
            group_id, group = next(iter(watching.items()))
            if _last_active(group) >= older_than:
                break
            del watching[group_id]
            self.bytes -= group_bytes(group)

    def recount(self) -> None:
        """
        Estimate the size of everything kept afresh (after a restore), and
        evict what no longer fits.
        """
        self.storm_bytes = sum(group_bytes(g) for g in self.storms.values()) + sum(
            member_bytes(m) for waiting in self.members.values() for m in waiting
        )
        self.bytes = (
            self.storm_bytes
            + sum(episode_bytes(e) for e in self.episodes.values())
            + sum(group_bytes(g) for g in self.watching.values())
        )
        self.fit()
