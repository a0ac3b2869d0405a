# -*- test-case-name: tests.unit.test_cli -*-
"""
C{alertgateway check-config PATH}: validate a configuration file exactly as
twistd does, and say what the gateway would do with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO

from alertgateway.cli._common import EXIT_INVALID, EXIT_OK, load_or_report, redis_location
from alertgateway.config import GatewayConfig, warnings_for

__all__ = ["check_config"]


def _summary(path: str, config: GatewayConfig) -> list[str]:
    lines = [f"{path}: OK"]
    shared = " (SO_REUSEPORT, shared with other processes)" if config.service.reuse_port else ""
    lines.append(f"  webhook listeners: {', '.join(config.webhook_listeners())}{shared}")
    if config.service.probe_listen:
        lines.append(f"  probe listeners: {', '.join(config.service.probe_listen)}")
    for endpoint in config.webhook.endpoints:
        # Which kind, since an endpoint may override webhook.auth.
        kind = config.webhook.auth_for(endpoint).type
        auth = f"auth required ({kind})" if endpoint.auth_required else "no auth"
        lines.append(f"  endpoint {endpoint.path} (and /v1{endpoint.path}): {endpoint.source}, {auth}")
    processor = config.alert_processor
    # The URL carries no credential (validation refuses one); the secret
    # itself is never printed.
    credential = f", {processor.auth_header} from its auth_secret" if processor.auth_secret else ""
    lines.append(f"  alert processor: {processor.name} at {processor.endpoint}{credential}")
    lines.append(f"  queue: {config.queue.backend}")
    lines.append(f"  state: {config.state.backend}")
    if "redis" in (config.queue.backend, config.state.backend):
        redis = config.state.redis
        lines.append(
            f"  redis: {redis_location(redis.url)} (prefix {redis.key_prefix!r}, on failure {redis.on_failure})"
        )
    if config.metrics.enabled:
        where = "webhook port" if config.metrics_on_webhook_port() else ", ".join(config.metrics_listeners())
        lines.append(f"  metrics: {config.metrics.path} on {where}")
    lines.extend(f"  warning: {w}" for w in warnings_for(config))
    return lines


def check_config(path: str, out: IO[str], err: IO[str], environ: Mapping[str, str] | None = None) -> int:
    """
    Validate the file at C{path} as twistd would: a summary on C{out} and
    L{EXIT_OK}, or one line per problem on C{err} and L{EXIT_INVALID}.
    """
    config = load_or_report(path, err, environ)
    if config is None:
        return EXIT_INVALID
    print("\n".join(_summary(path, config)), file=out)
    return EXIT_OK
