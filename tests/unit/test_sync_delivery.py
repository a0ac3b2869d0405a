"""
endpoints[].delivery: sync answers only once the processor took every alert.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.decider import DeciderSettings
from alertgateway.core.episodes import Delivery
from alertgateway.delivery.envelope import Envelope
from alertgateway.guards.auth import BearerAuthenticator
from alertgateway.intake.admission import Admission
from alertgateway.intake.backlog import StormBacklog
from alertgateway.intake.outcomes import Outcomes
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.sources import PARSERS
from alertgateway.state.memory import MemoryState
from alertgateway.web.endpoints import Guards, WebhookEndpoint
from alertgateway.web.health import Readiness
from alertgateway.web.site import GatewaySite
from alertgateway.web.tree import Branch, mount
from alertgateway.web.webhook import WebhookResource
from tests.unit._http import TOKEN, Connection, fixture


class SyncDeliveryTests(SynchronousTestCase):
    poll_interval: float | None = None

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.queued: list[Envelope] = []
        metrics = GatewayMetrics()

        def submit(envelopes: list[Envelope], write: object | None = None) -> Deferred[None]:
            self.queued.extend(envelopes)
            return succeed(None)

        self.state = state = MemoryState(DeciderSettings(), max_tracked=100)
        admission = Admission(
            state,
            clock=self.clock,
            submit=submit,
            room=lambda: 1000,
            backlog=StormBacklog(clock=self.clock, submit=submit, room=lambda: 1000),
            metrics=metrics.decisions,
            environments=frozenset(),
            default_environment="production",
        )
        self.outcomes = Outcomes(state, clock=self.clock, poll_interval=self.poll_interval)
        resource = WebhookResource(
            WebhookEndpoint("/webhook/prometheus", "alertmanager", sync=True),
            parser=PARSERS["alertmanager"],
            guards=Guards(authenticator=BearerAuthenticator([TOKEN])),
            admission=admission,
            outcomes=self.outcomes,
            readiness=Readiness(),
            metrics=metrics.webhooks,
            clock=self.clock,
        )
        root = Branch()
        mount(root, "/webhook/prometheus", resource)
        self.site = GatewaySite(root, clock=self.clock, metrics=metrics.http, max_body_bytes=100_000, idle_timeout=60)
        self.site.request_timeout = 30.0

    def post(self) -> Connection:
        connection = Connection(self.site)
        body = fixture("alertmanager-firing.json")
        connection.send(
            b"POST /webhook/prometheus HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        return connection

    def test_answer_waits_for_every_delivery(self) -> None:
        """
        The 202 comes only after the processor accepted both alerts of the
        request, not when they are queued.
        """
        connection = self.post()
        self.assertEqual(len(self.queued), 2)
        self.assertEqual(connection.responses(), [])
        self.outcomes.delivered(self.queued[0], Delivery.DELIVERED)
        self.assertEqual(connection.responses(), [])
        self.outcomes.delivered(self.queued[1], Delivery.DELIVERED)
        [response] = connection.responses()
        self.assertEqual(response.status, 202)

    def test_refused_alert_is_502(self) -> None:
        """
        If the processor refuses an alert for good, the answer is 502
        processor-rejected.
        """
        connection = self.post()
        self.outcomes.delivered(self.queued[0], Delivery.DELIVERED)
        self.outcomes.delivered(self.queued[1], Delivery.REJECTED)
        [response] = connection.responses()
        self.assertEqual(response.status, 502)
        self.assertEqual(response.json()["type"], "urn:alertgateway:problem:processor-rejected")

    def test_retry_of_undelivered_duplicate_waits_too(self) -> None:
        """
        A sender's retry after a 503 finds the alerts already queued as
        duplicates; it still waits for their delivery instead of being
        answered at once.
        """
        first = self.post()
        self.clock.advance(30)
        [timed_out] = first.responses()
        self.assertEqual(timed_out.status, 503)
        retry = self.post()
        self.assertEqual(len(self.queued), 2)
        self.assertEqual(retry.responses(), [])
        for envelope in self.queued:
            self.outcomes.delivered(envelope, Delivery.DELIVERED)
        [response] = retry.responses()
        self.assertEqual((response.status, [a["status"] for a in response.json()["alerts"]]), (202, ["duplicate"] * 2))

    def test_nothing_forwarded_answers_at_once(self) -> None:
        """
        Once delivered, a repeat is a duplicate of a delivered alert: the
        answer comes at once.
        """
        first = self.post()
        for envelope in self.queued:
            self.outcomes.delivered(envelope, Delivery.DELIVERED)
        self.assertEqual(first.responses()[0].status, 202)
        [response] = self.post().responses()
        self.assertEqual(response.status, 202)


class SharedQueueSyncTests(SyncDeliveryTests):
    """
    The same answers when another replica may deliver (queue.backend:
    redis): the outcome is read from the state every poll_interval.
    """

    poll_interval = 0.1

    def test_delivered_elsewhere(self) -> None:
        """
        Deliveries recorded in the state by another replica (not reported
        to this one) answer the request at the next poll.
        """
        connection = self.post()
        for envelope in self.queued:
            self.state.delivered(envelope.key, envelope.idempotency_key, Delivery.DELIVERED)
        self.assertEqual(connection.responses(), [])
        self.clock.advance(0.1)
        [response] = connection.responses()
        self.assertEqual(response.status, 202)

    def test_episode_moved_on(self) -> None:
        """
        An episode that ended (forgotten past its window) while the request
        waited no longer says what happened to its alert: what it forwarded
        has left the queue, and the request is answered.
        """
        connection = self.post()
        self.successResultOf(self.state.tick(self.clock.seconds() + 301, lambda d, w: succeed(None)))
        self.clock.advance(0.1)
        [response] = connection.responses()
        self.assertEqual(response.status, 202)
