"""
Deduplication, escalation, correlation and storms, driven by a task.Clock:
the pure decider (L{alertgateway.core.decider}) run through
L{alertgateway.testing.DecisionDriver}, which commits every decision at
once; the bounds of what is remembered (eviction, expiry, watched groups)
through L{alertgateway.state.memory.MemoryState}; and the settings read from
the configuration.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.app.settings import decider_settings
from alertgateway.config import parse_config
from alertgateway.core import keys
from alertgateway.core.decider import MAX_COPIES, DeciderSettings, occurrence_key
from alertgateway.core.decision import Decision, Outgoing, Ruling, Verdict
from alertgateway.core.episodes import Episode
from alertgateway.core.escalation import DEFAULT_RULES, EscalationRule, escalate
from alertgateway.core.keys import GROUP_CACHE_SIZE, dedup_key, environment_of, group_id, group_labels
from alertgateway.core.model import Alert, fingerprint
from alertgateway.core.storms import StormSettings
from alertgateway.core.timefmt import rfc3339
from alertgateway.state.memory import MemoryState
from alertgateway.testing import DecisionDriver

# 2027-01-15T08:00:00Z: a clock at 0 would hide times printed as 1970.
START = 1_800_000_000.0
START_TEXT = "2027-01-15T08:00:00.000Z"
SENDER_GROUP = '{}:{alertname="PodCrash"}'

NEW = Verdict.NEW
DUPLICATE = Verdict.DUPLICATE
RESOLVED = Verdict.RESOLVED
ESCALATED = Verdict.ESCALATED
AGGREGATED = Verdict.AGGREGATED


def make_alert(status: str = "firing", *, group: Mapping[str, Any] | None = None, **labels: str) -> Alert:
    """
    A PodCrash alert of pod p-1 in payments, C{labels} added or replaced.
    """
    return labelled({"alertname": "PodCrash", "namespace": "payments", "pod": "p-1", **labels}, status, group)


def labelled(labels: Mapping[str, str], status: str = "firing", group: Mapping[str, Any] | None = None) -> Alert:
    return Alert(
        fingerprint=fingerprint(labels),
        source="alertmanager",
        status=status,
        labels=labels,
        annotations={},
        starts_at="2026-11-26T03:49:49Z",
        ends_at=None,
        generator_url="",
        received_at="2026-11-26T03:50:00.000Z",
        extras={"group": dict(group) if group is not None else {"groupKey": SENDER_GROUP}},
    )


def make_settings(storms: StormSettings | None = None, **overrides: Any) -> DeciderSettings:
    """
    Decider settings with C{overrides}; storms are watched only when
    C{storms} is given, and every duplicate counts toward escalation
    however close to the last (C{min_spacing} 0) unless said otherwise:
    the spacing has tests of its own.
    """
    return DeciderSettings(**{"min_spacing": 0.0, **overrides}, storms=storms)


def make_driver(clock: Clock, storms: StormSettings | None = None, **overrides: Any) -> DecisionDriver:
    return DecisionDriver(clock, make_settings(storms, **overrides))


def make_storms(**overrides: float) -> StormSettings:
    values: dict[str, Any] = {
        "threshold": 3,
        "window": 60,
        "flush_interval": 10,
        "quiet_period": 30,
        "max_members_listed": 2,
        **overrides,
    }
    return StormSettings(**values)


def queued(decision: Decision, write: object | None = None) -> Deferred[None]:
    """
    A queue that takes every decision's forwards at once.
    """
    return succeed(None)


class MemoryDriver:
    """
    A L{MemoryState} at a clock's time whose queue takes everything at once:
    every decision is committed before C{decide} returns.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        clock: Clock,
        settings: DeciderSettings,
        *,
        max_tracked: int = 1000,
        max_groups: int | None = None,
    ) -> None:
        self.case = case
        self.clock = clock
        if max_groups is None:
            self.state = MemoryState(settings, max_tracked=max_tracked)
        else:
            self.state = MemoryState(settings, max_tracked=max_tracked, max_groups=max_groups)

    def decide(self, alerts: Sequence[Alert]) -> Decision:
        return self.case.successResultOf(self.state.decide(alerts, self.clock.seconds(), queued))

    def tick(self) -> Decision:
        return self.case.successResultOf(self.state.tick(self.clock.seconds(), queued))

    def episode(self, key: str) -> Episode | None:
        return self.case.successResultOf(self.state.episode(key))

    def by_fingerprint(self, fingerprint: str) -> Episode | None:
        return self.case.successResultOf(self.state.by_fingerprint(fingerprint))

    def fingerprints(self) -> list[str]:
        """
        The fingerprints of the episodes kept, by key.
        """
        return [e.fingerprint for e in self.case.successResultOf(self.state.page(None, None, 100_000))]

    def storms(self) -> int:
        return self.state.active_storms


class Deciding(Protocol):
    def decide(self, alerts: Sequence[Alert]) -> Decision: ...


def decide_one(driver: Deciding, alert: Alert) -> tuple[Ruling, tuple[Outgoing, ...]]:
    decision = driver.decide([alert])
    (ruling,) = decision.rulings
    return ruling, decision.outgoing


def results(driver: Deciding, *alerts: Alert) -> list[Verdict]:
    return [r.verdict for r in driver.decide(list(alerts)).rulings]


def started_clock() -> Clock:
    clock = Clock()
    clock.advance(START)
    return clock


def storm_bodies(outgoing: Sequence[Outgoing]) -> list[Mapping[str, Any]]:
    return [o.body for o in outgoing if o.body.get("type") == "storm"]


def listed(events: Sequence[Mapping[str, Any]]) -> list[str]:
    return [member["fingerprint"] for event in events for member in event["members"]]


def storm_groups(driver: DecisionDriver) -> list[str]:
    return list(driver.table.storm_groups())


def config_settings(extra: str) -> DeciderSettings:
    return decider_settings(parse_config(extra, environ={}))


