"""
Drive a real L{GatewaySite} over an in-memory connection.

A L{Connection} builds the site's real protocol on a C{StringTransport}, so
requests go through twisted.web's own parser, the resource tree, our
handlers and the site's logging exactly as on a socket; tests read the raw
bytes that would have gone back to the client.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from alertgateway.config import EndpointConfig, GatewayConfig, parse_config
from alertgateway.delivery.queue import Envelope
from alertgateway.guards.addresses import AddressFilter
from alertgateway.guards.auth import BearerAuthenticator
from alertgateway.metrics import GatewayMetrics
from alertgateway.service import GatewayService
from alertgateway.sources import PARSERS, Parser
from alertgateway.web.health import Readiness
from alertgateway.web.resources import Branch, mount
from alertgateway.web.site import GatewaySite
from alertgateway.web.webhook import WebhookResource

__all__ = [
    "FIXTURES",
    "TOKEN",
    "Connection",
    "HTTPResponse",
    "capture_events",
    "fixture",
    "make_config",
    "make_service",
    "request_bytes",
    "webhook_site",
]

FIXTURES = Path(__file__).parent.parent / "fixtures"
TOKEN = "s3cret-token"

Address = IPv4Address | IPv6Address


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def make_config(extra: str = "", *, token: str = TOKEN, sink: str = "file:unused.jsonl") -> GatewayConfig:
    """
    A configuration with a bearer token and the processor endpoint C{sink};
    C{extra} is more YAML appended at the top level.
    """
    text = f"webhook:\n  auth:\n    token: {token}\nalert_processor:\n  endpoint: {sink}\n{extra}"
    return parse_config(text, environ={})


def make_service(
    config: GatewayConfig | None = None, reactor: MemoryReactorClock | None = None
) -> tuple[GatewayService, MemoryReactorClock, io.StringIO]:
    """
    A gateway on a memory reactor, its reactor and its log stream.
    """
    reactor = reactor if reactor is not None else MemoryReactorClock()
    stream = io.StringIO()
    service = GatewayService(config if config is not None else make_config(), reactor, log_stream=stream)
    return service, reactor, stream


def request_bytes(
    method: str,
    path: str,
    *,
    headers: Iterable[tuple[str, str]] | Mapping[str, str] = (),
    body: bytes | None = None,
    chunks: Iterable[bytes] | None = None,
) -> bytes:
    """
    One HTTP/1.1 request on the wire: with C{body}, a Content-Length body;
    with C{chunks}, a chunked one.
    """
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway.test"]
    lines += [f"{name}: {value}" for name, value in pairs]
    payload = b""
    if chunks is not None:
        lines.append("Transfer-Encoding: chunked")
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n"
    elif body is not None:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


@attrs.frozen
class HTTPResponse:
    """
    One parsed response: header names are lower case, values in order.
    """

    status: int
    reason: str
    headers: Mapping[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[-1] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


def _parse_one(data: bytes, *, head: bool) -> tuple[HTTPResponse, bytes] | None:
    """
    Parse the first complete response in C{data}, or C{None} if it is not
    complete yet.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head_lines = data[:end].decode("latin-1").split("\r\n")
    _version, status, reason = [*head_lines[0].split(" ", 2), ""][:3]
    headers: dict[str, list[str]] = {}
    for line in head_lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    rest = data[end + 4 :]
    if head or int(status) in (204, 304) or 100 <= int(status) < 200:
        body = b""
    elif "chunked" in headers.get("transfer-encoding", []):
        body = b""
        while True:
            line_end = rest.find(b"\r\n")
            if line_end < 0:
                return None
            size = int(rest[:line_end], 16)
            if len(rest) < line_end + 2 + size + 2:
                return None
            body += rest[line_end + 2 : line_end + 2 + size]
            rest = rest[line_end + 2 + size + 2 :]
            if size == 0:
                break
    else:
        length = int(headers.get("content-length", ["0"])[-1])
        if len(rest) < length:
            return None
        body, rest = rest[:length], rest[length:]
    return HTTPResponse(int(status), reason, headers, body), rest


