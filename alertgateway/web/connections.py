# -*- test-case-name: tests.unit.test_web_connections -*-
"""
What a site allows its connections, and the bookkeeping of those open.

L{EdgeLimits} are the settings: how long a request's headers and body may
take, how many connections may be open, how many requests (and how many
bytes of their bodies) may be in progress.

L{Connections} counts the open connections and knows which of them carry
no request being received or handled (idle, or still sending headers):
at the cap, the one idle the longest is closed to make room for a new
connection; when none is, the new connection is refused.

L{EdgeLog} records what is closed at the edge: each closure is counted in
C{gateway_security_rejections_total{endpoint="-"}}, and logged as a
security warning at most once per client per minute, so that an attack
does not also flood the log.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["Closable", "Closure", "Connections", "EdgeLimits", "EdgeLog"]

_security_log = Logger(namespace="alertgateway.security")

# A closure is not about one endpoint: the request, if any, was never
# routed.
NO_ENDPOINT = "-"


@attrs.frozen
class EdgeLimits:
    """
    @ivar header_timeout: Seconds from a request's first byte (from the
        connection's start, for its first request) to the end of its
        headers.
    @ivar body_timeout: Seconds from the end of the headers to the end of
        the body...
    @ivar min_body_rate: ...plus one second for each this many bytes
        received, up to the body limit (0: no more time).
    @ivar max_connections: Connections open at once (C{None}: no cap).
    @ivar max_concurrent_requests: Requests in progress, from their
        headers on, past which a request with a body is answered (503) at
        once, without reading the body (C{None}: no limit here).
    @ivar max_buffered_bytes: Bytes of request bodies held at once, past
        which the same (C{None}: no limit).
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    min_body_rate: int = 16 * 1024
    max_connections: int | None = None
    max_concurrent_requests: int | None = None
    max_buffered_bytes: int | None = None


class Closure(enum.StrEnum):
    """
    Why the gateway closed a connection at the edge: the C{reason} of the
    security log and metric.
    """

    SLOW_HEADERS = "slow_headers"
    SLOW_BODY = "slow_body"
    CONNECTIONS = "connections"


class Closable(Protocol):
    """
    A connection L{Connections} may close to make room.
    """

    def make_room(self) -> None:
        """
        Close, because the site is at its connection cap.
        """


class Connections:
    """
    The open connections of one site.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._open: set[Closable] = set()
        # Those carrying no request in progress, the longest idle first.
        self._idle: OrderedDict[Closable, None] = OrderedDict()

    @property
    def count(self) -> int:
        return len(self._open)

    def admit(self) -> bool:
        """
        Whether one more connection may open: below the cap, or once the
        connection idle the longest is closed.
        """
        if self.limit is None or len(self._open) < self.limit:
            return True
        if not self._idle:
            return False
        oldest, _ = self._idle.popitem(last=False)
        # Gone from the count now, not once its close completes: the next
        # accept must not close another for the same room.
        self._open.discard(oldest)
        oldest.make_room()
        return True

    def opened(self, connection: Closable) -> None:
        self._open.add(connection)
        self._idle[connection] = None

    def busy(self, connection: Closable) -> None:
        """
        C{connection} carries a request being received or handled.
        """
        self._idle.pop(connection, None)

    def idle(self, connection: Closable) -> None:
        """
        C{connection} carries no request in progress, since now.
        """
        if connection in self._open:
            self._idle[connection] = None
            self._idle.move_to_end(connection)

    def closed(self, connection: Closable) -> None:
        self._open.discard(connection)
        self._idle.pop(connection, None)


class EdgeLog:
    """
    Count every closure; log each client's at most once a minute.

    @ivar max_clients: Clients remembered at once (each a few dozen
        bytes); past it, a closure of another client is counted only.
    """

    INTERVAL = 60.0

    def __init__(self, clock: IReactorTime, count: Callable[[str, str], None], *, max_clients: int = 10_000) -> None:
        self._clock = clock
        self._count = count
        self.max_clients = max_clients
        # Client -> when it was last logged.
        self._logged: OrderedDict[str, float] = OrderedDict()

    def closed(self, client: str, reason: Closure, detail: str) -> None:
        self._count(NO_ENDPOINT, reason.value)
        now = self._clock.seconds()
        self._forget(now)
        if client in self._logged or len(self._logged) >= self.max_clients:
            # The metric has the count.
            return
        self._logged[client] = now
        _security_log.warn(
            "Closed the connection of {client}: {reason} ({detail})",
            client=client,
            reason=reason.value,
            detail=detail,
            endpoint=NO_ENDPOINT,
        )

    def _forget(self, now: float) -> None:
        # Entries are added in time order and never moved, so the expired
        # ones are at the front.
        while self._logged:
            client, when = next(iter(self._logged.items()))
            if now - when < self.INTERVAL:
                return
            del self._logged[client]