class KeyTests(SynchronousTestCase):
    """
    Dedup keys, group ids, group labels and environments of single alerts.
    """

    def test_dedup_key_is_fingerprint_without_ignored_labels(self) -> None:
        """
        With no ignored label present the dedup key is the fingerprint.
        """
        alert = make_alert()
        self.assertEqual(dedup_key(alert, ["replica"]), alert.fingerprint)
        self.assertEqual(dedup_key(alert, []), alert.fingerprint)

    def test_dedup_key_ignores_replica_labels(self) -> None:
        """
        Alerts that differ only in an ignored label (an HA Prometheus pair's
        replica) share one dedup key: the fingerprint of the other labels.
        """
        a = make_alert(replica="a")
        b = make_alert(replica="b")
        self.assertNotEqual(a.fingerprint, b.fingerprint)
        self.assertEqual(dedup_key(a, ["replica"]), dedup_key(b, ["replica"]))
        self.assertEqual(dedup_key(a, ["replica"]), make_alert().fingerprint)

    def test_keys_derived_once(self) -> None:
        """
        An alert's group id and dedup key are computed once per setting
        however often a decision asks (the keys it holds, then its ruling),
        and what is remembered is no part of the alert's value.
        """
        alert = make_alert(replica="a")
        by = ("alertname", "namespace")
        group, key = group_id(alert, by, False), dedup_key(alert, ("replica",))
        self.assertEqual(len(alert.derived), 2)
        self.assertIs(group_id(alert, by, False), group)
        self.assertIs(dedup_key(alert, ("replica",)), key)
        self.assertNotEqual(group_id(alert, ("alertname",), False), group)
        self.assertEqual(dedup_key(alert, ("cluster",)), alert.fingerprint)
        self.assertEqual(len(alert.derived), 4)
        self.assertEqual(alert, make_alert(replica="a"))

    def test_group_id_from_labels(self) -> None:
        """
        The group id follows the values of the group_by labels, an absent
        label counting as empty; other labels do not matter.
        """
        by = ["alertname", "namespace"]
        self.assertEqual(group_id(make_alert(pod="p-1"), by, False), group_id(make_alert(pod="p-2"), by, False))
        self.assertNotEqual(group_id(make_alert(), by, False), group_id(make_alert(namespace="other"), by, False))
        with_cluster = [*by, "cluster"]
        self.assertEqual(
            group_id(make_alert(), with_cluster, False), group_id(make_alert(pod="p-2"), with_cluster, False)
        )
        self.assertNotEqual(
            group_id(make_alert(), with_cluster, False), group_id(make_alert(cluster="eu"), with_cluster, False)
        )
        self.assertNotEqual(group_id(make_alert(), by, False), group_id(make_alert(), ["alertname"], False))
        self.assertRegex(group_id(make_alert(), by, False), r"^[0-9a-f]{16}$")

    def test_group_id_remembered_across_alerts(self) -> None:
        """
        A repeat of an alert (a new object with the same labels) gets the
        group id computed for the first from memory, the same as computed
        afresh; the memory is bounded, and what it forgets is computed
        again to the same id.
        """
        by = ("alertname", "namespace")
        first = group_id(make_alert(), by, False)
        self.assertIs(group_id(make_alert(), by, False), first)
        for n in range(GROUP_CACHE_SIZE):
            group_id(make_alert(pod=f"p-{n}"), by, False)
        self.assertLessEqual(len(keys._by_labels), GROUP_CACHE_SIZE)
        again = group_id(make_alert(), by, False)
        self.assertEqual(again, first)

    def test_group_id_from_sender(self) -> None:
        """
        With use_sender_group, alerts the sender grouped together share a
        group whatever their labels; one without a groupKey falls back to
        its labels.
        """
        other_group = {"groupKey": '{}:{alertname="Other"}'}
        self.assertEqual(
            group_id(make_alert(), ["alertname"], True), group_id(make_alert(namespace="x"), ["pod"], True)
        )
        self.assertNotEqual(
            group_id(make_alert(), ["pod"], True), group_id(make_alert(group=other_group), ["pod"], True)
        )
        # Not the same seed as labels that happen to spell the group key.
        self.assertNotEqual(group_id(make_alert(), ["alertname"], True), group_id(make_alert(), ["alertname"], False))
        self.assertEqual(
            group_id(make_alert(group={}), ["alertname", "namespace"], True),
            group_id(make_alert(), ["alertname", "namespace"], False),
        )

    def test_group_labels(self) -> None:
        """
        A group is named by its group_by labels (those the alert has), or by
        the sender's groupLabels when it is the sender's group.
        """
        self.assertEqual(
            group_labels(make_alert(), ["alertname", "namespace", "cluster"]),
            {"alertname": "PodCrash", "namespace": "payments"},
        )
        sender = make_alert(group={"groupKey": "k", "groupLabels": {"alertname": "PodCrash"}})
        self.assertEqual(group_labels(sender, ["namespace"], True), {"alertname": "PodCrash"})
        self.assertEqual(group_labels(sender, ["namespace"], False), {"namespace": "payments"})
        self.assertEqual(group_labels(make_alert(), ["namespace"], True), {"namespace": "payments"})

    def test_environment_detection_order(self) -> None:
        """
        The first present environment label wins (in the configured order,
        lower-cased, an empty value not counting), then the first
        environment whose namespace patterns match, then the default.
        """
        patterns = {"production": ["prod-*", "payments"], "staging": ["stage-*", "prod-eu"]}
        labels = ["environment", "env"]
        self.assertEqual(environment_of(make_alert(env="Staging"), labels, patterns, "dev"), "staging")
        self.assertEqual(environment_of(make_alert(env="qa", environment="uat"), labels, patterns, "dev"), "uat")
        self.assertEqual(environment_of(make_alert(env="qa", environment=""), labels, patterns, "dev"), "qa")
        self.assertEqual(environment_of(make_alert(env="qa"), ["environment"], patterns, "dev"), "production")
        self.assertEqual(environment_of(make_alert(namespace="prod-eu"), labels, patterns, "dev"), "production")
        self.assertEqual(environment_of(make_alert(namespace="stage-1"), labels, patterns, "dev"), "staging")
        self.assertEqual(environment_of(make_alert(namespace="misc"), labels, patterns, "dev"), "dev")
        self.assertEqual(environment_of(make_alert(namespace=""), labels, {"x": ["*"]}, "dev"), "dev")


