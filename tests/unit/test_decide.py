"""
Deduplication, escalation, correlation and storms, driven by a task.Clock.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.decide.engine import (
    AGGREGATED,
    DUPLICATE,
    ESCALATED,
    NEW,
    RESOLVED_RESULT,
    Decider,
    DeciderSettings,
    Outgoing,
)
from alertgateway.decide.episodes import Episode, MemoryEpisodes
from alertgateway.decide.escalation import DEFAULT_RULES, EscalationRule, check_escalation
from alertgateway.decide.keys import dedup_key, environment_of, group_id
from alertgateway.decide.storms import StormTracker
from alertgateway.model import Alert, fingerprint

START = 1_800_000_000.0


def make_alert(status: str = "firing", **labels: str) -> Alert:
    labels = {"alertname": "PodCrash", "namespace": "payments", "pod": "p-1", **labels}
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
        extras={"group": {"groupKey": '{}:{alertname="PodCrash"}'}},
    )


def make_decider(
    clock: Clock, storms: StormTracker | None = None, max_tracked: int = 1000, **overrides: Any
) -> Decider:
    return Decider(clock, MemoryEpisodes(max_tracked), DeciderSettings(**overrides), storms)


def results(decider: Decider, *alerts: Alert) -> list[str]:
    verdicts, _ = decider.decide(list(alerts))
    return [v.result for v in verdicts]


class KeyTests(SynchronousTestCase):
    def test_dedup_key_is_fingerprint_without_ignored_labels(self) -> None:
        """
        With no ignored label present the dedup key is the fingerprint.
        """
        alert = make_alert()
        self.assertEqual(dedup_key(alert, ["replica"]), alert.fingerprint)

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

    def test_group_id_from_labels_and_sender(self) -> None:
        """
        The group id follows the group_by labels, or the sender's groupKey
        when asked to.
        """
        a = make_alert(pod="p-1")
        b = make_alert(pod="p-2")
        c = make_alert(namespace="other")
        self.assertEqual(group_id(a, ["alertname", "namespace"], False), group_id(b, ["alertname", "namespace"], False))
        self.assertNotEqual(
            group_id(a, ["alertname", "namespace"], False), group_id(c, ["alertname", "namespace"], False)
        )
        self.assertEqual(group_id(a, ["alertname"], True), group_id(c, ["pod"], True))

    def test_environment_from_labels_namespaces_default(self) -> None:
        """
        The first present environment label wins, then namespace patterns,
        then the default.
        """
        patterns = {"production": ["prod-*", "payments"], "staging": ["stage-*"]}
        self.assertEqual(environment_of(make_alert(env="Staging"), ["environment", "env"], patterns, "dev"), "staging")
        self.assertEqual(
            environment_of(make_alert(namespace="prod-eu"), ["environment"], patterns, "dev"), "production"
        )
        self.assertEqual(environment_of(make_alert(namespace="stage-1"), ["environment"], patterns, "dev"), "staging")
        self.assertEqual(environment_of(make_alert(namespace="misc"), ["environment"], patterns, "dev"), "dev")


class DedupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.decider = make_decider(self.clock)

    def test_first_firing_is_new_and_forwarded(self) -> None:
        """
        The first firing occurrence is new and forwarded with its dedup key
        and group id.
        """
        verdicts, outgoing = self.decider.decide([make_alert()])
        self.assertEqual(verdicts[0].result, NEW)
        self.assertEqual(len(outgoing), 1)
        body = outgoing[0].body
        self.assertEqual(body["dedupKey"], make_alert().fingerprint)
        self.assertEqual(body["groupId"], verdicts[0].group_id)
        self.assertEqual(body["decision"], NEW)

    def test_repeat_within_window_is_duplicate(self) -> None:
        """
        The same fingerprint firing again within the window is a duplicate,
        not forwarded, counted.
        """
        self.decider.decide([make_alert()])
        self.clock.advance(299)
        verdicts, outgoing = self.decider.decide([make_alert()])
        self.assertEqual((verdicts[0].result, verdicts[0].duplicate_count, outgoing), (DUPLICATE, 1, []))

    def test_window_slides_from_last_sighting(self) -> None:
        """
        The window is measured from the last sighting: sightings every 4
        minutes stay duplicates for longer than 5 minutes in all.
        """
        self.decider.decide([make_alert()])
        for _ in range(3):
            self.clock.advance(240)
            self.assertEqual(results(self.decider, make_alert()), [DUPLICATE])

    def test_after_window_lapses_new_again(self) -> None:
        """
        After the window passes with no sighting the next firing is new.
        """
        self.decider.decide([make_alert()])
        self.clock.advance(301)
        self.assertEqual(results(self.decider, make_alert()), [NEW])

    def test_exactly_at_window_is_duplicate(self) -> None:
        """
        A sighting exactly one window after the last one is still within it.
        """
        self.decider.decide([make_alert()])
        self.clock.advance(300)
        self.assertEqual(results(self.decider, make_alert()), [DUPLICATE])

    def test_resolved_closes_episode(self) -> None:
        """
        A resolved alert is forwarded once; a repeat is a duplicate; a later
        firing is new again.
        """
        self.decider.decide([make_alert()])
        self.assertEqual(results(self.decider, make_alert("resolved")), [RESOLVED_RESULT])
        self.assertEqual(results(self.decider, make_alert("resolved")), [DUPLICATE])
        self.assertEqual(results(self.decider, make_alert()), [NEW])

    def test_unknown_resolved_forwarded(self) -> None:
        """
        A resolved alert the gateway never saw firing is forwarded.
        """
        verdicts, outgoing = self.decider.decide([make_alert("resolved")])
        self.assertEqual(verdicts[0].result, RESOLVED_RESULT)
        self.assertEqual(len(outgoing), 1)

    def test_batch_decided_in_order(self) -> None:
        """
        Within one batch, the second occurrence of a fingerprint is already
        a duplicate of the first.
        """
        self.assertEqual(results(self.decider, make_alert(), make_alert()), [NEW, DUPLICATE])

    def test_ignore_labels_merge_replicas(self) -> None:
        """
        The same alert from two Prometheus replicas is one alert.
        """
        decider = make_decider(self.clock, ignore_labels=("replica",))
        self.assertEqual(results(decider, make_alert(replica="a"), make_alert(replica="b")), [NEW, DUPLICATE])

    def test_expiry_by_tick_and_max_tracked(self) -> None:
        """
        tick() forgets lapsed episodes; max_tracked evicts the least recently
        seen first and counts it.
        """
        decider = make_decider(self.clock, max_tracked=2)
        decider.decide([make_alert(pod="a"), make_alert(pod="b"), make_alert(pod="c")])
        episodes = decider.episodes
        assert isinstance(episodes, MemoryEpisodes)
        self.assertEqual((len(episodes), episodes.evictions), (2, 1))
        self.assertIsNone(episodes.get(make_alert(pod="a").fingerprint))
        self.assertIsNotNone(episodes.by_fingerprint(make_alert(pod="c").fingerprint))
        self.clock.advance(301)
        decider.tick()
        self.assertEqual(len(episodes), 0)


class EscalationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)

    def run_sightings(self, decider: Decider, count: int, every: float, **labels: str) -> list[str]:
        seen = []
        for _ in range(count):
            seen.extend(results(decider, make_alert(**labels)))
            self.clock.advance(every)
        return seen

    def test_production_three_within_five_minutes(self) -> None:
        """
        In production the third duplicate within 5 minutes escalates,
        immediately, once.
        """
        decider = make_decider(self.clock)
        seen = self.run_sightings(decider, 6, 10, environment="production")
        self.assertEqual(seen, [NEW, DUPLICATE, DUPLICATE, ESCALATED, DUPLICATE, DUPLICATE])

    def test_production_five_in_total(self) -> None:
        """
        Duplicates spread wider than the 5-minute window escalate at the
        fifth in total.
        """
        decider = make_decider(self.clock, window=3600.0)
        seen = self.run_sightings(decider, 7, 200, environment="production")
        self.assertEqual(seen, [NEW] + [DUPLICATE] * 4 + [ESCALATED, DUPLICATE])

    def test_staging_and_development_rules(self) -> None:
        """
        Staging escalates at the fifth duplicate within 10 minutes (normal);
        development at the eighth within 15 minutes (low).
        """
        decider = make_decider(self.clock)
        staging = self.run_sightings(decider, 6, 10, environment="staging")
        self.assertEqual(staging.index(ESCALATED), 5)
        development = self.run_sightings(decider, 9, 10, environment="development", pod="d")
        self.assertEqual(development.index(ESCALATED), 8)

    def test_escalation_body(self) -> None:
        """
        The escalation forwarded is the alert with escalation level, reason,
        duplicate count and window, under its own idempotency key.
        """
        decider = make_decider(self.clock)
        outgoing: list[Outgoing] = []
        for _ in range(4):
            outgoing.extend(decider.decide([make_alert(environment="staging")])[1])
            self.clock.advance(1)
        decider2 = make_decider(self.clock)
        for _ in range(4):
            outgoing.extend(decider2.decide([make_alert(environment="production")])[1])
        escalation = outgoing[-1].body["escalation"]
        self.assertEqual(
            escalation,
            {
                "level": "immediate",
                "reason": "3 duplicates within 5m",
                "duplicateCount": 3,
                "window": "5m",
                "environment": "production",
            },
        )
        self.assertTrue(outgoing[-1].idempotency_key.endswith("-escalation"))

    def test_rule_boundaries(self) -> None:
        """
        check_escalation fires exactly at the threshold, not one before, and
        drops sightings that left the window.
        """
        rule = EscalationRule("immediate", total=5, within=3, window=300)
        episode = Episode("k", "k", "firing", 0, 0, "g", "production", "alertmanager")
        for t in (0.0, 100.0):
            episode.duplicates += 1
            episode.recent.append(t)
            self.assertIsNone(check_escalation(rule, episode, t))
        episode.duplicates += 1
        episode.recent.append(301.0)
        # The sighting at 0 left the window: two within it.
        self.assertIsNone(check_escalation(rule, episode, 301.0))
        episode.duplicates += 1
        episode.recent.append(302.0)
        self.assertIsNotNone(check_escalation(rule, episode, 302.0))

    def test_default_rules_are_the_plans(self) -> None:
        """
        The default rules are the plan's numbers.
        """
        self.assertEqual(
            {k: (r.level, r.total, r.within, r.window) for k, r in DEFAULT_RULES.items()},
            {
                "production": ("immediate", 5, 3, 300.0),
                "staging": ("normal", 8, 5, 600.0),
                "development": ("low", 10, 8, 900.0),
            },
        )


class StormTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.storms = StormTracker(threshold=3, window=60, flush_interval=10, quiet_period=30, max_members_listed=2)
        self.decider = make_decider(self.clock, storms=self.storms)

    def test_storm_folds_members(self) -> None:
        """
        The fourth distinct new fingerprint of a group within the window
        starts a storm forwarded at once; later members are aggregated.
        """
        seen: list[str] = []
        events: list[Outgoing] = []
        for pod in "abcdef":
            verdicts, outgoing = self.decider.decide([make_alert(pod=pod)])
            seen.append(verdicts[0].result)
            events.extend(o for o in outgoing if o.body.get("type") == "storm")
        self.assertEqual(seen, [NEW, NEW, NEW, AGGREGATED, AGGREGATED, AGGREGATED])
        self.assertEqual([(e.body["state"], e.body["memberCount"]) for e in events], [("started", 4)])
        self.assertTrue(events[0].key.startswith("storm:"))

    def test_every_member_listed_and_storm_closes(self) -> None:
        """
        Updates come at most every flush interval, at most max_members_listed
        members each, and the closing summary after the quiet period lists
        what remains: every member appears in some event.
        """
        events: list[Outgoing] = []
        for pod in "abcdefg":
            events.extend(self.decider.decide([make_alert(pod=pod)])[1])
        self.clock.advance(5)
        self.assertEqual(self.decider.tick(), [])
        self.clock.advance(5)
        events.extend(self.decider.tick())
        self.clock.advance(30)
        events.extend(self.decider.tick())
        storm_events = [e.body for e in events if e.body.get("type") == "storm"]
        listed = {m["fingerprint"] for e in storm_events for m in e["members"]}
        self.assertEqual(listed, {make_alert(pod=p).fingerprint for p in "abcdefg"})
        self.assertEqual(storm_events[-1]["state"], "closed")
        self.assertEqual(storm_events[-1]["memberCount"], 7)
        self.assertEqual(self.storms.storms, {})

    def test_slow_trickle_is_no_storm(self) -> None:
        """
        Distinct fingerprints spread wider than the window never make a
        storm.
        """
        seen = []
        for pod in "abcdef":
            seen.extend(results(self.decider, make_alert(pod=pod)))
            self.clock.advance(31)
        self.assertEqual(seen, [NEW] * 6)


class StreamPropertyTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(
        st.lists(
            st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["firing", "resolved"]), st.integers(0, 400)),
            max_size=40,
        )
    )
    def test_forwarded_stream_per_fingerprint(self, steps: list[tuple[str, str, int]]) -> None:
        """
        For any interleaving of firing/resolved occurrences and clock
        advances, per fingerprint the forwarded stream never has two "new"
        without a "resolved" or a lapsed window between them, escalates at
        most once per episode, and every episode's first firing is forwarded.
        """
        clock = Clock()
        clock.advance(START)
        decider = make_decider(clock)
        last_forward: dict[str, str] = {}
        last_seen: dict[str, float] = {}
        escalated: dict[str, bool] = {}
        for pod, status, advance in steps:
            clock.advance(advance)
            now = clock.seconds()
            alert = make_alert(status, pod=pod)
            lapsed = pod not in last_seen or now - last_seen[pod] > 300
            (verdict,), outgoing = decider.decide([alert])
            last_seen[pod] = now
            if verdict.result == NEW:
                self.assertTrue(lapsed or last_forward.get(pod) == RESOLVED_RESULT, steps)
                escalated[pod] = False
            if verdict.result == ESCALATED:
                self.assertFalse(escalated.get(pod, False), steps)
                escalated[pod] = True
            if status == "firing" and (lapsed or last_forward.get(pod) == RESOLVED_RESULT):
                self.assertEqual(verdict.result, NEW, steps)
            if outgoing:
                last_forward[pod] = verdict.result
