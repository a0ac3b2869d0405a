# -*- test-case-name: tests.unit.test_config -*-
"""
The sections about delivering accepted alerts: C{alert_processor} (where
they go), C{circuit_breaker} (when to stop trying for a while) and
C{queue} (where they wait).
"""

from __future__ import annotations

import enum
import re
from urllib.parse import urlsplit

import attrs

from alertgateway.config._fields import header_name, not_negative, positive
from alertgateway.config._schema import duration

__all__ = [
    "AlertProcessorConfig",
    "CircuitBreakerConfig",
    "QueueBackend",
    "QueueConfig",
    "RedisQueueConfig",
    "SQLiteSync",
]


def _batch_size(value: int) -> str | None:
    return None if 1 <= value <= 1000 else "must be from 1 to 1000"


def _ratio(value: float) -> str | None:
    return None if 0 < value <= 1 else "must be a share of the attempts, more than 0 and at most 1"


def _health_path(value: str | None) -> str | None:
    return None if value is None or value.startswith("/") else "must be a path starting with /, e.g. /healthz"


def _processor_endpoint(value: str) -> str | None:
    # Never quote the value: it is refused precisely when it may hold a
    # secret.
    if value.startswith("file:"):
        return None if value[len("file:") :] else "file: needs a path, e.g. file:var/alerts.jsonl"
    if not value.startswith(("http://", "https://")):
        return "must be an http:// or https:// URL, or file:PATH"
    try:
        parts = urlsplit(value)
    except ValueError:
        return "is not a valid URL"
    if "@" in parts.netloc:
        # A URL is printed, logged and shown; a credential in it would be
        # too (and treq would not send it as Basic credentials anyway).
        return (
            "must not carry credentials (user:password@): give the processor's credential"
            " as alert_processor.auth_secret_file or auth_secret_env, sent in auth_header"
        )
    if parts.query or parts.fragment or "?" in value or "#" in value:
        return "must not have a query or fragment: the gateway appends /api/v1/alerts to it"
    if not parts.hostname:
        return "must name a host, e.g. http://alert-processor:8081"
    return None


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def _target_name(value: str) -> str | None:
    if _NAME.fullmatch(value):
        return None
    return "must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"


@attrs.frozen
class CircuitBreakerConfig:
    """
    When deliveries stop for a while after the processor kept failing, and
    how they start again.
    """

    enabled: bool = True
    failure_threshold: int = attrs.field(default=5, metadata={"check": positive})
    # Or this share of the attempts of the last `window` failed, once there
    # were min_attempts of them.
    failure_ratio: float = attrs.field(default=0.5, metadata={"check": _ratio})
    window: float = duration(60.0, positive)
    min_attempts: int = attrs.field(default=20, metadata={"check": positive})
    recovery_timeout: float = duration(5.0, positive)
    half_open_requests: int = attrs.field(default=3, metadata={"check": positive})
    # Each failed probe doubles the recovery timeout, up to this: short, so
    # that delivery resumes soon after a long outage ends.
    max_recovery_timeout: float = duration(30.0, positive)


@attrs.frozen
class AlertProcessorConfig:
    """
    Where accepted alerts go: an HTTP Alert Processor or a JSON-lines file.
    """

    endpoint: str = attrs.field(default="file:var/alerts.jsonl", metadata={"check": _processor_endpoint})
    # What the metrics (the target label), the log and /health/ready call
    # the processor: its URL says more than they need to.
    name: str = attrs.field(default="alert-processor", metadata={"check": _target_name})
    # The gateway's own credential, sent with every delivery in
    # auth_header (e.g. "Bearer <token>"): read from a file or the
    # environment at load time, never part of the endpoint URL.
    auth_header: str = attrs.field(default="Authorization", metadata={"check": header_name})
    auth_secret: str | None = attrs.field(default=None, repr=False)
    auth_secret_file: str | None = None
    auth_secret_env: str | None = None
    # Per attempt; with adaptive_timeout, the most an attempt is given.
    timeout: float = duration(5.0, positive)
    max_retries: int = attrs.field(default=3, metadata={"check": not_negative})
    max_in_flight: int = attrs.field(default=8, metadata={"check": positive})
    # The timeout follows the 99th percentile of recent latencies times 4,
    # within [timeout_min, timeout], and goes back to timeout at a timeout.
    adaptive_timeout: bool = True
    timeout_min: float = duration(0.5, positive)
    # Kept so that configurations that set it still load; not used.
    timeout_max: float = duration(30.0, positive)
    # Asked while the circuit breaker is open (GET <endpoint><health_path>,
    # 2xx is healthy), so that delivery resumes as soon as it is back.
    health_path: str | None = attrs.field(default=None, metadata={"check": _health_path})
    health_interval: float = duration(1.0, positive)
    # Alerts ready at once (of different keys) sent in one request to
    # <endpoint>/api/v1/alerts/batch; 1 sends each to /api/v1/alerts.
    batch_size: int = attrs.field(default=50, metadata={"check": _batch_size})
    # How long an alert ready alone waits for others while deliveries are
    # already on the wire; never when the processor is idle.
    batch_linger: float = duration(0.005, not_negative)


class QueueBackend(enum.StrEnum):
    """
    Where accepted alerts wait: on disk, in memory, or in Redis Streams
    shared by every replica.
    """

    SQLITE = "sqlite"
    MEMORY = "memory"
    REDIS = "redis"


class SQLiteSync(enum.StrEnum):
    """
    How far the SQLite queue waits for the disk (its C{PRAGMA synchronous}).
    """

    FULL = "full"
    NORMAL = "normal"


@attrs.frozen
class RedisQueueConfig:
    """
    The Redis Streams queue: one stream per partition (a dedup key always
    maps to the same one), each partition leased to one replica at a time.
    """

    partitions: int = attrs.field(default=16, metadata={"check": positive})
    # A replica that has not renewed its leases for this long is taken for
    # dead: another replica takes over its partitions and claims what it
    # had not delivered.
    claim_idle: float = duration(30.0, positive)
    # Entries read from Redis at once.
    read_batch: int = attrs.field(default=100, metadata={"check": positive})


@attrs.frozen
class QueueConfig:
    """
    Where accepted alerts wait for delivery: C{sqlite} (durable, the
    default), C{memory} (lost on a crash) or C{redis} (shared by every
    replica).
    """

    backend: QueueBackend = QueueBackend.SQLITE
    # The SQLite queue; with the redis backend, where alerts accepted while
    # Redis is unreachable wait (state.redis.on_failure: fail_open).
    path: str = "var/queue.db"
    # Alerts (and bytes of them) accepted but not yet delivered; past
    # either, webhooks get 503 with Retry-After.
    max_items: int = attrs.field(default=10000, metadata={"check": positive})
    # The queue keeps this JSON in memory too (every backend but redis,
    # whose fallback queue does): sized for the manifests' 128 MiB pod.
    max_bytes: int = attrs.field(default=16 * 1024 * 1024, metadata={"check": positive})
    # FULL survives power loss; NORMAL survives process crashes only.
    synchronous: SQLiteSync = SQLiteSync.FULL
    # How often dead letters marked by `alertgateway queue retry` are taken.
    retry_interval: float = duration(5.0, positive)
    redis: RedisQueueConfig = attrs.field(factory=RedisQueueConfig)