class DedupTests(SynchronousTestCase):
    """
    One forward per episode: new, duplicates within the sliding window,
    resolved, and the bounds of what is remembered.
    """

    def setUp(self) -> None:
        self.clock = started_clock()
        self.driver = make_driver(self.clock)

    def test_first_firing_is_new_and_forwarded(self) -> None:
        """
        The first firing occurrence is new and forwarded once: the alert as
        received, with its dedup key, group, environment, decision, count and
        first and last sighting, under the occurrence's idempotency key in
        this episode and ordered by its dedup key.
        """
        alert = make_alert()
        ruling, outgoing = decide_one(self.driver, alert)
        self.assertEqual(ruling.verdict, NEW)
        [sent] = outgoing
        self.assertEqual(sent.key, alert.fingerprint)
        self.assertEqual(sent.idempotency_key, occurrence_key(alert, self.clock.seconds()))
        self.assertEqual(
            dict(sent.body),
            {
                **alert.to_json(),
                "dedupKey": alert.fingerprint,
                "groupId": ruling.group_id,
                "environment": "production",
                "decision": "new",
                "duplicateCount": 0,
                "firstSeen": START_TEXT,
                "lastSeen": START_TEXT,
            },
        )

    def test_verdict_json(self) -> None:
        """
        A ruling answers with the alert's fingerprint and status, the
        decision, its dedup key, count and group.
        """
        alert = make_alert()
        self.driver.decide([alert])
        ruling, _ = decide_one(self.driver, alert)
        self.assertEqual(
            ruling.to_json(),
            {
                "fingerprint": alert.fingerprint,
                "dedupKey": alert.fingerprint,
                "status": "duplicate",
                "alertStatus": "firing",
                "duplicateCount": 1,
                "groupId": ruling.group_id,
            },
        )

    def test_repeat_within_window_is_duplicate(self) -> None:
        """
        The same fingerprint firing again within the window is a duplicate:
        not forwarded, counted, its last sighting moved and its first kept.
        """
        self.driver.decide([make_alert()])
        self.clock.advance(120)
        ruling, outgoing = decide_one(self.driver, make_alert())
        self.assertEqual((ruling.verdict, ruling.duplicate_count, outgoing), (DUPLICATE, 1, ()))
        episode = self.driver.table.episodes.get(make_alert().fingerprint)
        assert episode is not None
        self.assertEqual((episode.first_seen, episode.last_seen, episode.duplicates), (START, START + 120, 1))

    def test_window_boundaries(self) -> None:
        """
        A sighting just before or exactly one window after the last one is a
        duplicate; just after, it is new.
        """
        for advance, expected in ((299.999, DUPLICATE), (300.0, DUPLICATE), (300.001, NEW)):
            with self.subTest(advance=advance):
                clock = started_clock()
                driver = make_driver(clock)
                driver.decide([make_alert()])
                clock.advance(advance)
                self.assertEqual(results(driver, make_alert()), [expected])

    def test_window_slides_from_last_sighting(self) -> None:
        """
        The window is measured from the last sighting: sightings every 4
        minutes stay duplicates for longer than 5 minutes in all, and the
        lapse counts from the last of them.
        """
        self.driver.decide([make_alert()])
        for _ in range(3):
            self.clock.advance(240)
            self.assertEqual(results(self.driver, make_alert()), [DUPLICATE])
        self.clock.advance(300)
        self.assertEqual(results(self.driver, make_alert()), [DUPLICATE])
        self.clock.advance(300.001)
        ruling, outgoing = decide_one(self.driver, make_alert())
        self.assertEqual((ruling.verdict, ruling.duplicate_count, len(outgoing)), (NEW, 0, 1))
        self.assertEqual(outgoing[0].body["firstSeen"], rfc3339(self.clock.seconds()))

    def test_resolved_then_firing(self) -> None:
        """
        A resolved alert is forwarded once and closes the episode; a repeat
        of it is a duplicate; a later firing is new again, at once.
        """
        self.driver.decide([make_alert()])
        ruling, outgoing = decide_one(self.driver, make_alert("resolved"))
        self.assertEqual(ruling.verdict, RESOLVED)
        self.assertEqual([(o.body["decision"], o.body["status"]) for o in outgoing], [("resolved", "resolved")])
        self.assertEqual(outgoing[0].idempotency_key, occurrence_key(make_alert("resolved"), self.clock.seconds()))
        ruling, outgoing = decide_one(self.driver, make_alert("resolved"))
        self.assertEqual((ruling.verdict, ruling.duplicate_count, outgoing), (DUPLICATE, 1, ()))
        ruling, outgoing = decide_one(self.driver, make_alert())
        self.assertEqual((ruling.verdict, ruling.duplicate_count, len(outgoing)), (NEW, 0, 1))

    def test_repeated_resolved_slides(self) -> None:
        """
        A closed episode is remembered while resolved repeats keep coming
        within the window: each is a duplicate.
        """
        self.driver.decide([make_alert(), make_alert("resolved")])
        for _ in range(3):
            self.clock.advance(200)
            self.assertEqual(results(self.driver, make_alert("resolved")), [DUPLICATE])

    def test_unknown_resolved_forwarded(self) -> None:
        """
        A resolved alert the gateway does not know (never seen, or its
        window lapsed) is forwarded; a repeat of it is then a duplicate.
        """
        ruling, outgoing = decide_one(self.driver, make_alert("resolved"))
        self.assertEqual((ruling.verdict, [o.body["decision"] for o in outgoing]), (RESOLVED, ["resolved"]))
        self.assertEqual(results(self.driver, make_alert("resolved")), [DUPLICATE])
        self.driver.decide([make_alert(pod="late")])
        self.clock.advance(300.001)
        self.assertEqual(results(self.driver, make_alert("resolved", pod="late")), [RESOLVED])

    def test_batch_decided_in_order(self) -> None:
        """
        Within one batch, the second occurrence of a fingerprint is already
        a duplicate of the first, and a resolved one after it closes it.
        """
        self.assertEqual(
            results(self.driver, make_alert(), make_alert(), make_alert("resolved"), make_alert()),
            [NEW, DUPLICATE, RESOLVED, NEW],
        )

    def test_ignore_labels_merge_replicas(self) -> None:
        """
        The same alert from two Prometheus replicas is one alert: one dedup
        key, carried with each fingerprint, and one ordering key so that the
        resolution cannot overtake a firing.  The episode resolves when the
        last replica does, not when the first does while the other fires.
        """
        driver = make_driver(self.clock, ignore_labels=("replica",))
        a, b = make_alert(replica="a"), make_alert(replica="b")
        decision = driver.decide([a, b, make_alert("resolved", replica="b")])
        self.assertEqual([r.verdict for r in decision.rulings], [NEW, DUPLICATE, DUPLICATE])
        last = driver.decide([make_alert("resolved", replica="a")])
        self.assertEqual([r.verdict for r in last.rulings], [RESOLVED])
        key = make_alert().fingerprint
        self.assertEqual({r.dedup_key for r in (*decision.rulings, *last.rulings)}, {key})
        outgoing = (*decision.outgoing, *last.outgoing)
        self.assertEqual([o.key for o in outgoing], [key, key])
        self.assertEqual(
            [(o.body["fingerprint"], o.body["dedupKey"]) for o in outgoing],
            [(a.fingerprint, key), (make_alert("resolved", replica="a").fingerprint, key)],
        )

    def test_ha_copy_that_stopped_does_not_hold_resolution(self) -> None:
        """
        A replica that stopped sending (not seen for a window) does not keep
        the episode open: the other's resolution is forwarded.
        """
        driver = make_driver(self.clock, ignore_labels=("replica",), window=300.0)
        driver.decide([make_alert(replica="a"), make_alert(replica="b")])
        for _ in range(4):
            self.clock.advance(100)
            driver.decide([make_alert(replica="a")])
        decision = driver.decide([make_alert("resolved", replica="a")])
        self.assertEqual([r.verdict for r in decision.rulings], [RESOLVED])

    def test_copies_followed_bounded(self) -> None:
        """
        A sender varying an ignored label at will does not grow the
        episode: the copies seen longest ago are forgotten first.
        """
        driver = make_driver(self.clock, ignore_labels=("replica",))
        for index in range(3 * MAX_COPIES):
            driver.decide([make_alert(replica=str(index))])
        episode = driver.table.episodes[make_alert().fingerprint]
        self.assertEqual(len(episode.copies), MAX_COPIES)
        self.assertEqual(episode.copies[-1][0], make_alert(replica=str(3 * MAX_COPIES - 1)).fingerprint)

    def test_dedup_disabled_forwards_everything(self) -> None:
        """
        With dedup.enabled false every firing alert is new and every resolved
        one forwarded, repeats included, and nothing escalates however often
        it repeats.
        """
        driver = make_driver(self.clock, dedup=False)
        alerts = [make_alert()] * 7 + [make_alert("resolved")] * 2
        decision = driver.decide(alerts)
        self.assertEqual([r.verdict for r in decision.rulings], [NEW] * 7 + [RESOLVED] * 2)
        self.assertEqual([o.body["decision"] for o in decision.outgoing], ["new"] * 7 + ["resolved"] * 2)
        self.assertEqual({o.body["groupId"] for o in decision.outgoing}, {decision.rulings[0].group_id})

    def test_eviction_at_max_tracked(self) -> None:
        """
        At max_tracked nothing is evicted; one more episode evicts the least
        recently seen (a sighting refreshes an episode), which is then new
        again when it comes back.
        """
        driver = MemoryDriver(self, self.clock, make_settings(), max_tracked=3)
        state = driver.state
        driver.decide([make_alert(pod="a"), make_alert(pod="b"), make_alert(pod="c")])
        self.assertEqual((state.tracked_episodes, state.evictions), (3, 0))
        self.assertEqual(results(driver, make_alert(pod="a")), [DUPLICATE])
        self.assertEqual(results(driver, make_alert(pod="d")), [NEW])
        self.assertEqual((state.tracked_episodes, state.evictions), (3, 1))
        self.assertIsNone(driver.by_fingerprint(make_alert(pod="b").fingerprint))
        self.assertEqual(results(driver, make_alert(pod="a"), make_alert(pod="b")), [DUPLICATE, NEW])
        self.assertEqual(state.evictions, 2)
        self.assertIsNone(driver.episode(make_alert(pod="c").fingerprint))

    def test_expiry_by_tick(self) -> None:
        """
        tick() forgets episodes whose window lapsed (not one last seen
        exactly one window ago), firing or resolved; without storms it
        forwards nothing.
        """
        driver = MemoryDriver(self, self.clock, make_settings())
        driver.decide([make_alert(pod="a")])
        driver.decide([make_alert(pod="b"), make_alert("resolved", pod="b")])
        self.clock.advance(100)
        driver.decide([make_alert(pod="c")])
        self.clock.advance(200)
        self.assertEqual(driver.tick().outgoing, ())
        self.assertEqual(driver.state.tracked_episodes, 3)
        self.clock.advance(0.001)
        self.assertEqual(driver.tick().outgoing, ())
        self.assertEqual(driver.fingerprints(), [make_alert(pod="c").fingerprint])
        self.clock.advance(100)
        driver.tick()
        self.assertEqual(driver.state.tracked_episodes, 0)
        self.assertEqual(results(driver, make_alert(pod="a")), [NEW])


