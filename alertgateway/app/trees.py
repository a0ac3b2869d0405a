# -*- test-case-name: tests.unit.test_service -*-
"""
The three sites the gateway serves and their resource trees: the webhook
listener's (every endpoint, the status API, the probes, and the metrics
when they share its port), the probe listener's and the metrics listener's.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.web.resource import Resource

from alertgateway.app import settings
from alertgateway.app.build import Gateway
from alertgateway.app.guards import guards_for, status_authenticator
from alertgateway.config import DeliveryMode
from alertgateway.guards.addresses import AddressFilter, ClientAddress, ProxyHeader
from alertgateway.sources import DECODERS, PARSERS
from alertgateway.web.endpoints import WebhookEndpoint
from alertgateway.web.health import HealthResource, LiveResource, ReadyResource
from alertgateway.web.site import GatewaySite
from alertgateway.web.status import AlertsResource
from alertgateway.web.tree import Branch, MetricsResource, mount
from alertgateway.web.webhook import WebhookResource

__all__ = ["Sites", "build_sites"]


@attrs.define
class Sites:
    """
    @ivar address_filters: Every C{allowed_ips} filter, for the periodic
        resolution of the host names they list.
    """

    webhook: GatewaySite
    probe: GatewaySite
    metrics: GatewaySite
    address_filters: list[AddressFilter]


def build_sites(gateway: Gateway) -> Sites:
    filters: list[AddressFilter] = []
    webhook = _site(gateway, _webhook_tree(gateway, filters), webhook=True)
    gateway.metrics.http.connections_open.set_function(lambda: webhook.connections.count)
    return Sites(
        webhook=webhook,
        probe=_site(gateway, _probe_tree(gateway), webhook=False),
        metrics=_site(gateway, _metrics_tree(gateway), webhook=False),
        address_filters=filters,
    )


def _site(gateway: Gateway, root: Resource, *, webhook: bool) -> GatewaySite:
    service = gateway.config.service
    return GatewaySite(
        root,
        clock=gateway.reactor,
        metrics=gateway.metrics.http,
        max_body_bytes=service.max_body_bytes,
        idle_timeout=service.idle_timeout,
        gzip_min_bytes=service.gzip_min_bytes,
        request_timeout=service.request_timeout,
        access_log=gateway.access_log,
        limits=settings.edge_limits(gateway.config, webhook=webhook),
        security=gateway.metrics.webhooks,
        access_log_exclude=frozenset(gateway.config.logging.access_log_exclude),
    )


def _add_health(gateway: Gateway, root: Resource) -> None:
    mount(
        root,
        "/health",
        HealthResource(
            gateway.config.service.name, gateway.readiness, lambda: {"processor": _processor_state(gateway)}
        ),
    )
    mount(root, "/health/live", LiveResource())
    ready = ReadyResource(gateway.readiness, lambda: _ready_details(gateway), lambda: _can_serve(gateway))
    mount(root, "/health/ready", ready)


def _webhook_tree(gateway: Gateway, filters: list[AddressFilter]) -> Resource:
    config = gateway.config
    root = Branch()
    addresses = AddressFilter(config.security.allowed_ips)
    filters.append(addresses)
    clients = ClientAddress(config.security.trusted_proxies, ProxyHeader(config.security.forwarded_header.value))
    for endpoint in config.webhook.endpoints:
        guards, own_addresses = guards_for(gateway, endpoint, addresses, clients)
        filters.append(own_addresses)
        source = endpoint.source or ""
        resource = WebhookResource(
            WebhookEndpoint(endpoint.path, source, sync=endpoint.delivery == DeliveryMode.SYNC),
            parser=PARSERS[source],
            decoder=DECODERS[source]() if source in DECODERS else None,
            guards=guards,
            admission=gateway.admission,
            outcomes=gateway.outcomes,
            readiness=gateway.readiness,
            metrics=gateway.metrics.webhooks,
            clock=gateway.reactor,
        )
        for path in endpoint.served_paths():
            mount(root, path, resource)
    _add_health(gateway, root)
    # Guarded like the webhooks: security.allowed_ips, and webhook.auth
    # while any webhook endpoint requires credentials.
    status = AlertsResource(
        gateway.state,
        status_authenticator(gateway),
        addresses=addresses,
        clients=clients,
        metrics=gateway.metrics.webhooks,
    )
    mount(root, "/v1/alerts", status)
    if config.metrics_on_webhook_port():
        mount(root, config.metrics.path, MetricsResource(gateway.metrics, config.metrics.path))
    gateway.metrics.http.declare_endpoints(e.path for e in config.webhook.endpoints)
    return root


def _probe_tree(gateway: Gateway) -> Resource:
    root = Branch()
    _add_health(gateway, root)
    return root


def _metrics_tree(gateway: Gateway) -> Resource:
    root = Branch()
    path = gateway.config.metrics.path
    mount(root, path, MetricsResource(gateway.metrics, path))
    return root


def _ready_details(gateway: Gateway) -> dict[str, Any]:
    config = gateway.config
    queue = gateway.queue
    details: dict[str, Any] = {
        "queue": {"backend": str(config.queue.backend), "depth": len(queue), "capacity": queue.max_items}
    }
    if gateway.redis_queue is not None:
        details["queue"]["partitions"] = sorted(gateway.redis_queue.held)
    if gateway.breaker is not None:
        # The processor's name: the probes answer anyone, its URL is internal.
        details["circuitBreaker"] = {"state": gateway.breaker.state.value, "target": config.alert_processor.name}
    details["processor"] = _processor_state(gateway)
    if gateway.redis is not None:
        details["redis"] = {"up": gateway.redis.up, "onFailure": str(config.state.redis.on_failure)}
    return details


def _processor_state(gateway: Gateway) -> dict[str, Any]:
    """
    The processor by name, and whether it is taken for up
    (C{gateway_processor_up}, the one place that says so).
    """
    up = gateway.metrics.registry.get_sample_value("gateway_processor_up")
    return {"name": gateway.config.alert_processor.name, "up": up != 0}


def _can_serve(gateway: Gateway) -> bool:
    """
    Whether webhooks can be taken as configured: not while Redis is down
    and the gateway fails closed (a load balancer should send them to a
    replica that can).
    """
    redis = gateway.redis
    return redis is None or redis.up or gateway.config.state.redis.on_failure == "fail_open"
