# -*- test-case-name: tests.unit.test_config,tests.unit.test_cli -*-
"""
Settings that are valid but probably not what the operator meant, which
C{alertgateway check-config} prints as warnings.
"""

from __future__ import annotations

from alertgateway.config.delivery import QueueBackend
from alertgateway.config.gateway import GatewayConfig
from alertgateway.config.state import StateBackend
from alertgateway.config.webhook import AuthConfig, AuthType, SignatureScheme
from alertgateway.core.escalation import DEFAULT_RULES
from alertgateway.tls import weak_ciphers

__all__ = ["warnings_for"]


def _has_credentials(auth: AuthConfig) -> bool:
    if auth.type == AuthType.BASIC:
        return bool(auth.basic_users)
    if auth.type == AuthType.HMAC:
        return bool(auth.signing_secrets)
    return auth.type == AuthType.NONE or bool(auth.credentials)


def warnings_for(config: GatewayConfig) -> list[str]:
    """
    Things that are valid but probably not what the operator meant.
    """
    found = []
    # Endpoints with their own auth are judged by it, not by webhook.auth.
    needs_auth = [e.path for e in config.webhook.endpoints if e.auth_required and e.auth is None]
    auth = config.webhook.auth
    if needs_auth and auth.type == AuthType.BEARER and not auth.credentials:
        found.append(
            f"{', '.join(needs_auth)} require authentication but no token is configured"
            " (webhook.auth.token, webhook.auth.tokens or WEBHOOK_AUTH_TOKEN): every request will get 401"
        )
    elif needs_auth and not _has_credentials(auth):
        found.append(
            f"{', '.join(needs_auth)} require authentication but webhook.auth ({auth.type}) has no credentials:"
            " every request will get 401"
        )
    if needs_auth and auth.type == AuthType.NONE:
        found.append(
            f"webhook.auth.type is none, so {', '.join(needs_auth)} accept requests without authentication"
            " although auth_required is true"
        )
    for index, endpoint in enumerate(config.webhook.endpoints):
        own = endpoint.auth
        if own is None or not endpoint.auth_required:
            continue
        where = f"webhook.endpoints[{index}].auth"
        if own.type == AuthType.NONE:
            found.append(
                f"{where}.type is none, so {endpoint.path} accepts requests without authentication"
                " although auth_required is true"
            )
        elif not _has_credentials(own):
            found.append(f"{where} ({own.type}) has no credentials: every request to {endpoint.path} will get 401")
    found.extend(_unstamped_signatures(config))
    processor = config.alert_processor
    if processor.auth_secret and processor.endpoint.startswith("file:"):
        found.append("alert_processor.auth_secret is set but the endpoint is a file: it is never sent")
    if config.queue.backend == QueueBackend.REDIS and config.state.backend != StateBackend.REDIS:
        found.append(
            "queue.backend is redis but state.backend is memory: replicas share the queue but each deduplicates"
            " alone, so the processor gets duplicates"
        )
    if config.state.backend == StateBackend.REDIS and config.queue.backend == QueueBackend.MEMORY:
        found.append("queue.backend is memory: alerts accepted but not yet delivered are lost with the process")
    found.extend(_unreachable_rules(config))
    security = config.security
    if security.tls_enabled and config.service.listen:
        found.append(
            "security.tls_enabled is ignored because service.listen is set: use ssl: descriptions there for TLS"
        )
    elif not security.tls_enabled and (security.client_ca_file or security.require_client_cert):
        found.append("security.tls_enabled is false, so no client certificate is asked for (mutual TLS is off)")
    weak = weak_ciphers(security.tls_ciphers) if security.tls_enabled else []
    if weak:
        found.append(
            f"security.tls_ciphers enables TLS 1.2 ciphers without forward secrecy or authenticated encryption:"
            f" {', '.join(weak[:5])}{' …' if len(weak) > 5 else ''}"
        )
    return found


def _unstamped(auth: AuthConfig) -> bool:
    return auth.type == AuthType.HMAC and auth.scheme == SignatureScheme.GRAFANA and not auth.timestamp_header


def _unstamped_signatures(config: GatewayConfig) -> list[str]:
    """
    Grafana signatures without a timestamp cover the body alone: one seen
    once can be replayed for ever (the replay cache forgets it after
    C{tolerance}).
    """
    webhook = config.webhook
    required = [(i, e) for i, e in enumerate(webhook.endpoints) if e.auth_required]
    where = [f"webhook.endpoints[{i}].auth" for i, e in required if e.auth is not None and _unstamped(e.auth)]
    if _unstamped(webhook.auth) and any(e.auth is None for _, e in required):
        where.insert(0, "webhook.auth")
    return [
        f"{key} checks Grafana signatures without timestamp_header: a signed webhook never expires and can be"
        " replayed once the replay window is over; set timestamp_header (X-Grafana-Alerting-Timestamp) on both sides"
        for key in where
    ]


def _unreachable_rules(config: GatewayConfig) -> list[str]:
    """
    Rules "within N in W" that escalation.min_spacing makes unreachable: at
    most one duplicate counts per min_spacing, so N of them span at least
    (N - 1) of it.
    """
    escalation = config.escalation
    spacing = escalation.min_spacing
    if not escalation.enabled or spacing <= 0:
        return []
    default = DEFAULT_RULES.get(escalation.default_environment.lower(), DEFAULT_RULES["production"])
    found = []
    for name, environment in escalation.environments.items():
        built_in = DEFAULT_RULES.get(name.lower(), default)
        within = environment.within or built_in.within
        window = environment.window or built_in.window
        if (within - 1) * spacing > window:
            found.append(
                f"escalation.environments.{name}: {within} duplicates within {window:g}s can never be counted"
                f" with escalation.min_spacing {spacing:g}s (at most one counts per min_spacing): only its"
                " total escalates; lower min_spacing or widen the window"
            )
    return found