class MemoryStateTests(SynchronousTestCase):
    """
    The in-memory state's episodes, through its public face: lookup by key
    and by fingerprint, order of expiry, and the fingerprint index.
    """

    def setUp(self) -> None:
        self.clock = started_clock()

    def test_lookup_and_order(self) -> None:
        """
        Episodes are found by key and by fingerprint, and kept least
        recently seen first: a sighting moves an episode behind one seen
        after it was first seen, so that expiry, which stops at the first
        episode still within the window, forgets the other one.
        """
        driver = MemoryDriver(self, self.clock, make_settings())
        a, b = make_alert(pod="a"), make_alert(pod="b")
        driver.decide([a])
        self.clock.advance(1)
        driver.decide([b])
        self.clock.advance(1)
        driver.decide([a])
        self.assertEqual(driver.by_fingerprint(b.fingerprint), driver.episode(b.fingerprint))
        self.assertIsNotNone(driver.by_fingerprint(b.fingerprint))
        self.assertIsNone(driver.by_fingerprint("nope"))
        self.clock.advance(299.5)
        driver.tick()
        self.assertEqual(driver.fingerprints(), [a.fingerprint])
        self.assertIsNone(driver.by_fingerprint(b.fingerprint))

    def test_fingerprint_index_bounded(self) -> None:
        """
        When a key's episode is replaced by one first seen under another
        fingerprint (the other replica), the old fingerprint no longer finds
        it and the index does not grow past what is tracked.
        """
        driver = MemoryDriver(self, self.clock, make_settings(ignore_labels=("replica",)), max_tracked=2)
        alerts = [make_alert(pod=f"k{round_ % 2}", replica=f"f{round_}") for round_ in range(50)]
        for alert in alerts:
            # Past the window: each is a new episode of its key.
            self.clock.advance(301)
            self.assertEqual(results(driver, alert), [NEW])
        self.assertIsNone(driver.by_fingerprint(alerts[0].fingerprint))
        self.assertEqual(
            driver.by_fingerprint(alerts[49].fingerprint), driver.episode(make_alert(pod="k1").fingerprint)
        )
        found = [driver.by_fingerprint(alert.fingerprint) for alert in alerts]
        self.assertEqual(
            [(e.fingerprint, e.key) for e in found if e is not None],
            [(a.fingerprint, dedup_key(a, ["replica"])) for a in alerts[-2:]],
        )
        # What would grow without bound: one entry per fingerprint ever seen.
        self.assertLessEqual(len(driver.state._by_fingerprint), 2)

    def test_eviction_keeps_other_fingerprint(self) -> None:
        """
        Evicting an episode leaves the fingerprint entry of an episode that
        replaced it under another key untouched (two keys of one
        fingerprint: a sender giving its own fingerprints).
        """
        driver = MemoryDriver(self, self.clock, make_settings(ignore_labels=("replica",)), max_tracked=1)
        shared = make_alert(pod="shared").fingerprint
        first = attrs.evolve(make_alert(pod="k1", replica="r"), fingerprint=shared)
        second = attrs.evolve(make_alert(pod="k2", replica="r"), fingerprint=shared)
        self.assertEqual(results(driver, first), [NEW])
        self.assertEqual(results(driver, second), [NEW])
        found = driver.by_fingerprint(shared)
        self.assertIsNotNone(found)
        self.assertEqual(found, driver.episode(make_alert(pod="k2").fingerprint))
        self.assertEqual(driver.state.evictions, 1)


# (level, total, within, window) of each environment in the plan.
PLAN_RULES = {
    "production": ("immediate", 5, 3, 300.0),
    "staging": ("normal", 8, 5, 600.0),
    "development": ("low", 10, 8, 900.0),
}


class SpacingTests(SynchronousTestCase):
    """
    escalation.min_spacing: copies of one notification close together (an
    HA pair of senders) count once toward escalation.
    """

    def setUp(self) -> None:
        self.clock = started_clock()

    def test_ha_pair_not_escalated(self) -> None:
        """
        Two copies of one alert a second apart, three times within five
        minutes (two Alertmanagers): two counted duplicates, not the three
        the production rule asks for.
        """
        driver = make_driver(self.clock, min_spacing=30.0)
        verdicts = []
        for round in range(3):
            if round:
                self.clock.advance(99)
            verdicts += results(driver, make_alert())
            self.clock.advance(1)
            verdicts += results(driver, make_alert())
        self.assertNotIn(ESCALATED, verdicts)
        episode = driver.table.episodes[make_alert().fingerprint]
        self.assertEqual((episode.duplicates, episode.counted), (5, 2))

    def test_one_sender_every_40_seconds(self) -> None:
        """
        The same alert from one sender every 40 s counts every time, and
        escalates by the rules (its third duplicate within five minutes).
        """
        driver = make_driver(self.clock, min_spacing=30.0)
        verdicts = results(driver, make_alert())
        for _ in range(4):
            self.clock.advance(40)
            verdicts += results(driver, make_alert())
        self.assertEqual(verdicts, [NEW, DUPLICATE, DUPLICATE, ESCALATED, DUPLICATE])

    def test_spacing_from_the_last_counted(self) -> None:
        """
        Spacing is measured from the last counted sighting, not the last
        one: a copy every 10 s counts every third.
        """
        driver = make_driver(self.clock, min_spacing=30.0)
        results(driver, make_alert())
        for _ in range(9):
            self.clock.advance(10)
            results(driver, make_alert())
        episode = driver.table.episodes[make_alert().fingerprint]
        self.assertEqual((episode.duplicates, episode.counted), (9, 3))


