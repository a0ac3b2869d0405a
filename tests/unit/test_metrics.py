"""
The gateway's metrics registry.
"""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.observability.metrics import LATENCY_BUCKETS, GatewayMetrics


class GatewayMetricsTests(SynchronousTestCase):
    """
    Names, types, buckets and the registry of the gateway's metrics.
    """

    def test_own_registry(self) -> None:
        """
        Each instance has its own registry: two coexist (the global registry
        would refuse the second) and nothing lands in the global one.
        """
        first, second = GatewayMetrics(), GatewayMetrics()
        first.http.requests.labels(endpoint="/x", code="200").inc()
        self.assertIsNot(first.registry, second.registry)
        self.assertIsNone(second.registry.get_sample_value("gateway_requests_total", {"endpoint": "/x", "code": "200"}))
        self.assertIsNone(REGISTRY.get_sample_value("gateway_requests_total", {"endpoint": "/x", "code": "200"}))

    def test_families(self) -> None:
        """
        The exposition parses and has every metric the contract names, with
        its type and labels.
        """
        metrics = GatewayMetrics()
        metrics.http.requests.labels(endpoint="/webhook/prometheus", code="202").inc()
        metrics.http.request_duration.labels(endpoint="/webhook/prometheus").observe(0.002)
        metrics.webhooks.alerts_received.labels(source="alertmanager", status="firing").inc(2)
        metrics.delivery.alerts_forwarded.labels(outcome="delivered").inc()
        metrics.delivery.forward_duration.observe(0.2)
        metrics.webhooks.rate_limited.labels(endpoint="/webhook/prometheus", scope="client").inc()
        metrics.webhooks.security_rejections.labels(endpoint="/webhook/prometheus", reason="auth").inc(3)
        families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode("utf-8"))}
        expected = {
            "gateway_requests": "counter",
            "gateway_request_duration_seconds": "histogram",
            "gateway_alerts_received": "counter",
            "gateway_alerts_forwarded": "counter",
            "gateway_forward_duration_seconds": "histogram",
            "gateway_forward_retries": "counter",
            "gateway_rate_limited": "counter",
            "gateway_security_rejections": "counter",
            "gateway_tls_reloads": "counter",
            "gateway_queue_depth": "gauge",
            "gateway_ready": "gauge",
        }
        self.assertEqual({name: families[name].type for name in expected}, expected)
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
        self.assertEqual(samples[("gateway_requests_total", (("code", "202"), ("endpoint", "/webhook/prometheus")))], 1)
        self.assertEqual(
            samples[("gateway_alerts_received_total", (("source", "alertmanager"), ("status", "firing")))], 2
        )
        self.assertEqual(samples[("gateway_alerts_forwarded_total", (("outcome", "delivered"),))], 1)
        self.assertEqual(samples[("gateway_forward_duration_seconds_count", ())], 1)
        self.assertEqual(
            samples[("gateway_rate_limited_total", (("endpoint", "/webhook/prometheus"), ("scope", "client")))], 1
        )
        self.assertEqual(
            samples[("gateway_security_rejections_total", (("endpoint", "/webhook/prometheus"), ("reason", "auth")))],
            3,
        )
        self.assertEqual(samples[("gateway_tls_reloads_total", ())], 0)

    def test_buckets(self) -> None:
        """
        Both histograms use the same buckets, 1 ms to 100 ms, extended by
        0.25, 0.5 and 1 s.
        """
        self.assertEqual(LATENCY_BUCKETS, (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
        metrics = GatewayMetrics()
        metrics.delivery.forward_duration.observe(0.003)
        metrics.http.request_duration.labels(endpoint="/e").observe(0.003)
        for name, labels in (
            ("gateway_forward_duration_seconds_bucket", {}),
            ("gateway_request_duration_seconds_bucket", {"endpoint": "/e"}),
        ):
            bounds = [
                metrics.registry.get_sample_value(name, {**labels, "le": str(b)}) for b in (*LATENCY_BUCKETS, "+Inf")
            ]
            self.assertEqual(bounds, [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], name)

    def test_declare_endpoints(self) -> None:
        """
        Declared endpoints have (empty) duration series before any request.
        """
        metrics = GatewayMetrics()
        metrics.http.declare_endpoints(["/a", "/b"])
        for endpoint in ("/a", "/b"):
            self.assertEqual(
                metrics.registry.get_sample_value("gateway_request_duration_seconds_count", {"endpoint": endpoint}),
                0.0,
            )

    def test_decision_families(self) -> None:
        """
        The deduplication, escalation and storm metrics exist with their
        types and labels, counters exposed with _total.
        """
        metrics = GatewayMetrics()
        metrics.decisions.alerts_deduplicated.labels(source="grafana").inc(2)
        metrics.decisions.dedup_tracked.set(7)
        metrics.decisions.dedup_evictions.inc()
        metrics.decisions.escalations.labels(environment="staging", level="normal").inc()
        metrics.decisions.storms_active.set(1)
        metrics.decisions.storm_alerts_aggregated.inc(3)
        families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode("utf-8"))}
        expected = {
            "gateway_alerts_deduplicated": "counter",
            "gateway_dedup_tracked": "gauge",
            "gateway_dedup_evictions": "counter",
            "gateway_escalations": "counter",
            "gateway_storms_active": "gauge",
            "gateway_storm_alerts_aggregated": "counter",
        }
        self.assertEqual({name: families[name].type for name in expected}, expected)
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
        self.assertEqual(samples[("gateway_alerts_deduplicated_total", (("source", "grafana"),))], 2)
        self.assertEqual(samples[("gateway_dedup_tracked", ())], 7)
        self.assertEqual(samples[("gateway_dedup_evictions_total", ())], 1)
        self.assertEqual(samples[("gateway_escalations_total", (("environment", "staging"), ("level", "normal")))], 1)
        self.assertEqual(samples[("gateway_storms_active", ())], 1)
        self.assertEqual(samples[("gateway_storm_alerts_aggregated_total", ())], 3)


class GroupTests(SynchronousTestCase):
    """
    The groups each part is given share the gateway's one registry.
    """

    def test_one_registry(self) -> None:
        """
        What any group records is in the one exposition, and every group
        caches its labelled children.
        """
        metrics = GatewayMetrics()
        for group in (metrics.http, metrics.webhooks, metrics.decisions, metrics.delivery, metrics.redis):
            self.assertIs(group.registry, metrics.registry)
        child = metrics.delivery.child(metrics.delivery.alerts_forwarded, "delivered")
        self.assertIs(metrics.delivery.child(metrics.delivery.alerts_forwarded, "delivered"), child)
        child.inc()
        self.assertIn(b'gateway_alerts_forwarded_total{outcome="delivered"} 1.0', metrics.exposition())

    def test_redis_forgotten(self) -> None:
        """
        Without Redis, no Redis series is exported at all.
        """
        metrics = GatewayMetrics()
        metrics.redis.forget()
        self.assertNotIn(b"gateway_redis", metrics.exposition())
