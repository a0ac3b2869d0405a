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
loader in L{alertgateway.config._schema} reads it, defaults and unknown-key checks
included.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from alertgateway.config._schema import Problem, duration, read_fields
from alertgateway.delivery.headers import HOP_BY_HOP
from alertgateway.tls import TLSFiles

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
    "RedisConfig",
    "RedisQueueConfig",
    "SecurityConfig",
    "ServiceConfig",
    "StateConfig",
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


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# The last label is never all digits (RFC 1123 2.1, RFC 3696 2): such a
# "name" is a mistyped address (10.0.0.256), which would otherwise be sent
# to DNS and allow nothing, or something unexpected.
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$)({_LABEL}\.)*(?![0-9]+\.?$){_LABEL}\.?$")


def _ip_networks(values: tuple[str, ...]) -> str | None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            if not _HOSTNAME.match(value):
                return f"{value!r} is not an IP address, CIDR network or host name"
    return None


def _strict_networks(values: tuple[str, ...]) -> str | None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value!r} is not an IP address or CIDR network"
    return None


def _reject_status(value: int) -> str | None:
    return None if value in (429, 503) else "must be 429 or 503"


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Credentials of the sender, which must not travel further.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "x-api-key"})


def _header_name(name: str) -> str | None:
    message = _token(name)
    if message is not None:
        return message
    if name.lower() in HOP_BY_HOP:
        return f"{name} is hop-by-hop or set by the gateway itself and is never forwarded"
    return None


def _token(name: str) -> str | None:
    return None if name and set(name) <= _TOKEN_CHARS else f"{name!r} is not a valid header name"


def _header_names(values: dict[str, str]) -> str | None:
    for name, value in values.items():
        message = _header_name(name)
        if message is not None:
            return message
        if "\r" in value or "\n" in value:
            return f"the value of {name} must be one line"
    return None


def _forwardable(values: tuple[str, ...]) -> str | None:
    for name in values:
        message = _header_name(name)
        if message is not None:
            return message
        if name.lower() in _CREDENTIAL_HEADERS:
            return f"{name} carries the sender's credentials and is never forwarded"
    return None


def _batch_size(value: int) -> str | None:
    return None if 1 <= value <= 1000 else "must be from 1 to 1000"


