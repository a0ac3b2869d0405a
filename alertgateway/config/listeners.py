# -*- test-case-name: tests.unit.test_config -*-
"""
The Twisted endpoint descriptions the gateway listens on, built from the
C{service}, C{security} and C{metrics} sections.

C{listen} keys give descriptions outright; otherwise they are made from a
host and a port, with C{ssl:} when TLS is on.
"""

from __future__ import annotations

from alertgateway.config.observability import MetricsConfig
from alertgateway.config.security import SecurityConfig
from alertgateway.config.service import ServiceConfig

__all__ = ["metrics_listeners", "metrics_on_webhook_port", "webhook_listeners"]


def _escape(value: str) -> str:
    # A description separates its arguments with ":" and names them with
    # "=": a host or path holding either must not be read as several.
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def webhook_listeners(service: ServiceConfig, security: SecurityConfig) -> tuple[str, ...]:
    """
    Twisted endpoint descriptions for the webhook listener.
    """
    if service.listen:
        return service.listen
    host = _escape(service.host)
    if security.tls_enabled:
        return (
            f"ssl:{service.port}:interface={host}"
            f":privateKey={_escape(security.key_file or '')}"
            f":certKey={_escape(security.cert_file or '')}",
        )
    return (f"tcp:{service.port}:interface={host}:backlog={service.backlog}",)


def metrics_listeners(service: ServiceConfig, metrics: MetricsConfig) -> tuple[str, ...]:
    """
    Twisted endpoint descriptions for the metrics listener; empty when
    metrics are off or served on the webhook listener's port.
    """
    if not metrics.enabled or metrics_on_webhook_port(service, metrics):
        return ()
    if metrics.listen:
        return metrics.listen
    host = _escape(metrics.host or service.host)
    return (f"tcp:{metrics.port}:interface={host}",)


def metrics_on_webhook_port(service: ServiceConfig, metrics: MetricsConfig) -> bool:
    """
    Whether C{/metrics} is served by the webhook listener (same port, no
    C{listen} override on either side).
    """
    return metrics.enabled and not metrics.listen and not service.listen and metrics.port == service.port
