"""
The gateway's metrics registry.
"""

from __future__ import annotations

import re

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.observability.metrics import LATENCY_BUCKETS, GatewayMetrics
from alertgateway.observability.tallies import Spread, Tally


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


# The families counted per request or per alert, in plain numbers.
HOT = (
    "gateway_requests",
    "gateway_request_duration_seconds",
    "gateway_alerts_received",
    "gateway_rate_limited",
    "gateway_security_rejections",
    "gateway_alerts_deduplicated",
)


def _masked(exposition: bytes) -> str:
    """
    An exposition with its C{_created} times replaced: they are creation
    times, which two registries built apart never share.
    """
    return re.sub(r"(_created(\{[^}]*\})?) \S+", r"\1 T", exposition.decode("utf-8"))


class TallyTests(SynchronousTestCase):
    """
    The plain-number families export what prometheus_client's Counter and
    Histogram of the same name would.
    """

    def test_counter_exposition(self) -> None:
        """
        After the same increments, a L{Tally} and a prometheus_client
        Counter give the same text: HELP, TYPE, _total and _created per
        series, labels in order, an int status code as its text.
        """
        ours, theirs = CollectorRegistry(), CollectorRegistry()
        tally = Tally("gateway_requests", "Requests", ["endpoint", "code"], ours)
        counter = Counter("gateway_requests", "Requests", ["endpoint", "code"], registry=theirs)
        for endpoint, code, amount in (("/a", 202, 1), ("/b", 401, 2), ("/a", 202, 3), ("/a", 500, 1)):
            tally.inc((endpoint, code), amount)
            counter.labels(endpoint, str(code)).inc(amount)
        self.assertEqual(_masked(generate_latest(ours)), _masked(generate_latest(theirs)))

    def test_unlabelled_counter(self) -> None:
        """
        Without labels a L{Tally} is exported at 0 from the start, as a
        Counter is; C{labels()} gives its one series.
        """
        ours, theirs = CollectorRegistry(), CollectorRegistry()
        tally = Tally("gateway_things", "Things", [], ours)
        Counter("gateway_things", "Things", registry=theirs)
        self.assertEqual(_masked(generate_latest(ours)), _masked(generate_latest(theirs)))
        tally.labels().inc(2)
        self.assertEqual(ours.get_sample_value("gateway_things_total"), 2)

    def test_histogram_exposition(self) -> None:
        """
        After the same observations (on bounds, between them, past the last)
        a L{Spread} and a prometheus_client Histogram give the same text, a
        declared series included.
        """
        ours, theirs = CollectorRegistry(), CollectorRegistry()
        spread = Spread("gateway_d_seconds", "Durations", ["endpoint"], LATENCY_BUCKETS, ours)
        histogram = Histogram("gateway_d_seconds", "Durations", ["endpoint"], buckets=LATENCY_BUCKETS, registry=theirs)
        spread.declare(("/quiet",))
        histogram.labels("/quiet")
        for endpoint, value in (("/a", 0.001), ("/a", 0.0), ("/a", 0.3), ("/b", 7.5), ("/a", 0.025), ("/a", 1.0)):
            spread.observe((endpoint,), value)
            histogram.labels(endpoint).observe(value)
        self.assertEqual(_masked(generate_latest(ours)), _masked(generate_latest(theirs)))
        ours_unlabelled, theirs_unlabelled = CollectorRegistry(), CollectorRegistry()
        Spread("gateway_u_seconds", "U", [], LATENCY_BUCKETS, ours_unlabelled).labels().observe(0.2)
        Histogram("gateway_u_seconds", "U", buckets=LATENCY_BUCKETS, registry=theirs_unlabelled).observe(0.2)
        self.assertEqual(_masked(generate_latest(ours_unlabelled)), _masked(generate_latest(theirs_unlabelled)))

    def test_created_once(self) -> None:
        """
        A series' _created is the time it was first counted, kept after.
        """
        times = iter([10.0, 20.0])
        registry = CollectorRegistry()
        tally = Tally("gateway_x", "X", ["k"], registry, wall=lambda: next(times))
        tally.inc(("a",))
        tally.inc(("a",))
        tally.inc(("b",))
        self.assertEqual(registry.get_sample_value("gateway_x_created", {"k": "a"}), 10.0)
        self.assertEqual(registry.get_sample_value("gateway_x_created", {"k": "b"}), 20.0)
        self.assertEqual(registry.get_sample_value("gateway_x_total", {"k": "a"}), 2)

    def test_labels(self) -> None:
        """
        C{labels()} takes the values by position or by name, and refuses a
        wrong number of them.
        """
        registry = CollectorRegistry()
        tally = Tally("gateway_y", "Y", ["a", "b"], registry)
        tally.labels("1", "2").inc()
        tally.labels(b="2", a="1").inc()
        self.assertEqual(registry.get_sample_value("gateway_y_total", {"a": "1", "b": "2"}), 2)
        self.assertRaises(ValueError, tally.labels, "1")

    def test_names_checked(self) -> None:
        """
        The registry knows the families' names: a second metric of the same
        name is refused, as between prometheus_client metrics.
        """
        registry = CollectorRegistry()
        Tally("gateway_z", "Z", [], registry)
        self.assertRaises(ValueError, Counter, "gateway_z", "Z", registry=registry)


