"""
The memory state store: decisions whose queue writes are still in flight
are seen by later decisions, committed in decision order, and dropped
(with what later decisions built on them) when their write fails; bounds
and expiry.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.decider import DeciderSettings
from alertgateway.core.decision import Decision, Verdict
from alertgateway.core.episodes import Delivery
from alertgateway.core.model import Alert, fingerprint
from alertgateway.core.storms import StormSettings
from alertgateway.state.errors import QueueFull
from alertgateway.state.memory import MemoryState

NOW = 1_800_000_000.0


def make_alert(status: str = "firing", **labels: str) -> Alert:
    """
    A PodCrash alert of pod p-1 in payments, C{labels} added or replaced.
    """
    merged: Mapping[str, str] = {"alertname": "PodCrash", "namespace": "payments", "pod": "p-1", **labels}
    return Alert(
        fingerprint(merged), "alertmanager", status, merged, {}, "2026-11-26T03:49:49Z", None, "", "2026-11-26T03:50Z"
    )


class Writes:
    """
    An enqueue whose writes complete when the test says.
    """

    def __init__(self) -> None:
        self.pending: list[Deferred[None]] = []
        self.decisions: list[Decision] = []

    def __call__(self, decision: Decision, write: object | None = None) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.pending.append(d)
        self.decisions.append(decision)
        return d


def at_once(decision: Decision, write: object | None = None) -> Deferred[None]:
    return succeed(None)


class PendingTests(SynchronousTestCase):
    """
    Decisions taken while earlier ones are still being queued.
    """

    def setUp(self) -> None:
        self.state = MemoryState(DeciderSettings(storms=None), max_tracked=100)
        self.writes = Writes()

    def decide(self, *alerts: Alert) -> Deferred[Decision]:
        return self.state.decide(alerts, NOW, self.writes)

    def test_answered_in_order(self) -> None:
        """
        A decision is answered only once it, and every decision before it,
        is committed: a duplicate is not confirmed while the decision that
        made it one may still be refused.
        """
        first, second = self.decide(make_alert()), self.decide(make_alert())
        self.writes.pending[1].callback(None)
        self.assertNoResult(second)
        self.writes.pending[0].errback(QueueFull("disk full"))
        self.failureResultOf(first, QueueFull)
        self.failureResultOf(second, QueueFull)

    def test_other_keys_not_held(self) -> None:
        """
        A decision on other keys is committed and answered without waiting
        for an unrelated write still in flight.
        """
        self.decide(make_alert())
        other = self.decide(make_alert(pod="other"))
        self.writes.pending[1].callback(None)
        self.assertEqual(self.successResultOf(other).rulings[0].verdict, Verdict.NEW)
        self.assertEqual(self.state.tracked_episodes, 1)

    def test_pending_decision_seen(self) -> None:
        """
        An alert decided again while the write of its first decision is in
        flight is a duplicate: two webhooks in flight never both find it
        new.
        """
        first, second = self.decide(make_alert()), self.decide(make_alert())
        self.assertEqual([o.key for d in self.writes.decisions for o in d.outgoing], [make_alert().fingerprint])
        for write in self.writes.pending:
            write.callback(None)
        self.assertEqual(self.successResultOf(first).rulings[0].verdict, Verdict.NEW)
        self.assertEqual(self.successResultOf(second).rulings[0].verdict, Verdict.DUPLICATE)
        episode = self.successResultOf(self.state.episode(make_alert().fingerprint))
        assert episode is not None
        self.assertEqual(episode.duplicates, 1)

    def test_not_committed_until_written(self) -> None:
        """
        The status API and the gauges see a decision once its write is
        done, not before.
        """
        self.decide(make_alert())
        self.assertEqual(self.state.tracked_episodes, 0)
        self.writes.pending[0].callback(None)
        self.assertEqual(self.state.tracked_episodes, 1)

    def test_committed_in_order(self) -> None:
        """
        A later decision whose write completes first waits for the earlier
        one: the committed state follows decision order.
        """
        self.decide(make_alert())
        self.decide(make_alert())
        self.writes.pending[1].callback(None)
        self.assertEqual(self.state.tracked_episodes, 0)
        self.writes.pending[0].callback(None)
        episode = self.successResultOf(self.state.episode(make_alert().fingerprint))
        assert episode is not None
        self.assertEqual((self.state.tracked_episodes, episode.duplicates), (1, 1))

    def test_failed_write_taints_later_decisions(self) -> None:
        """
        When a write fails, its decision is dropped; a later decision of the
        same key (decided on top of it) is refused with QueueFull and its
        value for that key dropped, while what it decided on other keys is
        kept.  The retry of the first alert is new again.
        """
        first = self.decide(make_alert())
        second = self.decide(make_alert(), make_alert(pod="other"))
        self.writes.pending[0].errback(QueueFull("disk full"))
        self.failureResultOf(first, QueueFull)
        self.writes.pending[1].callback(None)
        self.failureResultOf(second, QueueFull)
        self.assertIsNone(self.successResultOf(self.state.episode(make_alert().fingerprint)))
        self.assertIsNotNone(self.successResultOf(self.state.episode(make_alert(pod="other").fingerprint)))
        retry = self.decide(make_alert())
        self.writes.pending[2].callback(None)
        self.assertEqual(self.successResultOf(retry).rulings[0].verdict, Verdict.NEW)

    def test_tainted_values_not_read(self) -> None:
        """
        Once a write failed, a new decision reads the state as it will be
        committed, not the tainted values later decisions made.
        """
        first, second = self.decide(make_alert()), self.decide(make_alert())
        self.writes.pending[0].errback(QueueFull("disk full"))
        third = self.decide(make_alert())
        self.assertEqual([o.key for o in self.writes.decisions[2].outgoing], [make_alert().fingerprint])
        self.writes.pending[1].callback(None)
        self.writes.pending[2].callback(None)
        self.failureResultOf(first, QueueFull)
        self.failureResultOf(second, QueueFull)
        self.assertEqual(self.successResultOf(third).rulings[0].verdict, Verdict.NEW)

    def test_refused_at_once(self) -> None:
        """
        An enqueue that raises at once leaves nothing staged, and the
        Deferred fails with its error.
        """

        def refuse(decision: Decision, write: object | None) -> Deferred[None]:
            raise QueueFull("over max_bytes")

        self.failureResultOf(self.state.decide([make_alert()], NOW, refuse), QueueFull)
        self.assertEqual(
            self.successResultOf(self.state.decide([make_alert()], NOW, at_once)).rulings[0].verdict, Verdict.NEW
        )

    def test_delivery_before_commit(self) -> None:
        """
        A delivery that ends before its decision is committed (a sink that
        answers at once) is recorded on the episode all the same.
        """
        self.decide(make_alert())
        [outgoing] = self.writes.decisions[0].outgoing
        self.successResultOf(self.state.delivered(outgoing.key, outgoing.idempotency_key, Delivery.DELIVERED))
        self.writes.pending[0].callback(None)
        episode = self.successResultOf(self.state.episode(make_alert().fingerprint))
        assert episode is not None
        self.assertEqual(episode.delivery, Delivery.DELIVERED)


class StormPendingTests(SynchronousTestCase):
    """
    Storm members waiting, while decisions are in flight.
    """

    def test_waiting_members_through_pending(self) -> None:
        """
        Members folded by decisions still being queued are listed by the
        next flush, in order, after those already committed.
        """
        storms = StormSettings(threshold=2, window=60, flush_interval=10, quiet_period=30, max_members_listed=2)
        state = MemoryState(DeciderSettings(storms=storms), max_tracked=100)
        self.successResultOf(state.decide([make_alert(pod=p) for p in "abcd"], NOW, at_once))
        writes = Writes()
        state.decide([make_alert(pod="e")], NOW + 1, writes)
        tick = state.tick(NOW + 10, at_once)
        self.assertNoResult(tick)
        writes.pending[0].callback(None)
        [update] = self.successResultOf(tick).outgoing
        self.assertEqual(
            [m["fingerprint"] for m in update.body["members"]], [make_alert(pod=p).fingerprint for p in "cd"]
        )
        closed = self.successResultOf(state.tick(NOW + 40, at_once)).outgoing
        self.assertEqual(
            [m["fingerprint"] for o in closed for m in o.body["members"]], [make_alert(pod="e").fingerprint]
        )


class BoundsTests(SynchronousTestCase):
    """
    What the store keeps at most, and for how long.
    """

    def test_eviction(self) -> None:
        """
        Past max_tracked the least recently seen episode goes, counted once
        each in evictions and to on_evict.
        """
        evicted: list[int] = []
        state = MemoryState(DeciderSettings(storms=None), max_tracked=2, on_evict=evicted.append)
        for pod in "abc":
            self.successResultOf(state.decide([make_alert(pod=pod)], NOW, at_once))
        self.assertEqual((state.tracked_episodes, state.evictions, evicted), (2, 1, [1]))
        self.assertIsNone(self.successResultOf(state.by_fingerprint(make_alert(pod="a").fingerprint)))

    def test_watched_groups_bounded(self) -> None:
        """
        At most max_groups groups are watched for a storm; the least
        recently active go first.
        """
        state = MemoryState(DeciderSettings(), max_tracked=100, max_groups=3)
        for namespace in "abcde":
            self.successResultOf(state.decide([make_alert(namespace=namespace)], NOW, at_once))
        self.assertEqual(state.watched_groups, 3)

    def test_expiry(self) -> None:
        """
        The tick forgets episodes last seen more than a window ago.
        """
        state = MemoryState(DeciderSettings(storms=None, window=300), max_tracked=100)
        self.successResultOf(state.decide([make_alert(pod="old")], NOW, at_once))
        self.successResultOf(state.decide([make_alert(pod="new")], NOW + 200, at_once))
        self.successResultOf(state.tick(NOW + 301, at_once))
        self.assertEqual(state.tracked_episodes, 1)