def _redis_url(value: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises on a bad port
    except ValueError as e:
        return f"is not a valid URL ({e})"
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        return "must be redis://host:port/db or rediss://host:port/db"
    db = parts.path.strip("/")
    if (db and not db.isascii()) or (db and not db.isdigit()):
        return f"the database must be a number, got {db!r}"
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
    # A request not answered by then gets 503 with Retry-After (BR-WH-009).
    request_timeout: float = duration(30.0, _positive)
    # Requests being received or handled at once; past it, 503.
    max_concurrent_requests: int = attrs.field(default=1000, metadata={"check": _positive})
    # Plaintext listeners serving only /health, /health/live and
    # /health/ready, for probes beside a TLS listener.
    probe_listen: tuple[str, ...] = ()
    # Responses at least this long are gzipped for clients that accept it.
    gzip_min_bytes: int = attrs.field(default=1024, metadata={"check": _not_negative})
    # Bind the webhook port with SO_REUSEPORT, so that several gateway
    # processes on one host share it and the kernel spreads connections
    # over them (with the Redis backends; see docs/scaling.md).  The
    # metrics listener stays one per process.
    reuse_port: bool = False
    # Connections the kernel queues before the gateway accepts them: a
    # burst of new connections (an Alertmanager restart, 1,000 senders)
    # beyond it waits for SYN retransmits, a second or more.
    backlog: int = attrs.field(default=1024, metadata={"check": _positive})


AUTH_TYPES = ("bearer", "basic", "api_key", "hmac", "none")
SIGNATURE_SCHEMES = ("grafana", "standard")


@attrs.frozen
class BasicUser:
    """
    One user for C{basic} authentication.
    """

    username: str
    password: str | None = attrs.field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None


@attrs.frozen
class AuthConfig:
    """
    How a webhook proves who sent it.  Secrets are kept out of C{repr}.

    Secrets given as C{*_file} (one per line, so a file can hold the old and
    the new one during a rotation) or C{*_env} are read once at load time
    and merged into the lists.
    """

    type: str = attrs.field(default="bearer", metadata={"choices": AUTH_TYPES})
    # bearer and api_key
    token: str | None = attrs.field(default=None, repr=False)
    tokens: tuple[str, ...] = attrs.field(default=(), repr=False)
    token_file: str | None = None
    token_env: str | None = None
    header: str = attrs.field(default="X-API-Key", metadata={"check": _token})
    # basic
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None
    users: tuple[BasicUser, ...] = ()
    # hmac
    scheme: str = attrs.field(default="grafana", metadata={"choices": SIGNATURE_SCHEMES})
    secret: str | None = attrs.field(default=None, repr=False)
    secrets: tuple[str, ...] = attrs.field(default=(), repr=False)
    secret_file: str | None = None
    secret_env: str | None = None
    signature_header: str = attrs.field(default="X-Grafana-Alerting-Signature", metadata={"check": _token})
    timestamp_header: str | None = attrs.field(default=None, metadata={"check": _token})
    tolerance: float = duration(300.0, _positive)

    @property
    def credentials(self) -> tuple[str, ...]:
        """
        Every accepted token: C{token} first, then C{tokens} (for rotation).
        """
        found = ((self.token,) if self.token else ()) + self.tokens
        return tuple(t for t in found if t)

    @property
    def basic_users(self) -> tuple[tuple[str, str], ...]:
        """
        Every accepted user and password pair.
        """
        pairs = [(self.username, self.password)] if self.username and self.password else []
        pairs += [(u.username, u.password) for u in self.users if u.password]
        return tuple((user, password) for user, password in pairs if user is not None and password is not None)

    @property
    def signing_secrets(self) -> tuple[str, ...]:
        found = ((self.secret,) if self.secret else ()) + self.secrets
        return tuple(s for s in found if s)


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
    # Overrides webhook.auth for this endpoint.
    auth: AuthConfig | None = None
    # Addresses allowed on this endpoint, on top of security.allowed_ips.
    allowed_ips: tuple[str, ...] = attrs.field(default=(), metadata={"check": _ip_networks})
    # Status for requests over a rate limit here; defaults to
    # rate_limiting.reject_status.
    reject_status: int | None = attrs.field(default=None, metadata={"check": _reject_status})
    # Static headers added to every alert forwarded from this endpoint.
    # Left out of the hash: a dict has none, and the configuration classes
    # are otherwise hashable.
    add_headers: dict[str, str] = attrs.field(factory=dict, hash=False, metadata={"check": _header_names})
    # async: answer once the alerts are queued (on disk); sync: answer once
    # the processor has accepted every alert of the request (BR-WH-014).
    delivery: str = attrs.field(default="async", metadata={"choices": ("async", "sync")})

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
    # Inbound headers copied onto each forwarded alert (e.g. X-Scope-OrgID,
    # traceparent).
    forward_headers: tuple[str, ...] = attrs.field(default=(), metadata={"check": _forwardable})

    def auth_for(self, endpoint: EndpointConfig) -> AuthConfig:
        return endpoint.auth if endpoint.auth is not None else self.auth


@attrs.frozen
class SecurityConfig:
    tls_enabled: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    chain_file: str | None = None
    # Mutual TLS: clients may (or, with require_client_cert, must) present a
    # certificate signed by this CA, naming one of allowed_client_names.
    client_ca_file: str | None = None
    require_client_cert: bool = False
    allowed_client_names: tuple[str, ...] = ()
    # How often the certificate files are checked for a rotation.
    cert_reload_interval: float = duration(30.0, _positive)
    # Addresses, CIDR networks or host names that may post; empty allows all.
    allowed_ips: tuple[str, ...] = attrs.field(default=(), metadata={"check": _ip_networks})
    # Proxies whose X-Forwarded-For / Forwarded headers are believed.
    trusted_proxies: tuple[str, ...] = attrs.field(default=(), metadata={"check": _strict_networks})
    # How often host names in allowed_ips are resolved again.
    resolve_interval: float = duration(300.0, _positive)

    def tls_files(self) -> TLSFiles | None:
        if not self.tls_enabled or not self.cert_file or not self.key_file:
            return None
        return TLSFiles(
            cert_file=self.cert_file,
            key_file=self.key_file,
            chain_file=self.chain_file,
            client_ca_file=self.client_ca_file,
            require_client_cert=self.require_client_cert,
            allowed_client_names=self.allowed_client_names,
        )


@attrs.frozen
class RateLimitingConfig:
    enabled: bool = True
    # Requests per minute over all endpoints.
    global_limit: int = attrs.field(default=10000, metadata={"check": _positive})
    burst_size: int = attrs.field(default=100, metadata={"check": _positive})
    # Requests per minute from one client address; none by default.
    per_client_limit: int | None = attrs.field(default=None, metadata={"check": _positive})
    # Alertmanager drops a notification answered with any 4xx (429 too) but
    # retries 5xx: use 503 for Alertmanager endpoints.
    reject_status: int = attrs.field(default=429, metadata={"check": _reject_status})
    max_tracked_clients: int = attrs.field(default=100_000, metadata={"check": _positive})


@attrs.frozen
class LimitsConfig:
    """
    Sanitisation limits (BR-WH-024); an alert over one is rejected on its
    own, with a pointer to the field.
    """

    max_alerts_per_request: int = attrs.field(default=1000, metadata={"check": _positive})
    max_labels_per_alert: int = attrs.field(default=128, metadata={"check": _positive})
    max_label_name_length: int = attrs.field(default=256, metadata={"check": _positive})
    max_label_value_length: int = attrs.field(default=4096, metadata={"check": _positive})
    max_annotation_bytes: int = attrs.field(default=65536, metadata={"check": _positive})
    max_json_depth: int = attrs.field(default=32, metadata={"check": _positive})


@attrs.frozen
class CircuitBreakerConfig:
    enabled: bool = True
    failure_threshold: int = attrs.field(default=5, metadata={"check": _positive})
    recovery_timeout: float = duration(30.0, _positive)
    half_open_requests: int = attrs.field(default=3, metadata={"check": _positive})
    # Each failed probe doubles the recovery timeout, up to this.
    max_recovery_timeout: float = duration(300.0, _positive)


@attrs.frozen
class AlertProcessorConfig:
    """
    Where accepted alerts go: an HTTP Alert Processor or a JSON-lines file.
    """

    endpoint: str = attrs.field(default="file:var/alerts.jsonl", metadata={"check": _processor_endpoint})
    # Per attempt; with adaptive_timeout, the starting value until enough
    # latencies are seen.
    timeout: float = duration(5.0, _positive)
    max_retries: int = attrs.field(default=3, metadata={"check": _not_negative})
    max_in_flight: int = attrs.field(default=8, metadata={"check": _positive})
    # The timeout follows the 99th percentile of recent latencies times 4,
    # within [timeout_min, timeout_max].
    adaptive_timeout: bool = True
    timeout_min: float = duration(0.5, _positive)
    timeout_max: float = duration(30.0, _positive)
    # Alerts ready at once (of different keys) sent in one request to
    # <endpoint>/api/v1/alerts/batch; 1 sends each to /api/v1/alerts.
    batch_size: int = attrs.field(default=1, metadata={"check": _batch_size})


@attrs.frozen
class QueueConfig:
    """
    Where accepted alerts wait for delivery: C{sqlite} (durable, the
    default) or C{memory} (lost on a crash).
    """

    backend: str = attrs.field(default="sqlite", metadata={"choices": ("sqlite", "memory", "redis")})
    # The SQLite queue; with the redis backend, where alerts accepted while
    # Redis is unreachable wait (state.redis.on_failure: fail_open).
    path: str = "var/queue.db"
    # Alerts (and bytes of them) accepted but not yet delivered; past
    # either, webhooks get 503 with Retry-After.
    max_items: int = attrs.field(default=10000, metadata={"check": _positive})
    max_bytes: int = attrs.field(default=64 * 1024 * 1024, metadata={"check": _positive})
    # FULL survives power loss; NORMAL survives process crashes only.
    synchronous: str = attrs.field(default="full", metadata={"choices": ("full", "normal")})
    # How often dead letters marked by `alertgateway queue retry` are taken.
    retry_interval: float = duration(5.0, _positive)
    redis: RedisQueueConfig = attrs.field(factory=lambda: RedisQueueConfig())


@attrs.frozen
class RedisQueueConfig:
    """
    The Redis Streams queue: one stream per partition (a dedup key always
    maps to the same one), each partition leased to one replica at a time.
    """

    partitions: int = attrs.field(default=16, metadata={"check": _positive})
    # A replica that has not renewed its leases for this long is taken for
    # dead: another replica takes over its partitions and claims what it
    # had not delivered.
    claim_idle: float = duration(30.0, _positive)
    # Entries read from Redis at once.
    read_batch: int = attrs.field(default=100, metadata={"check": _positive})


@attrs.frozen
class RedisConfig:
    """
    How to reach Redis: C{redis://[user:password@]host:port/db}, or
    C{rediss://} for TLS.  Secrets are kept out of C{repr}.
    """

    url: str = attrs.field(default="redis://127.0.0.1:6379/0", metadata={"check": _redis_url}, repr=False)
    password: str | None = attrs.field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None
    # Every key the gateway writes starts with it: several gateways (or
    # other programs) can share one Redis.
    key_prefix: str = "alertgateway:"
    # fail_open: decide from local memory and queue locally until Redis is
    # back (pages keep flowing; a duplicate may get through).  fail_closed:
    # answer 503 with Retry-After, so the sender retries.
    on_failure: str = attrs.field(default="fail_open", metadata={"choices": ("fail_open", "fail_closed")})
    # Each command's answer, and connecting.
    timeout: float = duration(1.0, _positive)
    connect_timeout: float = duration(2.0, _positive)
    pool_size: int = attrs.field(default=4, metadata={"check": _positive})
    # For rediss://: the CA that signed the server's certificate (the
    # system's trusted CAs when unset).
    ca_file: str | None = None


@attrs.frozen
class StateConfig:
    """
    Where deduplication, escalation, storm, replay and rate-limit state
    lives: C{memory} (one process, the default) or C{redis} (shared by
    every replica).
    """

    backend: str = attrs.field(default="memory", metadata={"choices": ("memory", "redis")})
    redis: RedisConfig = attrs.field(factory=lambda: RedisConfig())


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
    # One line per request (at info).  Security refusals are logged apart,
    # whatever this says.
    access_log: bool = True


@attrs.frozen
class DedupConfig:
    """
    Deduplication (BR-WH-008): one forward per alert episode.
    """

    enabled: bool = True
    # A repeat within this time of the last sighting is a duplicate.
    window: float = duration(300.0, _positive)
    # Labels left out of the dedup key, e.g. replica labels of an HA pair.
    ignore_labels: tuple[str, ...] = ()
    max_tracked: int = attrs.field(default=100_000, metadata={"check": _positive})
    # How often lapsed episodes are forgotten and storms flushed.
    expire_interval: float = duration(5.0, _positive)


@attrs.frozen
class EnvironmentConfig:
    """
    An environment's namespaces and escalation rule; unset numbers take the
    plan's values for production, staging and development.
    """

    namespaces: tuple[str, ...] = ()
    level: str | None = None
    total: int | None = attrs.field(default=None, metadata={"check": _positive})
    within: int | None = attrs.field(default=None, metadata={"check": _positive})
    window: float | None = attrs.field(default=None, metadata={"duration": True, "check": _positive})


def _distinct_environments(environments: Mapping[str, EnvironmentConfig]) -> str | None:
    # Environment labels are read in lower case, so names are compared so.
    seen: dict[str, str] = {}
    for name in environments:
        if name.lower() in seen:
            return f"{seen[name.lower()]!r} and {name!r} are the same environment (names ignore case)"
        seen[name.lower()] = name
    return None


@attrs.frozen
class EscalationConfig:
    enabled: bool = True
    environment_labels: tuple[str, ...] = ("environment", "env")
    default_environment: str = "production"
    environments: dict[str, EnvironmentConfig] = attrs.field(
        factory=dict, hash=False, metadata={"check": _distinct_environments}
    )


@attrs.frozen
class CorrelationConfig:
    group_by: tuple[str, ...] = ("alertname", "namespace")
    use_sender_group: bool = False


@attrs.frozen
class StormConfig:
    enabled: bool = True
    # More than this many distinct new fingerprints of one group within the
    # window make a storm.
    threshold: int = attrs.field(default=10, metadata={"check": _positive})
    window: float = duration(60.0, _positive)
    flush_interval: float = duration(30.0, _positive)
    quiet_period: float = duration(300.0, _positive)
    max_members_listed: int = attrs.field(default=100, metadata={"check": _positive})


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
        if self.service.listen:
            return self.service.listen
        host = _escape(self.service.host)
        if self.security.tls_enabled:
            return (
                f"ssl:{self.service.port}:interface={host}"
                f":privateKey={_escape(self.security.key_file or '')}"
                f":certKey={_escape(self.security.cert_file or '')}",
            )
        return (f"tcp:{self.service.port}:interface={host}:backlog={self.service.backlog}",)

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
# The alert status API (GET /v1/alerts): an endpoint at /alerts would lose
# its /v1 alias to it, one at /v1/alerts every POST.
_STATUS_PATH = "/v1/alerts"


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


def _read_secret_file(path: str, where: str, problems: list[Problem]) -> tuple[str, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        # The error's name only: its text could quote the file.
        problems.append(Problem(where, f"cannot read {path}: {type(e).__name__}"))
        return ()
    secrets = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not secrets:
        problems.append(Problem(where, f"{path} holds no secret"))
    return secrets


def _read_secret_env(name: str, where: str, environ: Mapping[str, str], problems: list[Problem]) -> tuple[str, ...]:
    value = (environ.get(name) or "").strip()
    if not value:
        problems.append(Problem(where, f"environment variable {name} is not set"))
        return ()
    return (value,)


def _check_standard_secrets(auth: AuthConfig, where: str, sources: list[tuple[str, tuple[str, ...]]]) -> list[Problem]:
    """
    Standard Webhooks secrets are checked where they were given, so the
    message points at the key (never at the secret itself).
    """
    from alertgateway.guards.signatures import decode_standard_secret

    if auth.type != "hmac" or auth.scheme != "standard":
        return []
    found = []
    for key, secrets in sources:
        for secret in secrets:
            try:
                decode_standard_secret(secret)
            except ValueError as e:
                found.append(Problem(f"{where}.{key}", str(e)))
                break
    return found


def _resolve_auth(auth: AuthConfig, where: str, environ: Mapping[str, str], problems: list[Problem]) -> AuthConfig:
    """
    Merge secrets kept in files and the environment into the lists, and
    check that they can be used.
    """
    tokens = auth.tokens
    if auth.token_file:
        tokens += _read_secret_file(auth.token_file, f"{where}.token_file", problems)
    if auth.token_env:
        tokens += _read_secret_env(auth.token_env, f"{where}.token_env", environ, problems)
    from_file = _read_secret_file(auth.secret_file, f"{where}.secret_file", problems) if auth.secret_file else ()
    from_env = _read_secret_env(auth.secret_env, f"{where}.secret_env", environ, problems) if auth.secret_env else ()
    problems.extend(
        _check_standard_secrets(
            auth,
            where,
            [
                ("secret", (auth.secret,) if auth.secret else ()),
                ("secrets", auth.secrets),
                ("secret_file", from_file),
                ("secret_env", from_env),
            ],
        )
    )
    secrets = auth.secrets + from_file + from_env
    password = auth.password
    if auth.password_file:
        password = next(iter(_read_secret_file(auth.password_file, f"{where}.password_file", problems)), password)
    if auth.password_env:
        password = next(iter(_read_secret_env(auth.password_env, f"{where}.password_env", environ, problems)), password)
    users = []
    for index, user in enumerate(auth.users):
        user_where = f"{where}.users[{index}]"
        user_password = user.password
        if user.password_file:
            found = _read_secret_file(user.password_file, f"{user_where}.password_file", problems)
            user_password = next(iter(found), user_password)
        if user.password_env:
            found = _read_secret_env(user.password_env, f"{user_where}.password_env", environ, problems)
            user_password = next(iter(found), user_password)
        # A file or variable that gave nothing is already reported by key.
        if not user_password and not (user.password_file or user.password_env):
            problems.append(Problem(f"{user_where}.password", "is required (or password_file, password_env)"))
        users.append(attrs.evolve(user, password=user_password))
    if auth.username and not password and not (auth.password_file or auth.password_env):
        problems.append(Problem(f"{where}.password", "is required with username (or password_file, password_env)"))
    return attrs.evolve(auth, tokens=tokens, secrets=secrets, password=password, users=tuple(users))


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
        if auth.type == "api_key":
            carried.append(("header", auth.header))
        if auth.type == "hmac" and auth.scheme == "grafana":
            carried.append(("signature_header", auth.signature_header))
            if auth.timestamp_header:
                carried.append(("timestamp_header", auth.timestamp_header))
        if auth.type == "hmac" and auth.scheme == "standard":
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
        elif _STATUS_PATH in served:
            problems.append(Problem(f"{where}.path", f"{endpoint.path} is reserved for the alert status API"))
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
    elif path == _STATUS_PATH:
        problems.append(Problem("metrics.path", f"{metrics.path} is reserved for the alert status API"))


def _check_files(security: SecurityConfig, service: ServiceConfig, problems: list[Problem]) -> None:
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
        from alertgateway.tls import ReloadingServerTLS, TLSFilesError

        try:
            ReloadingServerTLS(files)
        except TLSFilesError as e:
            problems.append(Problem("", str(e)))


def _check_across(sections: dict[str, Any], environ: Mapping[str, str], problems: list[Problem]) -> None:
    """
    Check what involves more than one key, on every section that read well,
    so that one typo does not hide the other problems of the file.
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
            auth=_resolve_auth(webhook.auth, "webhook.auth", environ, problems),
            endpoints=tuple(
                attrs.evolve(e, auth=_resolve_auth(e.auth, f"webhook.endpoints[{i}].auth", environ, problems))
                if e.auth is not None
                else e
                for i, e in enumerate(webhook.endpoints)
            ),
        )
        _forwarded_credentials(webhook, problems)
        webhook = _resolve_endpoints(webhook, problems)
        sections["webhook"] = webhook
        if service is not None and metrics is not None:
            _check_metrics_path(webhook, service, metrics, problems)
    if security is not None and service is not None:
        _check_files(security, service, problems)
    state: StateConfig | None = sections.get("state")
    if state is not None:
        sections["state"] = _resolve_redis(state, environ, problems)
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


def _resolve_redis(state: StateConfig, environ: Mapping[str, str], problems: list[Problem]) -> StateConfig:
    redis = state.redis
    password = redis.password
    if redis.password_file:
        password = next(iter(_read_secret_file(redis.password_file, "state.redis.password_file", problems)), password)
    if redis.password_env:
        found = _read_secret_env(redis.password_env, "state.redis.password_env", environ, problems)
        password = next(iter(found), password)
    if redis.ca_file and not Path(redis.ca_file).is_file():
        problems.append(Problem("state.redis.ca_file", f"file not found: {redis.ca_file}"))
    return attrs.evolve(state, redis=attrs.evolve(redis, password=password))


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
    _check_across(sections, os.environ if environ is None else environ, problems)
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


def _has_credentials(auth: AuthConfig) -> bool:
    if auth.type == "basic":
        return bool(auth.basic_users)
    if auth.type == "hmac":
        return bool(auth.signing_secrets)
    return auth.type == "none" or bool(auth.credentials)


def warnings_for(config: GatewayConfig) -> list[str]:
    """
    Things that are valid but probably not what the operator meant.
    """
    found = []
    # Endpoints with their own auth are judged by it, not by webhook.auth.
    needs_auth = [e.path for e in config.webhook.endpoints if e.auth_required and e.auth is None]
    auth = config.webhook.auth
    if needs_auth and auth.type == "bearer" and not auth.credentials:
        found.append(
            f"{', '.join(needs_auth)} require authentication but no token is configured"
            " (webhook.auth.token, webhook.auth.tokens or WEBHOOK_AUTH_TOKEN): every request will get 401"
        )
    elif needs_auth and not _has_credentials(auth):
        found.append(
            f"{', '.join(needs_auth)} require authentication but webhook.auth ({auth.type}) has no credentials:"
            " every request will get 401"
        )
    if needs_auth and auth.type == "none":
        found.append(
            f"webhook.auth.type is none, so {', '.join(needs_auth)} accept requests without authentication"
            " although auth_required is true"
        )
    for index, endpoint in enumerate(config.webhook.endpoints):
        own = endpoint.auth
        if own is None or not endpoint.auth_required:
            continue
        where = f"webhook.endpoints[{index}].auth"
        if own.type == "none":
            found.append(
                f"{where}.type is none, so {endpoint.path} accepts requests without authentication"
                " although auth_required is true"
            )
        elif not _has_credentials(own):
            found.append(f"{where} ({own.type}) has no credentials: every request to {endpoint.path} will get 401")
    if config.queue.backend == "redis" and config.state.backend != "redis":
        found.append(
            "queue.backend is redis but state.backend is memory: replicas share the queue but each deduplicates"
            " alone, so the processor gets duplicates"
        )
    if config.state.backend == "redis" and config.queue.backend == "memory":
        found.append("queue.backend is memory: alerts accepted but not yet delivered are lost with the process")
    security = config.security
    if security.tls_enabled and config.service.listen:
        found.append(
            "security.tls_enabled is ignored because service.listen is set: use ssl: descriptions there for TLS"
        )
    elif not security.tls_enabled and (security.client_ca_file or security.require_client_cert):
        found.append("security.tls_enabled is false, so no client certificate is asked for (mutual TLS is off)")
    return found
