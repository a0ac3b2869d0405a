# -*- test-case-name: tests.unit.test_state_memory -*-
"""
The interfaces of the stores the gateway decides on, whatever keeps them
(this process's memory, or Redis shared by replicas).

A L{StateStore} runs one decision as load → decide → commit: it gives the
pure decider (L{alertgateway.core.decider}) a view of what the alerts
touch, and commits the decision's state changes only once C{enqueue} has
queued its forwards.  If the queue refuses them, the changes are not
committed: the sender's retry is decided as if the batch had never come.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import attrs
from twisted.internet.defer import Deferred

from alertgateway.core.decision import Decision
from alertgateway.core.episodes import Delivery, Episode
from alertgateway.core.model import Alert

__all__ = ["Enqueue", "StateStore", "Tracked"]

# Queues a decision's forwards: raises, or fails the Deferred, with a
# StorageError (QueueFull) when they cannot all be queued.
Enqueue = Callable[[Decision], Deferred[None]]


@attrs.frozen
class Tracked:
    """
    Figures for the gauges.

    @ivar evictions: Episodes dropped to respect C{dedup.max_tracked}, ever.
    """

    episodes: int
    evictions: int
    storms: int


class StateStore(Protocol):
    """
    Where the decider's state lives, and what the status API reads.
    """

    def decide(self, alerts: Sequence[Alert], now: float, enqueue: Enqueue) -> Deferred[Decision]:
        """
        Decide on C{alerts} at C{now} and commit the decision together with
        its queued forwards.

        @raise alertgateway.state.errors.StorageError: Through the
            Deferred (or at once), when the state or the queue cannot take
            the decision now; nothing of it is kept then.
        """

    def tick(self, now: float, enqueue: Enqueue, max_events: int | None = None) -> Deferred[Decision]:
        """
        Forget lapsed state, and commit the storm updates and closings due
        at C{now} with their queued events: at most C{max_events} of them,
        the storms whose events do not fit are left due (counted in the
        decision's C{held_back}).  Events that cannot be queued are due
        again at the next tick.
        """

    def delivered(self, key: str, idempotency_key: str, outcome: Delivery) -> Deferred[None]:
        """
        Record how the delivery of what an episode forwarded went.
        """

    def episode(self, key: str) -> Deferred[Episode | None]:
        """
        What is known of a dedup key's episode.
        """

    def by_fingerprint(self, fingerprint: str) -> Deferred[Episode | None]: ...

    def page(self, status: str | None, after: str | None, limit: int) -> Deferred[list[Episode]]:
        """
        Up to C{limit} episodes in dedup-key order, after the key C{after}.
        """

    def tracked(self) -> Deferred[Tracked]: ...