class EscalationTests(SynchronousTestCase):
    """
    Repeat offenders escalate once per episode, by their environment's rule.
    """

    def setUp(self) -> None:
        self.clock = started_clock()

    def sightings(
        self, driver: DecisionDriver, times: list[float], **labels: str
    ) -> list[tuple[Verdict, tuple[Outgoing, ...]]]:
        """
        Decide one firing alert at each of C{times} (seconds after now).
        """
        start = self.clock.seconds()
        seen = []
        for at in times:
            self.clock.advance(start + at - self.clock.seconds())
            ruling, outgoing = decide_one(driver, labelled({**make_alert().labels, **labels}))
            seen.append((ruling.verdict, outgoing))
        return seen

    def test_within_window_thresholds(self) -> None:
        """
        In each environment the duplicate that makes "within" of them within
        its window escalates at its level, the last exactly one window after
        the first counting; one fewer, or the last a moment later, does not.
        """
        for environment, (level, _total, within, window) in PLAN_RULES.items():
            for last, escalates in ((window, True), (window + 0.001, False)):
                with self.subTest(environment=environment, last=last):
                    driver = make_driver(self.clock, window=3600.0)
                    times = [0.0, 1.0] + [1.0 + n for n in range(1, within - 1)] + [1.0 + last]
                    seen = self.sightings(driver, times, environment=environment, pod=f"{environment}{last}")
                    self.assertEqual([r for r, _ in seen[:-1]], [NEW] + [DUPLICATE] * (within - 1))
                    result, outgoing = seen[-1]
                    self.assertEqual(result, ESCALATED if escalates else DUPLICATE)
                    if escalates:
                        [sent] = outgoing
                        self.assertEqual(sent.body["escalation"]["level"], level)
                        self.assertEqual(sent.body["escalation"]["duplicateCount"], within)

    def test_total_thresholds(self) -> None:
        """
        In each environment, duplicates spread too far apart to be "within"
        escalate at the total-th, not before.
        """
        for environment, (level, total, within, window) in PLAN_RULES.items():
            with self.subTest(environment=environment):
                driver = make_driver(self.clock, window=3600.0)
                spacing = window / (within - 1) + 1
                seen = self.sightings(
                    driver, [n * spacing for n in range(total + 2)], environment=environment, pod=environment
                )
                self.assertEqual([r for r, _ in seen], [NEW] + [DUPLICATE] * (total - 1) + [ESCALATED, DUPLICATE])
                escalation = seen[total][1][0].body["escalation"]
                self.assertEqual(
                    escalation,
                    {
                        "level": level,
                        "reason": f"{total} duplicates in total",
                        "duplicateCount": total,
                        "window": f"{int(window // 60)}m",
                        "environment": environment,
                    },
                )

    def test_escalation_forwarded(self) -> None:
        """
        The escalation forwarded is the alert, decided "escalated", with
        level, reason, count, window and environment, under an idempotency
        key of its own, ordered with the alert.
        """
        driver = make_driver(self.clock)
        alert = make_alert(environment="production")
        driver.decide([alert] * 3)
        ruling, outgoing = decide_one(driver, alert)
        self.assertEqual((ruling.verdict, ruling.escalation, ruling.duplicate_count), (ESCALATED, "immediate", 3))
        [sent] = outgoing
        self.assertEqual(sent.key, alert.fingerprint)
        self.assertEqual((sent.body["decision"], sent.body["duplicateCount"]), ("escalated", 3))
        self.assertEqual(
            sent.body["escalation"],
            {
                "level": "immediate",
                "reason": "3 duplicates within 5m",
                "duplicateCount": 3,
                "window": "5m",
                "environment": "production",
            },
        )
        self.assertEqual(sent.idempotency_key, f"{occurrence_key(alert, self.clock.seconds())}-escalation")

    def test_once_per_episode(self) -> None:
        """
        An episode escalates once, however many duplicates follow; the
        rulings keep saying its level.
        """
        driver = make_driver(self.clock)
        decision = driver.decide([make_alert()] * 30)
        rulings = decision.rulings
        self.assertEqual([r.verdict for r in rulings], [NEW, DUPLICATE, DUPLICATE, ESCALATED] + [DUPLICATE] * 26)
        self.assertEqual([o.body["decision"] for o in decision.outgoing], ["new", "escalated"])
        self.assertEqual(rulings[-1].escalation, "immediate")

    def test_again_in_new_episode(self) -> None:
        """
        A new episode, after a resolution or after the window lapsed,
        escalates again when it crosses the rule again, each escalation
        keyed by the occurrence it escalates.
        """
        driver = make_driver(self.clock)
        first = make_alert()
        again = attrs.evolve(first, starts_at="2026-11-26T05:00:00Z")
        sent = []
        expected = []
        for alert, end in ((first, "resolved"), (again, "lapse"), (again, "")):
            expected.append(f"{occurrence_key(alert, self.clock.seconds())}-escalation")
            decision = driver.decide([alert] * 4)
            self.assertEqual([r.verdict for r in decision.rulings], [NEW, DUPLICATE, DUPLICATE, ESCALATED])
            sent.append(decision.outgoing[-1].idempotency_key)
            if end == "resolved":
                driver.decide([make_alert("resolved")])
            elif end == "lapse":
                self.clock.advance(301)
        self.assertEqual(sent, expected)
        # The same occurrence escalated in two episodes is two things.
        self.assertEqual(len(set(sent)), 3)

    def test_environment_chooses_rule(self) -> None:
        """
        The rule is the environment's as detected: label first, then
        namespace pattern, then the default environment; an environment
        without a rule uses the default environment's.
        """
        driver = make_driver(
            self.clock, environment_namespaces={"staging": ["stage-*"]}, default_environment="development"
        )
        cases = [
            ({"environment": "staging", "env": "production"}, "staging", "normal"),
            ({"env": "Production", "namespace": "stage-1"}, "production", "immediate"),
            ({"namespace": "stage-1"}, "staging", "normal"),
            ({"namespace": "other"}, "development", "low"),
            ({"env": "qa"}, "qa", "low"),
        ]
        for labels, environment, level in cases:
            with self.subTest(labels=labels):
                decision = driver.decide([labelled({**make_alert(pod=str(labels)).labels, **labels})] * 11)
                self.assertEqual({r.environment for r in decision.rulings}, {environment})
                self.assertEqual(decision.outgoing[-1].body["escalation"]["level"], level)
                self.assertEqual(decision.outgoing[0].body["environment"], environment)

    def test_disabled(self) -> None:
        """
        With escalation.enabled false duplicates are never escalated, and
        their sightings are not kept.
        """
        driver = make_driver(self.clock, escalate=False)
        decision = driver.decide([make_alert()] * 20)
        self.assertEqual([r.verdict for r in decision.rulings], [NEW] + [DUPLICATE] * 19)
        self.assertEqual(len(decision.outgoing), 1)
        episode = driver.table.episodes.get(make_alert().fingerprint)
        assert episode is not None
        self.assertEqual((episode.duplicates, len(episode.recent)), (19, 0))

    def test_sightings_bounded(self) -> None:
        """
        An episode keeps no more sightings than its rule needs, and none
        once escalated, however long it is re-sent within the window.
        """
        driver = make_driver(self.clock)
        key = make_alert(environment="development").fingerprint
        driver.decide([make_alert(environment="development")])
        for _ in range(8):
            self.clock.advance(150)
            driver.decide([make_alert(environment="development")])
        episode = driver.table.episodes.get(key)
        assert episode is not None
        self.assertLessEqual(len(episode.recent), 7)
        driver.decide([make_alert(environment="development")] * 3)
        episode = driver.table.episodes.get(key)
        assert episode is not None
        self.assertEqual((episode.escalation, len(episode.recent)), ("low", 0))

    def test_rule_boundaries(self) -> None:
        """
        escalate() fires exactly at the threshold, not one before, counts a
        duplicate exactly one window old, and drops older ones from the
        recent times it gives back; an episode already escalated is not
        judged again (the decider counts its duplicates and nothing more).
        """
        rule = EscalationRule("immediate", total=5, within=3, window=300)
        recent: tuple[float, ...] = ()
        duplicates = 0
        for t in (0.0, 100.0):
            duplicates += 1
            recent, escalation = escalate(rule, (*recent, t), duplicates, "production", t)
            self.assertIsNone(escalation)
        duplicates += 1
        recent, escalation = escalate(rule, (*recent, 300.001), duplicates, "production", 300.001)
        self.assertIsNone(escalation)
        self.assertEqual(recent, (100.0, 300.001))
        duplicates += 1
        recent, escalation = escalate(rule, (*recent, 400.0), duplicates, "production", 400.0)
        assert escalation is not None
        self.assertEqual(escalation.reason, "3 duplicates within 5m")
        self.assertEqual(recent, (100.0, 300.001, 400.0))
        # Escalated: the decider does not ask again, however many follow
        # within the rule's window.
        clock = started_clock()
        driver = make_driver(clock, rules={"production": rule})
        alert = make_alert()
        driver.table.episodes[alert.fingerprint] = Episode(
            alert.fingerprint,
            alert.fingerprint,
            "firing",
            START - 100,
            START - 1,
            group_id(alert, ("alertname", "namespace"), False),
            "production",
            "alertmanager",
            duplicates=4,
            escalation="immediate",
        )
        decision = driver.decide([alert] * 3)
        self.assertEqual([r.verdict for r in decision.rulings], [DUPLICATE] * 3)
        self.assertEqual(decision.outgoing, ())
        episode = driver.table.episodes[alert.fingerprint]
        self.assertEqual((episode.duplicates, episode.recent, episode.escalation), (7, (), "immediate"))

    def test_window_in_seconds(self) -> None:
        """
        A window that is not whole minutes is said in seconds.
        """
        rule = EscalationRule("page", total=9, within=1, window=90)
        _, escalation = escalate(rule, (0.0,), 1, "qa", 0.0)
        assert escalation is not None
        self.assertEqual((escalation.window, escalation.reason), ("90s", "1 duplicates within 90s"))

    def test_default_rules_are_the_plans(self) -> None:
        """
        The default rules are the plan's numbers.
        """
        self.assertEqual({k: (r.level, r.total, r.within, r.window) for k, r in DEFAULT_RULES.items()}, PLAN_RULES)


