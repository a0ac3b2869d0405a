# -*- test-case-name: tests.unit.test_metrics -*-
"""
The gateway's Prometheus metrics, on a registry of its own, in groups: each
part of the gateway is given only the group it records.

  - L{HTTPMetrics}: every request answered (the site);
  - L{WebhookMetrics}: alerts received, rate limits and security refusals
    (the webhook and status resources);
  - L{DecisionMetrics}: duplicates, escalations, storms and what the state
    tracks (admission, the state store);
  - L{DeliveryMetrics}: forwarding, the queue and the circuit breaker (the
    forwarder);
  - L{RedisMetrics}: the Redis connection (the client, the fail-open
    policy).

A registry per gateway (not prometheus_client's global one) keeps tests
independent and keeps library metrics nobody asked for off /metrics.

What is counted per request or per alert (requests and their duration,
alerts received and deduplicated, refusals) is kept in plain numbers
(L{alertgateway.observability.tallies}) and recorded through a method per
event; with C{metrics.enabled: false} the gateway is given the C{Quiet}
variants of those groups, whose methods do nothing, so the hot path counts
nothing at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from alertgateway.observability.tallies import Spread, Tally

__all__ = [
    "CONTENT_TYPE_LATEST",
    "LATENCY_BUCKETS",
    "DecisionMetrics",
    "DeliveryMetrics",
    "GatewayMetrics",
    "HTTPMetrics",
    "QuietDecisionMetrics",
    "QuietHTTPMetrics",
    "QuietWebhookMetrics",
    "RedisMetrics",
    "WebhookMetrics",
]

# 1 ms to 100 ms around a 50 ms p95 target, extended to 1 s so slow
# outliers are still told apart.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class _Group:
    """
    Metrics on one registry, with their labelled children cached.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *values: str) -> Any:
        """
        C{metric.labels(*values)}, resolved once: prometheus_client checks
        and locks on every C{labels()} call, and the hot paths (each
        request, each alert) need the same few children again and again.
        Label values here come from the configuration or small fixed sets,
        never from senders, so the cache stays small.
        """
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found


class HTTPMetrics(_Group):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        r = registry
        self.requests = Tally(
            "gateway_requests", "HTTP requests answered, by endpoint and status code", ["endpoint", "code"], r
        )
        self.request_duration = Spread(
            "gateway_request_duration_seconds",
            "Time from request line to response, by endpoint",
            ["endpoint"],
            LATENCY_BUCKETS,
            r,
        )
        self.connections_open = Gauge(
            "gateway_connections_open", "Connections open on the webhook listeners", registry=r
        )

    def declare_endpoints(self, endpoints: Iterable[str]) -> None:
        """
        Create the per-endpoint series up front, so rates over them exist
        before the first request.
        """
        for endpoint in endpoints:
            self.request_duration.declare((endpoint,))

    def request(self, endpoint: str, code: int, duration: float) -> None:
        """
        One request answered (or given up) with C{code}, C{duration}
        seconds after its request line.
        """
        self.requests.inc((endpoint, code))
        self.request_duration.observe((endpoint,), duration)


class QuietHTTPMetrics(HTTPMetrics):
    """
    HTTP metrics that count nothing (C{metrics.enabled: false}).
    """

    def request(self, endpoint: str, code: int, duration: float) -> None:
        pass


class WebhookMetrics(_Group):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        r = registry
        self.alerts_received = Tally(
            "gateway_alerts_received",
            "Alerts received in webhooks, by source and status (firing, resolved, invalid)",
            ["source", "status"],
            r,
        )
        self.rate_limited = Tally(
            "gateway_rate_limited",
            "Requests refused by a rate limit, by endpoint and scope (global, endpoint, client)",
            ["endpoint", "scope"],
            r,
        )
        self.security_rejections = Tally(
            "gateway_security_rejections",
            "Requests refused at the edge, by endpoint and reason"
            " (address, rate, concurrency, auth, signature, size, content), and connections closed"
            " (endpoint -: slow_headers, slow_body, connections)",
            ["endpoint", "reason"],
            r,
        )

    def received(self, source: str, status: str, count: int = 1) -> None:
        """
        C{count} alerts received from C{source}: firing, resolved or
        invalid.
        """
        self.alerts_received.inc((source, status), count)

    def limited(self, endpoint: str, scope: str) -> None:
        """
        One request to C{endpoint} refused by the rate limit of C{scope}.
        """
        self.rate_limited.inc((endpoint, scope))

    def refused(self, endpoint: str, reason: str) -> None:
        """
        One request (or connection) refused at the edge for C{reason}.
        """
        self.security_rejections.inc((endpoint, reason))


class QuietWebhookMetrics(WebhookMetrics):
    """
    Webhook metrics that count nothing (C{metrics.enabled: false}).
    """

    def received(self, source: str, status: str, count: int = 1) -> None:
        pass

    def limited(self, endpoint: str, scope: str) -> None:
        pass

    def refused(self, endpoint: str, reason: str) -> None:
        pass


