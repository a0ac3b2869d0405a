# -*- test-case-name: tests.unit.test_config,tests.unit.test_edge_limits -*-
"""
The C{service} section: where the webhook listener binds and how it treats
connections and requests.
"""

from __future__ import annotations

import attrs

from alertgateway.config._fields import not_negative, port_number, positive
from alertgateway.config._schema import duration

__all__ = ["ServiceConfig"]


@attrs.frozen
class ServiceConfig:
    """
    Where the webhook listener binds and how it treats connections.
    """

    name: str = "alertgateway"
    host: str = "0.0.0.0"  # noqa: S104 -- a service in a container listens on all interfaces
    port: int = attrs.field(default=8080, metadata={"check": port_number})
    # Twisted endpoint descriptions (e.g. C{tcp:8080:interface=127.0.0.1});
    # when given they replace host/port.
    listen: tuple[str, ...] = ()
    max_body_bytes: int = attrs.field(default=1024 * 1024, metadata={"check": positive})
    # Request bodies held in memory at once, all requests together: a body
    # that would pass it is refused (503 too-busy) before it is read.
    max_buffered_bytes: int = attrs.field(default=32 * 1024 * 1024, metadata={"check": positive})
    idle_timeout: float = duration(60.0, positive)
    # A request's headers must be complete this long after its first byte
    # (after the connection opened, for its first request), whatever the
    # rate they trickle in at.
    header_timeout: float = duration(10.0, positive)
    # A body must be complete this long after its headers, plus a second
    # for every min_body_rate bytes received (up to max_body_bytes): a large
    # body on a slow link is not cut, a trickle is.
    body_timeout: float = duration(30.0, positive)
    min_body_rate: int = attrs.field(default=16 * 1024, metadata={"check": not_negative})
    # Connections open on the webhook listener at once; null: sized from the
    # open-file limit when starting.
    max_connections: int | None = attrs.field(default=None, metadata={"check": positive})
    shutdown_grace: float = duration(10.0, not_negative)
    # A request not answered by then gets 503 with Retry-After, so that the
    # sender tries again rather than waiting on a stuck request.
    request_timeout: float = duration(30.0, positive)
    # Requests being received (from their headers on) or handled at once;
    # past it, 503.
    max_concurrent_requests: int = attrs.field(default=1000, metadata={"check": positive})
    # Plaintext listeners serving only /health, /health/live and
    # /health/ready, for probes beside a TLS listener.
    probe_listen: tuple[str, ...] = ()
    # Responses at least this long are gzipped for clients that accept it.
    gzip_min_bytes: int = attrs.field(default=1024, metadata={"check": not_negative})
    # Bind the webhook port with SO_REUSEPORT, so that several gateway
    # processes on one host share it and the kernel spreads connections
    # over them (with the Redis backends; see docs/scaling.md).  The
    # metrics listener stays one per process.
    reuse_port: bool = False
    # Connections the kernel queues before the gateway accepts them: a
    # burst of new connections (an Alertmanager restart, 1,000 senders)
    # beyond it waits for SYN retransmits, a second or more.
    backlog: int = attrs.field(default=1024, metadata={"check": positive})
