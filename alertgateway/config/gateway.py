# -*- test-case-name: tests.unit.test_config -*-
"""
L{GatewayConfig}, the whole configuration: one field per top-level section
of the YAML file.

To add a section, write its attrs class in a module of this package and
give it a field here: L{alertgateway.config._schema} reads it, defaults and
unknown-key checks included.
"""

from __future__ import annotations

import attrs

from alertgateway.config import listeners
from alertgateway.config.decisions import CorrelationConfig, DedupConfig, EscalationConfig, StormConfig
from alertgateway.config.delivery import AlertProcessorConfig, CircuitBreakerConfig, QueueConfig
from alertgateway.config.limits import LimitsConfig, RateLimitingConfig
from alertgateway.config.observability import LoggingConfig, MetricsConfig
from alertgateway.config.security import SecurityConfig
from alertgateway.config.service import ServiceConfig
from alertgateway.config.state import StateConfig
from alertgateway.config.webhook import WebhookConfig

__all__ = ["GatewayConfig"]


@attrs.frozen
class GatewayConfig:
    """
    The whole configuration; every section has defaults.
    """

    service: ServiceConfig = attrs.field(factory=ServiceConfig)
    webhook: WebhookConfig = attrs.field(factory=WebhookConfig)
    security: SecurityConfig = attrs.field(factory=SecurityConfig)
    rate_limiting: RateLimitingConfig = attrs.field(factory=RateLimitingConfig)
    circuit_breaker: CircuitBreakerConfig = attrs.field(factory=CircuitBreakerConfig)
    alert_processor: AlertProcessorConfig = attrs.field(factory=AlertProcessorConfig)
    queue: QueueConfig = attrs.field(factory=QueueConfig)
    state: StateConfig = attrs.field(factory=StateConfig)
    limits: LimitsConfig = attrs.field(factory=LimitsConfig)
    dedup: DedupConfig = attrs.field(factory=DedupConfig)
    escalation: EscalationConfig = attrs.field(factory=EscalationConfig)
    correlation: CorrelationConfig = attrs.field(factory=CorrelationConfig)
    storm: StormConfig = attrs.field(factory=StormConfig)
    metrics: MetricsConfig = attrs.field(factory=MetricsConfig)
    logging: LoggingConfig = attrs.field(factory=LoggingConfig)

    def webhook_listeners(self) -> tuple[str, ...]:
        """
        Twisted endpoint descriptions for the webhook listener.
        """
        return listeners.webhook_listeners(self.service, self.security)

    def metrics_listeners(self) -> tuple[str, ...]:
        """
        Twisted endpoint descriptions for the metrics listener; empty when
        metrics are off or served on the webhook listener's port.
        """
        return listeners.metrics_listeners(self.service, self.metrics)

    def metrics_on_webhook_port(self) -> bool:
        """
        Whether C{/metrics} is served by the webhook listener (same port, no
        C{listen} override on either side).
        """
        return listeners.metrics_on_webhook_port(self.service, self.metrics)
