"""
The memory state bounded in bytes (L{alertgateway.state.working}): its
estimate follows every change exactly, past C{max_bytes} the least recently
active episodes and watched groups are evicted, storms' members wait only
within half of it, and everything is given back once it lapses.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.decider import DeciderSettings
from alertgateway.core.decision import Decision, Verdict
from alertgateway.core.footprint import EPISODE_BYTES, episode_bytes, group_bytes, member_bytes
from alertgateway.core.model import Alert, fingerprint
from alertgateway.core.storms import StormSettings
from alertgateway.state.memory import MemoryState

NOW = 1_800_000_000.0
STORMS = StormSettings(threshold=3, window=60, flush_interval=10, quiet_period=30, max_members_listed=5)


def alert(pod: str, status: str = "firing", namespace: str = "payments", **labels: str) -> Alert:
    every = {"alertname": "PodCrash", "namespace": namespace, "pod": pod, **labels}
    return Alert(fingerprint(every), "alertmanager", status, every, {}, None, None, "", "2027-01-15T08:00:00Z")


def queued(decision: Decision, write: object | None = None) -> Deferred[None]:
    return succeed(None)


class Driver:
    """
    A memory state on a clock, its queue taking everything at once.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        storms: StormSettings | None = STORMS,
        ignore_labels: tuple[str, ...] = (),
        **options: Any,
    ) -> None:
        self.case = case
        self.clock = Clock()
        self.clock.advance(NOW)
        self.evicted: list[int] = []
        options.setdefault("max_tracked", 10_000)
        settings = DeciderSettings(storms=storms, ignore_labels=ignore_labels)
        self.state = MemoryState(settings, on_evict=self.evicted.append, **options)

    def decide(self, *alerts: Alert) -> Decision:
        return self.case.successResultOf(self.state.decide(alerts, self.clock.seconds(), queued))

    def tick(self) -> Decision:
        return self.case.successResultOf(self.state.tick(self.clock.seconds(), queued))

    def recounted(self) -> int:
        """
        The state's size estimated afresh from what it holds.
        """
        working = self.state._working
        return (
            sum(episode_bytes(e) for e in working.episodes.values())
            + sum(group_bytes(g) for g in working.watching.values())
            + sum(group_bytes(g) for g in working.storms.values())
            + sum(member_bytes(m) for members in working.members.values() for m in members)
        )


def storm_events(decision: Decision) -> list[dict[str, Any]]:
    return [dict(o.body) for o in decision.outgoing if o.body.get("type") == "storm"]


class AccountingTests(SynchronousTestCase):
    def test_estimate_follows_every_change(self) -> None:
        """
        Through new alerts, duplicates, resolutions, a storm with its
        updates and closing, HA copies, and expiry, the running estimate is
        always what a recount of the state gives, and is zero once
        everything has lapsed.
        """
        driver = Driver(self, ignore_labels=("replica",))
        steps: list[tuple[float, tuple[Alert, ...]]] = [
            (0, (alert("a"), alert("b"))),
            (1, (alert("a"), alert("b", "resolved"))),
            (2, tuple(alert(f"s{n}", namespace="storm") for n in range(12))),
            (3, (alert("a", replica="1"), alert("a", replica="2"))),
            (11, tuple(alert(f"t{n}", namespace="storm") for n in range(4))),
            (45, (alert("c", namespace="other"),)),
            (400, ()),
        ]
        for at, alerts in steps:
            driver.clock.advance(at - (driver.clock.seconds() - NOW))
            if alerts:
                driver.decide(*alerts)
            self.assertEqual(driver.state.bytes, driver.recounted(), at)
            driver.tick()
            self.assertEqual(driver.state.bytes, driver.recounted(), at)
        self.assertEqual((driver.state.active_storms, driver.state.tracked_episodes), (0, 0))
        self.assertEqual((driver.state.watched_groups, driver.state.bytes), (0, 0))

    def test_lapsed_watched_groups_forgotten(self) -> None:
        """
        A watched group with no new member for a storm window is forgotten
        by the tick (its members could start no storm any more); one with
        a member since is kept.
        """
        driver = Driver(self)
        driver.decide(alert("a", namespace="quiet"))
        driver.clock.advance(30)
        driver.decide(alert("b", namespace="busy"))
        driver.clock.advance(30.5)
        driver.tick()
        self.assertEqual(driver.state.watched_groups, 1)
        self.assertEqual(driver.state.bytes, driver.recounted())
        driver.clock.advance(30)
        driver.tick()
        self.assertEqual(driver.state.watched_groups, 0)


