"""
The intake: decide, then queue; storm events from the tick; delivery
outcomes back onto episodes; the decision metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import attrs
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.decider import (
    AGGREGATED,
    DUPLICATE,
    ESCALATED,
    NEW,
    RESOLVED_RESULT,
    Decider,
    DeciderSettings,
    occurrence_key,
)
from alertgateway.core.episodes import Episode, MemoryEpisodes
from alertgateway.core.model import Alert
from alertgateway.core.storms import StormTracker
from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.forwarder import Forwarder
from alertgateway.delivery.queue import MemoryQueue
from alertgateway.delivery.sinks import HTTPSink, PostingClient
from alertgateway.intake.admission import Intake
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.state.errors import QueueFull
from tests.unit._http import capture_events
from tests.unit._processor import Answer, Processor
from tests.unit.test_decide import make_alert, make_storms, started_clock


class RecordingQueue:
    """
    A bounded queue that records each batch and can be drained by hand.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.queued: list[Envelope] = []
        self.batches: list[list[Envelope]] = []

    def submit(self, envelopes: list[Envelope]) -> Deferred[None]:
        if len(envelopes) > self.room():
            raise QueueFull("recording queue is full")
        self.batches.append(list(envelopes))
        self.queued.extend(envelopes)
        return succeed(None)

    def room(self) -> int:
        return self.capacity - len(self.queued)

    def drain(self) -> list[Envelope]:
        taken, self.queued = self.queued, []
        return taken


class IntakeTestCase(SynchronousTestCase):
    def make_intake(
        self, capacity: int = 100, storms: StormTracker | None = None, max_tracked: int = 1000, **overrides: Any
    ) -> Intake:
        self.clock: Clock = started_clock()
        self.queue = RecordingQueue(capacity)
        self.metrics = GatewayMetrics()
        self.episodes = MemoryEpisodes(max_tracked)
        decider = Decider(self.clock, self.episodes, DeciderSettings(**overrides), storms)
        return Intake(decider, self.queue.submit, self.queue.room, self.metrics)

    def sample(self, name: str, **labels: str) -> float | None:
        value: float | None = self.metrics.registry.get_sample_value(name, labels)
        return value

    def accept(self, intake: Intake, alerts: Sequence[Alert], request_id: str = "req") -> list[str]:
        return [v.result for v in self.successResultOf(intake.accept(alerts, request_id))]

    def episode(self, alert: Alert) -> Episode:
        episode = self.episodes.by_fingerprint(alert.fingerprint)
        assert episode is not None
        return episode


class AcceptTests(IntakeTestCase):
    """
    Deciding and queueing a batch.
    """

    def test_queues_what_is_forwarded(self) -> None:
        """
        The verdicts come back in order; only what is forwarded is queued,
        as one batch of envelopes with the request's id and forwarded
        headers, each with its ordering key, body and idempotency key.
        """
        intake = self.make_intake()
        a, b = make_alert(pod="a"), make_alert(pod="b")
        verdicts = self.successResultOf(intake.accept([a, a, b], "req-1", (("X-Tenant", "t1"),)))
        self.assertEqual([v.result for v in verdicts], [NEW, DUPLICATE, NEW])
        [batch] = self.queue.batches
        self.assertEqual(
            [(e.key, e.idempotency_key, e.request_id, e.headers) for e in batch],
            [
                (a.fingerprint, occurrence_key(a, self.clock.seconds()), "req-1", (("X-Tenant", "t1"),)),
                (b.fingerprint, occurrence_key(b, self.clock.seconds()), "req-1", (("X-Tenant", "t1"),)),
            ],
        )
        self.assertEqual([e.body["decision"] for e in batch], [NEW, NEW])

    def test_exactly_fitting_batch(self) -> None:
        """
        A batch exactly as long as the room left is decided and queued.
        """
        intake = self.make_intake(capacity=2)
        self.assertEqual(self.accept(intake, [make_alert(pod="a"), make_alert(pod="b")]), [NEW, NEW])
        self.assertEqual(self.queue.room(), 0)

    def test_queue_full_before_deciding(self) -> None:
        """
        A batch that might not fit is refused with QueueFull before anything
        is decided: no episode, no count, no metric moves, so the sender's
        retry is decided as if new.
        """
        intake = self.make_intake(capacity=1)
        alerts = [make_alert(pod="a"), make_alert(pod="a")]
        self.assertRaises(QueueFull, intake.accept, alerts, "req")
        self.assertEqual((len(self.episodes), self.queue.batches), (0, []))
        self.assertIsNone(self.sample("gateway_alerts_deduplicated_total", source="alertmanager"))
        self.assertEqual(self.sample("gateway_dedup_tracked"), 0.0)
        self.queue.capacity = 2
        self.assertEqual(self.accept(intake, alerts), [NEW, DUPLICATE])

    def test_queue_full_keeps_counts(self) -> None:
        """
        A refused retry of a duplicate leaves the episode's count and
        sighting as they were.
        """
        intake = self.make_intake(capacity=1)
        self.accept(intake, [make_alert()])
        self.clock.advance(10)
        self.assertRaises(QueueFull, intake.accept, [make_alert()], "req")
        episode = self.episode(make_alert())
        self.assertEqual((episode.duplicates, episode.last_seen), (0, self.clock.seconds() - 10))


