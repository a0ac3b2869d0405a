# -*- test-case-name: tests.unit.test_decide,tests.unit.test_service_redis,tests.unit.test_edge_limits -*-
"""
The configuration turned into the small settings objects the parts take:
the only place, with the CLI, that reads L{alertgateway.config}.
"""

from __future__ import annotations

import resource
from typing import TYPE_CHECKING

from alertgateway.config import EnvironmentConfig, GatewayConfig, QueueConfig, RedisConfig
from alertgateway.core.decider import DeciderSettings
from alertgateway.core.escalation import DEFAULT_RULES, EscalationRule
from alertgateway.core.storms import StormSettings
from alertgateway.web.connections import EdgeLimits

if TYPE_CHECKING:
    # Imported where Redis is configured: see alertgateway.app.build.
    from alertgateway.redis.client import RedisSettings
    from alertgateway.redis.queue import RedisQueueSettings

__all__ = [
    "SIDE_CONNECTIONS",
    "decider_settings",
    "default_max_connections",
    "edge_limits",
    "endpoint_limits",
    "redis_queue_settings",
    "redis_settings",
    "replay_window",
]

# Connections open at once on the probe and on the metrics listeners: a
# kubelet and a few scrapers need a handful.
SIDE_CONNECTIONS = 64
# Whatever the open-file limit, no more webhook connections than this by
# default: each holds 2 KiB idle and up to about 32 KiB while its request
# line and headers arrive (twisted.web's 16 KiB of headers, and a line of
# at most 16 KiB), so 128 MiB at worst.
MOST_CONNECTIONS = 4096


def _override(start: EscalationRule, env: EnvironmentConfig) -> EscalationRule:
    return EscalationRule(
        level=env.level or start.level,
        total=env.total or start.total,
        within=env.within or start.within,
        window=env.window or start.window,
    )


def decider_settings(config: GatewayConfig) -> DeciderSettings:
    """
    The decider's settings: escalation rules are the defaults, overridden
    field by field by C{escalation.environments}; an added environment
    starts from the default environment's rule, as configured.

    Environment names are compared in lower case, as environment labels are
    read: C{env: QA} must find the rule of an environment configured as
    C{QA}.
    """
    escalation = config.escalation
    environments = {name.lower(): env for name, env in escalation.environments.items()}
    default = escalation.default_environment.lower()
    rules = dict(DEFAULT_RULES)
    # The default environment's rule first, whatever the order of the
    # file: the added environments start from it.
    base = rules.get(default, DEFAULT_RULES["production"])
    if default in environments:
        base = rules[default] = _override(base, environments[default])
    for name, env in environments.items():
        if name != default:
            rules[name] = _override(rules.get(name, base), env)
    storm = config.storm
    storms = (
        StormSettings(
            threshold=storm.threshold,
            window=storm.window,
            flush_interval=storm.flush_interval,
            quiet_period=storm.quiet_period,
            max_members_listed=storm.max_members_listed,
            max_event_bytes=storm.max_event_bytes,
            max_pending=storm.max_pending,
            max_pending_bytes=storm.max_pending_bytes,
            max_member_bytes=storm.max_member_bytes,
        )
        if storm.enabled
        else None
    )
    return DeciderSettings(
        dedup=config.dedup.enabled,
        window=config.dedup.window,
        ignore_labels=config.dedup.ignore_labels,
        group_by=config.correlation.group_by,
        use_sender_group=config.correlation.use_sender_group,
        escalate=escalation.enabled,
        min_spacing=escalation.min_spacing,
        environment_labels=escalation.environment_labels,
        environment_namespaces={n: e.namespaces for n, e in environments.items() if e.namespaces},
        default_environment=default,
        rules=rules,
        storms=storms,
    )


def endpoint_limits(config: GatewayConfig) -> dict[str, int]:
    """
    Requests per minute by endpoint path, for the endpoints that have one.
    """
    return {e.path: e.rate_limit for e in config.webhook.endpoints if e.rate_limit is not None}


def replay_window(config: GatewayConfig) -> float:
    """
    How long signatures are remembered: the widest timestamp tolerance.
    """
    auths = [config.webhook.auth] + [e.auth for e in config.webhook.endpoints if e.auth is not None]
    return max(a.tolerance for a in auths)


def redis_settings(config: RedisConfig) -> RedisSettings:
    """
    How to reach Redis (C{state.redis}); the password as read from
    C{password}, C{password_file} or C{password_env} when loading.
    """
    from alertgateway.redis.client import RedisSettings

    return RedisSettings(
        url=config.url,
        password=config.password,
        key_prefix=config.key_prefix,
        timeout=config.timeout,
        connect_timeout=config.connect_timeout,
        pool_size=config.pool_size,
        ca_file=config.ca_file,
    )


def redis_queue_settings(config: QueueConfig) -> RedisQueueSettings:
    """
    The Redis queue's settings (C{queue.max_items}, C{queue.redis}).
    """
    from alertgateway.redis.queue import RedisQueueSettings

    return RedisQueueSettings(
        max_items=config.max_items,
        partitions=config.redis.partitions,
        claim_idle=config.redis.claim_idle,
        read_batch=config.redis.read_batch,
    )


def default_max_connections(open_files: int) -> int:
    """
    C{service.max_connections} when not set: the open-file limit less an
    eighth of it, and at least 256, kept for everything else (the probe and
    metrics listeners' connections, the processor's and Redis's pools,
    SQLite, the listening sockets), at most L{MOST_CONNECTIONS}.
    """
    if open_files < 0 or open_files == resource.RLIM_INFINITY:
        open_files = 1 << 20
    headroom = max(256, open_files // 8)
    return max(16, min(open_files - headroom, MOST_CONNECTIONS))


def edge_limits(config: GatewayConfig, *, webhook: bool) -> EdgeLimits:
    """
    The limits of the webhook listener's site or (C{webhook=False}) of the
    probe and metrics listeners', which take the same deadlines but no
    request bodies worth bounding.
    """
    service = config.service
    if not webhook:
        return EdgeLimits(
            header_timeout=service.header_timeout,
            body_timeout=service.body_timeout,
            min_body_rate=service.min_body_rate,
            max_connections=SIDE_CONNECTIONS,
        )
    connections = service.max_connections
    if connections is None:
        connections = default_max_connections(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    return EdgeLimits(
        header_timeout=service.header_timeout,
        body_timeout=service.body_timeout,
        min_body_rate=service.min_body_rate,
        max_connections=connections,
        max_concurrent_requests=service.max_concurrent_requests,
        max_buffered_bytes=service.max_buffered_bytes,
    )
