# -*- test-case-name: tests.unit.test_state_memory -*-
"""
The interfaces of the stores the gateway decides on, whatever keeps them
(this process's memory, or Redis shared by replicas).

A L{StateStore} runs one decision as load → decide → commit: it gives the
pure decider (L{alertgateway.core.decider}) a view of what the alerts
touch, and commits the decision's state changes only once C{enqueue} has
queued its forwards.  A store that keeps its state where the queue keeps
its rows (the SQLite database, Redis) hands C{enqueue} its state write, to
be committed in the same transaction.  If the queue refuses them, nothing
is committed: the sender's retry is decided as if the batch had never
come.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import attrs
from twisted.internet.defer import Deferred

from alertgateway.core.decision import Decision
from alertgateway.core.episodes import Delivery, Episode
from alertgateway.core.model import Alert

__all__ = ["Enqueue", "Replay", "StateStore", "StateWrite", "Tracked"]

# A store's state changes to commit in the same transaction as the queue
# write: each queue takes the kind it can commit (a write on the queue's
# SQLite database, a Redis commit beside the stream entries).
StateWrite = object

# Queues a decision's forwards, and its state write if any, in one
# transaction: raises, or fails the Deferred, with a StorageError
# (QueueFull) when it cannot.
Enqueue = Callable[[Decision, StateWrite | None], Deferred[None]]

# A signature's replay key, and until when its message stays acceptable:
# remembered with the webhook's decision by a store that keeps it.
Replay = tuple[str, float]


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

    def decide(
        self, alerts: Sequence[Alert], now: float, enqueue: Enqueue, replay: Replay | None = None
    ) -> Deferred[Decision]:
        """
        Decide on C{alerts} at C{now} and commit the decision together with
        its queued forwards (and the webhook's signature, C{replay}, in a
        store that remembers them).

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