class EvictionTests(SynchronousTestCase):
    def test_episodes_evicted_past_max_bytes(self) -> None:
        """
        Past C{max_bytes} the least recently seen episodes are evicted (and
        counted, as past C{max_tracked}): the state stays within it and
        keeps the most recent ones.
        """
        driver = Driver(self, storms=None, max_bytes=10 * EPISODE_BYTES)
        for n in range(25):
            driver.clock.advance(1)
            driver.decide(alert(f"p{n}", namespace=f"ns{n}"))
            self.assertLessEqual(driver.state.bytes, 10 * EPISODE_BYTES)
        self.assertEqual(driver.state.tracked_episodes, 10)
        self.assertEqual((driver.state.evictions, sum(driver.evicted)), (15, 15))
        self.assertEqual(driver.decide(alert("p24", namespace="ns24")).rulings[0].verdict, Verdict.DUPLICATE)
        self.assertEqual(driver.decide(alert("p0", namespace="ns0")).rulings[0].verdict, Verdict.NEW)

    def test_least_recently_active_first(self) -> None:
        """
        Episodes and watched groups are evicted together, the one active
        longest ago first: a group last active before every episode goes
        before any of them; one active since then stays.
        """
        driver = Driver(self, max_bytes=10**6)
        driver.decide(alert("old", namespace="quiet"))
        driver.clock.advance(5)
        driver.decide(*(alert(f"p{n}", namespace="busy") for n in range(3)))
        working = driver.state._working
        quiet = next(iter(working.watching))
        # Just over what is kept now: the oldest entry must go, and that is
        # the quiet group's episode (seen at the same time as its group,
        # and episodes of a time go after the group).
        working.max_bytes = driver.state.bytes - 1
        working.fit()
        self.assertNotIn(quiet, working.watching)
        self.assertEqual(driver.state.tracked_episodes, 4)
        working.max_bytes = driver.state.bytes - 1
        working.fit()
        self.assertEqual(driver.state.tracked_episodes, 3)
        self.assertEqual(len(working.watching), 1)


class StormMemberTests(SynchronousTestCase):
    def test_members_wait_within_half(self) -> None:
        """
        A storm's members wait only while storms take at most half of
        C{max_bytes}: the others are counted, never listed, and the closing
        event says so; the state never goes past its bound.
        """
        # Room for the storm's header and a few members, beside episodes.
        max_bytes = 20 * EPISODE_BYTES
        driver = Driver(self, storms=StormSettings(threshold=3, max_members_listed=2), max_bytes=max_bytes)
        events: list[dict[str, Any]] = []
        for n in range(30):
            events += storm_events(driver.decide(alert(f"p{n}")))
            self.assertLessEqual(driver.state.bytes, max_bytes)
            self.assertLessEqual(driver.state._working.storm_bytes, max_bytes // 2)
        waiting = sum(len(m) for m in driver.state._working.members.values())
        self.assertLess(waiting, 30 - 2)
        driver.clock.advance(400)
        while driver.state.active_storms:
            events += storm_events(driver.tick())
            driver.clock.advance(30)
        listed = [m for event in events for m in event["members"]]
        self.assertEqual(len(listed), 2 + waiting)
        self.assertEqual(events[-1]["memberCount"], 30)
        self.assertEqual(events[-1]["unlistedMembers"], 30 - len(listed))
        self.assertEqual(driver.state._working.storm_bytes, 0)

    def test_huge_labels_kept_small(self) -> None:
        """
        Alerts of 0.5 MB of labels each, folded into a storm, keep the
        state small: members keep at most C{max_member_bytes} of labels,
        and the estimate stays far below what the alerts held.
        """
        big = {f"l{n:03d}": "x" * 4096 for n in range(126)}
        driver = Driver(self, max_bytes=8 * 1024 * 1024)
        for n in range(10):
            driver.decide(alert(f"p{n}", **big))
        self.assertEqual(driver.state.active_storms, 1)
        self.assertLess(driver.state.bytes, 10 * (EPISODE_BYTES + 2 * 1024 + 1024))
        for members in driver.state._working.members.values():
            for member in members:
                self.assertEqual((dict(member.labels), member.omitted), ({"pod": member.labels["pod"]}, 126))