class SettingsTests(SynchronousTestCase):
    """
    decider_settings: the configuration's dedup, escalation, correlation and
    storm sections as the decider's settings.
    """

    def rule(self, settings: DeciderSettings, name: str) -> tuple[str, int, int, float]:
        rule = settings.rules[name]
        return (rule.level, rule.total, rule.within, rule.window)

    def test_defaults(self) -> None:
        """
        Without the new sections the decider deduplicates over 5 minutes,
        escalates by the plan's rules, groups by alertname and namespace and
        watches storms of more than 10 in a minute.
        """
        config = parse_config("", environ={})
        settings = decider_settings(config)
        self.assertEqual(
            attrs.evolve(settings, rules={}),
            DeciderSettings(
                dedup=True,
                escalate=True,
                window=300.0,
                ignore_labels=(),
                group_by=("alertname", "namespace"),
                use_sender_group=False,
                environment_labels=("environment", "env"),
                environment_namespaces={},
                default_environment="production",
                rules={},
                storms=StormSettings(
                    threshold=10, window=60.0, flush_interval=30.0, quiet_period=300.0, max_members_listed=100
                ),
            ),
        )
        self.assertEqual({name: self.rule(settings, name) for name in settings.rules}, PLAN_RULES)
        storms = settings.storms
        assert storms is not None
        self.assertEqual(
            (storms.threshold, storms.window, storms.flush_interval, storms.quiet_period, storms.max_members_listed),
            (10, 60.0, 30.0, 300.0, 100),
        )

    def test_sections_read(self) -> None:
        """
        Every key of dedup, escalation, correlation and storm reaches the
        decider; a disabled storm section turns storms off.
        """
        config = parse_config(
            """
dedup: {enabled: false, window: 2m, ignore_labels: [replica]}
escalation:
  enabled: false
  environment_labels: [tier]
  default_environment: staging
  environments: {staging: {namespaces: ["stage-*"]}}
correlation: {group_by: [alertname], use_sender_group: true}
storm: {threshold: 4, window: 30s, flush_interval: 5s, quiet_period: 1m, max_members_listed: 7}
""",
            environ={},
        )
        settings = decider_settings(config)
        self.assertEqual(
            (settings.dedup, settings.window, settings.ignore_labels, settings.escalate),
            (False, 120.0, ("replica",), False),
        )
        self.assertEqual((settings.environment_labels, settings.default_environment), (("tier",), "staging"))
        self.assertEqual(settings.environment_namespaces, {"staging": ("stage-*",)})
        self.assertEqual((settings.group_by, settings.use_sender_group), (("alertname",), True))
        storms = settings.storms
        assert storms is not None
        self.assertEqual(
            (storms.threshold, storms.window, storms.flush_interval, storms.quiet_period, storms.max_members_listed),
            (4, 30.0, 5.0, 60.0, 7),
        )
        self.assertIsNone(config_settings("storm: {enabled: false}").storms)

    def test_overrides_field_by_field(self) -> None:
        """
        A configured environment overrides only the fields it gives; the
        others keep the plan's values.
        """
        settings = config_settings(
            """
escalation:
  environments:
    production: {total: 7}
    staging: {level: urgent, window: 1m}
    development: {within: 2}
"""
        )
        self.assertEqual(self.rule(settings, "production"), ("immediate", 7, 3, 300.0))
        self.assertEqual(self.rule(settings, "staging"), ("urgent", 8, 5, 60.0))
        self.assertEqual(self.rule(settings, "development"), ("low", 10, 2, 900.0))

    def test_added_environment_starts_from_default(self) -> None:
        """
        An added environment starts from the default environment's rule as
        configured, wherever it stands in the file, and gives its namespace
        patterns.
        """
        settings = config_settings(
            """
escalation:
  default_environment: staging
  environments:
    qa: {namespaces: [qa-*], total: 3}
    staging: {within: 2}
"""
        )
        self.assertEqual(self.rule(settings, "qa"), ("normal", 3, 2, 600.0))
        self.assertEqual(settings.environment_namespaces, {"qa": ("qa-*",)})
        plain = config_settings("escalation: {environments: {qa: {level: page}}}")
        self.assertEqual(self.rule(plain, "qa"), ("page", 5, 3, 300.0))
        empty = config_settings("escalation: {environments: {qa: }}")
        self.assertEqual(self.rule(empty, "qa"), ("immediate", 5, 3, 300.0))

    def test_added_default_environment(self) -> None:
        """
        A default environment the plan does not know starts from the
        production rule, and the other added environments from it.
        """
        settings = config_settings(
            """
escalation:
  default_environment: edge
  environments:
    lab: {level: info}
    edge: {total: 2}
"""
        )
        self.assertEqual(self.rule(settings, "edge"), ("immediate", 2, 3, 300.0))
        self.assertEqual(self.rule(settings, "lab"), ("info", 2, 3, 300.0))

    def test_names_ignore_case(self) -> None:
        """
        Environment names are lower-cased like environment labels: a rule
        configured for QA applies to alerts labelled env=QA or env=qa.
        """
        settings = config_settings(
            "escalation:\n  min_spacing: 0s\n  default_environment: Staging\n"
            "  environments: {QA: {total: 2, namespaces: [qa]}}\n"
        )
        self.assertEqual(settings.default_environment, "staging")
        self.assertEqual(self.rule(settings, "qa"), ("normal", 2, 5, 600.0))
        driver = DecisionDriver(started_clock(), settings)
        self.assertEqual(results(driver, *[make_alert(env="QA")] * 3), [NEW, DUPLICATE, ESCALATED])
        self.assertEqual(results(driver, *[make_alert(namespace="qa")] * 3), [NEW, DUPLICATE, ESCALATED])


class CorrelationTests(SynchronousTestCase):
    """
    Every forwarded thing carries its correlation group.
    """

    def setUp(self) -> None:
        self.clock = started_clock()

    def test_group_by_labels(self) -> None:
        """
        Alerts with the same group_by labels share a group id, others not;
        each ruling and forwarded body says it.
        """
        driver = make_driver(self.clock, group_by=("alertname",))
        decision = driver.decide(
            [make_alert(pod="a"), make_alert(pod="b", namespace="x"), make_alert(alertname="Other")]
        )
        rulings = decision.rulings
        self.assertEqual([o.body["groupId"] for o in decision.outgoing], [r.group_id for r in rulings])
        self.assertEqual(rulings[0].group_id, rulings[1].group_id)
        self.assertNotEqual(rulings[0].group_id, rulings[2].group_id)

    def test_sender_group(self) -> None:
        """
        With use_sender_group the sender's groupKey decides the group,
        whatever the labels.
        """
        driver = make_driver(self.clock, use_sender_group=True)
        rulings = driver.decide(
            [
                make_alert(pod="a"),
                make_alert(alertname="Other", namespace="x"),
                make_alert(pod="c", group={"groupKey": "another"}),
            ]
        ).rulings
        self.assertEqual(rulings[0].group_id, rulings[1].group_id)
        self.assertNotEqual(rulings[0].group_id, rulings[2].group_id)

    def test_every_forward_has_group(self) -> None:
        """
        New, escalated, resolved and storm events all carry the group id.
        """
        driver = make_driver(self.clock, storms=make_storms(threshold=1))
        alerts = [make_alert(pod="a")] * 4 + [make_alert("resolved", pod="a"), make_alert(pod="b")]
        decision = driver.decide(alerts)
        self.assertEqual(
            [o.body.get("decision", o.body.get("type")) for o in decision.outgoing],
            ["new", "escalated", "resolved", "storm"],
        )
        self.assertEqual({o.body["groupId"] for o in decision.outgoing}, {decision.rulings[0].group_id})


