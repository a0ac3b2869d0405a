"""
The decider as a pure function, table-driven: each row is a starting state
(a L{StateTable} with a few episodes, groups and waiting members), a batch
of alerts (or a tick), C{now} and the settings, and what L{decide} (or
L{tick}) must give for them: the verdicts, the L{Changes} it writes (which
episodes, groups and waiting lists, with the fields that matter) and what
it forwards (ordering keys, idempotency keys, decisions).  Deciding must
not modify the view it reads.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.decider import DeciderSettings, decide, occurrence_key, tick
from alertgateway.core.decision import Decision, Verdict
from alertgateway.core.episodes import Delivery, Episode
from alertgateway.core.keys import group_id
from alertgateway.core.model import Alert, fingerprint
from alertgateway.core.storms import Group, Member, Storm, StormSettings
from alertgateway.core.timefmt import rfc3339
from alertgateway.testing import StateTable

NOW = 1_800_001_000.0
STORMS = StormSettings(threshold=3, window=60, flush_interval=10, quiet_period=30, max_members_listed=2)
# Every duplicate counts toward escalation here (min_spacing has tests of
# its own in test_decide).
SETTINGS = DeciderSettings(storms=STORMS, min_spacing=0.0)
GROUP_LABELS = {"alertname": "PodCrash", "namespace": "payments"}
# An episode's storm_id that must be the id of the storm its decision
# started (not known before).
NEW_STORM = "<the storm this decision started>"
# The idempotency key of a storm's first event.
FIRST_EVENT = re.compile(r"[0-9a-f]{16}-1")

NEW = Verdict.NEW
DUPLICATE = Verdict.DUPLICATE
RESOLVED = Verdict.RESOLVED
ESCALATED = Verdict.ESCALATED
AGGREGATED = Verdict.AGGREGATED


def alert(pod: str, status: str = "firing", **labels: str) -> Alert:
    """
    A PodCrash alert of C{pod} in payments.
    """
    all_labels = {**GROUP_LABELS, "pod": pod, **labels}
    return Alert(
        fingerprint=fingerprint(all_labels),
        source="alertmanager",
        status=status,
        labels=all_labels,
        annotations={},
        starts_at="2027-01-15T07:00:00Z",
        ends_at=None,
        generator_url="",
        received_at="2027-01-15T08:16:40.000Z",
        extras={},
    )


A, B, C, D, E, F, G = (alert(pod) for pod in "abcdefg")
A_RESOLVED = alert("a", "resolved")
A_REPLICA_1 = alert("a", replica="1")
A_REPLICA_2 = alert("a", replica="2")
A_REPLICA_2_RESOLVED = alert("a", "resolved", replica="2")
A_REPLICA_1_RESOLVED = alert("a", "resolved", replica="1")
GROUP = group_id(A, SETTINGS.group_by, SETTINGS.use_sender_group)
# The ordering key of the group's storm events.
STORM = f"storm:{GROUP}"


def episode(of: Alert, first_seen: float, last_seen: float, **fields: Any) -> Episode:
    """
    The episode of an alert of the group, in production, with C{fields}
    (every duplicate counted toward escalation unless said otherwise).
    """
    status = fields.pop("status", "firing")
    fields.setdefault("counted", fields.get("duplicates", 0))
    return Episode(
        of.fingerprint, of.fingerprint, status, first_seen, last_seen, GROUP, "production", "alertmanager", **fields
    )


def member(of: Alert, seen_at: float) -> Member:
    return Member.of(of, GROUP_LABELS, seen_at)


def storm(**fields: Any) -> Group:
    """
    The group in storm C{s1}, which started 40 seconds ago.
    """
    values: dict[str, Any] = {
        "id": "s1",
        "group_id": GROUP,
        "group_labels": dict(GROUP_LABELS),
        "first_seen": NOW - 40,
        "last_seen": NOW - 5,
        "last_flush": NOW - 5,
        "members": 4,
        "listed": 2,
        "waiting": 2,
        "sequence": 1,
        **fields,
    }
    return Group(storm=Storm(**values))


@attrs.frozen
class State:
    """
    A starting state, built afresh for each run.
    """

    episodes: tuple[Episode, ...] = ()
    groups: Mapping[str, Group] = attrs.field(factory=dict)
    waiting: Mapping[str, tuple[Member, ...]] = attrs.field(factory=dict)

    def build(self) -> StateTable:
        table = StateTable()
        table.episodes.update((e.key, e) for e in self.episodes)
        table.groups.update(self.groups)
        table.members.update((g, list(members)) for g, members in self.waiting.items())
        return table


@attrs.frozen
class Sent:
    """
    One thing expected to be forwarded.

    @ivar idempotency_key: Exactly, or its shape.
    @ivar kind: The body's C{decision}, or C{storm:<state>} for a storm
        event.
    @ivar members: The fingerprints a storm event lists, in order.
    @ivar body: Other fields of the body that matter.
    """

    key: str
    idempotency_key: str | re.Pattern[str]
    kind: str
    members: tuple[str, ...] | None = None
    body: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Row:
    """
    One case: the starting state, the alerts (C{None} for a tick), C{now}
    and the settings; the verdicts, the changes and what is forwarded.

    @ivar episodes: Per dedup key written, the fields that matter of the
        episode written, or C{None} when it is forgotten.
    @ivar groups: Per group written, the facts that matter (see
        L{describe}), or C{None} when it is forgotten.
    @ivar waiting: Per group whose waiting list changes: (cleared, taken,
        fingerprints added).
    """

    name: str
    pins: str
    alerts: tuple[Alert, ...] | None
    state: State = State()
    verdicts: tuple[Verdict, ...] = ()
    episodes: Mapping[str, Mapping[str, Any] | None] = attrs.field(factory=dict)
    groups: Mapping[str, Mapping[str, Any] | None] = attrs.field(factory=dict)
    waiting: Mapping[str, tuple[bool, int, tuple[str, ...]]] = attrs.field(factory=dict)
    outgoing: tuple[Sent, ...] = ()
    now: float = NOW
    settings: DeciderSettings = SETTINGS


def describe(group: Group) -> dict[str, Any]:
    """
    What a row can say of a group: C{recent} (the fingerprints watched),
    C{storm} (whether it is in one) and C{storm.<field>}.
    """
    facts: dict[str, Any] = {"recent": tuple(m.fingerprint for m in group.recent), "storm": group.storm is not None}
    if group.storm is not None:
        facts.update((f"storm.{a.name}", getattr(group.storm, a.name)) for a in attrs.fields(Storm))
    return facts


def escalation(reason: str, count: int) -> dict[str, Any]:
    return {
        "level": "immediate",
        "reason": reason,
        "duplicateCount": count,
        "window": "5m",
        "environment": "production",
    }


DECIDE_ROWS = (
    Row(
        "new",
        "A firing alert of an unknown key is new: an episode starts now, "
        "forwarded under the occurrence's key in it; its group watches it.",
        (A,),
        verdicts=(NEW,),
        episodes={
            A.fingerprint: {
                "fingerprint": A.fingerprint,
                "status": "firing",
                "first_seen": NOW,
                "last_seen": NOW,
                "group_id": GROUP,
                "environment": "production",
                "duplicates": 0,
                "recent": (),
                "escalation": None,
                "storm_id": None,
                "delivery": Delivery.QUEUED,
                "forwarded": occurrence_key(A, NOW),
            }
        },
        groups={GROUP: {"recent": (A.fingerprint,), "storm": False}},
        outgoing=(
            Sent(
                A.fingerprint,
                occurrence_key(A, NOW),
                "new",
                body={
                    "dedupKey": A.fingerprint,
                    "groupId": GROUP,
                    "environment": "production",
                    "duplicateCount": 0,
                    "firstSeen": rfc3339(NOW),
                    "lastSeen": rfc3339(NOW),
                },
            ),
        ),
    ),
    Row(
        "duplicate_within_window",
        "A firing alert seen within the window is a duplicate: counted, its "
        "sighting kept for escalation, nothing forwarded, its group untouched.",
        (A,),
        State((episode(A, NOW - 200, NOW - 100, duplicates=1, recent=(NOW - 100,), forwarded="first"),)),
        verdicts=(DUPLICATE,),
        episodes={
            A.fingerprint: {
                "first_seen": NOW - 200,
                "last_seen": NOW,
                "duplicates": 2,
                "recent": (NOW - 100, NOW),
                "escalation": None,
                "forwarded": "first",
            }
        },
    ),
    Row(
        "duplicate_exactly_one_window_later",
        "A sighting exactly one window after the last is still a duplicate.",
        (A,),
        State((episode(A, NOW - 300, NOW - 300, forwarded="first"),)),
        verdicts=(DUPLICATE,),
        episodes={A.fingerprint: {"first_seen": NOW - 300, "last_seen": NOW, "duplicates": 1, "recent": (NOW,)}},
    ),
    Row(
        "duplicate_keeps_only_recent_within_rule",
        "A duplicate that does not cross the rule keeps only the sightings "
        "within the rule's window (older ones can no longer escalate it).",
        (A,),
        State((episode(A, NOW - 400, NOW - 100, duplicates=2, recent=(NOW - 301, NOW - 100)),)),
        verdicts=(DUPLICATE,),
        episodes={A.fingerprint: {"duplicates": 3, "recent": (NOW - 100, NOW), "escalation": None}},
    ),
    Row(
        "new_again_after_window_lapsed",
        "A firing alert whose episode lapsed (last seen just over a window "
        "ago) is new again: a fresh episode (count, escalation reset), "
        "forwarded under a key of the new episode, not the old one's.",
        (A,),
        State((episode(A, NOW - 1000, NOW - 300.001, duplicates=3, escalation="immediate", forwarded="old"),)),
        verdicts=(NEW,),
        episodes={
            A.fingerprint: {
                "first_seen": NOW,
                "last_seen": NOW,
                "duplicates": 0,
                "recent": (),
                "escalation": None,
                "forwarded": occurrence_key(A, NOW),
            }
        },
        groups={GROUP: {"recent": (A.fingerprint,), "storm": False}},
        outgoing=(Sent(A.fingerprint, occurrence_key(A, NOW), "new", body={"firstSeen": rfc3339(NOW)}),),
    ),
    Row(
        "resolved_closes_episode",
        "A resolved alert of a firing episode closes it and is forwarded "
        "once, keyed by the resolved occurrence in that episode.",
        (A_RESOLVED,),
        State((episode(A, NOW - 50, NOW - 50, duplicates=1, forwarded="first"),)),
        verdicts=(RESOLVED,),
        episodes={
            A.fingerprint: {
                "status": "resolved",
                "first_seen": NOW - 50,
                "last_seen": NOW,
                "duplicates": 1,
                "forwarded": occurrence_key(A_RESOLVED, NOW - 50),
            }
        },
        outgoing=(
            Sent(
                A.fingerprint,
                occurrence_key(A_RESOLVED, NOW - 50),
                "resolved",
                body={"status": "resolved", "duplicateCount": 1, "firstSeen": rfc3339(NOW - 50)},
            ),
        ),
    ),
    Row(
        "resolved_unknown_forwarded",
        "A resolved alert of an unknown key is forwarded (the processor may "
        "know it) and remembered as a closed episode; no group sees it.",
        (A_RESOLVED,),
        verdicts=(RESOLVED,),
        episodes={
            A.fingerprint: {
                "status": "resolved",
                "first_seen": NOW,
                "last_seen": NOW,
                "group_id": GROUP,
                "duplicates": 0,
                "forwarded": occurrence_key(A_RESOLVED, NOW),
            }
        },
        outgoing=(Sent(A.fingerprint, occurrence_key(A_RESOLVED, NOW), "resolved"),),
    ),
    Row(
        "resolved_after_window_lapsed_forwarded",
        "A resolved alert of an episode that lapsed is unknown too: a new closed episode, forwarded.",
        (A_RESOLVED,),
        State((episode(A, NOW - 500, NOW - 400, duplicates=2, forwarded="first"),)),
        verdicts=(RESOLVED,),
        episodes={
            A.fingerprint: {
                "status": "resolved",
                "first_seen": NOW,
                "duplicates": 0,
                "forwarded": occurrence_key(A_RESOLVED, NOW),
            }
        },
        outgoing=(Sent(A.fingerprint, occurrence_key(A_RESOLVED, NOW), "resolved"),),
    ),
    Row(
        "repeated_resolved_duplicate",
        "A resolved alert of a closed episode is a duplicate: counted, its "
        "last sighting moved, nothing forwarded, no sighting kept.",
        (A_RESOLVED,),
        State((episode(A, NOW - 50, NOW - 10, status="resolved", forwarded="closing"),)),
        verdicts=(DUPLICATE,),
        episodes={
            A.fingerprint: {
                "status": "resolved",
                "last_seen": NOW,
                "duplicates": 1,
                "recent": (),
                "forwarded": "closing",
            }
        },
    ),
    Row(
        "escalated_within",
        "The third duplicate within five minutes (production) escalates the "
        "episode: forwarded as escalated under the episode's key with "
        "-escalation, the reason saying 'within'; its sightings dropped.",
        (A,),
        State((episode(A, NOW - 120, NOW - 60, duplicates=2, recent=(NOW - 120, NOW - 60), forwarded="first"),)),
        verdicts=(ESCALATED,),
        episodes={
            A.fingerprint: {
                "last_seen": NOW,
                "duplicates": 3,
                "recent": (),
                "escalation": "immediate",
                "forwarded": f"{occurrence_key(A, NOW - 120)}-escalation",
            }
        },
        outgoing=(
            Sent(
                A.fingerprint,
                f"{occurrence_key(A, NOW - 120)}-escalation",
                "escalated",
                body={"duplicateCount": 3, "escalation": escalation("3 duplicates within 5m", 3)},
            ),
        ),
    ),
    Row(
        "escalated_total",
        "The fifth duplicate escalates by 'total' when its sightings are too far apart to count 'within'.",
        (A,),
        State((episode(A, NOW - 2000, NOW - 200, duplicates=4, recent=(NOW - 400,), forwarded="first"),)),
        verdicts=(ESCALATED,),
        episodes={
            A.fingerprint: {
                "duplicates": 5,
                "recent": (),
                "escalation": "immediate",
                "forwarded": f"{occurrence_key(A, NOW - 2000)}-escalation",
            }
        },
        outgoing=(
            Sent(
                A.fingerprint,
                f"{occurrence_key(A, NOW - 2000)}-escalation",
                "escalated",
                body={"duplicateCount": 5, "escalation": escalation("5 duplicates in total", 5)},
            ),
        ),
    ),
    Row(
        "not_escalated_twice",
        "An escalated episode's duplicates are only counted, however many and however close: it escalates once.",
        (A, A, A),
        State((episode(A, NOW - 250, NOW - 10, duplicates=9, escalation="immediate", forwarded="esc"),)),
        verdicts=(DUPLICATE, DUPLICATE, DUPLICATE),
        episodes={A.fingerprint: {"duplicates": 12, "recent": (), "escalation": "immediate", "forwarded": "esc"}},
    ),
    Row(
        "dedup_disabled",
        "Without deduplication every firing alert is new, even one of a "
        "live episode, each forwarded under the alert's own idempotency key.",
        (A, A),
        State((episode(A, NOW - 100, NOW - 10, duplicates=2, forwarded="first"),)),
        verdicts=(NEW, NEW),
        episodes={
            A.fingerprint: {"first_seen": NOW, "duplicates": 0, "recent": (), "forwarded": A.idempotency_key},
        },
        groups={GROUP: {"recent": (A.fingerprint,), "storm": False}},
        outgoing=(Sent(A.fingerprint, A.idempotency_key, "new"), Sent(A.fingerprint, A.idempotency_key, "new")),
        settings=attrs.evolve(SETTINGS, dedup=False),
    ),
    Row(
        "ignore_labels_merge_replicas",
        "Two HA replicas of one alert (differing in an ignored label) are "
        "one dedup key: the second replica's firing is a duplicate, and so "
        "is its resolution while the first still fires; the first's "
        "resolution closes the episode.  Both forwards are ordered by that "
        "key and carry their own fingerprints.",
        (A_REPLICA_1, A_REPLICA_2, A_REPLICA_2_RESOLVED, A_REPLICA_1_RESOLVED),
        verdicts=(NEW, DUPLICATE, DUPLICATE, RESOLVED),
        episodes={
            A.fingerprint: {
                "fingerprint": A_REPLICA_1.fingerprint,
                "status": "resolved",
                "first_seen": NOW,
                "duplicates": 2,
                "forwarded": occurrence_key(A_REPLICA_1_RESOLVED, NOW),
            }
        },
        groups={GROUP: {"recent": (A_REPLICA_1.fingerprint,), "storm": False}},
        outgoing=(
            Sent(
                A.fingerprint,
                occurrence_key(A_REPLICA_1, NOW),
                "new",
                body={"fingerprint": A_REPLICA_1.fingerprint, "dedupKey": A.fingerprint},
            ),
            Sent(
                A.fingerprint,
                occurrence_key(A_REPLICA_1_RESOLVED, NOW),
                "resolved",
                body={"fingerprint": A_REPLICA_1_RESOLVED.fingerprint, "dedupKey": A.fingerprint},
            ),
        ),
        settings=attrs.evolve(SETTINGS, ignore_labels=("replica",)),
    ),
    Row(
        "storm_starts",
        "The fingerprint that makes more than threshold of a group within "
        "the window starts a storm: folded, not forwarded alone; one started "
        "event lists the first max_members_listed members, oldest first, "
        "and the rest wait.",
        (D,),
        State(groups={GROUP: Group(recent=(member(A, NOW - 30), member(B, NOW - 20), member(C, NOW - 10)))}),
        verdicts=(AGGREGATED,),
        episodes={D.fingerprint: {"status": "firing", "storm_id": NEW_STORM, "forwarded": None}},
        groups={
            GROUP: {
                "recent": (),
                "storm": True,
                "storm.members": 4,
                "storm.listed": 2,
                "storm.waiting": 2,
                "storm.sequence": 1,
                "storm.first_seen": NOW - 30,
                "storm.last_seen": NOW,
                "storm.last_flush": NOW,
            }
        },
        waiting={GROUP: (False, 0, (C.fingerprint, D.fingerprint))},
        outgoing=(
            Sent(
                STORM,
                FIRST_EVENT,
                "storm:started",
                members=(A.fingerprint, B.fingerprint),
                body={
                    "memberCount": 4,
                    "unlistedMembers": 2,
                    "groupLabels": GROUP_LABELS,
                    "firstSeen": rfc3339(NOW - 30),
                    "lastSeen": rfc3339(NOW),
                },
            ),
        ),
    ),
    Row(
        "storm_not_started_at_threshold",
        "Threshold distinct fingerprints (one of them lapsed from the "
        "window) are no storm: the new one is forwarded alone.",
        (D,),
        State(groups={GROUP: Group(recent=(member(A, NOW - 60.001), member(B, NOW - 20), member(C, NOW - 10)))}),
        verdicts=(NEW,),
        episodes={D.fingerprint: {"storm_id": None, "forwarded": occurrence_key(D, NOW)}},
        groups={GROUP: {"recent": (B.fingerprint, C.fingerprint, D.fingerprint), "storm": False}},
        outgoing=(Sent(D.fingerprint, occurrence_key(D, NOW), "new"),),
    ),
    Row(
        "member_folded_into_storm",
        "A new member of a group in a storm is folded into it: counted, waiting to be listed, nothing forwarded now.",
        (E,),
        State(groups={GROUP: storm()}, waiting={GROUP: (member(C, NOW - 40), member(D, NOW - 40))}),
        verdicts=(AGGREGATED,),
        episodes={E.fingerprint: {"storm_id": "s1", "forwarded": None, "delivery": Delivery.QUEUED}},
        groups={
            GROUP: {
                "storm.id": "s1",
                "storm.members": 5,
                "storm.listed": 2,
                "storm.waiting": 3,
                "storm.sequence": 1,
                "storm.last_seen": NOW,
                "storm.last_flush": NOW - 5,
            }
        },
        waiting={GROUP: (False, 0, (E.fingerprint,))},
    ),
    Row(
        "member_past_max_pending_only_counted",
        "A member of a storm with max_pending members waiting is only counted: the waiting list is not written.",
        (E,),
        State(groups={GROUP: storm()}, waiting={GROUP: (member(C, NOW - 40), member(D, NOW - 40))}),
        verdicts=(AGGREGATED,),
        episodes={E.fingerprint: {"storm_id": "s1"}},
        groups={GROUP: {"storm.members": 5, "storm.waiting": 2, "storm.listed": 2}},
        settings=attrs.evolve(SETTINGS, storms=attrs.evolve(STORMS, max_pending=2)),
    ),
    Row(
        "batch_sees_its_own_episodes",
        "Within a batch, the second sighting of a key is a duplicate of the "
        "episode the first started: one episode written, one forward.",
        (A, A),
        verdicts=(NEW, DUPLICATE),
        episodes={
            A.fingerprint: {
                "first_seen": NOW,
                "duplicates": 1,
                "recent": (NOW,),
                "forwarded": occurrence_key(A, NOW),
            }
        },
        groups={GROUP: {"recent": (A.fingerprint,), "storm": False}},
        outgoing=(Sent(A.fingerprint, occurrence_key(A, NOW), "new"),),
    ),
    Row(
        "batch_sees_its_own_storm",
        "Within a batch, the alert after the one that started a storm is "
        "folded into that storm; the waiting list gets both in order.",
        (C, D, E),
        State(groups={GROUP: Group(recent=(member(A, NOW - 20), member(B, NOW - 10)))}),
        verdicts=(NEW, AGGREGATED, AGGREGATED),
        episodes={
            C.fingerprint: {"storm_id": None, "forwarded": occurrence_key(C, NOW)},
            D.fingerprint: {"storm_id": NEW_STORM, "forwarded": None},
            E.fingerprint: {"storm_id": NEW_STORM, "forwarded": None},
        },
        groups={
            GROUP: {
                "recent": (),
                "storm.members": 5,
                "storm.listed": 2,
                "storm.waiting": 3,
                "storm.sequence": 1,
                "storm.first_seen": NOW - 20,
            }
        },
        waiting={GROUP: (False, 0, (C.fingerprint, D.fingerprint, E.fingerprint))},
        outgoing=(
            Sent(C.fingerprint, occurrence_key(C, NOW), "new"),
            Sent(
                STORM,
                FIRST_EVENT,
                "storm:started",
                members=(A.fingerprint, B.fingerprint),
                body={"memberCount": 4, "unlistedMembers": 2},
            ),
        ),
    ),
    Row(
        "storms_off",
        "With storms off, new alerts are forwarded and no group is written.",
        (A, B, C, D),
        verdicts=(NEW, NEW, NEW, NEW),
        episodes={a.fingerprint: {"storm_id": None, "forwarded": occurrence_key(a, NOW)} for a in (A, B, C, D)},
        outgoing=tuple(Sent(a.fingerprint, occurrence_key(a, NOW), "new") for a in (A, B, C, D)),
        settings=attrs.evolve(SETTINGS, storms=None),
    ),
)

TICK_ROWS = (
    Row(
        "tick_sends_update",
        "A storm with members waiting sends an update once the flush "
        "interval has passed since its last event, listing the oldest "
        "max_members_listed of them.",
        None,
        State(
            groups={GROUP: storm(members=5, waiting=3, last_flush=NOW - 10)},
            waiting={GROUP: (member(C, NOW - 40), member(D, NOW - 40), member(E, NOW - 5))},
        ),
        groups={
            GROUP: {
                "storm.members": 5,
                "storm.listed": 4,
                "storm.waiting": 1,
                "storm.sequence": 2,
                "storm.last_flush": NOW,
                "storm.last_seen": NOW - 5,
            }
        },
        waiting={GROUP: (False, 2, ())},
        outgoing=(
            Sent(
                STORM,
                "s1-2",
                "storm:update",
                members=(C.fingerprint, D.fingerprint),
                body={"memberCount": 5, "unlistedMembers": 1, "sequence": 2, "stormId": "s1"},
            ),
        ),
    ),
    Row(
        "tick_nothing_due",
        "Just before the flush interval, and before the quiet period, a tick changes and sends nothing.",
        None,
        State(
            groups={GROUP: storm(last_flush=NOW - 9.999, last_seen=NOW - 29.999)},
            waiting={GROUP: (member(C, NOW - 40), member(D, NOW - 40))},
        ),
    ),
    Row(
        "tick_closes_quiet_storm",
        "A storm quiet for the quiet period closes with an event listing "
        "the rest; the group and its waiting list are dropped.",
        None,
        State(
            groups={GROUP: storm(members=5, listed=3, waiting=2, sequence=2, last_seen=NOW - 30)},
            waiting={GROUP: (member(D, NOW - 40), member(E, NOW - 30))},
        ),
        groups={GROUP: None},
        waiting={GROUP: (True, 2, ())},
        outgoing=(
            Sent(
                STORM,
                "s1-3",
                "storm:closed",
                members=(D.fingerprint, E.fingerprint),
                body={"memberCount": 5, "unlistedMembers": 0},
            ),
        ),
    ),
    Row(
        "tick_update_then_close",
        "A quiet storm whose update is due and whose rest then fits in one "
        "event sends the update and the closing event in one tick.",
        None,
        State(
            groups={GROUP: storm(members=5, waiting=3, last_seen=NOW - 30, last_flush=NOW - 10)},
            waiting={GROUP: (member(C, NOW - 40), member(D, NOW - 40), member(E, NOW - 30))},
        ),
        groups={GROUP: None},
        waiting={GROUP: (True, 3, ())},
        outgoing=(
            Sent(STORM, "s1-2", "storm:update", members=(C.fingerprint, D.fingerprint), body={"unlistedMembers": 1}),
            Sent(STORM, "s1-3", "storm:closed", members=(E.fingerprint,), body={"unlistedMembers": 0}),
        ),
    ),
    Row(
        "tick_quiet_storm_with_backlog_stays_open",
        "A quiet storm with more members waiting than one event lists is "
        "not closed: it sends an update and stays open.",
        None,
        State(
            groups={GROUP: storm(members=7, waiting=5, last_seen=NOW - 30, last_flush=NOW - 10)},
            waiting={GROUP: tuple(member(m, NOW - 30) for m in (C, D, E, F, G))},
        ),
        groups={GROUP: {"storm": True, "storm.listed": 4, "storm.waiting": 3, "storm.sequence": 2}},
        waiting={GROUP: (False, 2, ())},
        outgoing=(Sent(STORM, "s1-2", "storm:update", members=(C.fingerprint, D.fingerprint)),),
    ),
    Row(
        "tick_storms_off",
        "With storms off a tick does nothing, whatever the state holds.",
        None,
        State(groups={GROUP: storm(last_seen=NOW - 100, last_flush=NOW - 100)}),
        settings=attrs.evolve(SETTINGS, storms=None),
    ),
)


def run(row: Row, view: StateTable) -> Decision:
    if row.alerts is None:
        return tick(view, row.now, row.settings)
    return decide(view, row.alerts, row.now, row.settings)


def contents(table: StateTable) -> tuple[Any, ...]:
    """
    Everything a table holds, copied deeply.
    """
    return copy.deepcopy((table.episodes, table.groups, table.members))


class DecideTableTests(SynchronousTestCase):
    """
    decide() and tick() as pure functions, row by row.
    """

    def check(self, row: Row) -> None:
        decision = run(row, row.state.build())
        changes = decision.changes
        self.assertEqual(tuple(r.verdict for r in decision.rulings), row.verdicts)
        # Episodes written, with the fields that matter.
        self.assertEqual(set(changes.episodes), set(row.episodes))
        for key, expected in row.episodes.items():
            written = changes.episodes[key]
            if expected is None:
                self.assertIsNone(written, key)
                continue
            assert written is not None, key
            self.assertEqual(written.key, key)
            wanted = dict(expected)
            if wanted.get("storm_id") == NEW_STORM:
                started = changes.groups[written.group_id]
                assert started is not None and started.storm is not None
                wanted["storm_id"] = started.storm.id
            self.assertEqual({name: getattr(written, name) for name in wanted}, wanted, key)
        # Groups written.
        self.assertEqual(set(changes.groups), set(row.groups))
        for group, facts in row.groups.items():
            value = changes.groups[group]
            if facts is None:
                self.assertIsNone(value, group)
                continue
            assert value is not None, group
            described = describe(value)
            self.assertEqual({name: described[name] for name in facts}, dict(facts), group)
        # Waiting lists.
        self.assertEqual(
            {g: (c.cleared, c.taken, tuple(m.fingerprint for m in c.added)) for g, c in changes.waiting.items()},
            dict(row.waiting),
        )
        # Forwards.
        self.assertEqual(len(decision.outgoing), len(row.outgoing), decision.outgoing)
        for sent, expected_sent in zip(decision.outgoing, row.outgoing, strict=True):
            body = sent.body
            self.assertEqual(sent.key, expected_sent.key)
            if isinstance(expected_sent.idempotency_key, str):
                self.assertEqual(sent.idempotency_key, expected_sent.idempotency_key)
            else:
                self.assertRegex(sent.idempotency_key, expected_sent.idempotency_key)
            is_storm = body.get("type") == "storm"
            self.assertEqual(f"storm:{body['state']}" if is_storm else body["decision"], expected_sent.kind)
            if is_storm:
                # An event is keyed by its storm and its place in it.
                self.assertEqual(sent.idempotency_key, f"{body['stormId']}-{body['sequence']}")
                if body["state"] == "started":
                    started = changes.groups[body["groupId"]]
                    assert started is not None and started.storm is not None
                    self.assertEqual(body["stormId"], started.storm.id)
            if expected_sent.members is not None:
                self.assertEqual(tuple(m["fingerprint"] for m in body["members"]), expected_sent.members)
            self.assertEqual({name: body[name] for name in expected_sent.body}, dict(expected_sent.body))

    def test_decide_rows(self) -> None:
        """
        Each row of L{DECIDE_ROWS}: from its state, its alerts give the
        verdicts, changes and forwards it lists (see each row's C{pins}).
        """
        for row in DECIDE_ROWS:
            with self.subTest(row=row.name, pins=row.pins):
                self.check(row)

    def test_tick_rows(self) -> None:
        """
        Each row of L{TICK_ROWS}: from its state, a tick gives the changes
        and storm events it lists (see each row's C{pins}).
        """
        for row in TICK_ROWS:
            with self.subTest(row=row.name, pins=row.pins):
                self.check(row)

    def test_tick_rows_write_nothing_when_idle(self) -> None:
        """
        A tick with nothing due gives an empty decision: falsy changes, no
        rulings, nothing forwarded (a store need not commit it).
        """
        for row in TICK_ROWS:
            if not row.outgoing:
                with self.subTest(row=row.name):
                    decision = run(row, row.state.build())
                    self.assertFalse(decision.changes)
                    self.assertEqual((decision.rulings, decision.outgoing), ((), ()))

    def test_view_not_modified(self) -> None:
        """
        Deciding (or ticking) reads the view and changes nothing in it: the
        table deep-compares equal before and after, and deciding again on it
        gives the same decision.
        """
        for row in DECIDE_ROWS + TICK_ROWS:
            with self.subTest(row=row.name):
                view = row.state.build()
                before = contents(view)
                decision = run(row, view)
                self.assertEqual(contents(view), before)
                self.assertEqual(run(row, view), decision)

    def test_changes_are_all_a_decision_leaves(self) -> None:
        """
        Committing a row's changes and deciding its batch again rules as
        the second half of one batch of it twice: what later alerts of a
        batch see of earlier ones is exactly what the changes commit.
        """
        for row in DECIDE_ROWS:
            alerts = row.alerts
            assert alerts is not None
            with self.subTest(row=row.name):
                view = row.state.build()
                view.apply(decide(view, alerts, row.now, row.settings).changes)
                again = decide(view, alerts, row.now, row.settings)
                twice = decide(row.state.build(), (*alerts, *alerts), row.now, row.settings)
                self.assertEqual(again.rulings, twice.rulings[len(alerts) :])
