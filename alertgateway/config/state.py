# -*- test-case-name: tests.unit.test_config -*-
"""
The C{state} section: where decisions keep what they remember (the queue's
SQLite database, one process's memory, or Redis shared by every replica)
and how to reach Redis.
"""

from __future__ import annotations

import enum
from urllib.parse import urlsplit

import attrs

from alertgateway.config._fields import positive
from alertgateway.config._schema import duration

__all__ = ["RedisConfig", "RedisFailure", "StateBackend", "StateConfig"]


def _redis_url(value: str) -> str | None:
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


class StateBackend(enum.StrEnum):
    """
    Where decision state lives: the queue's SQLite database (kept across
    restarts), one process's memory (forgotten on restart), or Redis.
    """

    SQLITE = "sqlite"
    MEMORY = "memory"
    REDIS = "redis"


class RedisFailure(enum.StrEnum):
    """
    What the gateway does while Redis cannot answer.
    """

    FAIL_OPEN = "fail_open"
    FAIL_CLOSED = "fail_closed"


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
    on_failure: RedisFailure = RedisFailure.FAIL_OPEN
    # Each command's answer, and connecting.
    timeout: float = duration(1.0, positive)
    connect_timeout: float = duration(2.0, positive)
    pool_size: int = attrs.field(default=4, metadata={"check": positive})
    # For rediss://: the CA that signed the server's certificate (the
    # system's trusted CAs when unset).
    ca_file: str | None = None


@attrs.frozen
class StateConfig:
    """
    Where deduplication, escalation, storm, replay and rate-limit state
    lives: C{sqlite} (the queue's database, kept across restarts),
    C{memory} (one process, forgotten on restart) or C{redis} (shared by
    every replica).  Unset, it follows the queue: C{sqlite} with the SQLite
    queue, C{memory} with the others (loading resolves it).
    """

    backend: StateBackend | None = None
    # How late, at most, bookkeeping (a duplicate's count and last
    # sighting, what expiry and eviction forget) reaches the SQLite
    # database.
    flush_interval: float = duration(1.0, positive)
    redis: RedisConfig = attrs.field(factory=RedisConfig)
