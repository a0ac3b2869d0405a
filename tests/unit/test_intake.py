"""
Intake: admission (decide, then commit with the queued envelopes), the
periodic tick and the room it holds for storm events, delivery outcomes
back onto episodes, and the decision metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import attrs
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.decider import DeciderSettings, occurrence_key
from alertgateway.core.decision import Verdict
from alertgateway.core.episodes import Delivery, Episode
from alertgateway.core.model import Alert, fingerprint
from alertgateway.core.storms import StormSettings
from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.forwarder import Forwarder
from alertgateway.delivery.http import HTTPSink, PostingClient
from alertgateway.delivery.queue import MemoryQueue
from alertgateway.intake.admission import Admission
from alertgateway.intake.backlog import StormBacklog
from alertgateway.intake.outcomes import Outcomes
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.state.errors import QueueFull, StateUnavailable
from alertgateway.state.memory import MemoryState
from alertgateway.state.ports import Enqueue, Tracked
from alertgateway.testing import Answer, StubProcessor
from tests.unit._http import capture_events

NEW, DUPLICATE, RESOLVED, ESCALATED, AGGREGATED = (
    Verdict.NEW,
    Verdict.DUPLICATE,
    Verdict.RESOLVED,
    Verdict.ESCALATED,
    Verdict.AGGREGATED,
)
START = 1_800_000_000.0


def make_alert(status: str = "firing", **labels: str) -> Alert:
    """
    A PodCrash alert of pod p-1 in payments, C{labels} added or replaced.
    """
    merged: Mapping[str, str] = {"alertname": "PodCrash", "namespace": "payments", "pod": "p-1", **labels}
    return Alert(
        fingerprint=fingerprint(merged),
        source="alertmanager",
        status=status,
        labels=merged,
        annotations={},
        starts_at="2026-11-26T03:49:49Z",
        ends_at=None,
        generator_url="",
        received_at="2026-11-26T03:50:00.000Z",
    )


def storms(**overrides: float) -> StormSettings:
    values: dict[str, Any] = {
        "threshold": 3,
        "window": 60,
        "flush_interval": 10,
        "quiet_period": 30,
        "max_members_listed": 2,
        **overrides,
    }
    return StormSettings(**values)


class RecordingQueue:
    """
    A bounded queue that records each batch and can be drained by hand;
    while C{refusals} is set, writes are refused, at once or later.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.queued: list[Envelope] = []
        self.batches: list[list[Envelope]] = []
        self.refusals = 0
        self.later = True

    def submit(self, envelopes: list[Envelope], write: object | None = None) -> Deferred[None]:
        if len(envelopes) > self.room():
            raise QueueFull("recording queue is full")
        if self.refusals:
            self.refusals -= 1
            if self.later:
                return fail(QueueFull("disk full"))
            raise QueueFull("over max_bytes")
        self.batches.append(list(envelopes))
        self.queued.extend(envelopes)
        return succeed(None)

    def room(self) -> int:
        return self.capacity - len(self.queued)

    def drain(self) -> list[Envelope]:
        taken, self.queued = self.queued, []
        return taken


class IntakeTestCase(SynchronousTestCase):
    def make(
        self, capacity: int = 100, storm: StormSettings | None = None, max_tracked: int = 1000, **overrides: Any
    ) -> Admission:
        """
        Admission, backlog and outcomes on a memory state, wired as the
        service wires them.
        """
        self.clock = Clock()
        self.clock.advance(START)
        self.queue = RecordingQueue(capacity)
        self.metrics = metrics = GatewayMetrics()
        # Every duplicate counts toward escalation (the spacing has tests
        # of its own).
        settings = DeciderSettings(storms=storm, **{"min_spacing": 0.0, **overrides})
        self.state = state = MemoryState(
            settings, max_tracked=max_tracked, on_evict=metrics.decisions.dedup_evictions.inc
        )
        metrics.decisions.dedup_tracked.set_function(lambda: state.tracked_episodes)
        metrics.decisions.storms_active.set_function(lambda: state.active_storms)
        self.backlog = StormBacklog(clock=self.clock, submit=self.queue.submit, room=self.queue.room)
        self.backlog.attach(state)
        self.outcomes = Outcomes(state, clock=self.clock)
        return Admission(
            state,
            clock=self.clock,
            submit=self.queue.submit,
            room=self.queue.room,
            backlog=self.backlog,
            metrics=metrics.decisions,
            environments=frozenset(settings.rules),
            default_environment=settings.default_environment,
        )

    def sample(self, name: str, **labels: str) -> float | None:
        value: float | None = self.metrics.registry.get_sample_value(name, labels)
        return value

    def accept(self, admission: Admission, alerts: Sequence[Alert], request_id: str = "req") -> list[Verdict]:
        return [r.verdict for r in self.successResultOf(admission.accept(alerts, request_id))]

    def tick(self) -> None:
        self.successResultOf(self.backlog.tick())

    def episode(self, alert: Alert) -> Episode:
        episode = self.successResultOf(self.state.episode(alert.fingerprint))
        assert episode is not None
        return episode