class DecisionMetrics(_Group):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        r = registry
        self.alerts_deduplicated = Tally(
            "gateway_alerts_deduplicated",
            "Alerts recognised as duplicates and not forwarded, by source",
            ["source"],
            r,
        )
        self.dedup_tracked = Gauge("gateway_dedup_tracked", "Dedup episodes tracked in memory", registry=r)
        self.dedup_evictions = Counter(
            "gateway_dedup_evictions",
            "Dedup episodes dropped to respect dedup.max_tracked or state.max_bytes",
            registry=r,
        )
        self.escalations = Counter(
            "gateway_escalations",
            "Escalations forwarded for repeat offenders, by environment and level",
            ["environment", "level"],
            registry=r,
        )
        self.storms_active = Gauge("gateway_storms_active", "Correlation groups currently in a storm", registry=r)
        self.state_bytes = Gauge(
            "gateway_state_bytes",
            "Estimated bytes of the decision state kept in this process's memory (bounded by state.max_bytes)",
            registry=r,
        )
        self.storm_alerts_aggregated = Counter(
            "gateway_storm_alerts_aggregated", "New alerts folded into a storm instead of forwarded alone", registry=r
        )

    def deduplicated(self, source: str, count: int = 1) -> None:
        """
        C{count} alerts from C{source} recognised as duplicates.
        """
        self.alerts_deduplicated.inc((source,), count)


class QuietDecisionMetrics(DecisionMetrics):
    """
    Decision metrics that do not count duplicates (C{metrics.enabled:
    false}).
    """

    def deduplicated(self, source: str, count: int = 1) -> None:
        pass


class DeliveryMetrics(_Group):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        r = registry
        self.alerts_forwarded = Counter(
            "gateway_alerts_forwarded",
            "Alerts leaving the gateway, by outcome (delivered, rejected)",
            ["outcome"],
            registry=r,
        )
        self.forward_duration = Histogram(
            "gateway_forward_duration_seconds",
            "Duration of one delivery attempt to the Alert Processor",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.forward_retries = Counter(
            "gateway_forward_retries", "Delivery attempts that failed and were retried", registry=r
        )
        self.forward_attempts = Counter(
            "gateway_forward_attempts",
            "Delivery attempts by outcome (success, retry, reject) and class of result"
            " (ok, timeout, connect, tls, 4xx, 5xx, 429, io)",
            ["outcome", "class"],
            registry=r,
        )
        self.dead_letters = Counter(
            "gateway_dead_letters", "Alerts the processor refused for good, kept as dead letters", registry=r
        )
        self.forward_timeout = Gauge(
            "gateway_forward_timeout_seconds", "The current (adaptive) timeout of one delivery attempt", registry=r
        )
        self.forward_failure_ratio = Gauge(
            "gateway_forward_failure_ratio", "Exponentially weighted ratio of failed delivery attempts", registry=r
        )
        self.queue_oldest_age = Gauge(
            "gateway_queue_oldest_age_seconds", "Age of the oldest alert accepted and not yet delivered", registry=r
        )
        self.queue_depth = Gauge("gateway_queue_depth", "Alerts accepted and not yet delivered", registry=r)
        self.breaker_state = Gauge(
            "gateway_circuit_breaker_state",
            "Circuit breaker state by target: 0 closed, 1 open, 2 half-open",
            ["target"],
            registry=r,
        )
        self.processor_up = Gauge(
            "gateway_processor_up",
            "1 while the Alert Processor is taken for up: the circuit breaker closed, or its health check answering",
            registry=r,
        )
        self.breaker_transitions = Counter(
            "gateway_circuit_breaker_transitions",
            "Circuit breaker state changes by target and new state",
            ["target", "to"],
            registry=r,
        )


class RedisMetrics(_Group):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        r = registry
        self.up = Gauge("gateway_redis_up", "1 while the gateway has a working connection to Redis", registry=r)
        self.errors = Counter(
            "gateway_redis_errors",
            "Redis operations that failed, by operation and reason (unavailable, timeout, error)",
            ["operation", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            "gateway_redis_latency_seconds",
            "Round-trip time of Redis operations, by operation",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "gateway_redis_fallbacks",
            "Decisions taken from local memory because Redis was unreachable (state.redis.on_failure: fail_open)",
            ["facility"],
            registry=r,
        )

    @classmethod
    def unregistered(cls) -> RedisMetrics:
        """
        Metrics that nobody scrapes (a connection metered apart).
        """
        return cls(CollectorRegistry())

    def forget(self) -> None:
        """
        Leave these metrics out of the registry (no Redis backend: an alert
        on gateway_redis_up == 0 must not fire for it).
        """
        for collector in (self.up, self.errors, self.latency, self.fallbacks):
            self.registry.unregister(collector)


class GatewayMetrics:
    """
    Every metric the gateway exports, created on one registry.

    @param counting: C{False} (C{metrics.enabled: false}): what is counted
        per request and per alert is not counted at all.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, counting: bool = True) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.counting = counting
        self.http = HTTPMetrics(r) if counting else QuietHTTPMetrics(r)
        self.webhooks = WebhookMetrics(r) if counting else QuietWebhookMetrics(r)
        self.decisions = DecisionMetrics(r) if counting else QuietDecisionMetrics(r)
        self.delivery = DeliveryMetrics(r)
        self.redis = RedisMetrics(r)
        self.tls_reloads = Counter("gateway_tls_reloads", "TLS certificate reloads after a rotation", registry=r)
        self.ready = Gauge("gateway_ready", "1 while the gateway accepts webhooks, 0 otherwise", registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