class TickTests(IntakeTestCase):
    """
    Expiry and storm events from the periodic tick.
    """

    def setUp(self) -> None:
        self.intake = self.make_intake(capacity=100, storms=make_storms())

    def storm(self, pods: str = "abcdef") -> None:
        self.accept(self.intake, [make_alert(pod=p) for p in pods])
        self.queue.drain()

    def test_submits_storm_events(self) -> None:
        """
        Storm updates and closing summaries found by the tick are queued
        with the request id "storm", under the storm's ordering key.
        """
        self.storm()
        self.clock.advance(10)
        self.intake.tick()
        [[update]] = self.queue.batches[-1:]
        self.assertEqual((update.body["state"], update.request_id), ("update", "storm"))
        self.assertEqual(update.key, f"storm:{update.body['groupId']}")
        self.clock.advance(30)
        self.intake.tick()
        self.assertEqual([e.body["state"] for e in self.queue.batches[-1]], ["closed"])

    def test_holds_while_full(self) -> None:
        """
        While room() is 0 storm events wait (with a warning) for a later
        tick, which queues them in order, as many as there is room for.
        """
        warnings = capture_events(self, lambda e: e.get("log_level") == LogLevel.warn)
        self.storm("abcdefgh")
        self.queue.capacity = 0
        self.clock.advance(10)
        self.intake.tick()
        self.clock.advance(10)
        self.intake.tick()
        self.clock.advance(30)
        self.intake.tick()
        self.assertEqual(self.queue.batches[1:], [])
        self.assertEqual([e.get("count") for e in warnings], [1, 2, 3])
        self.queue.capacity = 2
        self.intake.tick()
        self.queue.capacity = 10
        self.intake.tick()
        self.assertEqual(
            [[e.body["state"] for e in b] for b in self.queue.batches[1:]], [["update", "update"], ["closed"]]
        )
        self.assertEqual([e.body["sequence"] for b in self.queue.batches[1:] for e in b], [2, 3, 4])
        self.intake.tick()
        self.assertEqual(len(self.queue.batches), 3)

    def test_accept_behind_held_events(self) -> None:
        """
        Storm events waiting for room go first: a batch is refused unless
        it fits behind them, and once it does they are queued before it,
        so a storm's close cannot follow the next storm's start.
        """
        self.storm("abcd")
        self.queue.capacity = 0
        self.clock.advance(30)
        self.intake.tick()
        self.queue.capacity = 4
        self.assertRaises(QueueFull, self.intake.accept, [make_alert(pod=p) for p in "wxyz"], "req")
        self.queue.capacity = 5
        self.assertEqual(self.accept(self.intake, [make_alert(pod=p) for p in "wxyz"]), [NEW] * 3 + [AGGREGATED])
        [batch] = self.queue.batches[1:]
        self.assertEqual(
            [(e.body.get("state"), e.request_id) for e in batch],
            [("closed", "storm"), (None, "req"), (None, "req"), (None, "req"), ("started", "req")],
        )
        self.intake.tick()
        self.assertEqual(len(self.queue.batches), 2)

    def test_expires(self) -> None:
        """
        The tick forgets lapsed episodes and says so in the tracked gauge.
        """
        self.accept(self.intake, [make_alert()])
        self.assertEqual(self.sample("gateway_dedup_tracked"), 1.0)
        self.clock.advance(301)
        self.intake.tick()
        self.assertEqual((len(self.episodes), self.sample("gateway_dedup_tracked")), (0, 0.0))