class StormTests(SynchronousTestCase):
    """
    Storms: detection, folding, updates, the closing summary and bounds.
    """

    def setUp(self) -> None:
        self.clock = started_clock()
        self.driver = make_driver(self.clock, storms=make_storms())

    def fire(self, *pods: str, **labels: str) -> tuple[list[Verdict], tuple[Outgoing, ...]]:
        decision = self.driver.decide([labelled({**make_alert(pod=pod).labels, **labels}) for pod in pods])
        return [r.verdict for r in decision.rulings], decision.outgoing

    def test_threshold(self) -> None:
        """
        Threshold distinct new fingerprints of a group are forwarded alone;
        the next one starts a storm, forwarded at once as one event, in
        place of the alert.
        """
        seen, outgoing = self.fire("a", "b", "c")
        self.assertEqual((seen, storm_bodies(outgoing)), ([NEW] * 3, []))
        seen, outgoing = self.fire("d")
        self.assertEqual(seen, [AGGREGATED])
        [event] = outgoing
        self.assertEqual((event.body["state"], event.body["memberCount"], event.body["sequence"]), ("started", 4, 1))

    def test_started_event(self) -> None:
        """
        The started event names the group by its labels and lists members
        oldest first with the labels that tell them apart, their status and
        when they were seen; its ordering key is storm:<groupId> and its
        idempotency key the storm's id and sequence.
        """
        self.fire("a")
        self.clock.advance(1.5)
        decision = self.driver.decide([make_alert(pod=p) for p in "bcd"])
        [event] = [o for o in decision.outgoing if o.key.startswith("storm:")]
        group = decision.rulings[0].group_id
        self.assertEqual(event.key, f"storm:{group}")
        self.assertRegex(event.body["stormId"], r"^[0-9a-f]{16}$")
        self.assertEqual(event.idempotency_key, f"{event.body['stormId']}-1")
        self.assertEqual(
            dict(event.body),
            {
                "type": "storm",
                "stormId": event.body["stormId"],
                "groupId": group,
                "state": "started",
                "sequence": 1,
                "groupLabels": {"alertname": "PodCrash", "namespace": "payments"},
                "memberCount": 4,
                "members": [
                    {
                        "fingerprint": make_alert(pod="a").fingerprint,
                        "labels": {"pod": "a"},
                        "status": "firing",
                        "seenAt": START_TEXT,
                    },
                    {
                        "fingerprint": make_alert(pod="b").fingerprint,
                        "labels": {"pod": "b"},
                        "status": "firing",
                        "seenAt": "2027-01-15T08:00:01.500Z",
                    },
                ],
                "unlistedMembers": 2,
                "firstSeen": START_TEXT,
                "lastSeen": "2027-01-15T08:00:01.500Z",
            },
        )

    def test_distinct_fingerprints_only(self) -> None:
        """
        A fingerprint new again (after its resolution) within the window is
        counted once, and other groups do not count.
        """
        self.fire("a")
        self.driver.decide([make_alert("resolved", pod="a")])
        seen, _ = self.fire("a", "b")
        self.assertEqual(seen, [NEW, NEW])
        seen, _ = self.fire("x", "y", namespace="other")
        self.assertEqual(seen, [NEW, NEW])
        seen, outgoing = self.fire("c")
        self.assertEqual((seen, storm_bodies(outgoing)), ([NEW], []))

    def test_window_boundaries(self) -> None:
        """
        A fingerprint seen exactly one storm window before still counts
        toward the storm; one seen just before that no longer does.
        """
        for gap, expected in ((20.0, AGGREGATED), (20.001, NEW)):
            with self.subTest(gap=gap):
                clock = started_clock()
                driver = make_driver(clock, storms=make_storms())
                driver.decide([make_alert(pod="a")])
                clock.advance(40)
                driver.decide([make_alert(pod="b"), make_alert(pod="c")])
                clock.advance(gap)
                self.assertEqual(results(driver, make_alert(pod="d")), [expected])

    def test_slow_trickle_is_no_storm(self) -> None:
        """
        Distinct fingerprints spread wider than the window never make a
        storm.
        """
        seen = []
        for pod in "abcdefgh":
            seen.extend(self.fire(pod)[0])
            self.clock.advance(31)
        self.assertEqual(seen, [NEW] * 8)
        self.assertEqual(storm_groups(self.driver), [])

    def test_members_aggregated(self) -> None:
        """
        New members of a group in a storm are aggregated: not forwarded,
        their episode tracked and pointing at the storm; duplicates and
        resolutions of members are decided as usual.
        """
        self.fire("a", "b", "c", "d")
        seen, outgoing = self.fire("e", "f")
        self.assertEqual((seen, outgoing), ([AGGREGATED, AGGREGATED], ()))
        episode = self.driver.table.episodes.get(make_alert(pod="e").fingerprint)
        assert episode is not None
        storm = self.driver.table.groups[episode.group_id].storm
        assert storm is not None
        self.assertEqual((episode.storm_id, episode.status, storm.members), (storm.id, "firing", 6))
        self.assertEqual(self.fire("e")[0], [DUPLICATE])
        ruling, outgoing = decide_one(self.driver, make_alert("resolved", pod="e"))
        self.assertEqual((ruling.verdict, [o.key for o in outgoing]), (RESOLVED, [make_alert(pod="e").fingerprint]))
        self.assertEqual(self.fire("g", namespace="other")[0], [NEW])

    def test_updates_at_flush_interval(self) -> None:
        """
        Updates come only when members wait, at most every flush interval
        (counted from the last event), each listing at most
        max_members_listed of them, oldest first.
        """
        self.fire("a", "b", "c", "d", "e")
        self.clock.advance(9.999)
        self.assertEqual(self.driver.tick().outgoing, ())
        self.clock.advance(0.001)
        [update] = self.driver.tick().outgoing
        self.assertEqual(
            (update.body["state"], update.body["sequence"], update.body["memberCount"], listed([update.body])),
            ("update", 2, 5, [make_alert(pod=p).fingerprint for p in "cd"]),
        )
        self.assertEqual(update.idempotency_key, f"{update.body['stormId']}-2")
        self.clock.advance(1)
        self.fire("f")
        self.assertEqual(self.driver.tick().outgoing, ())
        self.clock.advance(9)
        [update] = self.driver.tick().outgoing
        self.assertEqual(listed([update.body]), [make_alert(pod=p).fingerprint for p in "ef"])
        self.clock.advance(10)
        self.assertEqual(self.driver.tick().outgoing, ())

    def test_closing_summary(self) -> None:
        """
        After the quiet period without a new member (not a moment before)
        the storm closes with a summary listing what remains; the group
        then counts afresh.
        """
        self.fire("a", "b", "c", "d")
        self.clock.advance(10)
        self.driver.tick()
        self.clock.advance(19.999)
        self.assertEqual(self.driver.tick().outgoing, ())
        self.clock.advance(0.001)
        [closed] = self.driver.tick().outgoing
        self.assertEqual(
            (closed.body["state"], closed.body["memberCount"], closed.body["unlistedMembers"], closed.body["members"]),
            ("closed", 4, 0, []),
        )
        self.assertEqual(storm_groups(self.driver), [])
        self.assertEqual(self.fire("e", "f", "g")[0], [NEW] * 3)

    def test_every_member_listed(self) -> None:
        """
        A quiet storm with more members waiting than one event lists sends
        them in updates no faster than the flush interval and closes once
        the rest fit: every member is listed exactly once, the counts are
        complete and the sequence has no gap.
        """
        pods = [f"p{n}" for n in range(11)]
        _, outgoing = self.fire(*pods)
        events = storm_bodies(outgoing)
        times = [self.clock.seconds()]
        self.clock.advance(30)
        while storm_groups(self.driver):
            found = [o.body for o in self.driver.tick().outgoing]
            events.extend(found)
            times.extend([self.clock.seconds()] * len(found))
            self.clock.advance(5)
        self.assertEqual([e["state"] for e in events], ["started"] + ["update"] * 4 + ["closed"])
        self.assertEqual([e["sequence"] for e in events], list(range(1, 7)))
        updates = [t for t, e in zip(times, events, strict=True) if e["state"] != "closed"]
        self.assertTrue(all(b - a >= 10 for a, b in itertools.pairwise(updates)), updates)
        self.assertTrue(all(len(e["members"]) <= 2 for e in events))
        self.assertEqual(sorted(listed(events)), sorted(make_alert(pod=p).fingerprint for p in pods))
        self.assertEqual(len(listed(events)), 11)
        self.assertEqual([e["memberCount"] for e in events], [4] + [11] * 5)
        self.assertEqual(events[-1]["unlistedMembers"], 0)

    def test_members_during_drain(self) -> None:
        """
        A member arriving while a quiet storm is still listing its backlog
        is folded into it and restarts the quiet period.
        """
        self.fire(*[f"p{n}" for n in range(7)])
        self.clock.advance(30)
        self.assertEqual([o.body["state"] for o in self.driver.tick().outgoing], ["update"])
        self.fire("late")
        self.clock.advance(10)
        self.assertEqual([o.body["state"] for o in self.driver.tick().outgoing], ["update"])
        self.clock.advance(20)
        self.assertEqual([o.body["state"] for o in self.driver.tick().outgoing], ["closed"])

    def test_second_storm(self) -> None:
        """
        A later storm of the same group is another storm: another id, its
        own sequence and idempotency keys.
        """
        first = [o for o in self.fire("a", "b", "c", "d")[1] if o.key.startswith("storm:")]
        self.clock.advance(100)
        closing = list(self.driver.tick().outgoing)
        second = [o for o in self.fire("e", "f", "g", "h")[1] if o.key.startswith("storm:")]
        events = first + closing + second
        self.assertEqual([o.body["state"] for o in events], ["started", "closed", "started"])
        self.assertEqual(len({o.idempotency_key for o in events}), 3)
        self.assertNotEqual(first[0].body["stormId"], second[0].body["stormId"])
        self.assertEqual(second[0].body["sequence"], 1)
        self.assertEqual({o.key for o in events}, {first[0].key})

    def test_memory_bounds(self) -> None:
        """
        Past max_pending a member is only counted: the events say how many
        were never listed; and at most max_groups groups are watched.
        """
        storms = make_storms(max_pending=3, max_members_listed=2)
        driver = MemoryDriver(self, self.clock, make_settings(storms), max_groups=5)
        decision = driver.decide([make_alert(pod=f"p{n}") for n in range(10)])
        rulings = list(decision.rulings)
        [started] = storm_bodies(decision.outgoing)
        self.assertEqual((started["memberCount"], started["unlistedMembers"]), (4, 2))
        self.clock.advance(60)
        events = [started] + [o.body for o in driver.tick().outgoing]
        self.clock.advance(10)
        events += [o.body for o in driver.tick().outgoing]
        self.assertEqual(events[-1]["state"], "closed")
        self.assertEqual((events[-1]["memberCount"], events[-1]["unlistedMembers"]), (10, 5))
        self.assertEqual(len(listed(events)), 5)
        for n in range(8):
            rulings += driver.decide([make_alert(namespace=f"ns{n}")]).rulings
        self.assertEqual(driver.state.watched_groups, 5)
        self.assertEqual(sum(r.verdict is AGGREGATED for r in rulings), 7)

    def test_sender_group_labels(self) -> None:
        """
        With use_sender_group a storm is named by the sender's groupLabels.
        """
        group = {"groupKey": "k", "groupLabels": {"alertname": "PodCrash"}}
        driver = make_driver(self.clock, storms=make_storms(), use_sender_group=True)
        decision = driver.decide([make_alert(pod=p, namespace=p, group=group) for p in "abcd"])
        [event] = storm_bodies(decision.outgoing)
        self.assertEqual(event["groupLabels"], {"alertname": "PodCrash"})
        self.assertEqual(event["members"][0]["labels"], {"pod": "a", "namespace": "a"})