class AcceptTests(IntakeTestCase):
    """
    Deciding and committing a batch with its envelopes.
    """

    def test_queues_what_is_forwarded(self) -> None:
        """
        The rulings come back in order; only what is forwarded is queued,
        as one batch of envelopes with the request's id and forwarded
        headers, each with its ordering key, body and idempotency key.
        """
        admission = self.make()
        a, b = make_alert(pod="a"), make_alert(pod="b")
        rulings = self.successResultOf(admission.accept([a, a, b], "req-1", (("X-Tenant", "t1"),)))
        self.assertEqual([r.verdict for r in rulings], [NEW, DUPLICATE, NEW])
        [batch] = self.queue.batches
        self.assertEqual(
            [(e.key, e.idempotency_key, e.request_id, e.headers) for e in batch],
            [
                (a.fingerprint, occurrence_key(a, self.clock.seconds()), "req-1", (("X-Tenant", "t1"),)),
                (b.fingerprint, occurrence_key(b, self.clock.seconds()), "req-1", (("X-Tenant", "t1"),)),
            ],
        )
        self.assertEqual([e.body["decision"] for e in batch], ["new", "new"])

    def test_duplicates_queue_nothing(self) -> None:
        """
        A batch of duplicates only writes no envelope at all.
        """
        admission = self.make()
        self.accept(admission, [make_alert()])
        self.assertEqual(self.accept(admission, [make_alert(), make_alert()]), [DUPLICATE, DUPLICATE])
        self.assertEqual(len(self.queue.batches), 1)

    def test_exactly_fitting_batch(self) -> None:
        """
        A batch exactly as long as the room left is decided and queued.
        """
        admission = self.make(capacity=2)
        self.assertEqual(self.accept(admission, [make_alert(pod="a"), make_alert(pod="b")]), [NEW, NEW])
        self.assertEqual(self.queue.room(), 0)

    def test_queue_full_before_deciding(self) -> None:
        """
        A batch that might not fit is refused with QueueFull before anything
        is decided: no episode, no count, no metric moves, so the sender's
        retry is decided as if new.
        """
        admission = self.make(capacity=1)
        alerts = [make_alert(pod="a"), make_alert(pod="a")]
        self.assertRaises(QueueFull, admission.accept, alerts, "req")
        self.assertEqual((self.state.tracked_episodes, self.queue.batches), (0, []))
        self.assertIsNone(self.sample("gateway_alerts_deduplicated_total", source="alertmanager"))
        self.assertEqual(self.sample("gateway_dedup_tracked"), 0.0)
        self.queue.capacity = 2
        self.assertEqual(self.accept(admission, alerts), [NEW, DUPLICATE])

    def test_queue_full_keeps_counts(self) -> None:
        """
        A refused retry of a duplicate leaves the episode's count and
        sighting as they were.
        """
        admission = self.make(capacity=1)
        self.accept(admission, [make_alert()])
        self.clock.advance(10)
        self.assertRaises(QueueFull, admission.accept, [make_alert()], "req")
        episode = self.episode(make_alert())
        self.assertEqual((episode.duplicates, episode.last_seen), (0, self.clock.seconds() - 10))

    def test_refused_write_not_committed(self) -> None:
        """
        When the queue refuses the write, as it is asked (its byte bound) or
        once it was tried (a disk error), QueueFull reaches the caller and
        nothing of the decision is kept: the retry of the same alert is new,
        not a duplicate of a forward that never left.
        """
        for later in (False, True):
            with self.subTest(later=later):
                admission = self.make()
                self.queue.refusals, self.queue.later = 1, later
                self.failureResultOf(admission.accept([make_alert()], "r1"), QueueFull)
                self.assertEqual(self.state.tracked_episodes, 0)
                self.assertEqual(self.accept(admission, [make_alert()], "r2"), [NEW])
                self.assertEqual([e.request_id for e in self.queue.queued], ["r2"])

    def test_storm_start_not_committed(self) -> None:
        """
        A storm that a refused batch would have started is not started: the
        retry starts it and forwards its event.
        """
        admission = self.make(storm=storms(threshold=2, max_members_listed=10))
        batch = [make_alert(pod=p) for p in "abc"]
        self.queue.refusals = 1
        self.failureResultOf(admission.accept(batch, "r1"), QueueFull)
        self.assertEqual(self.state.active_storms, 0)
        self.assertEqual(self.accept(admission, batch, "r2"), [NEW, NEW, AGGREGATED])
        self.assertEqual([e.body.get("state") for e in self.queue.queued if e.key.startswith("storm:")], ["started"])

    def test_storm_members_not_committed(self) -> None:
        """
        Members a refused batch would have folded into a running storm are
        not counted nor kept waiting, so the retry folds them once.  (The
        batch's other alert, of another group, is what the queue refused.)
        """
        admission = self.make(storm=storms(threshold=2, max_members_listed=10))
        self.accept(admission, [make_alert(pod=p) for p in "abc"], "r1")
        self.clock.advance(5)
        self.queue.refusals = 1
        batch = [make_alert(pod="d"), make_alert(pod="e"), make_alert(namespace="other")]
        self.failureResultOf(admission.accept(batch, "r2"), QueueFull)
        self.assertEqual(self.accept(admission, batch, "r3"), [AGGREGATED, AGGREGATED, NEW])
        self.clock.advance(10)
        self.tick()
        [update] = [e for e in self.queue.queued if e.body.get("state") == "update"]
        self.assertEqual((update.body["memberCount"], len(update.body["members"])), (5, 2))


