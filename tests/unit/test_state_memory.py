"""
The memory state store: a decision on keys another is committing waits for
it and reads what was really committed; a refused write leaves nothing
behind; decisions on other keys go on; storm ticks and held-back events;
bounds and expiry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.decider import DeciderSettings
from alertgateway.core.decision import Decision, Verdict
from alertgateway.core.episodes import Delivery
from alertgateway.core.model import Alert, fingerprint
from alertgateway.core.storms import StormSettings
from alertgateway.delivery.durable import DurableQueue
from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.journal import SQLiteJournal
from alertgateway.state.errors import QueueFull
from alertgateway.state.memory import MemoryState
from alertgateway.state.sqlite import SQLiteState
from alertgateway.testing import ManualExecutor

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


class SameKeysTests(SynchronousTestCase):
    """
    Decisions on keys another decision is still committing.
    """

    def setUp(self) -> None:
        self.state = MemoryState(DeciderSettings(storms=None), max_tracked=100)
        self.writes = Writes()

    def decide(self, *alerts: Alert) -> Deferred[Decision]:
        return self.state.decide(alerts, NOW, self.writes)

    def test_waits_then_reads_what_was_committed(self) -> None:
        """
        An alert decided again while its first decision is being queued
        waits for that commit, then is a duplicate: two webhooks in flight
        never both find it new, and it is forwarded once.
        """
        first, second = self.decide(make_alert()), self.decide(make_alert())
        self.assertEqual(len(self.writes.pending), 1)
        self.assertNoResult(second)
        self.writes.pending[0].callback(None)
        self.writes.pending[1].callback(None)
        self.assertEqual(self.successResultOf(first).rulings[0].verdict, Verdict.NEW)
        self.assertEqual(self.successResultOf(second).rulings[0].verdict, Verdict.DUPLICATE)
        self.assertEqual([o.key for d in self.writes.decisions for o in d.outgoing], [make_alert().fingerprint])
        episode = self.successResultOf(self.state.episode(make_alert().fingerprint))
        assert episode is not None
        self.assertEqual(episode.duplicates, 1)

    def test_refused_write_leaves_nothing(self) -> None:
        """
        When the first write is refused, the decision waiting behind it
        reads the state as if the first batch had never come: the alert is
        new and forwarded (once, by the decision that was answered 202).
        """
        first, second = self.decide(make_alert()), self.decide(make_alert())
        self.writes.pending[0].errback(QueueFull("disk full"))
        self.failureResultOf(first, QueueFull)
        self.assertEqual([o.key for o in self.writes.decisions[1].outgoing], [make_alert().fingerprint])
        self.writes.pending[1].callback(None)
        self.assertEqual(self.successResultOf(second).rulings[0].verdict, Verdict.NEW)

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

    def test_overlapping_batches_in_arrival_order(self) -> None:
        """
        Batches sharing some keys are decided in the order they came, each
        after the one before it is committed, however their keys overlap.
        """
        a, b = make_alert(pod="a"), make_alert(pod="b")
        first = self.decide(a, b)
        second = self.decide(b)
        third = self.decide(a, b)
        for index in range(3):
            self.writes.pending[index].callback(None)
        verdicts = [[r.verdict for r in self.successResultOf(d).rulings] for d in (first, second, third)]
        self.assertEqual(
            verdicts, [[Verdict.NEW, Verdict.NEW], [Verdict.DUPLICATE], [Verdict.DUPLICATE, Verdict.DUPLICATE]]
        )
        episode = self.successResultOf(self.state.episode(b.fingerprint))
        assert episode is not None
        self.assertEqual(episode.duplicates, 2)

    def test_not_committed_until_written(self) -> None:
        """
        The status API and the gauges see a decision once its write is
        done, not before.
        """
        self.decide(make_alert())
        self.assertEqual(self.state.tracked_episodes, 0)
        self.writes.pending[0].callback(None)
        self.assertEqual(self.state.tracked_episodes, 1)

    def test_refused_at_once(self) -> None:
        """
        An enqueue that raises at once leaves nothing behind, and the
        Deferred fails with its error.
        """

        def refuse(decision: Decision, write: object | None) -> Deferred[None]:
            raise QueueFull("over max_bytes")

        self.failureResultOf(self.state.decide([make_alert()], NOW, refuse), QueueFull)
        self.assertEqual(
            self.successResultOf(self.state.decide([make_alert()], NOW, at_once)).rulings[0].verdict, Verdict.NEW
        )

    def test_decided_again_from_the_answer(self) -> None:
        """
        A decision taken from the callback of the one before (a pipelined
        request, which twisted.web parses while the answer is written) on
        the same key goes through, and leaves no key held.
        """
        nested: list[Deferred[Decision]] = []
        first = self.decide(make_alert())
        first.addCallback(lambda _: nested.append(self.state.decide([make_alert()], NOW, at_once)))
        self.writes.pending[0].callback(None)
        self.successResultOf(first)
        self.assertEqual(self.successResultOf(nested[0]).rulings[0].verdict, Verdict.DUPLICATE)
        self.successResultOf(self.state.decide([make_alert()], NOW, at_once))

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

    def test_delivery_of_a_refused_decision_forgotten(self) -> None:
        """
        The outcome of a forward whose decision was then refused is not
        carried onto a later episode of the key.
        """
        refused = self.decide(make_alert())
        [outgoing] = self.writes.decisions[0].outgoing
        self.state.delivered(outgoing.key, outgoing.idempotency_key, Delivery.DELIVERED)
        self.writes.pending[0].errback(QueueFull("disk full"))
        self.failureResultOf(refused, QueueFull)
        retry = self.state.decide([make_alert()], NOW + 1, at_once)
        self.assertEqual(self.successResultOf(retry).rulings[0].verdict, Verdict.NEW)
        episode = self.successResultOf(self.state.episode(make_alert().fingerprint))
        assert episode is not None
        self.assertEqual(episode.delivery, Delivery.QUEUED)


def listed(decision: Decision) -> list[str]:
    """
    The fingerprints the storm events of C{decision} list.
    """
    return [m["fingerprint"] for o in decision.outgoing for m in o.body.get("members", [])]


class StormCommitTests(SynchronousTestCase):
    """
    Storms, their members and their ticks, while decisions are in flight.
    """

    storms = StormSettings(threshold=2, window=60, flush_interval=10, quiet_period=30, max_members_listed=2)

    def setUp(self) -> None:
        self.state = MemoryState(DeciderSettings(storms=self.storms), max_tracked=100)

    def test_tick_waits_for_a_fold(self) -> None:
        """
        A tick waits for a member being folded into its storm, then lists
        the members in the order they came.
        """
        state = self.state
        self.successResultOf(state.decide([make_alert(pod=p) for p in "abcd"], NOW, at_once))
        writes = Writes()
        state.decide([make_alert(pod="e")], NOW + 1, writes)
        tick = state.tick(NOW + 10, at_once)
        self.assertNoResult(tick)
        writes.pending[0].callback(None)
        self.assertEqual(listed(self.successResultOf(tick)), [make_alert(pod=p).fingerprint for p in "cd"])
        closed = self.successResultOf(state.tick(NOW + 40, at_once))
        self.assertEqual(listed(closed), [make_alert(pod="e").fingerprint])

    def test_refused_fold_not_listed_and_its_retry_is(self) -> None:
        """
        A member whose fold is refused is not listed by the tick that
        waited for it; its retry is folded and listed after the others,
        under a storm sequence of its own (no idempotency key reused).
        """
        state = self.state
        self.successResultOf(state.decide([make_alert(pod=p) for p in "abc"], NOW, at_once))
        writes = Writes()
        fold = state.decide([make_alert(pod="e")], NOW + 1, writes)
        events: list[Decision] = []

        def record(decision: Decision, write: object | None = None) -> Deferred[None]:
            events.append(decision)
            return succeed(None)

        tick = state.tick(NOW + 11, record)
        writes.pending[0].errback(QueueFull("disk full"))
        self.failureResultOf(fold, QueueFull)
        self.successResultOf(tick)
        self.successResultOf(state.decide([make_alert(pod="e")], NOW + 12, at_once))
        for at in (22, 60):
            self.successResultOf(state.tick(NOW + at, record))
        keys = [o.idempotency_key for d in events for o in d.outgoing]
        self.assertEqual(len(keys), len(set(keys)))
        self.assertEqual([f for d in events for f in listed(d)], [make_alert(pod=p).fingerprint for p in "ce"])

    def test_refused_storm_start_leaves_no_member_behind(self) -> None:
        """
        When the batch that starts a storm is refused, an alert of the same
        group waiting behind it is decided as if the storm never started:
        forwarded on its own, and nothing is left waiting.
        """
        state = MemoryState(DeciderSettings(storms=StormSettings()), max_tracked=1000)
        writes = Writes()
        start = state.decide([make_alert(pod=f"p{i}") for i in range(11)], NOW, writes)
        late = state.decide([make_alert(pod="p11")], NOW + 1, writes)
        writes.pending[0].errback(QueueFull("disk full"))
        self.failureResultOf(start, QueueFull)
        writes.pending[1].callback(None)
        self.assertEqual(self.successResultOf(late).rulings[0].verdict, Verdict.NEW)
        self.assertEqual((state.active_storms, dict(state._waiting)), (0, {}))

    def test_events_that_do_not_fit_held_back(self) -> None:
        """
        A tick with room for fewer events than are due commits the storms
        whose events fit and leaves the others due, counted in held_back.
        """
        state = self.state
        for namespace in ("a", "b"):
            self.successResultOf(state.decide([make_alert(namespace=namespace, pod=p) for p in "abc"], NOW, at_once))
        tick = self.successResultOf(state.tick(NOW + 40, at_once, max_events=1))
        self.assertEqual((len(tick.outgoing), tick.held_back, state.active_storms), (1, 1, 1))
        tick = self.successResultOf(state.tick(NOW + 41, at_once, max_events=1))
        self.assertEqual((len(tick.outgoing), tick.held_back, state.active_storms), (1, 0, 0))


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


STORMS = StormSettings(threshold=2, window=60, flush_interval=10, quiet_period=30, max_members_listed=2)


def named_alert(name: str, pod: str) -> Alert:
    labels: Mapping[str, str] = {"alertname": name, "namespace": "payments", "pod": pod}
    return Alert(fingerprint(labels), "alertmanager", "firing", labels, {}, "2026-11-26T03:49:49Z", None, "", "t")


class TickRaceTests(SynchronousTestCase):
    def test_storm_started_while_tick_waits(self) -> None:
        """
        A webhook accepted at t=100 starts a storm in group B, but its
        commit waits for the disk.  At t=130 the tick is called: it takes
        the keys of the storms it knows (group A, held by another commit in
        flight) and waits.  B's storm is committed meanwhile, and a new
        member of B is decided (holding gB, its commit in flight).  When the
        tick gets A's key it flushes every storm, B included, without
        holding gB: the tick's update and the member's decision each commit
        the group they computed from the same state, the last one wins.
        Either the member is appended but not counted (a closing then
        clears it unlisted), or the storm's sequence goes back and the next
        event reuses an idempotency key (the processor drops it as a
        redelivery), and a storm whose count says members wait that its
        list does not hold sends an empty update every flush_interval
        forever.  Needs a commit delayed by flush_interval (30 s by default)
        or quiet_period: a stalled disk.  Pins: every member of B is listed
        exactly once, in events with distinct sequence numbers, and the
        storm ends.
        """
        state = MemoryState(DeciderSettings(storms=STORMS, min_spacing=0.0), max_tracked=1000)
        events: list[Mapping[str, Any]] = []

        def at_once(decision: Decision, write: object | None) -> Deferred[None]:
            events.extend(o.body for o in decision.outgoing if o.body.get("type") == "storm")
            return succeed(None)

        def held(gate: Deferred[None]):  # type: ignore[no-untyped-def]
            def enqueue(decision: Decision, write: object | None) -> Deferred[None]:
                return gate.addCallback(lambda _: at_once(decision, write))

            return enqueue

        # A storm in group A.
        self.successResultOf(state.decide([named_alert("A", f"a-{n}") for n in range(4)], 50.0, at_once))
        # t=100: B's storm starts, its commit waits for the disk.
        disk_b: Deferred[None] = Deferred()
        started = state.decide([named_alert("B", f"b-{n}") for n in range(5)], 100.0, held(disk_b))
        # t=130: a member of A is being committed; the tick is called.
        disk_a: Deferred[None] = Deferred()
        folded_a = state.decide([named_alert("A", "a-new")], 130.0, held(disk_a))
        ticked = state.tick(130.0, at_once)
        # B's storm is committed; a new member of B is decided at once.
        disk_b.callback(None)
        self.successResultOf(started)
        disk_b2: Deferred[None] = Deferred()
        folded_b = state.decide([named_alert("B", "b-new")], 130.0, held(disk_b2))
        # A's commit lands: the tick runs, over B too.
        disk_a.callback(None)
        self.successResultOf(folded_a)
        self.successResultOf(ticked)
        disk_b2.callback(None)
        self.successResultOf(folded_b)
        # Let every storm send its updates and close.
        now = 130.0
        for _ in range(20):
            now += 10
            self.successResultOf(state.tick(now, at_once))
        b_events = [e for e in events if e["groupLabels"]["alertname"] == "B"]
        sequences = [e["sequence"] for e in b_events]
        self.assertEqual(len(sequences), len(set(sequences)), f"sequence reused: {sequences}")
        listed = [m["fingerprint"] for e in b_events for m in e["members"]]
        expected = sorted(named_alert("B", p).fingerprint for p in [f"b-{n}" for n in range(5)] + ["b-new"])
        self.assertEqual(sorted(listed), expected)
        # And the storm is over (not sending empty updates forever).
        self.assertEqual(state.active_storms, 0)


def pod_alert(pod: str) -> Alert:
    labels: Mapping[str, str] = {"alertname": "PodCrash", "namespace": "payments", "pod": pod}
    return Alert(fingerprint(labels), "alertmanager", "firing", labels, {}, "2026-11-26T03:49:49Z", None, "", "t")


class PipelinedDuplicatesTests(SynchronousTestCase):
    def test_many_waiters_behind_a_disk_write(self) -> None:
        """
        Decisions on one correlation group (every alert of a group takes its
        key "g<group>") wait behind the one being written to disk.  When it
        commits, KeyLocks.release hands the key to the next waiter inside
        the callback; a duplicate needs no disk write, so it decides,
        commits and releases synchronously, handing the key on one level
        deeper.  About a hundred such waiters exhaust Python's recursion
        limit: one webhook fails with RecursionError and the keys it held
        are never released, so every later decision on that group (and the
        tick, which takes the keys of every storm group) waits forever.
        Pins: after the write commits, every waiting decision completes and
        no key stays held.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        clock = Clock()
        clock.advance(NOW)
        executor = ManualExecutor()
        journal = SQLiteJournal(os.path.join(directory, "queue.db"), executor, clock_seconds=clock.seconds)
        queue = DurableQueue(journal, max_items=10_000, max_bytes=10**8)

        def drain() -> None:
            while executor.calls:
                executor.run_next()

        loaded = queue.load()
        drain()
        self.successResultOf(loaded)
        # Storms detected, but a threshold this group does not reach.
        settings = DeciderSettings(storms=StormSettings(threshold=10_000), min_spacing=0.0)
        state = SQLiteState(settings, journal, clock=clock.seconds, max_tracked=10_000)
        restored = state.restore(clock.seconds())
        drain()
        self.successResultOf(restored)

        def enqueue(decision: Decision, write: object | None) -> Deferred[None]:
            if not decision.outgoing and write is None:
                return succeed(None)
            envelopes = [Envelope(o.key, o.body, o.idempotency_key, "r") for o in decision.outgoing]
            return queue.put(envelopes, write)

        known = [pod_alert(f"p-{n}") for n in range(300)]
        first = state.decide(known, clock.seconds(), enqueue)
        drain()
        self.successResultOf(first)
        clock.advance(10)

        # A new alert of the group: written to disk, which is busy.
        writing = state.decide([pod_alert("new")], clock.seconds(), enqueue)
        # Meanwhile Alertmanager re-sends the group's alerts, one webhook each.
        results: list[object] = []
        for alert in known:
            state.decide([alert], clock.seconds(), enqueue).addBoth(results.append)
        drain()
        self.successResultOf(writing)
        failures = [r for r in results if isinstance(r, Failure)]
        self.assertEqual(failures, [])
        self.assertEqual(len(results), len(known))
        self.assertEqual(len(state._locks), 0)
