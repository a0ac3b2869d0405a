"""
The gateway's configuration: a frozen attrs model, YAML loading and validation.

L{load_config} reads a YAML file with PyYAML's safe loader (refusing keys
given twice, which YAML would otherwise resolve silently), applies the
environment overrides (C{WEBHOOK_AUTH_TOKEN}, C{WEBHOOK_PORT}), builds the
model and checks what crosses fields (endpoint sources and paths, TLS files,
listener descriptions) on every section that could be read.  It raises
L{ConfigError} carrying every problem found, each naming its key path;
C{alertgateway check-config} and C{twistd} print the same messages.

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

from alertgateway._schema import Problem, duration, read_fields

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

    def served_paths(self) -> tuple[str, ...]:
        """
        The path and its C{/v1} alias (a path already under C{/v1} has none).
        """
        return _served_paths(self.path)


def _served_paths(path: str) -> tuple[str, ...]:
    return (path,) if path == "/v1" or path.startswith("/v1/") else (path, "/v1" + path)


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
        """
        Whether C{/metrics} is served by the webhook listener (same port, no
        C{listen} override on either side).
        """
        return _metrics_share_webhook_port(self.service, self.metrics)


def _metrics_share_webhook_port(service: ServiceConfig, metrics: MetricsConfig) -> bool:
    return metrics.enabled and not metrics.listen and not service.listen and metrics.port == service.port


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


# Served by the gateway itself on the webhook listener.
_RESERVED_PATHS = ("/health", "/health/live", "/health/ready")


class ConfigError(Exception):
    """
    The configuration cannot be used; C{problems} says why, key by key.
    """

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _yaml_problem(origin: str, error: yaml.YAMLError) -> Problem:
    # PyYAML's own message spans several lines with a source excerpt; an
    # operator needs one line saying where and what.
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark or error.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        context = f" ({error.context})" if error.context else ""
        return Problem("", f"{origin}:{where} not valid YAML: {error.problem}{context}")
    return Problem("", f"{origin}: not valid YAML: {' '.join(str(error).split())}")


def _duplicate_keys(root: yaml.Node) -> list[Problem]:
    """
    Find keys given twice in one mapping: YAML keeps the last silently,
    which would hide the first as surely as a typo would.
    """
    found: list[tuple[int, Problem]] = []
    visited: set[int] = set()
    pending: list[tuple[yaml.Node, str]] = [(root, "")]
    while pending:
        node, path = pending.pop()
        # Aliases share nodes (and may nest themselves): visit each once.
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                child = path
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    child = f"{path}.{key_node.value}" if path else str(key_node.value)
                    key = (key_node.tag, key_node.value)
                    line = key_node.start_mark.line + 1
                    if key in first:
                        found.append((line, Problem(child, f"is given twice (lines {first[key]} and {line})")))
                    else:
                        first[key] = line
                pending.append((value_node, child))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend((item, f"{path}[{index}]") for index, item in enumerate(node.value))
    return [problem for _line, problem in sorted(found, key=lambda item: item[0])]


def _load_yaml(text: str, origin: str, problems: list[Problem]) -> object:
    try:
        # The reader checks the characters as soon as it is made.
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            problems.extend(_duplicate_keys(node))
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise ConfigError([_yaml_problem(origin, e)]) from None
    except RecursionError:
        # PyYAML composes recursively; a hostile file must not crash the tool.
        raise ConfigError([Problem("", f"{origin}: not valid YAML: nested too deeply")]) from None


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str], problems: list[Problem]) -> None:
    def section(parent: dict[str, Any], name: str) -> dict[str, Any] | None:
        # An empty section (C{webhook:}) is null in YAML; the override must
        # still apply.  Anything else that is not a mapping is reported by
        # the schema, so it is left alone here.
        if parent.get(name) is None:
            parent[name] = {}
        child = parent[name]
        return child if isinstance(child, dict) else None

    token = environ.get("WEBHOOK_AUTH_TOKEN")
    if token:
        webhook = section(raw, "webhook")
        auth = section(webhook, "auth") if webhook is not None else None
        if auth is not None:
            auth["token"] = token
    port = environ.get("WEBHOOK_PORT")
    if port:
        try:
            number = int(port)
        except ValueError:
            problems.append(Problem("WEBHOOK_PORT", f"must be an integer, got {port!r}"))
            return
        message = _port(number)
        if message is not None:
            # Named after the variable: the file is not where the value is.
            problems.append(Problem("WEBHOOK_PORT", f"{message}, got {port!r}"))
            return
        service = section(raw, "service")
        if service is not None:
            service["port"] = number


def _check_listener(description: str) -> str | None:
    # Parsing needs no reactor; only listening does.
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(None, description)
    except Exception as e:
        return f"{description!r} is not a valid Twisted endpoint description ({e})"
    return None


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
        served = _served_paths(path)
        if seen.intersection(served):
            problems.append(Problem(f"{where}.path", f"{endpoint.path} is configured twice (counting /v1 aliases)"))
        elif path in _RESERVED_PATHS:
            problems.append(Problem(f"{where}.path", f"{endpoint.path} is reserved for the health checks"))
        seen.update(served)
        source = endpoint.source or _WELL_KNOWN_PATHS.get(path)
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
    if not _metrics_share_webhook_port(service, metrics):
        return
    path = metrics.path.rstrip("/") or "/"
    taken = {path for e in webhook.endpoints for path in e.served_paths()}
    if path in taken:
        problems.append(Problem("metrics.path", f"{metrics.path} is also a webhook path"))
    elif path in _RESERVED_PATHS:
        problems.append(Problem("metrics.path", f"{metrics.path} is reserved for the health checks"))


def _check_files(security: SecurityConfig, service: ServiceConfig, problems: list[Problem]) -> None:
    if not security.tls_enabled or service.listen:
        return
    for key in ("cert_file", "key_file"):
        name = getattr(security, key)
        if not name:
            problems.append(Problem(f"security.{key}", "is required when tls_enabled is true"))
        elif not Path(name).is_file():
            problems.append(Problem(f"security.{key}", f"file not found: {name}"))


def _check_across(sections: dict[str, Any], problems: list[Problem]) -> None:
    """
    Check what involves more than one key, on every section that read well,
    so that one typo does not hide the other problems of the file.
    """
    service: ServiceConfig | None = sections.get("service")
    webhook: WebhookConfig | None = sections.get("webhook")
    security: SecurityConfig | None = sections.get("security")
    metrics: MetricsConfig | None = sections.get("metrics")
    if webhook is not None:
        webhook = sections["webhook"] = _resolve_endpoints(webhook, problems)
        if service is not None and metrics is not None:
            _check_metrics_path(webhook, service, metrics, problems)
    if security is not None and service is not None:
        _check_files(security, service, problems)
    for key, section in (("service", service), ("metrics", metrics)):
        for index, description in enumerate(section.listen if section is not None else ()):
            message = _check_listener(description)
            if message is not None:
                problems.append(Problem(f"{key}.listen[{index}]", message))


def parse_config(text: str, environ: Mapping[str, str] | None = None, origin: str = "<config>") -> GatewayConfig:
    """
    Parse and validate configuration YAML.

    @raise ConfigError: With every problem found.
    """
    problems: list[Problem] = []
    raw = _load_yaml(text, origin, problems)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([Problem("", f"{origin}: the top level must be a mapping")])
    _apply_environment(raw, os.environ if environ is None else environ, problems)
    sections = read_fields(GatewayConfig, raw, "", problems)
    _check_across(sections, problems)
    if problems:
        raise ConfigError(problems)
    return GatewayConfig(**sections)


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
    if needs_auth and auth.type == "none":
        found.append(
            f"webhook.auth.type is none, so {', '.join(needs_auth)} accept requests without authentication"
            " although auth_required is true"
        )
    if config.security.tls_enabled and config.service.listen:
        found.append(
            "security.tls_enabled is ignored because service.listen is set: use ssl: descriptions there for TLS"
        )
    return found
