"""
L{alertgateway.core.footprint}: the memory estimates of the decision
state's entries (checked against what CPython really allocates) and the
admission of a decision's storm members within a byte budget.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections import OrderedDict, deque
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.decision import Changes, WaitingChange
from alertgateway.core.episodes import Episode
from alertgateway.core.footprint import admit_waiting, episode_bytes, group_bytes, member_bytes
from alertgateway.core.members import Member
from alertgateway.core.storms import Group, Storm

NOW = 1_800_000_000.0


def _fresh(text: str) -> str:
    """
    A string object of its own, as each parsed webhook makes them.
    """
    return (text + "#")[:-1]


def _member(index: int, labels: int = 4, value: int = 10) -> Member:
    return Member(
        _fresh(f"{index:016x}"),
        {_fresh(f"label{n}"): _fresh(f"{index:08d}".ljust(value, "v")) for n in range(labels)},
        "firing",
        NOW,
    )


def _episode(index: int) -> Episode:
    key = _fresh(f"{index:016x}")
    return Episode(
        key,
        key,
        "firing",
        NOW,
        NOW,
        _fresh(f"{index:016x}"),
        "production",
        "alertmanager",
        last_counted=NOW,
        forwarded=_fresh(f"{index:032x}"),
    )


def _allocated(count: int, make: Callable[[int], Any], keep: Callable[[Any], None]) -> float:
    """
    What C{count} entries made by C{make} and kept by C{keep} allocate,
    each, as C{tracemalloc} sees it.
    """
    gc.collect()
    tracemalloc.start()
    try:
        for index in range(count):
            keep(make(index))
        gc.collect()
        return tracemalloc.get_traced_memory()[0] / count
    finally:
        tracemalloc.stop()


def _storm(**fields: Any) -> Storm:
    values: dict[str, Any] = {
        "id": "s1",
        "group_id": "g1",
        "group_labels": {"alertname": "A"},
        "first_seen": NOW,
        "last_seen": NOW,
        "last_flush": NOW,
        "members": 10,
        "listed": 5,
        **fields,
    }
    return Storm(**values)


class EstimateTests(SynchronousTestCase):
    def test_within_what_cpython_allocates(self) -> None:
        """
        Each estimate is within 30 % of what CPython really allocates for
        the entry as a store keeps it: an episode in the store's two
        dictionaries, members of a few to many labels in a waiting list.
        """
        episodes: OrderedDict[str, Episode] = OrderedDict()
        index: dict[str, str] = {}

        def keep_episode(episode: Episode) -> None:
            episodes[episode.key] = episode
            index[_fresh(episode.fingerprint)] = episode.key

        measured = _allocated(5000, _episode, keep_episode)
        estimate = episode_bytes(_episode(0))
        self.assertLess(abs(estimate - measured) / measured, 0.3, (estimate, measured))
        for labels, value in ((1, 10), (4, 10), (8, 100), (16, 50)):
            waiting: deque[Member] = deque()
            measured = _allocated(3000, partial(_member, labels=labels, value=value), waiting.append)
            estimate = member_bytes(_member(0, labels, value))
            with self.subTest(labels=labels, value=value):
                self.assertLess(abs(estimate - measured) / measured, 0.3, (estimate, measured))

    def test_episode_keeps_no_labels(self) -> None:
        """
        An episode's estimate does not depend on its alert's labels (it
        keeps none), only on the copies it follows.
        """
        plain = _episode(1)
        self.assertEqual(episode_bytes(plain), episode_bytes(_episode(2)))
        copies = attrs.evolve(plain, copies=(("a", NOW), ("b", NOW)))
        self.assertGreater(episode_bytes(copies), episode_bytes(plain))

    def test_group_counts_recent_members_and_storm(self) -> None:
        """
        A watched group costs its recent members; a group in a storm its
        header and group labels too (its waiting members are counted apart).
        """
        members = tuple(_member(n) for n in range(3))
        watched = Group(recent=members)
        self.assertEqual(group_bytes(watched) - group_bytes(Group()), sum(member_bytes(m) for m in members))
        self.assertGreater(group_bytes(Group(storm=_storm())), group_bytes(Group()))


class AdmitTests(SynchronousTestCase):
    def _changes(self, *added: Member, waiting: int | None = None) -> Changes:
        storm = _storm(waiting=len(added) if waiting is None else waiting, waiting_bytes=sum(m.size for m in added))
        return Changes(groups={"g1": Group(storm=storm)}, waiting={"g1": WaitingChange(added=added)})

    def test_all_fit(self) -> None:
        """
        With room for them all, every member is admitted and the storm is
        as the decider left it.
        """
        members = tuple(_member(n) for n in range(3))
        changes, used = admit_waiting(self._changes(*members), 10**6)
        self.assertEqual(changes, self._changes(*members))
        self.assertEqual(used, sum(member_bytes(m) for m in members))

    def test_cut_in_order(self) -> None:
        """
        Past the room, the later members are dropped from the waiting list
        and the storm counts them only: its waiting count and bytes go
        down, its member count does not.
        """
        members = tuple(_member(n) for n in range(3))
        room = member_bytes(members[0]) + member_bytes(members[1]) + 1
        changes, used = admit_waiting(self._changes(*members), room)
        self.assertEqual(changes.waiting["g1"].added, members[:2])
        group = changes.groups["g1"]
        assert group is not None and group.storm is not None
        storm = group.storm
        self.assertEqual((storm.members, storm.waiting, storm.waiting_bytes), (10, 2, members[0].size * 2))
        self.assertEqual(used, room - 1)

    def test_no_room(self) -> None:
        """
        Without room, no member waits: the list gains none.
        """
        members = (_member(1),)
        changes, used = admit_waiting(self._changes(*members), 0)
        self.assertEqual((changes.waiting["g1"].added, used), ((), 0))
        group = changes.groups["g1"]
        assert group is not None and group.storm is not None
        self.assertEqual((group.storm.waiting, group.storm.waiting_bytes), (0, 0))
