"""
A batch whose forwards cannot be queued is decided again on retry.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.decider import AGGREGATED, NEW, Decider, DeciderSettings
from alertgateway.core.episodes import MemoryEpisodes
from alertgateway.core.storms import StormTracker
from alertgateway.delivery.envelope import Envelope
from alertgateway.intake.admission import Intake
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.state.errors import QueueFull
from tests.unit.test_decide import make_alert


class RefusingQueue:
    """
    Refuses the first C{refusals} writes, synchronously or later, then
    accepts.
    """

    def __init__(self, refusals: int, *, later: bool) -> None:
        self.refusals = refusals
        self.later = later
        self.accepted: list[Envelope] = []

    def submit(self, envelopes: list[Envelope]) -> Deferred[None]:
        if self.refusals:
            self.refusals -= 1
            if self.later:
                return fail(QueueFull("disk full"))
            raise QueueFull("over max_bytes")
        self.accepted.extend(envelopes)
        return succeed(None)


class UndoTests(SynchronousTestCase):
    def make(self, queue: RefusingQueue, storms: StormTracker | None = None) -> Intake:
        clock = Clock()
        clock.advance(1_800_000_000)
        decider = Decider(clock, MemoryEpisodes(100), DeciderSettings(), storms)
        return Intake(decider, queue.submit, lambda: 1000, GatewayMetrics())

    def test_refused_at_once_then_new_again(self) -> None:
        """
        When the queue refuses the write as it is asked (its byte bound),
        QueueFull reaches the caller and the retry of the same alert is new,
        not a duplicate of a decision that was never queued.
        """
        queue = RefusingQueue(1, later=False)
        intake = self.make(queue)
        self.failureResultOf(intake.accept([make_alert()], "r1"), QueueFull)
        verdicts = self.successResultOf(intake.accept([make_alert()], "r2"))
        self.assertEqual([v.result for v in verdicts], [NEW])
        self.assertEqual([e.request_id for e in queue.accepted], ["r2"])

    def test_refused_later_then_new_again(self) -> None:
        """
        When the write fails after being tried (a disk error), the Deferred
        fails with QueueFull and the decision is undone the same way.
        """
        queue = RefusingQueue(1, later=True)
        intake = self.make(queue)
        self.failureResultOf(intake.accept([make_alert()], "r1"), QueueFull)
        verdicts = self.successResultOf(intake.accept([make_alert()], "r2"))
        self.assertEqual([v.result for v in verdicts], [NEW])

    def test_storm_start_undone(self) -> None:
        """
        A storm that a refused batch would have started is not left started:
        the retry starts it and forwards its event.
        """
        storms = StormTracker(threshold=2, window=60, flush_interval=10, quiet_period=30, max_members_listed=10)
        queue = RefusingQueue(1, later=True)
        intake = self.make(queue, storms)
        batch = [make_alert(pod=p) for p in "abc"]
        self.failureResultOf(intake.accept(batch, "r1"), QueueFull)
        self.assertEqual(storms.storms, {})
        verdicts = self.successResultOf(intake.accept(batch, "r2"))
        self.assertEqual([v.result for v in verdicts], [NEW, NEW, AGGREGATED])
        self.assertEqual([e.body.get("state") for e in queue.accepted if e.key.startswith("storm:")], ["started"])

    def test_storm_members_undone(self) -> None:
        """
        Members a refused batch folded into a running storm are taken out
        again (its count and its list to send), so the retry folds them
        once.
        """
        storms = StormTracker(threshold=2, window=60, flush_interval=10, quiet_period=30, max_members_listed=10)
        queue = RefusingQueue(0, later=True)
        intake = self.make(queue, storms)
        self.successResultOf(intake.accept([make_alert(pod=p) for p in "abc"], "r1"))
        [storm] = storms.storms.values()
        before = (storm.members, list(storm.pending), storm.last_seen)
        queue.refusals = 1
        intake.decider.clock.advance(5)  # type: ignore[attr-defined]
        self.failureResultOf(intake.accept([make_alert(pod=p) for p in "de"], "r2"), QueueFull)
        self.assertEqual((storm.members, list(storm.pending), storm.last_seen), before)
        verdicts = self.successResultOf(intake.accept([make_alert(pod=p) for p in "de"], "r3"))
        self.assertEqual([v.result for v in verdicts], [AGGREGATED, AGGREGATED])
        self.assertEqual(storm.members, 5)

    def test_storm_events_kept_when_not_queued(self) -> None:
        """
        A storm event the tick could not queue (the write refused) is not
        lost: it goes out with the next tick.
        """
        storms = StormTracker(threshold=2, window=60, flush_interval=10, quiet_period=30, max_members_listed=10)
        queue = RefusingQueue(0, later=True)
        intake = self.make(queue, storms)
        self.successResultOf(intake.accept([make_alert(pod=p) for p in "abc"], "r1"))
        intake.decider.clock.advance(31)  # type: ignore[attr-defined]
        queue.refusals = 1
        self.successResultOf(intake.tick())
        storm_states = [e.body.get("state") for e in queue.accepted if e.key.startswith("storm:")]
        self.assertEqual(storm_states, ["started"])
        self.successResultOf(intake.tick())
        storm_states = [e.body.get("state") for e in queue.accepted if e.key.startswith("storm:")]
        self.assertEqual(storm_states, ["started", "closed"])