class TickTests(IntakeTestCase):
    """
    Expiry and storm events from the periodic tick.
    """

    def setUp(self) -> None:
        self.admission = self.make(capacity=100, storm=storms())

    def storm(self, pods: str = "abcdef") -> None:
        self.accept(self.admission, [make_alert(pod=p) for p in pods])
        self.queue.drain()

    def states(self) -> list[list[str]]:
        return [[e.body["state"] for e in batch] for batch in self.queue.batches[1:]]

    def test_submits_storm_events(self) -> None:
        """
        Storm updates and closing summaries found by the tick are queued
        with the request id "storm", under the storm's ordering key.
        """
        self.storm()
        self.clock.advance(10)
        self.tick()
        [[update]] = self.queue.batches[-1:]
        self.assertEqual((update.body["state"], update.request_id), ("update", "storm"))
        self.assertEqual(update.key, f"storm:{update.body['groupId']}")
        self.clock.advance(30)
        self.tick()
        self.assertEqual([e.body["state"] for e in self.queue.batches[-1]], ["closed"])

    def test_waits_while_full(self) -> None:
        """
        While the queue has no room for the events that are due, nothing of
        them is committed (a warning each tick) and they are due again at
        the next tick; once there is room they go out in order, without a
        gap in their sequence, and every member is listed.
        """
        warnings = capture_events(self, lambda e: e.get("log_level") == LogLevel.warn)
        self.storm("abcdefgh")
        self.queue.capacity = 0
        for _ in range(3):
            self.clock.advance(10)
            self.tick()
        self.assertEqual(self.states(), [])
        self.assertEqual(len(warnings), 3)
        self.queue.capacity = 10
        for _ in range(2):
            self.tick()
            self.clock.advance(10)
        # The second update empties the list enough for the (quiet) storm to
        # close in the same tick.
        self.assertEqual(self.states(), [["update"], ["update", "closed"]])
        events = [e.body for b in self.queue.batches[1:] for e in b]
        self.assertEqual([e["sequence"] for e in events], [2, 3, 4])
        listed = [m["fingerprint"] for e in events for m in e["members"]]
        self.assertEqual(listed, [make_alert(pod=p).fingerprint for p in "cdefgh"])

    def test_room_held_for_events(self) -> None:
        """
        Storm events that found no room hold as many places: a batch is
        refused unless it fits behind them, so a steady stream of webhooks
        cannot starve them; once the tick has queued them the places are
        free again.
        """
        self.storm("abcd")
        self.queue.capacity = 0
        self.clock.advance(30)
        self.tick()
        self.queue.capacity = 4
        self.assertRaises(QueueFull, self.admission.accept, [make_alert(pod=p) for p in "wxyz"], "req")
        self.tick()
        self.assertEqual(self.states(), [["closed"]])
        self.assertEqual(self.accept(self.admission, [make_alert(pod=p) for p in "wxy"]), [NEW] * 3)

    def test_more_events_than_the_queue_holds(self) -> None:
        """
        When more storm events are due than the whole queue can hold, the
        tick queues the storms whose events fit and holds room for the
        rest only: as the processor takes them, the others follow, and an
        empty queue never refuses a webhook.
        """
        admission = self.make(capacity=4, storm=storms(threshold=1, max_members_listed=10))
        for namespace in "abcde":
            self.accept(admission, [make_alert(namespace=namespace, pod=p) for p in ("p1", "p2")])
            self.queue.drain()
        self.clock.advance(31)
        self.tick()
        self.assertEqual((len(self.queue.queued), self.backlog.reserved), (4, 1))
        self.queue.drain()
        self.tick()
        self.assertEqual((len(self.queue.queued), self.backlog.reserved), (1, 0))
        self.queue.drain()
        self.assertEqual(self.accept(admission, [make_alert(namespace="z")]), [NEW])
        closed = [e.body["groupLabels"]["namespace"] for b in self.queue.batches for e in b if "state" in e.body]
        self.assertEqual(sorted(c for c in closed), sorted("abcde" * 2))

    def test_refused_write_retried(self) -> None:
        """
        A storm event whose write the queue refused (a disk error) is not
        lost: it goes out with the next tick.
        """
        self.storm("abc" + "d")
        self.clock.advance(31)
        self.queue.refusals = 1
        self.tick()
        self.assertEqual(self.states(), [])
        self.tick()
        self.assertEqual(self.states(), [["closed"]])

    def test_expires(self) -> None:
        """
        The tick forgets lapsed episodes and says so in the tracked gauge.
        """
        self.accept(self.admission, [make_alert()])
        self.assertEqual(self.sample("gateway_dedup_tracked"), 1.0)
        self.clock.advance(301)
        self.tick()
        self.assertEqual((self.state.tracked_episodes, self.sample("gateway_dedup_tracked")), (0, 0.0))

    def test_state_failure_logged(self) -> None:
        """
        A tick whose state store cannot answer logs a warning and fires:
        the next tick tries again (a LoopingCall whose call fails stops).
        """

        class Unavailable:
            def tick(self, now: float, enqueue: Enqueue, max_events: int | None = None) -> Deferred[object]:
                return fail(StateUnavailable("no Redis"))

            def tracked(self) -> Deferred[Tracked]:
                return fail(StateUnavailable("no Redis"))

        warnings = capture_events(self, lambda e: e.get("log_level") == LogLevel.warn)
        backlog = StormBacklog(clock=self.clock, submit=self.queue.submit, room=self.queue.room, gauges=print)
        backlog.attach(cast(Any, Unavailable()))
        self.successResultOf(backlog.tick())
        self.assertEqual(len(warnings), 2)