class Connection:
    """
    One client connection to C{site} from C{peer}.
    """

    def __init__(self, site: GatewaySite, peer: Address | None = None) -> None:
        self.site = site
        self.peer = peer if peer is not None else IPv4Address("TCP", "127.0.0.1", 40000)
        self.protocol: IProtocol = site.buildProtocol(self.peer)
        self.transport = StringTransport(peerAddress=self.peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        self.protocol.makeConnection(self.transport)
        self._seen = 0
        self._methods: list[str] = []

    def send(self, data: bytes, method: str = "POST") -> None:
        """
        Write raw bytes from the client, expecting one response for them
        (to a C{method} request).
        """
        self._methods.append(method)
        self.protocol.dataReceived(data)

    def feed(self, data: bytes) -> None:
        """
        Write more raw bytes of a request already announced with L{send}.
        """
        self.protocol.dataReceived(data)

    def responses(self) -> list[HTTPResponse]:
        """
        Every complete response written on this connection so far.
        """
        data = self.transport.value()
        found: list[HTTPResponse] = []
        for method in self._methods:
            parsed = _parse_one(data, head=method == "HEAD")
            if parsed is None:
                break
            response, data = parsed
            found.append(response)
        return found

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Iterable[tuple[str, str]] | Mapping[str, str] = (),
        body: bytes | None = None,
        chunks: Iterable[bytes] | None = None,
    ) -> HTTPResponse:
        """
        Send one request and return its (already complete) response.
        """
        before = len(self.responses())
        self.send(request_bytes(method, path, headers=headers, body=body, chunks=chunks), method)
        found = self.responses()
        assert len(found) == before + 1, f"no complete response in {self.transport.value()!r}"
        return found[-1]

    def lose(self) -> None:
        """
        The client goes away.
        """
        self.protocol.connectionLost(Failure(ConnectionDone("client went away")))

    @property
    def closed(self) -> bool:
        """
        Whether the server closed (or aborted) the connection.
        """
        return bool(self.transport.disconnecting or getattr(self.transport, "disconnected", False))


def webhook_site(
    *,
    parser: Parser = PARSERS["alertmanager"],
    submit: Callable[[list[Envelope]], Deferred[None]] = lambda envelopes: succeed(None),
    clock: Clock | None = None,
    metrics: GatewayMetrics | None = None,
) -> GatewaySite:
    """
    A site serving only C{/webhook/prometheus} (bearer L{TOKEN}), with the
    parser and the submission chosen by the test.
    """
    clock = clock if clock is not None else Clock()
    metrics = metrics if metrics is not None else GatewayMetrics()
    resource = WebhookResource(
        EndpointConfig(path="/webhook/prometheus", source="alertmanager"),
        parser=parser,
        authenticator=BearerAuthenticator([TOKEN]),
        addresses=AddressFilter([]),
        submit=submit,
        readiness=Readiness(),
        metrics=metrics,
        clock=clock,
    )
    root = Branch()
    mount(root, "/webhook/prometheus", resource)
    return GatewaySite(root, clock=clock, metrics=metrics, max_body_bytes=10_000, idle_timeout=60)


def capture_events(case: SynchronousTestCase, predicate: Callable[[LogEvent], bool] = lambda e: True) -> list[LogEvent]:
    """
    Collect the log events matching C{predicate} for the rest of the test.
    """
    events: list[LogEvent] = []

    @implementer(ILogObserver)
    class Collector:
        def __call__(self, event: LogEvent) -> None:
            if predicate(event):
                events.append(event)

    observer = Collector()
    globalLogPublisher.addObserver(observer)
    case.addCleanup(globalLogPublisher.removeObserver, observer)
    return events
