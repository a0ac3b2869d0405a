# -*- test-case-name: tests.unit.test_config -*-
"""
The gateway's configuration: a frozen attrs model, YAML loading and validation.

L{load_config} reads a YAML file, applies the environment overrides
(C{WEBHOOK_AUTH_TOKEN}, C{WEBHOOK_PORT}), builds the model and checks what
crosses fields on every section that could be read.  It raises
L{ConfigError} carrying every problem found, each naming its key path;
C{alertgateway check-config} and C{twistd} print the same messages.

One module a concern: a section's classes in L{service}, L{webhook},
L{security}, L{limits}, L{delivery}, L{state}, L{decisions} and
L{observability}, tied together by L{gateway}; reading in L{load} (with
the generic reader in L{_schema}), secrets in L{secrets}, checks across
keys in L{checks}, warnings in L{warnings} and listener descriptions in
L{listeners}.  This package re-exports the names the rest of the gateway
uses.
"""

from __future__ import annotations

from alertgateway.config._schema import Problem
from alertgateway.config.decisions import (
    CorrelationConfig,
    DedupConfig,
    EnvironmentConfig,
    EscalationConfig,
    StormConfig,
)
from alertgateway.config.delivery import (
    AlertProcessorConfig,
    CircuitBreakerConfig,
    QueueBackend,
    QueueConfig,
    RedisQueueConfig,
    SQLiteSync,
)
from alertgateway.config.gateway import GatewayConfig
from alertgateway.config.limits import LimitsConfig, RateLimitingConfig
from alertgateway.config.load import ConfigError, load_config, parse_config
from alertgateway.config.observability import LogFormat, LoggingConfig, MetricsConfig
from alertgateway.config.security import ForwardedHeader, SecurityConfig
from alertgateway.config.service import ServiceConfig
from alertgateway.config.state import RedisConfig, RedisFailure, StateBackend, StateConfig
from alertgateway.config.warnings import warnings_for
from alertgateway.config.webhook import (
    AuthConfig,
    AuthType,
    BasicUser,
    DeliveryMode,
    EndpointConfig,
    SignatureScheme,
    WebhookConfig,
)

__all__ = [
    "AlertProcessorConfig",
    "AuthConfig",
    "AuthType",
    "BasicUser",
    "CircuitBreakerConfig",
    "ConfigError",
    "CorrelationConfig",
    "DedupConfig",
    "DeliveryMode",
    "EndpointConfig",
    "EnvironmentConfig",
    "EscalationConfig",
    "ForwardedHeader",
    "GatewayConfig",
    "LimitsConfig",
    "LogFormat",
    "LoggingConfig",
    "MetricsConfig",
    "Problem",
    "QueueBackend",
    "QueueConfig",
    "RateLimitingConfig",
    "RedisConfig",
    "RedisFailure",
    "RedisQueueConfig",
    "SQLiteSync",
    "SecurityConfig",
    "ServiceConfig",
    "SignatureScheme",
    "StateBackend",
    "StateConfig",
    "StormConfig",
    "WebhookConfig",
    "load_config",
    "parse_config",
    "warnings_for",
]
