# -*- test-case-name: tests.unit.test_decide -*-
"""
What the gateway remembers of one dedup key: its episode.

An episode starts with a firing (or an unknown resolved) alert and lasts
while sightings keep coming within the dedup window; a resolved alert
closes it, but it is remembered until the window lapses, so that a repeated
resolved is still a duplicate.  Episodes are values: deciding makes new ones
and the store keeps whichever was committed last.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["NO_COPIES", "Delivery", "Episode"]

# Most episodes have one copy, and track none.
NO_COPIES: tuple[tuple[str, float], ...] = ()


class Delivery(enum.Enum):
    """
    How the delivery of what was last forwarded for an episode went.
    """

    QUEUED = "queued"
    DELIVERED = "delivered"
    REJECTED = "rejected"


@attrs.frozen
class Episode:
    """
    One dedup key's episode.

    @ivar duplicates: Sightings after the first, in this episode.
    @ivar counted: Duplicates counted toward escalation: those at least
        C{escalation.min_spacing} after the last counted sighting (so that
        two copies of one notification, from an HA pair, count once).
    @ivar last_counted: When the last sighting counted (the first one, to
        begin with).
    @ivar recent: Times of recent counted duplicates that can still
        escalate it, for rules "N within W" (a tuple: it holds a few times
        at most, and there may be 100,000 episodes).
    @ivar copies: With labels ignored in the dedup key (the replica label of
        an HA pair), each copy (fingerprint) that fired in this episode and
        when it was last seen (a few pairs): the episode resolves once all
        have.
    @ivar escalation: The escalation level, once escalated in this episode.
    @ivar storm_id: The storm its first alert was folded into, if any.
    @ivar delivery: How the delivery of what was last forwarded for it went;
        one folded into a storm stays C{QUEUED}, as storm events are not
        followed per member.
    @ivar forwarded: The idempotency key of what was last forwarded for it,
        so that the outcome of an earlier envelope (of this key's previous
        episode, say) is not taken for the latest one's.
    """

    key: str
    fingerprint: str
    status: str
    first_seen: float
    last_seen: float
    group_id: str
    environment: str
    source: str
    duplicates: int = 0
    counted: int = 0
    last_counted: float = 0.0
    recent: tuple[float, ...] = ()
    escalation: str | None = None
    storm_id: str | None = None
    delivery: Delivery = Delivery.QUEUED
    forwarded: str | None = None
    copies: tuple[tuple[str, float], ...] = NO_COPIES

    def delivered(self, idempotency_key: str, outcome: Delivery) -> Episode:
        """
        This episode with the outcome of a delivery recorded, if the
        delivery was of what it last forwarded; else unchanged.
        """
        if self.forwarded != idempotency_key or self.delivery is outcome:
            return self
        return attrs.evolve(self, delivery=outcome)

    def to_json(self) -> dict[str, Any]:
        """
        The episode as JSON-ready data, for stores that keep documents.
        """
        return {
            "key": self.key,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "group_id": self.group_id,
            "environment": self.environment,
            "source": self.source,
            "duplicates": self.duplicates,
            "counted": self.counted,
            "last_counted": self.last_counted,
            "recent": list(self.recent),
            "escalation": self.escalation,
            "storm_id": self.storm_id,
            "delivery": self.delivery.value,
            "forwarded": self.forwarded,
            "copies": dict(self.copies),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Episode:
        """
        Read what L{to_json} wrote (or an older gateway did: without
        spacing, every duplicate counted).

        @raise KeyError: If a required field is missing.
        @raise ValueError: If the delivery outcome is not one of ours.
        """
        return cls(
            key=data["key"],
            fingerprint=data["fingerprint"],
            status=data["status"],
            first_seen=float(data["first_seen"]),
            last_seen=float(data["last_seen"]),
            group_id=data["group_id"],
            environment=data["environment"],
            source=data["source"],
            duplicates=int(data.get("duplicates") or 0),
            counted=int(data.get("counted", data.get("duplicates")) or 0),
            last_counted=float(data.get("last_counted", data["last_seen"])),
            recent=tuple(float(t) for t in data.get("recent") or ()),
            escalation=data.get("escalation"),
            storm_id=data.get("storm_id"),
            delivery=Delivery(data.get("delivery") or Delivery.QUEUED.value),
            forwarded=data.get("forwarded"),
            copies=tuple((str(k), float(v)) for k, v in data["copies"].items()) if data.get("copies") else NO_COPIES,
        )