class GatewayExpositionTests(SynchronousTestCase):
    """
    The gateway's exposition, for one sequence of events, is what it was
    with prometheus_client's metrics on the hot path.
    """

    def test_same_as_prometheus_client(self) -> None:
        """
        Requests, alerts received and deduplicated, rate limits and
        refusals, recorded through the groups' methods, read the same as
        the prometheus_client metrics of the same names.
        """
        metrics = GatewayMetrics()
        metrics.http.declare_endpoints(["/webhook/prometheus", "/webhook/grafana"])
        metrics.http.request("/webhook/prometheus", 202, 0.004)
        metrics.http.request("/webhook/prometheus", 401, 0.0002)
        metrics.http.request("unmatched", 404, 0.0)
        metrics.webhooks.received("alertmanager", "firing", 49)
        metrics.webhooks.received("alertmanager", "invalid")
        metrics.webhooks.limited("/webhook/prometheus", "global")
        metrics.webhooks.refused("/webhook/prometheus", "auth")
        metrics.decisions.deduplicated("alertmanager", 12)

        reference = CollectorRegistry()
        requests = Counter(
            "gateway_requests", metrics.http.requests.documentation, ["endpoint", "code"], registry=reference
        )
        duration = Histogram(
            "gateway_request_duration_seconds",
            metrics.http.request_duration.documentation,
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=reference,
        )
        duration.labels("/webhook/prometheus")
        duration.labels("/webhook/grafana")
        for endpoint, code, seconds in (
            ("/webhook/prometheus", "202", 0.004),
            ("/webhook/prometheus", "401", 0.0002),
            ("unmatched", "404", 0.0),
        ):
            requests.labels(endpoint, code).inc()
            duration.labels(endpoint).observe(seconds)
        webhooks = metrics.webhooks
        received = Counter(
            "gateway_alerts_received", webhooks.alerts_received.documentation, ["source", "status"], registry=reference
        )
        received.labels("alertmanager", "firing").inc(49)
        received.labels("alertmanager", "invalid").inc()
        Counter(
            "gateway_rate_limited", webhooks.rate_limited.documentation, ["endpoint", "scope"], registry=reference
        ).labels("/webhook/prometheus", "global").inc()
        Counter(
            "gateway_security_rejections",
            webhooks.security_rejections.documentation,
            ["endpoint", "reason"],
            registry=reference,
        ).labels("/webhook/prometheus", "auth").inc()
        Counter(
            "gateway_alerts_deduplicated",
            metrics.decisions.alerts_deduplicated.documentation,
            ["source"],
            registry=reference,
        ).labels("alertmanager").inc(12)

        ours = _masked(generate_latest(metrics.registry.restricted_registry(_sample_names(HOT))))
        theirs = _masked(generate_latest(reference))
        self.assertEqual(sorted(ours.splitlines()), sorted(theirs.splitlines()))

    def test_not_counting(self) -> None:
        """
        With C{counting=False} (metrics.enabled: false) the groups' methods
        record nothing: the families are there, without a series.
        """
        metrics = GatewayMetrics(counting=False)
        metrics.http.request("/webhook/prometheus", 202, 0.004)
        metrics.webhooks.received("alertmanager", "firing", 3)
        metrics.webhooks.limited("/webhook/prometheus", "global")
        metrics.webhooks.refused("/webhook/prometheus", "auth")
        metrics.decisions.deduplicated("alertmanager", 2)
        self.assertFalse(metrics.counting)
        families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode("utf-8"))}
        for name in HOT:
            self.assertEqual(families[name].samples, [], name)


def _sample_names(families: tuple[str, ...]) -> list[str]:
    suffixes = ("_total", "_created", "_bucket", "_count", "_sum")
    return [family + suffix for family in families for suffix in suffixes]
