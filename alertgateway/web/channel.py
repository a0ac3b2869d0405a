# -*- test-case-name: tests.unit.test_web_connections -*-
"""
The HTTP/1.1 connection the gateway serves: twisted.web's parser, with a
deadline for each phase of a request in place of one idle timeout that
every byte restarts.

  - I{headers}: from the connection's start (its first request) or the
    request's first byte (a later one) to the end of the headers,
    C{header_timeout}; a sender trickling header bytes is closed then.
  - I{body}: from the end of the headers, C{body_timeout} plus a second
    for every C{min_body_rate} bytes received (up to the body limit): a
    large body that keeps coming is not cut, a trickle is.
  - I{handling}: none here (the resources answer 503 past
    C{request_timeout}).
  - I{idle}, between requests: C{idle_timeout}.

A request refused as soon as its headers are in (a C{Content-Length} over
the limit, too many requests or body bytes in progress) is answered at
once; the rest of its body is then read and dropped, so that a sender
that reads nothing until it has sent everything still gets the answer,
and the connection closes.  Nothing of it is kept.

Connections closed for a missed deadline are aborted (their sender is
sending nothing worth waiting for) and recorded by the site's
L{alertgateway.web.connections.EdgeLog}.

Dropping a body uses twisted.web's own decoders and its hook for
C{100 Continue} (private names, so tests/unit/test_web_connections pins
what they do).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.interfaces import IDelayedCall, ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web import http

from alertgateway.web.connections import Closure

if TYPE_CHECKING:
    from alertgateway.web.site import GatewayRequest, GatewaySite

__all__ = ["GatewayChannel", "Phase", "RefusedConnection"]

# The code an access-log line and the request metrics give a request whose
# body did not arrive in time.
REQUEST_TIMEOUT = 408


class Phase(enum.Enum):
    """
    Where a connection is in its current request.
    """

    HEADERS = "headers"
    BODY = "body"
    HANDLING = "handling"
    IDLE = "idle"


class GatewayChannel(http.HTTPChannel):
    """
    One connection: twisted.web's parser with the gateway's deadlines.
    """

    site: GatewaySite
    phase = Phase.HEADERS
    peer = "-"
    _deadline: IDelayedCall | None = None
    _body_started = 0.0
    _body_credit = 0
    # The decoder dropping the body of a request answered early, while it
    # is read.
    _discarder: Any = None
    _discarded = 0
    _answered = False
    # The sender of a request answered early waits for 100 Continue before
    # sending its body: it will not send it.
    _no_body_coming = False

    def connectionMade(self) -> None:
        super().connectionMade()
        peer = self.transport.getPeer() if self.transport is not None else None
        self.peer = str(getattr(peer, "host", "-"))
        self.site.connections.opened(self)
        # The first request's headers are due from the start: a connection
        # that says nothing is as slow as one that trickles.
        self._arm(self.site.limits.header_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self.phase is Phase.IDLE and data:
            self.phase = Phase.HEADERS
            self._arm(self.site.limits.header_timeout)
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        super().allHeadersReceived()
        request = cast("GatewayRequest", self.requests[-1])
        self.site.connections.busy(self)
        self.phase = Phase.BODY
        self._body_started = self.site.clock.seconds()
        self._body_credit = 0
        self._arm(self.site.limits.body_timeout)
        if request.answer_now and self.length != 0:
            self._discard_body()

    def _discard_body(self) -> None:
        # A body of zero length makes twisted.web hand the request over as
        # soon as this returns; the real body goes to a decoder of its own
        # that drops it.
        if self.length is None:
            self._discarder = http._ChunkedTransferDecoder(self._dropped, self._body_dropped)
        else:
            self._discarder = http._IdentityTransferDecoder(self.length, self._dropped, self._body_dropped)
        self.length = 0

    def _send100Continue(self) -> None:
        if cast("GatewayRequest", self.requests[-1]).answer_now:
            # The final answer comes instead (RFC 9110 10.1.1).
            self._no_body_coming = True
            return
        super()._send100Continue()

    def rawDataReceived(self, data: bytes) -> None:
        if self._discarder is not None:
            try:
                self._discarder.dataReceived(data)
            except http._MalformedChunkedDataError:
                self._abort()
            return
        if self.phase is Phase.BODY:
            # Bytes past the body limit buy no time: they are dropped.
            room = self.site.max_body_bytes - self._body_credit
            self._body_credit += min(len(data), max(0, room))
        super().rawDataReceived(data)

    def _dropped(self, data: bytes) -> None:
        self._discarded += len(data)
        if self._discarded > self.site.abort_after_bytes:
            self._abort()

    def _body_dropped(self, rest: bytes) -> None:
        # Whatever follows the body is not read: the connection ends.
        self._discarder = None
        self._cancel()
        if self._answered:
            self.loseConnection()

    def allContentReceived(self) -> None:
        # Before handing over: the answer may be written, and the next
        # request started, before this returns.
        self.phase = Phase.HANDLING
        if self._discarder is None:
            self._cancel()
        super().allContentReceived()

    def requestDone(self, request: http.Request) -> None:
        self.site.connections.idle(self)
        if self._discarder is not None:
            # Answered before its body was read: the connection ends once
            # the rest of the body is dropped, or at its deadline.
            self.requests.remove(request)
            self._answered = True
            if self._no_body_coming:
                self._discarder = None
                self._cancel()
                self.loseConnection()
            return
        self.phase = Phase.IDLE
        self._arm(self.site.idle_timeout)
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel()
        self.site.connections.closed(self)
        super().connectionLost(reason)

    # Deadlines.

    def _arm(self, seconds: float) -> None:
        self._cancel()
        self._deadline = self.site.clock.callLater(seconds, self._expired)

    def _cancel(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        limits = self.site.limits
        if self._discarder is not None:
            # Already refused (and recorded); only its body is late.
            self._abort()
        elif self.phase is Phase.IDLE:
            self._close_idle()
        elif self.phase is Phase.HEADERS:
            self._refuse(Closure.SLOW_HEADERS, f"no complete headers within {limits.header_timeout:g} s")
        elif self.phase is Phase.BODY:
            rate = limits.min_body_rate
            due = self._body_started + limits.body_timeout + (self._body_credit / rate if rate else 0.0)
            left = due - self.site.clock.seconds()
            if left > 0:
                # What arrived since bought more time.
                self._deadline = self.site.clock.callLater(left, self._expired)
                return
            self.requests[-1].lost_code = REQUEST_TIMEOUT
            waited = self.site.clock.seconds() - self._body_started
            self._refuse(
                Closure.SLOW_BODY,
                f"{self._body_credit} bytes of the body in {waited:g} s"
                f" (body_timeout {limits.body_timeout:g} s, min_body_rate {rate} bytes/s)",
            )

    def _refuse(self, reason: Closure, detail: str) -> None:
        self.site.edge_log.closed(self.peer, reason, detail)
        self._abort()

    def _abort(self) -> None:
        self._cancel()
        self._discarder = None
        transport = cast(ITCPTransport, self.transport)
        if transport is not None:
            transport.abortConnection()

    def _close_idle(self) -> None:
        # Gently (the last answer may still be on its way), then for good if
        # the client does not read it.
        if self.transport is None or self.transport.disconnecting:  # type: ignore[attr-defined]
            self._abort()
            return
        self.loseConnection()
        self._deadline = self.site.clock.callLater(self.abortTimeout, self._abort)

    def make_room(self) -> None:
        """
        Close to make room for a new connection (the site is at its cap).
        """
        self.site.edge_log.closed(self.peer, Closure.CONNECTIONS, "the oldest idle connection, closed to make room")
        if self.phase is Phase.IDLE:
            self._close_idle()
        else:
            self._abort()


class RefusedConnection(Protocol):
    """
    A connection past the cap, with no idle one to close instead: closed as
    soon as it is made.
    """

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]
