"""
Alert storms: one failure firing on many members of a group.

When more than C{threshold} distinct new fingerprints of one correlation
group arrive within C{window}, the group is in a storm.  The storm is
forwarded at once as one event listing the members so far; later new members
are folded into it and sent as updates at most every C{flush_interval}; after
C{quiet_period} without a new member a closing summary ends it.  Every member
is listed in some event (a member beyond C{max_members_listed} waits for the
next one, and a quiet storm is closed only once the rest fit in one event);
the count is always complete.  Memory is bounded: a storm keeps at most
C{max_pending} members waiting (beyond, a member is only counted, and the
events say how many were never listed), and at most C{max_groups} groups are
watched for a storm.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from alertgateway.core.model import Alert

__all__ = ["Storm", "StormTracker"]

# Groups watched for a storm at once; the least recently active go first.
_MAX_GROUPS = 10_000


@attrs.define
class Storm:
    """
    One group's storm.

    @ivar members: Every member folded into it, listed or not.
    @ivar listed: Members listed in an event so far.
    @ivar pending: Members waiting to be listed, oldest first.
    """

    id: str
    group_id: str
    group_labels: dict[str, str]
    first_seen: float
    last_seen: float
    last_flush: float
    members: int = 0
    listed: int = 0
    pending: deque[dict[str, Any]] = attrs.field(factory=deque)
    sequence: int = 0

    def event(self, state: str, limit: int) -> dict[str, Any]:
        listed = [self.pending.popleft() for _ in range(min(limit, len(self.pending)))]
        self.listed += len(listed)
        self.sequence += 1
        return {
            "type": "storm",
            "stormId": self.id,
            "groupId": self.group_id,
            "state": state,
            "sequence": self.sequence,
            "groupLabels": dict(self.group_labels),
            "memberCount": self.members,
            "members": listed,
            # Still to be listed in a later event, or (past the memory
            # bound) never: the closing event says how many were not.
            "unlistedMembers": self.members - self.listed,
            "firstSeen": self.first_seen,
            "lastSeen": self.last_seen,
        }


@attrs.frozen
class _Saved:
    """
    What a group was before a decision (see L{StormTracker.snapshot}).
    """

    recent: list[dict[str, Any]] | None
    storm: Storm | None
    counters: tuple[int, int, float, int] | None
    pending: int


def _member(alert: Alert, group_labels: Mapping[str, str], seen: float) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "labels": {k: v for k, v in alert.labels.items() if k not in group_labels},
        "status": alert.status,
        "seenAt": seen,
    }


class StormTracker:
    """
    Watch new fingerprints per group and fold storms.

    @ivar max_pending: Members of one storm kept waiting to be listed; past
        it a member is only counted.
    """

    def __init__(
        self,
        *,
        threshold: int,
        window: float,
        flush_interval: float,
        quiet_period: float,
        max_members_listed: int,
        max_pending: int = 10_000,
        max_groups: int = _MAX_GROUPS,
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.flush_interval = flush_interval
        self.quiet_period = quiet_period
        self.max_members_listed = max_members_listed
        self.max_pending = max_pending
        self.max_groups = max_groups
        # Per group, the distinct new fingerprints within the window, as the
        # members they would be (not whole alerts: annotations can be big).
        self._recent: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self.storms: dict[str, Storm] = {}
        self.aggregated = 0

    def snapshot(self, group_ids: Iterable[str]) -> dict[str, _Saved]:
        """
        What deciding on C{group_ids} may change, for L{restore}.

        Cheap whatever the storm's size (it runs for every webhook, and
        most of all during storms): deciding only appends members to a
        storm, so its counters and the length of its pending list are
        enough to take them back; a group's recent members are at most
        C{threshold + 1}, copied.
        """
        saved = {}
        for group in set(group_ids):
            recent = self._recent.get(group)
            storm = self.storms.get(group)
            saved[group] = _Saved(
                recent=list(recent) if recent is not None else None,
                storm=storm,
                counters=(storm.members, storm.listed, storm.last_seen, storm.sequence) if storm else None,
                pending=len(storm.pending) if storm is not None else 0,
            )
        return saved

    def restore(self, saved: Mapping[str, _Saved], aggregated: int) -> None:
        """
        Put back what L{snapshot} saved: a batch whose forwards could not be
        queued is to be decided again, as if never seen.
        """
        for group, before in saved.items():
            self._recent.pop(group, None)
            if before.recent is not None:
                self._recent[group] = deque(before.recent)
            self.storms.pop(group, None)
            storm = before.storm
            if storm is not None and before.counters is not None:
                storm.members, storm.listed, storm.last_seen, storm.sequence = before.counters
                while len(storm.pending) > before.pending:
                    storm.pending.pop()
                self.storms[group] = storm
        self.aggregated = aggregated

    def fresh(self) -> StormTracker:
        """
        An empty tracker with the same settings: the view of a few groups
        loaded from shared state.
        """
        return StormTracker(
            threshold=self.threshold,
            window=self.window,
            flush_interval=self.flush_interval,
            quiet_period=self.quiet_period,
            max_members_listed=self.max_members_listed,
            max_pending=self.max_pending,
            max_groups=self.max_groups,
        )

    def export(self, group_id: str) -> dict[str, Any] | None:
        """
        What is known of one group, as JSON-ready data (for shared state),
        or C{None} when nothing is.
        """
        recent = self._recent.get(group_id)
        storm = self.storms.get(group_id)
        if recent is None and storm is None:
            return None
        return {
            "recent": list(recent) if recent is not None else None,
            "storm": {**attrs.asdict(storm), "pending": list(storm.pending)} if storm is not None else None,
        }

    def adopt(self, group_id: str, data: Mapping[str, Any]) -> None:
        """
        Take what L{export} gave (by this process or another replica).
        """
        if data.get("recent") is not None:
            self._recent[group_id] = deque(data["recent"])
        storm = data.get("storm")
        if storm is not None:
            self.storms[group_id] = Storm(**{**storm, "pending": deque(storm["pending"])})

    def storm_of(self, group_id: str) -> Storm | None:
        return self.storms.get(group_id)

    def watched(self) -> int:
        """
        How many groups are watched for a storm (for tests of the bound).
        """
        return len(self._recent)

    def new_member(
        self, alert: Alert, group_id: str, group_labels: Mapping[str, str], now: float
    ) -> tuple[bool, list[dict[str, Any]]]:
        """
        Note a new (not duplicate) firing alert of a group.

        @return: Whether it was folded into a storm (not to be forwarded on
            its own), and storm events to forward now.
        """
        storm = self.storms.get(group_id)
        if storm is not None:
            self._fold(storm, alert, group_labels, now)
            return True, []
        recent = self._recent.get(group_id)
        if recent is None:
            recent = self._recent[group_id] = deque()
            while len(self._recent) > self.max_groups:
                self._recent.popitem(last=False)
        self._recent.move_to_end(group_id)
        # "Within" as for the dedup window: a fingerprint seen exactly one
        # window ago still counts.
        while recent and recent[0]["seenAt"] < now - self.window:
            recent.popleft()
        if all(member["fingerprint"] != alert.fingerprint for member in recent):
            recent.append(_member(alert, group_labels, now))
        if len(recent) <= self.threshold:
            return False, []
        seed = f"{group_id}\x00{now}"
        storm = Storm(
            id=hashlib.sha256(seed.encode()).hexdigest()[:16],
            group_id=group_id,
            group_labels=dict(group_labels),
            first_seen=recent[0]["seenAt"],
            last_seen=now,
            last_flush=now,
            members=len(recent),
            pending=recent,
        )
        self.storms[group_id] = storm
        del self._recent[group_id]
        self.aggregated += 1
        return True, [storm.event("started", self.max_members_listed)]

    def _fold(self, storm: Storm, alert: Alert, group_labels: Mapping[str, str], now: float) -> None:
        storm.members += 1
        storm.last_seen = now
        if len(storm.pending) < self.max_pending:
            storm.pending.append(_member(alert, group_labels, now))
        self.aggregated += 1

    def tick(self, now: float) -> list[dict[str, Any]]:
        """
        Flush storm updates that are due and close quiet storms.

        A quiet storm with more members waiting than one event lists keeps
        sending updates at the flush interval until the rest fit in its
        closing event: updates never come faster, and no member is left out.
        """
        events = []
        limit = self.max_members_listed
        for group_id, storm in list(self.storms.items()):
            due = now - storm.last_flush >= self.flush_interval
            if storm.pending and due and (len(storm.pending) > limit or now - storm.last_seen < self.quiet_period):
                storm.last_flush = now
                events.append(storm.event("update", limit))
            if now - storm.last_seen >= self.quiet_period and len(storm.pending) <= limit:
                events.append(storm.event("closed", limit))
                del self.storms[group_id]
        return events