# The property test's storms: small, so that they happen.
PROPERTY_STORMS = StormSettings(threshold=2, window=60, flush_interval=10, quiet_period=30, max_members_listed=1)
PODS = ("a", "b", "c", "d", "e")

# One occurrence: the clock advanced by a moment (often none, sometimes
# across a boundary), the tick run or not, then an alert.  "a" comes often,
# so that it escalates; the others make storms.
step = st.tuples(
    st.sampled_from([0, 0, 0, 0, 0, 0, 1, 10, 29, 30, 31, 59, 60, 61, 150, 299, 300, 301, 900]),
    st.booleans(),
    st.sampled_from(["a", "a", "a", "b", "c", "d", "e"]),
    st.sampled_from(["firing", "firing", "firing", "resolved"]),
)


@attrs.define
class Model:
    """
    What the rules say of one fingerprint, and what was forwarded for it,
    episode by episode.
    """

    status: str | None = None
    last_seen: float = 0.0
    duplicates: list[float] = attrs.field(factory=list)
    escalated: bool = False
    episodes: list[list[str]] = attrs.field(factory=list)


# Per episode: forwarded new (or folded into a storm), then at most one
# escalation, then the resolution; or a lone resolution of an alert the
# gateway did not know.
EPISODE_STREAM = re.compile(r"(new|folded)( escalated)?( resolved)?|resolved")


class Harness(Protocol):
    """
    A store the property test decides through, one decision at a time.
    """

    def decide(self, alerts: Sequence[Alert]) -> Decision: ...

    def tick(self) -> Decision: ...

    def episode(self, key: str) -> Episode | None: ...

    def storms(self) -> int:
        """
        How many storms are on.
        """


class TableHarness(DecisionDriver):
    """
    The decider on a plain table: nothing is forgotten, nothing bounded.
    """

    def episode(self, key: str) -> Episode | None:
        return self.table.episode(key)

    def storms(self) -> int:
        return len(list(self.table.storm_groups()))


class StreamPropertyTests(SynchronousTestCase):
    """
    The forwarded stream per fingerprint, for any interleaving, on a plain
    table and on the in-memory state (whose tick also forgets lapsed
    episodes).
    """

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(st.lists(step, min_size=20, max_size=80))
    def test_forwarded_stream_per_fingerprint(self, steps: list[tuple[int, bool, str, str]]) -> None:
        """
        For any interleaving of firing/resolved occurrences of a few
        fingerprints and clock advances (ticking or not), with storms at a
        small threshold: each decision is the one the rules give; per
        fingerprint the forwarded stream is new, (escalated)?, resolved, new
        … with never two new within one episode; and every firing episode is
        forwarded, or folded into a storm whose events list it by the time
        the storm closes, each storm's events in order and complete.
        """
        clock = started_clock()
        self.check_stream(steps, clock, TableHarness(clock, make_settings(PROPERTY_STORMS)))

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(st.lists(step, min_size=20, max_size=80))
    def test_forwarded_stream_memory_state(self, steps: list[tuple[int, bool, str, str]]) -> None:
        """
        The same rules hold on the in-memory state, whose tick forgets the
        episodes whose window lapsed: forgetting changes no decision.
        """
        clock = started_clock()
        self.check_stream(steps, clock, MemoryDriver(self, clock, make_settings(PROPERTY_STORMS)))

    def check_stream(self, steps: list[tuple[int, bool, str, str]], clock: Clock, harness: Harness) -> None:
        models = {pod: Model() for pod in PODS}
        group = group_id(make_alert(), ("alertname", "namespace"), False)
        folded: dict[str, set[str]] = {}
        storm_events: dict[str, list[tuple[float, Mapping[str, Any]]]] = {}

        def collect(outgoing: Sequence[Outgoing]) -> None:
            for o in outgoing:
                if o.body.get("type") == "storm":
                    self.assertEqual(o.key, f"storm:{group}")
                    storm_events.setdefault(o.body["stormId"], []).append((clock.seconds(), o.body))

        for advance, tick, pod, status in steps:
            clock.advance(advance)
            if tick:
                collect(harness.tick().outgoing)
            model = models[pod]
            alert = make_alert(status, pod=pod)
            now = clock.seconds()
            known = model.status is not None and now - model.last_seen <= 300
            firing = known and model.status == "firing"
            # One group: a storm on is its storm.
            storm_before = harness.storms() > 0
            ruling, outgoing = decide_one(harness, alert)
            verdict = ruling.verdict
            own = [o for o in outgoing if o.body.get("type") != "storm"]
            collect(outgoing)
            if status == "firing" and not firing:
                self.assertIn(verdict, (NEW, AGGREGATED), steps)
                # Folded only into a storm that is on, or that it starts.
                self.assertEqual(verdict is AGGREGATED, storm_before or bool(storm_bodies(outgoing)), steps)
                model.status, model.duplicates, model.escalated = "firing", [], False
                model.episodes.append([])
                if verdict is AGGREGATED:
                    episode = harness.episode(alert.fingerprint)
                    assert episode is not None and episode.storm_id is not None
                    folded.setdefault(episode.storm_id, set()).add(alert.fingerprint)
                    model.episodes[-1].append("folded")
            elif status == "firing":
                model.duplicates.append(now)
                within = [t for t in model.duplicates if t >= now - 300]
                escalates = not model.escalated and (len(model.duplicates) >= 5 or len(within) >= 3)
                self.assertEqual(verdict, ESCALATED if escalates else DUPLICATE, steps)
                model.escalated = model.escalated or escalates
            elif firing or not known:
                self.assertEqual(verdict, RESOLVED, steps)
                if not known:
                    model.episodes.append([])
                model.status = "resolved"
            else:
                self.assertEqual(verdict, DUPLICATE, steps)
            model.last_seen = now
            if verdict in (NEW, ESCALATED, RESOLVED):
                self.assertEqual([(o.key, o.body["decision"]) for o in own], [(alert.fingerprint, verdict.value)])
                model.episodes[-1].append(verdict.value)
            else:
                self.assertEqual(own, [], steps)
        # Let every storm close.
        for _ in range(1000):
            if not harness.storms():
                break
            clock.advance(10)
            collect(harness.tick().outgoing)
        self.assertEqual(harness.storms(), 0)
        for pod, model in models.items():
            for forwarded in model.episodes:
                self.assertRegex(" ".join(forwarded), EPISODE_STREAM, (pod, model.episodes, steps))
        for storm_id, fingerprints in folded.items():
            self.assertLessEqual(fingerprints, set(listed([e for _, e in storm_events[storm_id]])), steps)
        for storm_id, timed in storm_events.items():
            events = [e for _, e in timed]
            self.assertEqual([e["sequence"] for e in events], list(range(1, len(events) + 1)), storm_id)
            self.assertEqual(
                [e["state"] for e in events], ["started"] + ["update"] * (len(events) - 2) + ["closed"], storm_id
            )
            self.assertEqual(len(listed(events)), events[-1]["memberCount"], storm_id)
            self.assertEqual(events[-1]["unlistedMembers"], 0, storm_id)
            self.assertTrue(all(len(e["members"]) <= 1 for e in events), storm_id)
            sent = [t for t, e in timed if e["state"] != "closed"]
            self.assertTrue(all(b - a >= 10 for a, b in itertools.pairwise(sent)), timed)
