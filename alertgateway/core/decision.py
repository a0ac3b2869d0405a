# -*- test-case-name: tests.unit.test_decide -*-
"""
What the decider reads and what it returns.

The decider reads a L{StateView} (episodes, correlation groups and the
members waiting in storms, as the store has them) and returns a
L{Decision}: the L{Changes} to commit, a L{Ruling} per alert, and the
L{Outgoing} things to forward.  A store commits the changes together with
the queued forwards, or not at all: there is nothing to undo.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from alertgateway.core.episodes import Episode
from alertgateway.core.model import Alert
from alertgateway.core.storms import Group, Member

__all__ = ["Changes", "Decision", "Outgoing", "Ruling", "StateView", "Verdict", "WaitingChange"]


class Verdict(enum.Enum):
    """
    What the decider concluded about one alert.
    """

    NEW = "new"
    DUPLICATE = "duplicate"
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    AGGREGATED = "aggregated"


@attrs.frozen
class Ruling:
    """
    The verdict on one alert, and what it was judged by.
    """

    alert: Alert
    verdict: Verdict
    dedup_key: str
    group_id: str
    duplicate_count: int
    environment: str
    escalation: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.alert.fingerprint,
            "dedupKey": self.dedup_key,
            "status": self.verdict.value,
            "alertStatus": self.alert.status,
            "duplicateCount": self.duplicate_count,
            "groupId": self.group_id,
        }


@attrs.frozen
class Outgoing:
    """
    One thing to forward: an alert (new, resolved or escalated) or a storm
    event.

    @ivar key: Things of one key are delivered in order, one at a time: an
        alert's dedup key (its fingerprint unless labels are ignored, so
        that the replicas of one alert stay in order), or
        C{storm:<groupId>}.
    @ivar body: The JSON document the processor receives.
    """

    key: str
    body: Mapping[str, Any]
    idempotency_key: str


@attrs.frozen
class WaitingChange:
    """
    What happens to a storm's list of waiting members, in this order: all
    dropped (C{cleared}, the storm closed), the first C{taken} listed in an
    event, C{added} appended.
    """

    cleared: bool = False
    taken: int = 0
    added: tuple[Member, ...] = ()


@attrs.frozen
class Changes:
    """
    The state a decision writes: per key the new value, C{None} to forget.
    """

    episodes: Mapping[str, Episode | None] = attrs.field(factory=dict)
    groups: Mapping[str, Group | None] = attrs.field(factory=dict)
    waiting: Mapping[str, WaitingChange] = attrs.field(factory=dict)

    def __bool__(self) -> bool:
        return bool(self.episodes or self.groups or self.waiting)


@attrs.frozen
class Decision:
    """
    Everything deciding on a batch (or a tick) gave.

    @ivar held_back: Storm events that were due but left for a later tick,
        as there was no room for them.
    """

    changes: Changes
    rulings: tuple[Ruling, ...] = ()
    outgoing: tuple[Outgoing, ...] = ()
    held_back: int = 0


class StateView(Protocol):
    """
    The state a decision is taken on, as the store has it (committed, and
    what earlier decisions are committing).
    """

    def episode(self, key: str) -> Episode | None:
        """
        The episode of a dedup key, lapsed or not.
        """

    def group(self, group_id: str) -> Group | None:
        """
        A correlation group, if anything is known of it.
        """

    def waiting(self, group_id: str, offset: int, count: int) -> Sequence[Member]:
        """
        Members waiting in a group's storm, oldest first, from C{offset}.
        """

    def storm_groups(self) -> Iterable[str]:
        """
        The groups in a storm (for the periodic flush).
        """
