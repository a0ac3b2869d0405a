"""
Storm members and events bounded in bytes (L{alertgateway.core.members},
L{alertgateway.core.storms}): a member keeps at most C{max_member_bytes} of
its labels, a storm keeps at most C{max_pending_bytes} of members waiting,
an event lists at most C{max_event_bytes} of them, and what older gateways
stored still reads.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.app.settings import decider_settings
from alertgateway.config import parse_config
from alertgateway.core.decider import DeciderSettings
from alertgateway.core.members import MEMBER_OVERHEAD, Member
from alertgateway.core.model import Alert, fingerprint
from alertgateway.core.storms import Group, Storm, StormSettings, flush, sight
from alertgateway.testing import DecisionDriver

GROUP_LABELS = {"alertname": "PodCrash", "namespace": "payments"}
NOW = 1_800_000_000.0


def alert(pod: str, **labels: str) -> Alert:
    every = {**GROUP_LABELS, "pod": pod, **labels}
    return Alert(fingerprint(every), "alertmanager", "firing", every, {}, None, None, "", "2027-01-15T08:00:00Z")


def member(pod: str, seen_at: float = NOW, **labels: str) -> Member:
    return Member.of(alert(pod, **labels), GROUP_LABELS, seen_at)


def storms(**overrides: Any) -> StormSettings:
    values: dict[str, Any] = {
        "threshold": 3,
        "window": 60,
        "flush_interval": 10,
        "quiet_period": 30,
        "max_members_listed": 100,
        **overrides,
    }
    return StormSettings(**values)


def a_storm(**fields: Any) -> Storm:
    values: dict[str, Any] = {
        "id": "s1",
        "group_id": "g1",
        "group_labels": dict(GROUP_LABELS),
        "first_seen": NOW - 100,
        "last_seen": NOW - 100,
        "last_flush": NOW - 100,
        "members": 20,
        "listed": 10,
        **fields,
    }
    return Storm(**values)


class MemberBudgetTests(SynchronousTestCase):
    def test_small_labels_kept_whole(self) -> None:
        """
        A member within its budget keeps every label that tells it apart
        (not the group's), and omits none.
        """
        kept = Member.of(alert("a", container="api"), GROUP_LABELS, NOW, max_bytes=1024)
        self.assertEqual((dict(kept.labels), kept.omitted), ({"container": "api", "pod": "a"}, 0))
        self.assertEqual(kept.event_json()["labels"], {"container": "api", "pod": "a"})
        self.assertNotIn("labelsOmitted", kept.event_json())

    def test_large_labels_left_out_smallest_kept(self) -> None:
        """
        Over C{max_bytes} of names and values, the member keeps the
        smallest labels that fit (in name order) and says how many it left
        out: one huge label does not push out the pod.
        """
        huge = alert("a", container="api", blob="x" * 4000, dump="y" * 3000)
        kept = Member.of(huge, GROUP_LABELS, NOW, max_bytes=100)
        self.assertEqual((dict(kept.labels), kept.omitted), ({"container": "api", "pod": "a"}, 2))
        self.assertEqual(kept.fingerprint, huge.fingerprint)
        self.assertEqual(kept.event_json()["labelsOmitted"], 2)
        self.assertLess(kept.size, MEMBER_OVERHEAD + 100)

    def test_size_counts_labels(self) -> None:
        """
        A member's size is what its labels add to an event's JSON on top of
        a fixed part, in UTF-8 bytes.
        """
        self.assertEqual(member("a").size, MEMBER_OVERHEAD + len("pod") + len("a") + 6)
        self.assertEqual(member("\u00e4").size, MEMBER_OVERHEAD + len("pod") + 2 + 6)
        bare = Member("f", {}, "firing", NOW)
        self.assertEqual(bare.size, MEMBER_OVERHEAD)
        actual = len(json.dumps(member("a", container="api").event_json(), separators=(",", ":")))
        self.assertLessEqual(actual, member("a", container="api").size)

    def test_old_json_reads(self) -> None:
        """
        A member stored by an older gateway (without C{omitted}) reads as
        one that kept every label; one that omitted labels keeps saying so.
        """
        old = {"fingerprint": "f1", "labels": {"pod": "a"}, "status": "firing", "seenAt": NOW}
        self.assertEqual(Member.from_json(old), Member("f1", {"pod": "a"}, "firing", NOW))
        trimmed = Member("f2", {"pod": "b"}, "firing", NOW, omitted=3)
        self.assertEqual(Member.from_json(json.loads(json.dumps(trimmed.to_json()))), trimmed)
        self.assertNotIn("omitted", Member.from_json(old).to_json())

    def test_decider_applies_the_budget(self) -> None:
        """
        The decider makes members with the storm settings' member budget:
        a storm's event lists a member with labels that fit it only.
        """
        clock = Clock()
        clock.advance(NOW)
        driver = DecisionDriver(clock, DeciderSettings(storms=storms(max_member_bytes=20)))
        decision = driver.decide([alert(p, blob="z" * 500) for p in "abcd"])
        [event] = [o.body for o in decision.outgoing if o.body.get("type") == "storm"]
        self.assertEqual([m["labels"] for m in event["members"]], [{"pod": p} for p in "abcd"])
        self.assertEqual({m["labelsOmitted"] for m in event["members"]}, {1})


class PendingBytesTests(SynchronousTestCase):
    def test_members_wait_within_the_bytes(self) -> None:
        """
        A member of a storm waits to be listed while the storm's waiting
        members stay within C{max_pending_bytes}; past it the member is
        only counted (the storm's count grows, its waiting list does not).
        """
        size = member("a").size
        settings = storms(max_pending_bytes=2 * size)
        group: Group | None = Group(storm=a_storm())
        waited = []
        for pod in "abc":
            sighting = sight(group, member(pod), "g1", GROUP_LABELS, NOW, settings)
            group = sighting.group
            waited.append(len(sighting.waiting))
        assert group is not None and group.storm is not None
        self.assertEqual(waited, [1, 1, 0])
        self.assertEqual((group.storm.members, group.storm.waiting, group.storm.waiting_bytes), (23, 2, 2 * size))

    def test_count_bound_still_holds(self) -> None:
        """
        C{max_pending} still bounds the count whatever the bytes allow.
        """
        sighting = sight(Group(storm=a_storm(waiting=2)), member("z"), "g1", GROUP_LABELS, NOW, storms(max_pending=2))
        assert sighting.group.storm is not None
        self.assertEqual((sighting.waiting, sighting.group.storm.waiting), ((), 2))

    def test_storm_start_within_the_bytes(self) -> None:
        """
        When a storm starts, the recent members its first event cannot
        list wait within the bytes too; the event still counts them all.
        """
        settings = storms(threshold=3, max_members_listed=1, max_pending_bytes=member("b").size)
        recent = tuple(member(p, NOW - 1) for p in "abc")
        sighting = sight(Group(recent=recent), member("d"), "g1", GROUP_LABELS, NOW, settings)
        assert sighting.event is not None and sighting.group.storm is not None
        self.assertEqual([m.fingerprint for m in sighting.event.listed], [recent[0].fingerprint])
        self.assertEqual([m.fingerprint for m in sighting.waiting], [recent[1].fingerprint])
        body = sighting.event.to_json()
        self.assertEqual((body["memberCount"], body["unlistedMembers"]), (4, 3))
        self.assertEqual((sighting.group.storm.waiting, sighting.group.storm.waiting_bytes), (1, member("b").size))

    def test_old_storm_json_reads(self) -> None:
        """
        A storm stored by an older gateway has no C{waiting_bytes}: it reads
        as zero, and listing its members never takes it below zero.
        """
        old = a_storm(waiting=2).to_json()
        del old["waiting_bytes"]
        storm = Storm.from_json(old)
        self.assertEqual((storm.waiting, storm.waiting_bytes), (2, 0))
        waiting = [member("a"), member("b")]
        flushed = flush(storm, lambda offset, count: waiting[offset : offset + count], NOW, storms())
        assert flushed is not None
        self.assertEqual([e.state for e in flushed.events], ["closed"])
        self.assertEqual(flushed.events[0].storm.waiting_bytes, 0)


class EventBytesTests(SynchronousTestCase):
    def test_update_lists_what_fits(self) -> None:
        """
        An update lists the waiting members, oldest first, while their size
        stays within C{max_event_bytes}; the others wait for the next one.
        """
        waiting = [member(f"p{n}") for n in range(5)]
        size = waiting[0].size
        settings = storms(max_event_bytes=2 * size)
        storm = a_storm(last_seen=NOW, waiting=5, waiting_bytes=5 * size)
        flushed = flush(storm, lambda offset, count: waiting[offset : offset + count], NOW, settings)
        assert flushed is not None and flushed.group is not None and flushed.group.storm is not None
        [event] = flushed.events
        self.assertEqual((event.state, event.listed, flushed.taken), ("update", tuple(waiting[:2]), 2))
        self.assertEqual((flushed.group.storm.waiting, flushed.group.storm.waiting_bytes), (3, 3 * size))

    def test_one_member_over_the_bytes_still_listed(self) -> None:
        """
        An event lists at least one member, even one larger than
        C{max_event_bytes} alone: a storm always moves on.
        """
        waiting = [member("a", blob="x" * 300), member("b")]
        storm = a_storm(last_seen=NOW, waiting=2)
        flushed = flush(storm, lambda o, c: waiting[o : o + c], NOW, storms(max_event_bytes=10))
        assert flushed is not None
        self.assertEqual([len(e.listed) for e in flushed.events], [1])

    def test_quiet_storm_closes_once_the_rest_fits(self) -> None:
        """
        A quiet storm whose waiting members do not fit one event in bytes
        (though they do in count) sends updates at the flush interval until
        they do, then closes: every member listed exactly once.
        """
        waiting = [member(f"p{n}") for n in range(5)]
        size = waiting[0].size
        settings = storms(max_event_bytes=2 * size)
        storm = a_storm(waiting=5, waiting_bytes=5 * size)
        states: list[str] = []
        listed: list[Member] = []
        now = NOW
        while storm is not None:
            flushed = flush(storm, lambda o, c: waiting[o : o + c], now, settings)
            assert flushed is not None
            del waiting[: flushed.taken]
            states += [e.state for e in flushed.events]
            listed += [m for e in flushed.events for m in e.listed]
            storm = flushed.group.storm if flushed.group is not None else None  # type: ignore[assignment]
            self.assertIsNone(flush(storm, lambda o, c: waiting[o : o + c], now, settings) if storm else None)
            now += settings.flush_interval
        self.assertEqual(states, ["update", "update", "closed"])
        self.assertEqual([m.labels["pod"] for m in listed], [f"p{n}" for n in range(5)])

    def test_started_event_within_the_bytes(self) -> None:
        """
        The event that starts a storm lists the recent members that fit its
        bytes; the rest wait for the first update.
        """
        size = member("a").size
        settings = storms(threshold=3, max_event_bytes=2 * size)
        recent = tuple(member(p, NOW - 1) for p in "abc")
        sighting = sight(Group(recent=recent), member("d"), "g1", GROUP_LABELS, NOW, settings)
        assert sighting.event is not None
        self.assertEqual(len(sighting.event.listed), 2)
        self.assertEqual([m.labels["pod"] for m in sighting.waiting], ["c", "d"])


class ConfiguredTests(SynchronousTestCase):
    def test_storm_section_reaches_the_decider(self) -> None:
        """
        The storm section's bounds in count and bytes are the decider's
        storm settings; by default those of L{StormSettings}.
        """
        text = "storm: {max_event_bytes: 5000, max_pending: 50, max_pending_bytes: 60000, max_member_bytes: 300}"
        configured = decider_settings(parse_config(text, environ={})).storms
        assert configured is not None
        self.assertEqual(
            (
                configured.max_event_bytes,
                configured.max_pending,
                configured.max_pending_bytes,
                configured.max_member_bytes,
            ),
            (5000, 50, 60000, 300),
        )
        self.assertEqual(decider_settings(parse_config("", environ={})).storms, StormSettings())