class DeliveredTests(IntakeTestCase):
    """
    Delivery outcomes recorded on episodes for the status API.
    """

    def test_outcome_recorded(self) -> None:
        """
        An episode's delivery is queued once forwarded, then the outcome of
        its envelope.
        """
        admission = self.make()
        self.accept(admission, [make_alert()])
        self.assertEqual(self.episode(make_alert()).delivery, Delivery.QUEUED)
        [envelope] = self.queue.drain()
        self.outcomes.delivered(envelope, Delivery.DELIVERED)
        self.assertEqual(self.episode(make_alert()).delivery, Delivery.DELIVERED)

    def test_latest_forward_only(self) -> None:
        """
        The outcome of an envelope forwarded earlier (the previous episode's
        resolution, a superseded new) does not speak for the latest one;
        storm envelopes and unknown keys are ignored.
        """
        admission = self.make(storm=storms(threshold=1))
        self.accept(admission, [make_alert(), make_alert("resolved")])
        self.clock.advance(1)
        # Firing again: a new start, so a new idempotency key.
        self.accept(admission, [attrs.evolve(make_alert(), starts_at="2026-11-26T04:10:00Z")])
        new, resolved, renewed = self.queue.drain()
        self.outcomes.delivered(new, Delivery.REJECTED)
        self.outcomes.delivered(resolved, Delivery.REJECTED)
        self.assertEqual(self.episode(make_alert()).delivery, Delivery.QUEUED)
        self.outcomes.delivered(renewed, Delivery.DELIVERED)
        self.assertEqual(self.episode(make_alert()).delivery, Delivery.DELIVERED)
        self.accept(admission, [make_alert(pod="b")])
        [storm] = self.queue.drain()
        self.outcomes.delivered(storm, Delivery.DELIVERED)
        self.outcomes.delivered(Envelope("unknown", {}, "k", "r"), Delivery.DELIVERED)
        self.assertEqual(self.episode(make_alert(pod="b")).delivery, Delivery.QUEUED)

    def test_through_forwarder(self) -> None:
        """
        With a real forwarder posting to a processor, each alert's episode
        says how its delivery ended: delivered on 202, rejected on 400.
        """
        self.make()
        processor = StubProcessor(Answer(202), Answer(400))
        stub = StubTreq(processor)
        sink = HTTPSink(cast(PostingClient, stub), "http://processor.test", clock=self.clock, timeout=5.0)
        forwarder = Forwarder(
            MemoryQueue(10), sink, clock=self.clock, metrics=self.metrics.delivery, max_in_flight=1, max_retries=0
        )
        admission = Admission(
            self.state,
            clock=self.clock,
            submit=forwarder.submit,
            room=forwarder.room,
            backlog=self.backlog,
            metrics=self.metrics.decisions,
            environments=frozenset(),
            default_environment="production",
        )
        forwarder.subscribe(self.outcomes.delivered)
        forwarder.start()
        a, b = make_alert(pod="a"), make_alert(pod="b")
        self.successResultOf(admission.accept([a, b], "req"))
        stub.flush()
        self.successResultOf(forwarder.stop(0))
        self.assertEqual(len(processor.received), 2)
        self.assertEqual([(self.episode(alert).delivery) for alert in (a, b)], [Delivery.DELIVERED, Delivery.REJECTED])


