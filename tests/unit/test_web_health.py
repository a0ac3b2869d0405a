"""
The probes and the metrics resource.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from alertgateway import __version__
from alertgateway.observability.metrics import CONTENT_TYPE_LATEST
from alertgateway.web.health import Lifecycle, Readiness
from tests.unit._http import Connection, assert_problem, assert_security_headers, make_config, make_service


class HealthTests(SynchronousTestCase):
    """
    /health, /health/live and /health/ready through each lifecycle state.
    """

    def setUp(self) -> None:
        self.service, _, _ = make_service(
            make_config("service:\n  name: gw-test\nqueue:\n  backend: memory\n  max_items: 7\n")
        )

    def get(self, path: str) -> tuple[int, dict[str, object]]:
        response = Connection(self.service.site).request("GET", path)
        self.assertEqual(response.header("content-type"), "application/json")
        return response.status, response.json()

    def test_health(self) -> None:
        """
        /health names the service, its version and its state, and is 200 in
        every state.
        """
        for state in ("starting", "ready", "stopping"):
            self.service.readiness.state = Lifecycle(state)
            self.assertEqual(
                self.get("/health"),
                (
                    200,
                    {
                        "status": "ok",
                        "service": "gw-test",
                        "version": __version__,
                        "state": state,
                        "processor": {"name": "alert-processor", "up": True},
                    },
                ),
            )

    def test_live(self) -> None:
        """
        /health/live is 200 whatever the state.
        """
        for state in ("starting", "ready", "stopping"):
            self.service.readiness.state = Lifecycle(state)
            self.assertEqual(self.get("/health/live"), (200, {"status": "alive"}))

    def test_ready(self) -> None:
        """
        /health/ready is 503 while starting and stopping, 200 only when
        ready, and reports the queue (backend, depth, capacity), the
        circuit breaker's state and target and the processor's state, by
        name: never the processor's URL, which the probes would show anyone.
        """
        expected = {"starting": 503, "ready": 200, "stopping": 503}
        for state, code in expected.items():
            self.service.readiness.state = Lifecycle(state)
            status, answer = self.get("/health/ready")
            self.assertEqual(status, code, state)
            self.assertEqual(answer["state"], state)
            self.assertEqual(answer["status"], "ready" if code == 200 else "not ready")
            self.assertEqual(answer["queue"], {"backend": "memory", "depth": 0, "capacity": 7})
            self.assertEqual(answer["circuitBreaker"], {"state": "closed", "target": "alert-processor"})
            self.assertEqual(answer["processor"], {"name": "alert-processor", "up": True})
            self.assertNotIn("unused.jsonl", json.dumps(answer))

    def test_security_headers(self) -> None:
        """
        Probe answers, 503 included, carry the security headers: a probe
        path is as reachable as any other.
        """
        for state in ("ready", "stopping"):
            self.service.readiness.state = Lifecycle(state)
            for path in ("/health", "/health/live", "/health/ready"):
                assert_security_headers(self, Connection(self.service.site).request("GET", path), (state, path))

    def test_not_on_v1(self) -> None:
        """
        The probes are not versioned API: there is no /v1/health.
        """
        assert_problem(self, Connection(self.service.site).request("GET", "/v1/health"), 404, "not-found")


class ReadinessTests(SynchronousTestCase):
    """
    Which webhooks the lifecycle state lets in.
    """

    def test_accepts(self) -> None:
        """
        Starting and ready take every webhook; once stopping only those
        whose request began before the stop.
        """
        readiness = Readiness()
        self.assertTrue(readiness.accepts(100.0))
        readiness.state = Lifecycle.READY
        self.assertTrue(readiness.accepts(100.0))
        readiness.stop(50.0)
        self.assertEqual((readiness.state, readiness.ready), (Lifecycle.STOPPING, False))
        self.assertTrue(readiness.accepts(49.9))
        self.assertFalse(readiness.accepts(50.0))
        self.assertFalse(readiness.accepts(51.0))

    def test_stopping_without_time(self) -> None:
        """
        A stopping state without a start time refuses everything.
        """
        readiness = Readiness()
        readiness.state = Lifecycle.STOPPING
        self.assertFalse(readiness.accepts(0.0))


class MetricsResourceTests(SynchronousTestCase):
    """
    The exposition on the metrics listener, or on the webhook listener when
    they share a port.
    """

    def test_metrics_site(self) -> None:
        """
        The metrics site serves the registry at metrics.path in Prometheus
        text format, and nothing else.
        """
        service, _, _ = make_service(make_config("metrics:\n  path: /prom\n"))
        response = Connection(service.metrics_site).request("GET", "/prom")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("content-type"), CONTENT_TYPE_LATEST)
        self.assertIn(b"# TYPE gateway_requests_total counter", response.body)
        assert_problem(self, Connection(service.metrics_site).request("GET", "/metrics"), 404, "not-found")
        assert_problem(self, Connection(service.site).request("GET", "/prom"), 404, "not-found")

    def test_shared_port(self) -> None:
        """
        With metrics.port equal to service.port the webhook site serves
        /metrics itself, and the request shows up in the metrics.
        """
        service, _, _ = make_service(make_config("service:\n  port: 8080\nmetrics:\n  port: 8080\n"))
        connection = Connection(service.site)
        connection.request("GET", "/metrics")
        response = connection.request("GET", "/metrics")
        self.assertEqual(response.status, 200)
        self.assertIn(b'gateway_requests_total{code="200",endpoint="/metrics"} 1.0', response.body)

    def test_post_refused(self) -> None:
        """
        /metrics is read-only: POST is 405.
        """
        service, _, _ = make_service()
        response = Connection(service.metrics_site).request("POST", "/metrics", body=b"")
        assert_problem(self, response, 405, "method-not-allowed")
