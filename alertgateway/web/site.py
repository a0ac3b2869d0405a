# -*- test-case-name: tests.unit.test_web_site -*-
"""
The twisted.web Site and Request the gateway serves with.

L{GatewayRequest} holds its body in memory, never in a temporary file (a
full temporary directory must not leave a request unanswered), and bounds
it while it is read: past C{service.max_body_bytes} it keeps nothing more
(and drops the connection if the sender goes on far past the limit); the
resource then answers 413.  It also carries the request id and the metrics
label of the endpoint that handled it.

L{GatewaySite} counts requests in flight from their headers on (a sender
still trickling its headers holds no place), so that shutdown can wait for
them, and decides when the headers are in whether the body is read at all:
a C{Content-Length} over the limit, more requests in progress than
C{max_concurrent_requests} or more body bytes held than
C{max_buffered_bytes} get their answer at once (see
L{alertgateway.web.channel}).  It serves its connections with
L{GatewayChannel} and keeps at most C{max_connections} of them.

It writes the access log and the request metrics in one place: once per
finished response (twisted.web calls L{GatewaySite.log}) or, for a request
whose connection ended first, once with 499 (413 if we dropped an oversized
upload, 408 if its body was too slow).
"""

from __future__ import annotations

import io
import random
import re
from typing import IO, Any, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import IResource

from alertgateway.observability.access import AccessLog
from alertgateway.observability.logs import clip
from alertgateway.observability.metrics import HTTPMetrics, WebhookMetrics
from alertgateway.web import problems
from alertgateway.web.channel import GatewayChannel, RefusedConnection
from alertgateway.web.connections import Closure, Connections, EdgeLimits, EdgeLog

__all__ = ["GatewayRequest", "GatewaySite"]

_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
# How far past the limit a sender may go before we stop listening to it.
_ABORT_FACTOR = 8
# ...but never before this much: a sender that reads no response until it
# has sent everything (most HTTP clients) must be able to see the 413.
_ABORT_FLOOR = 64 * 1024 * 1024

# Seeded from the system's entropy once, per process.
_ids = random.Random()  # noqa: S311 -- request ids need not be unpredictable

UNMATCHED = "unmatched"
# nginx's code for "the client closed the connection before the response";
# it only ever appears in the access log and metrics, never on the wire.
CLIENT_CLOSED_REQUEST = 499


class GatewayRequest(server.Request):
    """
    A request whose body is bounded while being read.
    """

    site: GatewaySite
    endpoint: str = UNMATCHED
    body_too_large: bool = False
    # Decided when the headers are in: answered at once, its body dropped.
    answer_now: bool = False
    # Why it is refused, when that is not the body's size: too many
    # requests, or body bytes, in progress.
    refusal: problems.Problem | None = None
    _received: int = 0
    _chunked: bool = False
    # Bytes of body memory held for it (see GatewaySite.admit).
    reserved: int = 0
    # The code logged if the connection ends without a response: set when
    # we drop it ourselves, else the client went away.
    lost_code: int | None = None
    _request_id: str | None = None

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        self.gateway_site: GatewaySite = channel.site
        self.started = self.gateway_site.clock.seconds()

    def header_map(self) -> dict[str, str]:
        """
        The request headers by lower-cased name.  Several lines of one header
        are one comma-separated list (RFC 9110 5.3): keeping only the first
        would let a client's forged X-Forwarded-For line win over the one its
        proxy added after it.
        """
        return {
            name.decode("latin-1").lower(): ", ".join(v.decode("latin-1") for v in values)
            for name, values in self.requestHeaders.getAllRawHeaders()
        }

    @property
    def max_body_bytes(self) -> int:
        return self.gateway_site.max_body_bytes

    def gotLength(self, length: int | None) -> None:
        # Never twisted.web's temporary file (for bodies of 100 KB or more,
        # or chunked): the body is bounded, and held only by requests the
        # site admits.
        self.content = io.BytesIO()
        self._chunked = length is None
        self.gateway_site.admit(self, length)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        limit = self.max_body_bytes
        if self._received > limit:
            if not self.body_too_large:
                self.body_too_large = True
                self._drop_body()
            if self._received > self.gateway_site.abort_after_bytes and self.lost_code is None:
                self.lost_code = http.REQUEST_ENTITY_TOO_LARGE
                self.channel.forceAbortClient()
            return
        if self.refusal is not None:
            return
        # A declared length was held whole when the headers came.
        if self._chunked and not self.gateway_site.hold(self, len(data)):
            self._drop_body()
            return
        super().handleContentChunk(data)

    def _drop_body(self) -> None:
        self.content = io.BytesIO()
        self.gateway_site.release(self)

    @property
    def request_id(self) -> str:
        """
        The client's C{X-Request-ID} if it is sane, else a new one.
        """
        if self._request_id is None:
            given = self.getHeader(b"x-request-id")
            if given is not None and _SANE_REQUEST_ID.fullmatch(given):
                self._request_id = given.decode("ascii")
            else:
                # An id, not a secret: 128 bits of the fast generator, not
                # a system call per request.
                self._request_id = f"{_ids.getrandbits(128):032x}"
        return self._request_id

    def process(self) -> None:
        self.setHeader(b"X-Request-ID", self.request_id.encode("ascii"))
        super().process()

    @property
    def body(self) -> IO[bytes]:
        content = cast(IO[bytes], self.content)
        content.seek(0)
        return content


