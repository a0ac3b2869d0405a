"""
Alert storms: one failure firing on many members of a group.

When more than C{threshold} distinct new fingerprints of one correlation
group arrive within C{window}, the group is in a storm.  The storm is
forwarded at once as one event listing the members so far; later new members
are folded into it and sent as updates at most every C{flush_interval}; after
C{quiet_period} without a new member a closing summary ends it.  Every member
is listed in some event (a member beyond C{max_members_listed} waits for the
next one); the count is always complete.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any

import attrs

from alertgateway.model import Alert

__all__ = ["Storm", "StormTracker"]

# Groups watched for a storm at once; the least recently active go first.
_MAX_GROUPS = 10_000


@attrs.define
class Storm:
    id: str
    group_id: str
    group_labels: dict[str, str]
    first_seen: float
    last_seen: float
    last_flush: float
    members: int = 0
    pending: deque[dict[str, Any]] = attrs.field(factory=deque)
    sequence: int = 0

    def event(self, state: str, limit: int) -> dict[str, Any]:
        listed = [self.pending.popleft() for _ in range(min(limit, len(self.pending)))]
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
            "unlistedMembers": len(self.pending),
        }


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
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.flush_interval = flush_interval
        self.quiet_period = quiet_period
        self.max_members_listed = max_members_listed
        self.max_pending = max_pending
        self._recent: OrderedDict[str, deque[tuple[float, Alert]]] = OrderedDict()
        self.storms: dict[str, Storm] = {}
        self.aggregated = 0

    def storm_of(self, group_id: str) -> Storm | None:
        return self.storms.get(group_id)

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
            while len(self._recent) > _MAX_GROUPS:
                self._recent.popitem(last=False)
        self._recent.move_to_end(group_id)
        while recent and recent[0][0] <= now - self.window:
            recent.popleft()
        if alert.fingerprint not in {a.fingerprint for _, a in recent}:
            recent.append((now, alert))
        if len(recent) <= self.threshold:
            return False, []
        seed = f"{group_id}\x00{now}"
        storm = Storm(
            id=hashlib.sha256(seed.encode()).hexdigest()[:16],
            group_id=group_id,
            group_labels=dict(group_labels),
            first_seen=recent[0][0],
            last_seen=now,
            last_flush=now,
        )
        self.storms[group_id] = storm
        for seen, member in recent:
            storm.members += 1
            storm.pending.append(_member(member, group_labels, seen))
        del self._recent[group_id]
        self.aggregated += 1
        return True, [self._stamp(storm.event("started", self.max_members_listed), storm)]

    def _fold(self, storm: Storm, alert: Alert, group_labels: Mapping[str, str], now: float) -> None:
        storm.members += 1
        storm.last_seen = now
        if len(storm.pending) < self.max_pending:
            storm.pending.append(_member(alert, group_labels, now))
        self.aggregated += 1

    def _stamp(self, event: dict[str, Any], storm: Storm) -> dict[str, Any]:
        event["firstSeen"] = storm.first_seen
        event["lastSeen"] = storm.last_seen
        return event

    def tick(self, now: float) -> list[dict[str, Any]]:
        """
        Flush storm updates that are due and close quiet storms.
        """
        events = []
        for group_id, storm in list(self.storms.items()):
            if now - storm.last_seen >= self.quiet_period:
                while len(storm.pending) > self.max_members_listed:
                    events.append(self._stamp(storm.event("update", self.max_members_listed), storm))
                events.append(self._stamp(storm.event("closed", self.max_members_listed), storm))
                del self.storms[group_id]
            elif storm.pending and now - storm.last_flush >= self.flush_interval:
                storm.last_flush = now
                events.append(self._stamp(storm.event("update", self.max_members_listed), storm))
        return events
