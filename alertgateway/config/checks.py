# -*- test-case-name: tests.unit.test_config -*-
"""
Checks of what involves more than one key: endpoint paths and sources,
the metrics path beside them, the status API's authentication beside the
endpoints', TLS files, listener descriptions, forwarded headers that would
carry a credential, and the memory for request bodies beside the largest
body.

L{check_across} runs them on every section that read well, after the
secrets are merged in (L{alertgateway.config.secrets}).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.endpoints import serverFromString

from alertgateway.config._schema import Problem
from alertgateway.config.delivery import AlertProcessorConfig, QueueBackend, QueueConfig
from alertgateway.config.listeners import metrics_on_webhook_port
from alertgateway.config.observability import MetricsConfig
from alertgateway.config.secrets import resolve_auth, resolve_processor, resolve_redis
from alertgateway.config.security import SecurityConfig
from alertgateway.config.service import ServiceConfig
from alertgateway.config.state import StateBackend, StateConfig
from alertgateway.config.webhook import (
    SOURCES,
    WELL_KNOWN_PATHS,
    AuthType,
    SignatureScheme,
    WebhookConfig,
    served_paths,
)
from alertgateway.tls import ReloadingServerTLS, TLSFilesError

__all__ = ["check_across"]

# Served by the gateway itself on the webhook listener.
_RESERVED_PATHS = ("/health", "/health/live", "/health/ready")
# The alert status API (GET /v1/alerts): an endpoint at /alerts would lose
# its /v1 alias to it, one at /v1/alerts every POST.
_STATUS_PATH = "/v1/alerts"


def _reserved(path: str, served: tuple[str, ...]) -> str | None:
    """
    Why the gateway keeps C{path} (answered on C{served}) for itself, if it
    does.
    """
    if path in _RESERVED_PATHS:
        return "is reserved for the health checks"
    if _STATUS_PATH in served:
        return "is reserved for the alert status API"
    return None


def _forwarded_credentials(webhook: WebhookConfig, problems: list[Problem]) -> None:
    """
    Refuse forwarding a header an endpoint takes a credential from (an
    C{api_key} header, a signature or its timestamp): like Authorization, it
    would hand the sender's credential on.
    """
    auths = [("webhook.auth", webhook.auth)] + [
        (f"webhook.endpoints[{i}].auth", e.auth) for i, e in enumerate(webhook.endpoints) if e.auth is not None
    ]
    forwarded = {name.lower(): (index, name) for index, name in enumerate(webhook.forward_headers)}
    for where, auth in auths:
        carried: list[tuple[str, str]] = []
        if auth.type == AuthType.API_KEY:
            carried.append(("header", auth.header))
        if auth.type == AuthType.HMAC and auth.scheme == SignatureScheme.GRAFANA:
            carried.append(("signature_header", auth.signature_header))
            if auth.timestamp_header:
                carried.append(("timestamp_header", auth.timestamp_header))
        if auth.type == AuthType.HMAC and auth.scheme == SignatureScheme.STANDARD:
            carried += [("scheme", "webhook-signature"), ("scheme", "webhook-id"), ("scheme", "webhook-timestamp")]
        for key, header in carried:
            if header.lower() in forwarded:
                index, name = forwarded.pop(header.lower())
                problems.append(
                    Problem(
                        f"webhook.forward_headers[{index}]",
                        f"{name} carries the sender's credentials ({where}.{key}) and is never forwarded",
                    )
                )


def _check_status_auth(webhook: WebhookConfig, problems: list[Problem]) -> None:
    """
    Refuse a C{webhook.auth} of type none while endpoints require
    credentials of their own: the alert status API, guarded by
    C{webhook.auth}, would answer anyone what those endpoints accepted.
    """
    if webhook.auth.type != AuthType.NONE:
        return
    guarded = [
        e.path for e in webhook.endpoints if e.auth_required and e.auth is not None and e.auth.type != AuthType.NONE
    ]
    if guarded:
        problems.append(
            Problem(
                "webhook.auth.type",
                f"is none, which would open the alert status API ({_STATUS_PATH}) to anyone while"
                f" {', '.join(guarded)} require credentials: give webhook.auth the credentials"
                " of those who may read it",
            )
        )


def _resolve_endpoints(webhook: WebhookConfig, problems: list[Problem]) -> WebhookConfig:
    """
    Normalise endpoint paths and fill in the source of well-known ones.
    """
    if not webhook.endpoints:
        problems.append(Problem("webhook.endpoints", "must list at least one endpoint"))
    resolved = []
    seen: set[str] = set()
    for index, endpoint in enumerate(webhook.endpoints):
        where = f"webhook.endpoints[{index}]"
        path = endpoint.path.rstrip("/") or "/"
        served = served_paths(path)
        reserved = _reserved(path, served)
        if seen.intersection(served):
            problems.append(Problem(f"{where}.path", f"{endpoint.path} is configured twice (counting /v1 aliases)"))
        elif reserved is not None:
            problems.append(Problem(f"{where}.path", f"{endpoint.path} {reserved}"))
        seen.update(served)
        source = endpoint.source or WELL_KNOWN_PATHS.get(path)
        if source is None:
            problems.append(
                Problem(f"{where}.source", f"is required for {endpoint.path} (one of {', '.join(SOURCES)})")
            )
            continue
        resolved.append(attrs.evolve(endpoint, path=path, source=source))
    return attrs.evolve(webhook, endpoints=tuple(resolved))


def _check_metrics_path(
    webhook: WebhookConfig, service: ServiceConfig, metrics: MetricsConfig, problems: list[Problem]
) -> None:
    """
    Refuse a metrics path that, served on the webhook port, would hide a
    path the gateway already answers there.
    """
    if not metrics_on_webhook_port(service, metrics):
        return
    path = metrics.path.rstrip("/") or "/"
    taken = {path for e in webhook.endpoints for path in e.served_paths()}
    reserved = _reserved(path, (path,))
    if path in taken:
        problems.append(Problem("metrics.path", f"{metrics.path} is also a webhook path"))
    elif reserved is not None:
        problems.append(Problem("metrics.path", f"{metrics.path} {reserved}"))


def _check_tls_files(security: SecurityConfig, service: ServiceConfig, problems: list[Problem]) -> None:
    """
    Check the files TLS needs when the gateway builds the listener itself
    (with C{service.listen}, the descriptions name their own).
    """
    if not security.tls_enabled or service.listen:
        return
    for key in ("cert_file", "key_file"):
        name = getattr(security, key)
        if not name:
            problems.append(Problem(f"security.{key}", "is required when tls_enabled is true"))
        elif not Path(name).is_file():
            problems.append(Problem(f"security.{key}", f"file not found: {name}"))
    for key in ("chain_file", "client_ca_file"):
        name = getattr(security, key)
        if name and not Path(name).is_file():
            problems.append(Problem(f"security.{key}", f"file not found: {name}"))
    if (security.require_client_cert or security.allowed_client_names) and not security.client_ca_file:
        key = "require_client_cert" if security.require_client_cert else "allowed_client_names"
        problems.append(Problem(f"security.{key}", "needs security.client_ca_file to verify client certificates"))
    files = security.tls_files()
    if files is not None and not problems:
        # Load them as the listener will, so check-config catches a
        # certificate that exists but cannot be used.
        try:
            ReloadingServerTLS(files)
        except TLSFilesError as e:
            problems.append(Problem("", str(e)))


def _check_listener(description: str) -> str | None:
    # Parsing needs no reactor; only listening does.
    try:
        serverFromString(None, description)
    except Exception as e:
        return f"{description!r} is not a valid Twisted endpoint description ({e})"
    return None


def check_across(sections: dict[str, Any], environ: Mapping[str, str], problems: list[Problem]) -> None:
    """
    Check what involves more than one key, on every section that read well,
    so that one typo does not hide the other problems of the file.

    @param sections: The sections of L{alertgateway.config.GatewayConfig}
        that were read, by name; those that secrets or normalisation change
        are replaced.
    @param environ: Where C{*_env} secrets are looked up.
    """
    service: ServiceConfig | None = sections.get("service")
    webhook: WebhookConfig | None = sections.get("webhook")
    security: SecurityConfig | None = sections.get("security")
    metrics: MetricsConfig | None = sections.get("metrics")
    if webhook is not None:
        # Secrets first, while the endpoints still have their indices in
        # the file (resolving drops those without a source).
        webhook = attrs.evolve(
            webhook,
            auth=resolve_auth(webhook.auth, "webhook.auth", environ, problems),
            endpoints=tuple(
                attrs.evolve(e, auth=resolve_auth(e.auth, f"webhook.endpoints[{i}].auth", environ, problems))
                if e.auth is not None
                else e
                for i, e in enumerate(webhook.endpoints)
            ),
        )
        _forwarded_credentials(webhook, problems)
        _check_status_auth(webhook, problems)
        webhook = _resolve_endpoints(webhook, problems)
        sections["webhook"] = webhook
        if service is not None and metrics is not None:
            _check_metrics_path(webhook, service, metrics, problems)
    if security is not None and service is not None:
        _check_tls_files(security, service, problems)
    if service is not None and service.max_buffered_bytes < service.max_body_bytes:
        # A body between the two could never be taken.
        problems.append(Problem("service.max_buffered_bytes", "must be at least service.max_body_bytes"))
    processor: AlertProcessorConfig | None = sections.get("alert_processor")
    if processor is not None:
        sections["alert_processor"] = resolve_processor(processor, environ, problems)
    state: StateConfig | None = sections.get("state")
    queue: QueueConfig | None = sections.get("queue")
    if state is not None and queue is not None:
        state = _resolve_state_backend(state, queue, problems)
    if state is not None:
        redis = resolve_redis(state.redis, environ, problems)
        if redis.ca_file and not Path(redis.ca_file).is_file():
            problems.append(Problem("state.redis.ca_file", f"file not found: {redis.ca_file}"))
        sections["state"] = attrs.evolve(state, redis=redis)
    listeners = [
        ("service.listen", service.listen if service is not None else ()),
        ("service.probe_listen", service.probe_listen if service is not None else ()),
        ("metrics.listen", metrics.listen if metrics is not None else ()),
    ]
    for key, descriptions in listeners:
        for index, description in enumerate(descriptions):
            message = _check_listener(description)
            if message is not None:
                problems.append(Problem(f"{key}[{index}]", message))


def _resolve_state_backend(state: StateConfig, queue: QueueConfig, problems: list[Problem]) -> StateConfig:
    """
    Unset, the state backend follows the queue's: the SQLite queue's
    database keeps the state too; another queue, memory.  Set to sqlite, it
    needs the SQLite queue, whose database it shares.
    """
    if state.backend is None:
        backend = StateBackend.SQLITE if queue.backend == QueueBackend.SQLITE else StateBackend.MEMORY
        return attrs.evolve(state, backend=backend)
    if state.backend == StateBackend.SQLITE and queue.backend != QueueBackend.SQLITE:
        problems.append(
            Problem(
                "state.backend",
                f"sqlite keeps the state in the queue's database, so it needs queue.backend: sqlite"
                f" (not {queue.backend}); or use state.backend: memory",
            )
        )
    return state