class GatewaySite(server.Site):
    """
    A Site that writes each response to the access log (if given one) and
    records it in the request metrics.
    """

    requestFactory = GatewayRequest
    protocol = GatewayChannel  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        resource: IResource,
        *,
        clock: IReactorTime,
        metrics: HTTPMetrics,
        max_body_bytes: int,
        idle_timeout: float,
        gzip_min_bytes: int = 1024,
        request_timeout: float | None = None,
        access_log: AccessLog | None = None,
        limits: EdgeLimits | None = None,
        security: WebhookMetrics | None = None,
        access_log_exclude: frozenset[str] = frozenset(),
    ) -> None:
        # No twisted.web timeout: every byte would restart it.  The channel
        # keeps a deadline per phase instead.
        super().__init__(resource, timeout=None, reactor=clock, parsePOSTFormSubmission=False)
        self.idle_timeout = idle_timeout
        self.limits = limits if limits is not None else EdgeLimits()
        self.connections = Connections(self.limits.max_connections)
        self._security = security
        self.edge_log = EdgeLog(clock, self._count_refusal)
        self._buffered = 0
        self.access_log = access_log
        # Paths whose requests leave no access line (probes, scrapes).
        self.access_log_exclude = access_log_exclude
        self.clock = clock
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.gzip_min_bytes = gzip_min_bytes
        # Handlers not done by then answer 503, so the sender retries.
        self.request_timeout = request_timeout
        self.abort_after_bytes = max(max_body_bytes * _ABORT_FACTOR, _ABORT_FLOOR)
        self._in_flight = 0
        self._idle_waiters: list[Deferred[None]] = []

    def buildProtocol(self, addr: IAddress | None) -> Protocol:  # type: ignore[override]
        # A GatewayChannel, not twisted.web's HTTP/2-negotiating wrapper (the
        # gateway offers no HTTP/2), or a connection refused at the cap.
        if not self.connections.admit():
            host = str(getattr(addr, "host", "-"))
            detail = f"{self.connections.limit} connections are open, none of them idle"
            self.edge_log.closed(host, Closure.CONNECTIONS, detail)
            return RefusedConnection()
        channel: GatewayChannel = super().buildProtocol(addr)
        return channel

    def _count_refusal(self, endpoint: str, reason: str) -> None:
        security = self._security
        if security is not None:
            security.refused(endpoint, reason)

    def admit(self, request: GatewayRequest, length: int | None) -> None:
        """
        The headers of C{request} are in, announcing a body of C{length}
        bytes (C{None}: chunked): count it in flight, and decide whether its
        body is read.
        """
        self.track(request)
        if length == 0:
            return
        busy = self.limits.max_concurrent_requests
        if length is not None and length > self.max_body_bytes:
            request.body_too_large = True
        elif busy is not None and self._in_flight > busy:
            request.refusal = problems.too_busy(busy)
        elif length is None or self.hold(request, length):
            # Read: a declared length holds its bytes from now, a chunked
            # body as they come.
            return
        request.answer_now = True
        # The body is not read: this connection cannot carry another
        # request after it.
        request.channel.persistent = False
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])

    def hold(self, request: GatewayRequest, size: int) -> bool:
        """
        Hold C{size} more bytes of body memory for C{request}: all of a
        declared length at once, a chunked body as it comes.  Past
        C{max_buffered_bytes} the request is refused instead.
        """
        budget = self.limits.max_buffered_bytes
        if budget is not None and self._buffered + size > budget:
            request.refusal = problems.too_busy(budget, bodies=True)
            return False
        self._buffered += size
        request.reserved += size
        return True

    def release(self, request: GatewayRequest) -> None:
        """
        Give back the body memory C{request} held.
        """
        self._buffered -= request.reserved
        request.reserved = 0

    @property
    def buffered(self) -> int:
        """
        Bytes of request bodies held now.
        """
        return self._buffered

    def track(self, request: GatewayRequest) -> None:
        """
        Count C{request} as in flight until its response is finished or its
        connection lost.
        """
        self._in_flight += 1

        def _lost(reason: Failure) -> None:
            # twisted.web calls log() only for finished responses; a request
            # whose connection ended first must still leave its access-log
            # line.
            self._record(request, request.lost_code or CLIENT_CLOSED_REQUEST)

        request.notifyFinish().addErrback(_lost).addBoth(self._request_done, request)

    def _request_done(self, _: object, request: GatewayRequest) -> None:
        self.release(request)
        self._in_flight -= 1
        if not self._in_flight:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    @property
    def in_flight(self) -> int:
        """
        Requests being received or handled now.
        """
        return self._in_flight

    def when_idle(self) -> Deferred[None]:
        """
        A Deferred that fires once no request is in flight.
        """
        if not self._in_flight:
            return succeed(None)
        d: Deferred[None] = Deferred(lambda d: self._idle_waiters.remove(d))
        self._idle_waiters.append(d)
        return d

    def log(self, request: http.Request) -> None:
        assert isinstance(request, GatewayRequest)
        self._record(request, request.code)

    def _record(self, request: GatewayRequest, code: int) -> None:
        now = self.clock.seconds()
        duration = max(0.0, now - request.started)
        self.metrics.request(request.endpoint, code, duration)
        access_log = self.access_log
        if access_log is None:
            return
        method, path = _request_line(request)
        if path in self.access_log_exclude:
            return
        # Clipped: both are the client's to choose, and logged per request.
        user_agent = clip((request.getHeader(b"user-agent") or b"").decode("latin-1"))
        access_log.request(
            now,
            (
                _remote(request),
                method,
                clip(path),
                code,
                request.sentLength,
                round(duration * 1000, 3),
                request.request_id,
                request.endpoint,
                user_agent,
            ),
        )


def _request_line(request: GatewayRequest) -> tuple[str, str]:
    # twisted.web sets method and path only once the body is complete; a
    # request whose connection ended while uploading has neither.
    method, path = request.method, getattr(request, "path", None)
    if not isinstance(method, bytes) or not isinstance(path, bytes):
        return "-", "-"
    return method.decode("latin-1"), path.decode("latin-1")


def _remote(request: http.Request) -> str:
    peer = request.getClientAddress()
    host = getattr(peer, "host", None)
    return str(host) if host is not None else "-"
