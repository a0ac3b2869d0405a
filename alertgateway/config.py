"""
The gateway's configuration: a frozen attrs model, YAML loading and validation.

L{load_config} reads a YAML file with C{yaml.safe_load}, applies the
environment overrides (C{WEBHOOK_AUTH_TOKEN}, C{WEBHOOK_PORT}), builds the
model and checks what crosses fields (endpoint sources, TLS files, listener
descriptions).  It raises L{ConfigError} carrying every problem found, each
naming its key path; C{alertgateway check-config} and C{twistd} print the
same messages.

To add a section, add an attrs class and a field on L{GatewayConfig}: the
loader in L{alertgateway._schema} reads it, defaults and unknown-key checks
included.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from alertgateway._schema import Problem, build, duration

__all__ = [
    "AlertProcessorConfig",
    "AuthConfig",
    "CircuitBreakerConfig",
    "ConfigError",
    "EndpointConfig",
    "GatewayConfig",
    "LoggingConfig",
    "MetricsConfig",
    "Problem",
    "QueueConfig",
    "RateLimitingConfig",
    "SecurityConfig",
    "ServiceConfig",
    "WebhookConfig",
    "load_config",
    "parse_config",
]

SOURCES = ("alertmanager", "grafana")

# Paths whose sender is known without being told; every other path needs an
# explicit source.
_WELL_KNOWN_PATHS = {
    "/webhook/prometheus": "alertmanager",
    "/webhook/alertmanager": "alertmanager",
    "/webhook/grafana": "grafana",
}


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _not_negative(value: float) -> str | None:
    return None if value >= 0 else "must not be negative"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a port number between 0 and 65535"


def _url_path(value: str) -> str | None:
    if not value.startswith("/"):
        return "must start with /"
    if "?" in value or "#" in value or "//" in value:
        return "must be a plain path without query, fragment or empty segments"
    return None


def _ip_networks(values: tuple[str, ...]) -> str | None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value!r} is not an IP address or CIDR network"
    return None


def _processor_endpoint(value: str) -> str | None:
    if value.startswith("file:"):
        return None if value[len("file:") :] else "file: needs a path, e.g. file:var/alerts.jsonl"
    if value.startswith(("http://", "https://")):
        return None
    return "must be an http:// or https:// URL, or file:PATH"


@attrs.frozen
class ServiceConfig:
    """
    Where the webhook listener binds and how it treats connections.
    """

    name: str = "alertgateway"
    host: str = "0.0.0.0"  # noqa: S104 -- a service in a container listens on all interfaces
    port: int = attrs.field(default=8080, metadata={"check": _port})
    # Twisted endpoint descriptions (e.g. C{tcp:8080:interface=127.0.0.1});
    # when given they replace host/port.
    listen: tuple[str, ...] = ()
    max_body_bytes: int = attrs.field(default=1024 * 1024, metadata={"check": _positive})
    idle_timeout: float = duration(60.0, _positive)
    shutdown_grace: float = duration(10.0, _not_negative)


@attrs.frozen
class AuthConfig:
    """
    How a webhook proves who sent it.  Secrets are kept out of C{repr}.
    """

    type: str = attrs.field(default="bearer", metadata={"choices": ("bearer", "none")})
    token: str | None = attrs.field(default=None, repr=False)
    tokens: tuple[str, ...] = attrs.field(default=(), repr=False)

    @property
    def credentials(self) -> tuple[str, ...]:
        """
        Every accepted token: C{token} first, then C{tokens} (for rotation).
        """
        found = ((self.token,) if self.token else ()) + self.tokens
        return tuple(t for t in found if t)


@attrs.frozen
class EndpointConfig:
    """
    One webhook path and the sender format it accepts.
    """

    path: str = attrs.field(metadata={"check": _url_path})
    source: str | None = attrs.field(default=None, metadata={"choices": SOURCES})
    auth_required: bool = True
    # Requests per minute; enforced by the rate limiter.
    rate_limit: int | None = attrs.field(default=None, metadata={"check": _positive})


def _default_endpoints() -> tuple[EndpointConfig, ...]:
    return (
        EndpointConfig(path="/webhook/prometheus", source="alertmanager"),
        EndpointConfig(path="/webhook/grafana", source="grafana"),
    )


@attrs.frozen
class WebhookConfig:
    endpoints: tuple[EndpointConfig, ...] = attrs.field(factory=_default_endpoints)
    auth: AuthConfig = attrs.field(factory=AuthConfig)


@attrs.frozen
class SecurityConfig:
    tls_enabled: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    # Empty means every address may connect.
    allowed_ips: tuple[str, ...] = attrs.field(default=(), metadata={"check": _ip_networks})


@attrs.frozen
class RateLimitingConfig:
    global_limit: int = attrs.field(default=10000, metadata={"check": _positive})
    burst_size: int = attrs.field(default=100, metadata={"check": _positive})


@attrs.frozen
class CircuitBreakerConfig:
    failure_threshold: int = attrs.field(default=5, metadata={"check": _positive})
    recovery_timeout: float = duration(30.0, _positive)
    half_open_requests: int = attrs.field(default=3, metadata={"check": _positive})


@attrs.frozen
class AlertProcessorConfig:
    """
    Where accepted alerts go: an HTTP Alert Processor or a JSON-lines file.
    """

    endpoint: str = attrs.field(default="file:var/alerts.jsonl", metadata={"check": _processor_endpoint})
    timeout: float = duration(5.0, _positive)
    max_retries: int = attrs.field(default=3, metadata={"check": _not_negative})
    max_in_flight: int = attrs.field(default=8, metadata={"check": _positive})


@attrs.frozen
class QueueConfig:
    # Alerts accepted but not yet delivered; past this webhooks get 503.
    max_items: int = attrs.field(default=10000, metadata={"check": _positive})


@attrs.frozen
class MetricsConfig:
    enabled: bool = True
    port: int = attrs.field(default=9090, metadata={"check": _port})
    path: str = attrs.field(default="/metrics", metadata={"check": _url_path})
    # Defaults to service.host.
    host: str | None = None
    listen: tuple[str, ...] = ()


@attrs.frozen
class LoggingConfig:
    level: str = attrs.field(
        default="info", metadata={"choices": ("debug", "info", "warn", "warning", "error", "critical")}
    )
    format: str = attrs.field(default="json", metadata={"choices": ("json", "text")})


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
    metrics: MetricsConfig = attrs.field(factory=MetricsConfig)
    logging: LoggingConfig = attrs.field(factory=LoggingConfig)

    def webhook_listeners(self) -> tuple[str, ...]:
        """
        Twisted endpoint descriptions for the webhook listener.
        """
        if self.service.listen:
            return self.service.listen
        host = _escape(self.service.host)
        if self.security.tls_enabled:
            return (
                f"ssl:{self.service.port}:interface={host}"
                f":privateKey={_escape(self.security.key_file or '')}"
                f":certKey={_escape(self.security.cert_file or '')}",
            )
        return (f"tcp:{self.service.port}:interface={host}",)

    def metrics_listeners(self) -> tuple[str, ...]:
        """
        Twisted endpoint descriptions for the metrics listener; empty when
        metrics are off or served on the webhook listener's port.
        """
        if not self.metrics.enabled or self.metrics_on_webhook_port():
            return ()
        if self.metrics.listen:
            return self.metrics.listen
        host = _escape(self.metrics.host or self.service.host)
        return (f"tcp:{self.metrics.port}:interface={host}",)

    def metrics_on_webhook_port(self) -> bool:
        return (
            self.metrics.enabled
            and not self.metrics.listen
            and not self.service.listen
            and self.metrics.port == self.service.port
        )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


class ConfigError(Exception):
    """
    The configuration cannot be used; C{problems} says why, key by key.
    """

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str], problems: list[Problem]) -> None:
    token = environ.get("WEBHOOK_AUTH_TOKEN")
    if token:
        webhook = raw.setdefault("webhook", {})
        if isinstance(webhook, dict):
            auth = webhook.setdefault("auth", {})
            if isinstance(auth, dict):
                auth["token"] = token
    port = environ.get("WEBHOOK_PORT")
    if port:
        try:
            number = int(port)
        except ValueError:
            problems.append(Problem("WEBHOOK_PORT", f"must be an integer, got {port!r}"))
        else:
            service = raw.setdefault("service", {})
            if isinstance(service, dict):
                service["port"] = number


def _check_listener(description: str) -> str | None:
    # Parsing needs no reactor; only listening does.
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(None, description)
    except Exception as e:
        return f"{description!r} is not a valid Twisted endpoint description ({e})"
    return None


def _resolve_endpoints(config: GatewayConfig, problems: list[Problem]) -> GatewayConfig:
    resolved = []
    seen: set[str] = set()
    for index, endpoint in enumerate(config.webhook.endpoints):
        where = f"webhook.endpoints[{index}]"
        path = endpoint.path.rstrip("/") or "/"
        if path in seen or "/v1" + path in seen:
            problems.append(Problem(f"{where}.path", f"{endpoint.path} is configured twice"))
        seen.update({path, "/v1" + path})
        source = endpoint.source or _WELL_KNOWN_PATHS.get(path)
        if source is None:
            problems.append(
                Problem(f"{where}.source", f"is required for {endpoint.path} (one of {', '.join(SOURCES)})")
            )
            continue
        resolved.append(attrs.evolve(endpoint, path=path, source=source))
    if config.metrics_on_webhook_port() and config.metrics.path in seen:
        problems.append(Problem("metrics.path", f"{config.metrics.path} is also a webhook path"))
    return attrs.evolve(config, webhook=attrs.evolve(config.webhook, endpoints=tuple(resolved)))


def _check_files(config: GatewayConfig, problems: list[Problem]) -> None:
    security = config.security
    if not security.tls_enabled or config.service.listen:
        return
    for key in ("cert_file", "key_file"):
        name = getattr(security, key)
        if not name:
            problems.append(Problem(f"security.{key}", "is required when tls_enabled is true"))
        elif not Path(name).is_file():
            problems.append(Problem(f"security.{key}", f"file not found: {name}"))


def parse_config(text: str, environ: Mapping[str, str] | None = None, origin: str = "<config>") -> GatewayConfig:
    """
    Parse and validate configuration YAML.

    @raise ConfigError: With every problem found.
    """
    problems: list[Problem] = []
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError([Problem("", f"{origin}: not valid YAML: {e}")]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([Problem("", f"{origin}: the top level must be a mapping")])
    _apply_environment(raw, os.environ if environ is None else environ, problems)
    config = build(GatewayConfig, raw, "", problems)
    if config is None or problems:
        raise ConfigError(problems)
    config = _resolve_endpoints(config, problems)
    _check_files(config, problems)
    for key, descriptions in (("service.listen", config.service.listen), ("metrics.listen", config.metrics.listen)):
        for index, description in enumerate(descriptions):
            message = _check_listener(description)
            if message is not None:
                problems.append(Problem(f"{key}[{index}]", message))
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: str, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """
    Read, parse and validate the configuration file at C{path}.

    @raise ConfigError: With every problem found, the unreadable file included.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([Problem("", f"cannot read {path}: {e}")]) from None
    return parse_config(text, environ, origin=path)


def warnings_for(config: GatewayConfig) -> list[str]:
    """
    Things that are valid but probably not what the operator meant.
    """
    found = []
    needs_auth = [e.path for e in config.webhook.endpoints if e.auth_required]
    auth = config.webhook.auth
    if needs_auth and auth.type == "bearer" and not auth.credentials:
        found.append(
            f"{', '.join(needs_auth)} require authentication but no token is configured"
            " (webhook.auth.token, webhook.auth.tokens or WEBHOOK_AUTH_TOKEN): every request will get 401"
        )
    return found