class MetricsTests(IntakeTestCase):
    """
    What admission and the tick meter.
    """

    def test_deduplicated_by_source(self) -> None:
        """
        Each duplicate counts once in gateway_alerts_deduplicated_total of
        its source; new, resolved and escalated alerts do not.
        """
        admission = self.make()
        self.accept(admission, [make_alert()] * 5 + [make_alert("resolved")])
        self.assertEqual(self.sample("gateway_alerts_deduplicated_total", source="alertmanager"), 3.0)

    def test_tracked_and_evictions(self) -> None:
        """
        gateway_dedup_tracked follows the episodes tracked and
        gateway_dedup_evictions_total counts each eviction once.
        """
        admission = self.make(max_tracked=2)
        self.accept(admission, [make_alert(pod="a"), make_alert(pod="b")])
        self.assertEqual(
            (self.sample("gateway_dedup_tracked"), self.sample("gateway_dedup_evictions_total")), (2.0, 0.0)
        )
        self.accept(admission, [make_alert(pod="c")])
        self.assertEqual(
            (self.sample("gateway_dedup_tracked"), self.sample("gateway_dedup_evictions_total")), (2.0, 1.0)
        )
        self.accept(admission, [make_alert(pod="d"), make_alert(pod="e")])
        self.tick()
        self.assertEqual(self.sample("gateway_dedup_evictions_total"), 3.0)

    def test_escalations(self) -> None:
        """
        gateway_escalations_total counts escalations by environment and
        level; an environment that is not configured counts as the default
        one, so senders cannot create series.
        """
        admission = self.make()
        self.accept(admission, [make_alert(environment="staging")] * 6 + [make_alert(pod="p", env="prod")] * 4)
        self.accept(admission, [make_alert(environment="development")] * 9)
        for environment, level in (("staging", "normal"), ("production", "immediate"), ("development", "low")):
            with self.subTest(environment=environment):
                self.assertEqual(self.sample("gateway_escalations_total", environment=environment, level=level), 1.0)
        self.assertNotIn(ESCALATED, self.accept(admission, [make_alert(environment="staging")]))

    def test_storms(self) -> None:
        """
        gateway_storms_active counts groups in a storm until their storm
        closes; gateway_storm_alerts_aggregated_total counts each alert
        folded into one.
        """
        admission = self.make(storm=storms())
        self.assertEqual(self.accept(admission, [make_alert(pod=p) for p in "abcdef"]), [NEW] * 3 + [AGGREGATED] * 3)
        self.accept(admission, [make_alert(namespace="n2", pod=p) for p in "abcd"])
        self.assertEqual(self.sample("gateway_storms_active"), 2.0)
        self.assertEqual(self.sample("gateway_storm_alerts_aggregated_total"), 4.0)
        self.clock.advance(30)
        self.tick()
        self.assertEqual(self.sample("gateway_storms_active"), 0.0)
        self.assertEqual(self.accept(admission, [make_alert("resolved", pod="d")]), [RESOLVED])
        self.assertEqual(self.sample("gateway_storm_alerts_aggregated_total"), 4.0)

    def test_without_storms(self) -> None:
        """
        Without storm detection the storm gauge stays 0.
        """
        admission = self.make()
        self.accept(admission, [make_alert(pod=p) for p in "abcdefghijklmn"])
        self.tick()
        self.assertEqual(self.sample("gateway_storms_active"), 0.0)
