# -*- test-case-name: tests.unit.test_decide -*-
"""
Alert storms: one failure firing on many members of a correlation group.

When more than C{threshold} distinct new fingerprints of one group arrive
within C{window}, the group is in a storm.  The storm is forwarded at once as
one event listing the members so far; later new members are folded into it
and sent as updates at most every C{flush_interval}; after C{quiet_period}
without a new member a closing summary ends it.  Every member is listed in
some event (a member beyond C{max_members_listed} waits for the next one,
and a quiet storm is closed only once the rest fit in one event); the count
is always complete.  A storm keeps at most C{max_pending} members, and
C{max_pending_bytes} of them, waiting: beyond, a member is only counted,
and the events say how many were never listed.  Sizes are counted as an
event's JSON would hold the members (L{Member.size}): an event lists at
most C{max_event_bytes} of them (and at least one), and a member keeps at
most C{max_member_bytes} of its labels.

These are values and pure functions: the waiting members are kept by the
store, in order, and read through the head function L{flush} is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from alertgateway.core.members import Member
from alertgateway.core.timefmt import rfc3339

__all__ = ["Flushed", "Group", "Member", "Sighting", "Storm", "StormEvent", "StormSettings", "flush", "sight"]


@attrs.frozen
class StormSettings:
    threshold: int = 10
    window: float = 60.0
    flush_interval: float = 30.0
    quiet_period: float = 300.0
    max_members_listed: int = 100
    # Members of one storm kept waiting to be listed; past either bound a
    # member is only counted.
    max_pending: int = 10_000
    max_pending_bytes: int = 1024 * 1024
    # Members' JSON in one event (always at least one member).
    max_event_bytes: int = 256 * 1024
    # Names and values of the labels one member keeps.
    max_member_bytes: int = 1024


@attrs.frozen
class Storm:
    """
    One group's storm.

    @ivar members: Every member folded into it, listed or not.
    @ivar listed: Members listed in an event so far.
    @ivar waiting: Members waiting (in the store) to be listed.
    @ivar sequence: Events sent so far.
    @ivar waiting_bytes: The size of the waiting members (L{Member.size}).
    """

    id: str
    group_id: str
    group_labels: Mapping[str, str]
    first_seen: float
    last_seen: float
    last_flush: float
    members: int = 0
    listed: int = 0
    waiting: int = 0
    sequence: int = 0
    waiting_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """
        The storm as a store keeps it (its waiting members apart).
        """
        return {
            "id": self.id,
            "group_id": self.group_id,
            "group_labels": dict(self.group_labels),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "last_flush": self.last_flush,
            "members": self.members,
            "listed": self.listed,
            "waiting": self.waiting,
            "sequence": self.sequence,
            "waiting_bytes": self.waiting_bytes,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], waiting: int | None = None) -> Storm:
        """
        Read what L{to_json} wrote; C{waiting} when the store counts the
        waiting members itself.  (An older gateway did not count the bytes
        of the waiting members: they count from the next one.)
        """
        return cls(
            id=str(data["id"]),
            group_id=str(data["group_id"]),
            group_labels={str(k): str(v) for k, v in data["group_labels"].items()},
            first_seen=float(data["first_seen"]),
            last_seen=float(data["last_seen"]),
            last_flush=float(data["last_flush"]),
            members=int(data["members"]),
            listed=int(data["listed"]),
            waiting=int(data.get("waiting") or 0) if waiting is None else waiting,
            sequence=int(data["sequence"]),
            waiting_bytes=int(data.get("waiting_bytes") or 0),
        )


@attrs.frozen
class Group:
    """
    What is known of one correlation group: the distinct new fingerprints
    seen within the window while it is not in a storm, or its storm.
    """

    recent: tuple[Member, ...] = ()
    storm: Storm | None = None

    def to_json(self) -> dict[str, Any]:
        """
        The group as a store keeps it (its storm's waiting members apart).
        """
        return {
            "recent": [member.to_json() for member in self.recent],
            "storm": self.storm.to_json() if self.storm is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], waiting: int | None = None) -> Group:
        storm = data.get("storm")
        return cls(
            recent=tuple(Member.from_json(m) for m in data.get("recent") or ()),
            storm=Storm.from_json(storm, waiting) if storm is not None else None,
        )


@attrs.frozen
class StormEvent:
    """
    One event of a storm: its state after the event, and who it lists.
    """

    storm: Storm
    state: str
    listed: tuple[Member, ...]

    @property
    def key(self) -> str:
        """
        Events of one group's storms are delivered in order.
        """
        return f"storm:{self.storm.group_id}"

    @property
    def idempotency_key(self) -> str:
        return f"{self.storm.id}-{self.storm.sequence}"

    def to_json(self) -> dict[str, Any]:
        storm = self.storm
        return {
            "type": "storm",
            "stormId": storm.id,
            "groupId": storm.group_id,
            "state": self.state,
            "sequence": storm.sequence,
            "groupLabels": dict(storm.group_labels),
            "memberCount": storm.members,
            "members": [member.event_json() for member in self.listed],
            # Still to be listed in a later event, or (past the bound on
            # waiting members) never: the closing event says how many.
            "unlistedMembers": storm.members - storm.listed,
            "firstSeen": rfc3339(storm.first_seen),
            "lastSeen": rfc3339(storm.last_seen),
        }


def _sizes(members: Sequence[Member]) -> int:
    return sum(member.size for member in members)


def _event(storm: Storm, state: str, listed: Sequence[Member]) -> StormEvent:
    after = attrs.evolve(
        storm,
        listed=storm.listed + len(listed),
        waiting=storm.waiting - len(listed),
        # Never below zero: a storm of an older gateway did not count them.
        waiting_bytes=max(0, storm.waiting_bytes - _sizes(listed)),
        sequence=storm.sequence + 1,
    )
    return StormEvent(after, state, tuple(listed))


def _fitting(members: Sequence[Member], settings: StormSettings) -> Sequence[Member]:
    """
    The first of C{members} that one event lists: at most
    C{max_members_listed} and C{max_event_bytes} of them, at least one.
    """
    members = members[: settings.max_members_listed]
    used = 0
    for index, member in enumerate(members):
        used += member.size
        if used > settings.max_event_bytes and index:
            return members[:index]
    return members


def _wait(storm: Storm, members: Sequence[Member], settings: StormSettings) -> tuple[Storm, tuple[Member, ...]]:
    """
    The storm with C{members} (already counted) waiting, as many as its
    bounds let wait, in order; the others are only counted.
    """
    waiting, size = storm.waiting, storm.waiting_bytes
    admitted: list[Member] = []
    for member in members:
        if waiting >= settings.max_pending or size + member.size > settings.max_pending_bytes:
            break
        admitted.append(member)
        waiting += 1
        size += member.size
    return attrs.evolve(storm, waiting=waiting, waiting_bytes=size), tuple(admitted)


@attrs.frozen
class Sighting:
    """
    What noting a new member of a group did.

    @ivar group: The group afterwards.
    @ivar folded: Whether the member belongs to a storm (and is not to be
        forwarded on its own).
    @ivar waiting: Members now waiting to be listed, to append to the
        storm's waiting list in this order.
    @ivar event: The event of a storm that the member started.
    """

    group: Group
    folded: bool
    waiting: tuple[Member, ...] = ()
    event: StormEvent | None = None


def sight(
    group: Group | None,
    member: Member,
    group_id: str,
    group_labels: Mapping[str, str],
    now: float,
    settings: StormSettings,
) -> Sighting:
    """
    Note a new (not duplicate) firing alert of a group.
    """
    if group is not None and group.storm is not None:
        storm = attrs.evolve(group.storm, members=group.storm.members + 1, last_seen=now)
        storm, waiting = _wait(storm, (member,), settings)
        return Sighting(Group(storm=storm), folded=True, waiting=waiting)
    recent = group.recent if group is not None else ()
    # "Within" as for the dedup window: a fingerprint seen exactly one
    # window ago still counts.
    cutoff = now - settings.window
    lapsed = 0
    while lapsed < len(recent) and recent[lapsed].seen_at < cutoff:
        lapsed += 1
    if lapsed:
        recent = recent[lapsed:]
    if all(seen.fingerprint != member.fingerprint for seen in recent):
        recent = (*recent, member)
    if len(recent) <= settings.threshold:
        return Sighting(Group(recent=recent), folded=False)
    seed = f"{group_id}\x00{now}"
    storm = Storm(
        id=hashlib.sha256(seed.encode()).hexdigest()[:16],
        group_id=group_id,
        group_labels=dict(group_labels),
        first_seen=recent[0].seen_at,
        last_seen=now,
        last_flush=now,
        members=len(recent),
    )
    listed = _fitting(recent, settings)
    # The listed ones pass through the waiting list's count on their way
    # into the event.
    storm = attrs.evolve(storm, waiting=len(listed), waiting_bytes=_sizes(listed))
    event = _event(storm, "started", listed)
    storm, waiting = _wait(event.storm, recent[len(listed) :], settings)
    return Sighting(Group(storm=storm), folded=True, waiting=waiting, event=attrs.evolve(event, storm=storm))


@attrs.frozen
class Flushed:
    """
    What a tick did to one storm.

    @ivar group: The group afterwards, C{None} once its storm is closed.
    @ivar taken: Waiting members listed, from the head of the list.
    """

    group: Group | None
    taken: int
    events: tuple[StormEvent, ...]


def flush(
    storm: Storm, head: Callable[[int, int], Sequence[Member]], now: float, settings: StormSettings
) -> Flushed | None:
    """
    Send a storm's update if one is due, and close it if it is quiet.

    A quiet storm with more members waiting than one event lists (in
    count or in bytes) keeps sending updates at the flush interval until
    the rest fit in its closing event: updates never come faster, and no
    member is left out.

    @param head: C{head(offset, count)} gives waiting members, oldest first.
    @return: C{None} when nothing is due.
    """
    limit = settings.max_members_listed
    events: list[StormEvent] = []
    taken = 0
    due = now - storm.last_flush >= settings.flush_interval
    quiet = now - storm.last_seen >= settings.quiet_period

    def rest(offset: int, storm: Storm) -> Sequence[Member] | None:
        # The members still waiting after offset, if one event can list
        # them all (in count and in bytes).
        if storm.waiting > limit:
            return None
        members = head(offset, storm.waiting)
        return members if len(_fitting(members, settings)) == len(members) else None

    if storm.waiting and due and not (quiet and rest(0, storm) is not None):
        listed = _fitting(head(0, min(limit, storm.waiting)), settings)
        event = _event(attrs.evolve(storm, last_flush=now), "update", listed)
        events.append(event)
        storm, taken = event.storm, len(listed)
    if quiet:
        closing = rest(taken, storm)
        if closing is not None:
            events.append(_event(storm, "closed", closing))
            return Flushed(None, taken + len(closing), tuple(events))
    if not events:
        return None
    return Flushed(Group(storm=storm), taken, tuple(events))