class DeliveredTests(IntakeTestCase):
    """
    Delivery outcomes recorded on episodes for the status API.
    """

    def test_outcome_recorded(self) -> None:
        """
        An episode's delivery is queued once forwarded, then the outcome of
        its envelope.
        """
        intake = self.make_intake()
        self.accept(intake, [make_alert()])
        self.assertEqual(self.episode(make_alert()).delivery, "queued")
        [envelope] = self.queue.drain()
        intake.delivered(envelope, "delivered")
        self.assertEqual(self.episode(make_alert()).delivery, "delivered")

    def test_latest_forward_only(self) -> None:
        """
        The outcome of an envelope forwarded earlier (the previous episode's
        resolution, a superseded new) does not speak for the latest one;
        storm envelopes and unknown keys are ignored.
        """
        intake = self.make_intake(storms=make_storms(threshold=1))
        self.accept(intake, [make_alert(), make_alert("resolved")])
        self.clock.advance(1)
        # Firing again: a new start, so a new idempotency key.
        self.accept(intake, [attrs.evolve(make_alert(), starts_at="2026-11-26T04:10:00Z")])
        new, resolved, renewed = self.queue.drain()
        intake.delivered(new, "rejected")
        intake.delivered(resolved, "failed")
        self.assertEqual(self.episode(make_alert()).delivery, "queued")
        intake.delivered(renewed, "delivered")
        self.assertEqual(self.episode(make_alert()).delivery, "delivered")
        self.accept(intake, [make_alert(pod="b")])
        [storm] = self.queue.drain()
        intake.delivered(storm, "delivered")
        intake.delivered(Envelope("unknown", {}, "k", "r"), "delivered")
        self.assertEqual(self.episode(make_alert(pod="b")).delivery, "queued")

    def test_through_forwarder(self) -> None:
        """
        With a real forwarder posting to a processor, each alert's episode
        says how its delivery ended: delivered on 202, rejected on 400.
        """
        clock = started_clock()
        metrics = GatewayMetrics()
        episodes = MemoryEpisodes(100)
        processor = Processor(Answer(202), Answer(400))
        stub = StubTreq(processor)
        sink = HTTPSink(cast(PostingClient, stub), "http://processor.test", clock=clock, timeout=5.0)
        forwarder = Forwarder(MemoryQueue(10), sink, clock=clock, metrics=metrics, max_in_flight=1, max_retries=0)
        intake = Intake(Decider(clock, episodes, DeciderSettings()), forwarder.submit, forwarder.room, metrics)
        forwarder.on_outcome = intake.delivered
        forwarder.start()
        a, b = make_alert(pod="a"), make_alert(pod="b")
        self.successResultOf(intake.accept([a, b], "req"))
        stub.flush()
        self.successResultOf(forwarder.stop(0))
        self.assertEqual(len(processor.received), 2)
        self.assertEqual(
            [(e.fingerprint, e.delivery) for e in episodes], [(a.fingerprint, "delivered"), (b.fingerprint, "rejected")]
        )


class MetricsTests(IntakeTestCase):
    """
    What the intake meters.
    """

    def test_deduplicated_by_source(self) -> None:
        """
        Each duplicate counts once in gateway_alerts_deduplicated_total of
        its source; new, resolved and escalated alerts do not.
        """
        intake = self.make_intake()
        self.accept(intake, [make_alert()] * 5 + [make_alert("resolved")])
        self.assertEqual(self.sample("gateway_alerts_deduplicated_total", source="alertmanager"), 3.0)

    def test_tracked_and_evictions(self) -> None:
        """
        gateway_dedup_tracked follows the episodes tracked and
        gateway_dedup_evictions_total counts each eviction once.
        """
        intake = self.make_intake(max_tracked=2)
        self.accept(intake, [make_alert(pod="a"), make_alert(pod="b")])
        self.assertEqual(
            (self.sample("gateway_dedup_tracked"), self.sample("gateway_dedup_evictions_total")), (2.0, 0.0)
        )
        self.accept(intake, [make_alert(pod="c")])
        self.assertEqual(
            (self.sample("gateway_dedup_tracked"), self.sample("gateway_dedup_evictions_total")), (2.0, 1.0)
        )
        self.accept(intake, [make_alert(pod="d"), make_alert(pod="e")])
        intake.tick()
        self.assertEqual(self.sample("gateway_dedup_evictions_total"), 3.0)

    def test_escalations(self) -> None:
        """
        gateway_escalations_total counts escalations by environment and
        level; an environment that is not configured counts as the default
        one, so senders cannot create series.
        """
        intake = self.make_intake()
        self.accept(intake, [make_alert(environment="staging")] * 6 + [make_alert(pod="p", env="prod")] * 4)
        self.accept(intake, [make_alert(environment="development")] * 9)
        for environment, level in (("staging", "normal"), ("production", "immediate"), ("development", "low")):
            with self.subTest(environment=environment):
                self.assertEqual(self.sample("gateway_escalations_total", environment=environment, level=level), 1.0)
        self.assertEqual([v for v in self.accept(intake, [make_alert(environment="staging")]) if v == ESCALATED], [])

    def test_storms(self) -> None:
        """
        gateway_storms_active counts groups in a storm until their storm
        closes; gateway_storm_alerts_aggregated_total counts each alert
        folded into one.
        """
        intake = self.make_intake(storms=make_storms())
        self.assertEqual(self.accept(intake, [make_alert(pod=p) for p in "abcdef"]), [NEW] * 3 + [AGGREGATED] * 3)
        self.accept(intake, [make_alert(namespace="n2", pod=p) for p in "abcd"])
        self.assertEqual(self.sample("gateway_storms_active"), 2.0)
        self.assertEqual(self.sample("gateway_storm_alerts_aggregated_total"), 4.0)
        self.clock.advance(30)
        intake.tick()
        self.assertEqual(self.sample("gateway_storms_active"), 0.0)
        self.assertEqual(self.accept(intake, [make_alert("resolved", pod="d")]), [RESOLVED_RESULT])
        self.assertEqual(self.sample("gateway_storm_alerts_aggregated_total"), 4.0)

    def test_without_storms(self) -> None:
        """
        Without storm detection the storm gauge stays 0.
        """
        intake = self.make_intake()
        self.accept(intake, [make_alert(pod=p) for p in "abcdefghijklmn"])
        intake.tick()
        self.assertEqual(self.sample("gateway_storms_active"), 0.0)
