"""
Drive a real L{GatewaySite} over an in-memory connection.

A L{Connection} builds the site's real protocol on a C{StringTransport}, so
requests go through twisted.web's own parser, the resource tree, our
handlers and the site's logging exactly as on a socket; tests read the raw
bytes that would have gone back to the client.

An L{Edge} is a site of webhook endpoints with chosen guards, and checks
what every refusal at the edge must do: the problem shape, the security
response headers, one security log event and one count in
C{gateway_security_rejections_total}.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
from OpenSSL import crypto
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock, LoopingCall
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from alertgateway.app.service import GatewayService
from alertgateway.config import GatewayConfig, parse_config
from alertgateway.core.decider import DeciderSettings
from alertgateway.delivery.envelope import Envelope
from alertgateway.guards.auth import BearerAuthenticator
from alertgateway.guards.ratelimit import RateLimiter
from alertgateway.intake.admission import Admission
from alertgateway.intake.backlog import StormBacklog
from alertgateway.intake.outcomes import Outcomes
from alertgateway.observability.access import AccessLog, json_line
from alertgateway.observability.logs import LineBuffer
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.sources import PARSERS, Parser
from alertgateway.state.memory import MemoryState
from alertgateway.testing import GatewayReactor, InlineExecutor
from alertgateway.web.connections import EdgeLimits
from alertgateway.web.endpoints import Guards, WebhookEndpoint
from alertgateway.web.health import Readiness
from alertgateway.web.site import GatewaySite
from alertgateway.web.tree import Branch, mount
from alertgateway.web.webhook import WebhookResource

__all__ = [
    "AUTH",
    "FIXTURES",
    "GRAFANA",
    "NOW",
    "PROMETHEUS",
    "SECURITY_HEADERS",
    "TOKEN",
    "Connection",
    "Edge",
    "HTTPResponse",
    "InlineExecutor",
    "alert",
    "assert_problem",
    "assert_security_headers",
    "bearer",
    "body",
    "capture_events",
    "fixture",
    "make_config",
    "make_service",
    "presenting",
    "request_bytes",
    "signed_standard",
    "ticking",
    "webhook_site",
]

T = TypeVar("T")

FIXTURES = Path(__file__).parent.parent / "fixtures"
TOKEN = "s3cret-token"

Address = IPv4Address | IPv6Address
Peer = Address


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def make_config(extra: str = "", *, token: str = TOKEN, sink: str = "file:unused.jsonl") -> GatewayConfig:
    """
    A configuration with a bearer token and the processor endpoint C{sink};
    C{extra} is more YAML appended at the top level.
    """
    text = f"webhook:\n  auth:\n    token: {token}\nalert_processor:\n  endpoint: {sink}\n{extra}"
    if "queue:" not in extra:
        # The durable queue has tests of its own; here the web layer is the
        # subject, and memory needs no thread.
        text += "\nqueue:\n  backend: memory\n"
    return parse_config(text, environ={})


def make_service(
    config: GatewayConfig | None = None,
    reactor: GatewayReactor | None = None,
    executor: InlineExecutor | None = None,
) -> tuple[GatewayService, GatewayReactor, io.StringIO]:
    """
    A gateway on a memory reactor, its reactor and its log stream.  A
    durable queue runs SQLite inline (C{executor}, by default a new
    L{InlineExecutor}): a memory reactor runs no threads.
    """
    reactor = reactor if reactor is not None else GatewayReactor()
    stream = io.StringIO()
    service = GatewayService(
        config if config is not None else make_config(),
        reactor,
        log_stream=stream,
        executor=executor if executor is not None else InlineExecutor(),
    )
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


class ClosingTransport(StringTransport):
    """
    A StringTransport that, like a socket with nothing left to write,
    reports the connection lost as soon as the server closes it.
    """

    protocol: IProtocol

    def loseConnection(self) -> None:
        if not self.disconnecting:
            super().loseConnection()
            self.protocol.connectionLost(Failure(ConnectionDone("closed by the server")))


class Connection:
    """
    One client connection to C{site} from C{peer}.

    @param closes: Whether closing it on the server's side ends it at once
        (the site then forgets it), as on a socket; by default the test
        ends it with L{lose}.
    """

    def __init__(
        self,
        site: GatewaySite,
        peer: Address | None = None,
        transport: type[StringTransport] | None = None,
        *,
        closes: bool = False,
    ) -> None:
        self.site = site
        self.peer = peer if peer is not None else IPv4Address("TCP", "127.0.0.1", 40000)
        self.protocol: IProtocol = site.buildProtocol(self.peer)
        kind = transport or (ClosingTransport if closes else StringTransport)
        self.transport = kind(peerAddress=self.peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        if isinstance(self.transport, ClosingTransport):
            self.transport.protocol = self.protocol
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

    @property
    def aborted(self) -> bool:
        """
        Whether the server aborted the connection (rather than closing it
        once its answer was written).
        """
        return bool(getattr(self.transport, "disconnected", False))


@attrs.frozen
class PassThrough:
    """
    Admission that forwards every alert (no deduplication, escalation or
    storms), for tests of the HTTP layer; the decider has tests of its own.
    """

    admission: Admission
    outcomes: Outcomes

    @classmethod
    def of(
        cls, submit: Callable[[list[Envelope]], Deferred[None]], clock: Clock, metrics: GatewayMetrics
    ) -> PassThrough:
        state = MemoryState(DeciderSettings(dedup=False, escalate=False), max_tracked=10_000)

        def queue(envelopes: list[Envelope], write: object | None) -> Deferred[None]:
            # The memory state writes nothing with the queue.
            assert write is None
            return submit(envelopes)

        backlog = StormBacklog(clock=clock, submit=queue, room=lambda: 1_000_000)
        admission = Admission(
            state,
            clock=clock,
            submit=queue,
            room=lambda: 1_000_000,
            backlog=backlog,
            metrics=metrics.decisions,
            environments=frozenset(),
            default_environment="production",
        )
        return cls(admission, Outcomes(state, clock=clock))


def webhook_resource(
    path: str,
    *,
    parser: Parser,
    guards: Guards,
    submit: Callable[[list[Envelope]], Deferred[None]],
    readiness: Readiness,
    metrics: GatewayMetrics,
    clock: Clock,
) -> WebhookResource:
    """
    An Alertmanager endpoint at C{path} that forwards every alert it takes.
    """
    through = PassThrough.of(submit, clock, metrics)
    return WebhookResource(
        WebhookEndpoint(path, "alertmanager"),
        parser=parser,
        guards=guards,
        admission=through.admission,
        outcomes=through.outcomes,
        readiness=readiness,
        metrics=metrics.webhooks,
        clock=clock,
    )


def webhook_site(
    *,
    parser: Parser = PARSERS["alertmanager"],
    submit: Callable[[list[Envelope]], Deferred[None]] = lambda envelopes: succeed(None),
    clock: Clock | None = None,
    metrics: GatewayMetrics | None = None,
    guards: Guards | None = None,
    readiness: Readiness | None = None,
    max_body_bytes: int = 10_000,
    gzip_min_bytes: int = 1024,
    limits: EdgeLimits | None = None,
    access_log: AccessLog | None = None,
) -> GatewaySite:
    """
    A site serving only C{/webhook/prometheus}, guarded by C{guards}
    (by default: bearer L{TOKEN} and nothing else), with the parser and the
    submission chosen by the test, and no access log unless given one.
    """
    clock = clock if clock is not None else Clock()
    metrics = metrics if metrics is not None else GatewayMetrics()
    resource = webhook_resource(
        "/webhook/prometheus",
        parser=parser,
        guards=guards if guards is not None else Guards(authenticator=BearerAuthenticator([TOKEN])),
        submit=submit,
        readiness=readiness if readiness is not None else Readiness(),
        metrics=metrics,
        clock=clock,
    )
    root = Branch()
    mount(root, "/webhook/prometheus", resource)
    return GatewaySite(
        root,
        clock=clock,
        metrics=metrics.http,
        max_body_bytes=max_body_bytes,
        idle_timeout=60,
        gzip_min_bytes=gzip_min_bytes,
        limits=limits,
        security=metrics.webhooks,
        access_log=access_log,
    )


class AccessLines:
    """
    An access log writing JSON lines to memory at once, and what it wrote.
    """

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.log = AccessLog(LineBuffer(self.stream), json_line())

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


def access_records(service: GatewayService, stream: io.StringIO) -> list[dict[str, Any]]:
    """
    The access lines C{service} wrote (in JSON) to its log C{stream} so far,
    those still waiting in its buffer included.
    """
    service.gateway.log_buffer.flush()
    return [json.loads(line) for line in stream.getvalue().splitlines() if '"type":"access"' in line]


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


PROMETHEUS = "/webhook/prometheus"
GRAFANA = "/webhook/grafana"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Thu, 26 Nov 2026 03:50:00 GMT: signature timestamps need a real time.
NOW = 1795665000.0

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "server": "alertgateway",
}


def alert(name: str, status: str = "firing") -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name}, "startsAt": "2026-11-26T03:49:49Z"}


def body(*alerts: object, **extra: object) -> bytes:
    return json.dumps({"version": "4", "status": "firing", "alerts": list(alerts), **extra}).encode("utf-8")


def bearer() -> Guards:
    return Guards(authenticator=BearerAuthenticator([TOKEN]))


def assert_problem(case: SynchronousTestCase, response: HTTPResponse, status: int, slug: str) -> dict[str, Any]:
    """
    Check the RFC 9457 shape every refusal shares and return its body.
    """
    case.assertEqual(response.status, status, response.body)
    case.assertEqual(response.header("content-type"), "application/problem+json")
    problem: dict[str, Any] = response.json()
    case.assertEqual(problem["type"], f"urn:alertgateway:problem:{slug}")
    case.assertEqual(problem["status"], status)
    case.assertIsInstance(problem["title"], str)
    case.assertIsInstance(problem["detail"], str)
    case.assertEqual(problem["requestId"], response.header("x-request-id"))
    return problem


def assert_security_headers(case: SynchronousTestCase, response: HTTPResponse, what: object = None) -> None:
    """
    Every answer carries the security headers, each once, and a Server
    header that names no version.
    """
    for name, value in SECURITY_HEADERS.items():
        case.assertEqual(response.headers.get(name), [value], (name, what))


def is_security(event: LogEvent) -> bool:
    return event.get("log_namespace") == "alertgateway.security"


class Edge:
    """
    Webhook endpoints (alertmanager's parser) on a real site, one
    L{Guards} each, with the security log captured.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        guards: Guards | None = None,
        *,
        clock: Clock | None = None,
        more: Mapping[str, Guards] | None = None,
        parser: Parser = PARSERS["alertmanager"],
        submit: Callable[[list[Envelope]], Deferred[None]] | None = None,
        readiness: Readiness | None = None,
        max_body_bytes: int = 10_000,
        gzip_min_bytes: int = 1024,
        limits: EdgeLimits | None = None,
    ) -> None:
        self.case = case
        if clock is None:
            clock = Clock()
            clock.advance(NOW)
        self.clock = clock
        self.metrics = GatewayMetrics()
        self.submitted: list[Envelope] = []
        self.readiness = readiness if readiness is not None else Readiness()
        root = Branch()
        endpoints = {PROMETHEUS: guards if guards is not None else bearer(), **(more or {})}
        for path, endpoint_guards in endpoints.items():
            resource = webhook_resource(
                path,
                parser=parser,
                guards=endpoint_guards,
                submit=submit if submit is not None else self._submit,
                readiness=self.readiness,
                metrics=self.metrics,
                clock=clock,
            )
            mount(root, path, resource)
        self.access = AccessLines()
        self.site = GatewaySite(
            root,
            clock=clock,
            metrics=self.metrics.http,
            max_body_bytes=max_body_bytes,
            idle_timeout=60,
            gzip_min_bytes=gzip_min_bytes,
            limits=limits,
            security=self.metrics.webhooks,
            access_log=self.access.log,
        )
        self.security = capture_events(case, is_security)
        self._seen = 0
        self._before: dict[tuple[str, str], float] = {}

    def _submit(self, envelopes: list[Envelope]) -> Deferred[None]:
        self.submitted.extend(envelopes)
        return succeed(None)

    def rejections(self) -> dict[tuple[str, str], float]:
        """
        C{gateway_security_rejections_total} by (endpoint, reason).
        """
        found: dict[tuple[str, str], float] = {}
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == "gateway_security_rejections_total":
                    found[(sample.labels["endpoint"], sample.labels["reason"])] = sample.value
        return found

    def sample(self, name: str, labels: Mapping[str, str]) -> float | None:
        value: float | None = self.metrics.registry.get_sample_value(name, dict(labels))
        return value

    def watch(self) -> None:
        """
        Check refusals and acceptances from now on, for requests sent
        without L{post}.
        """
        self._before = self.rejections()

    def post(
        self,
        raw: bytes | None = None,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = AUTH,
        peer: Peer | None = None,
        path: str = PROMETHEUS,
        connection: Connection | None = None,
    ) -> HTTPResponse:
        """
        POST C{raw} (one valid alert by default) on a new connection.
        """
        self.watch()
        connection = connection if connection is not None else Connection(self.site, peer)
        return connection.request("POST", path, headers=headers, body=body(alert("A")) if raw is None else raw)

    def new_events(self) -> list[LogEvent]:
        events = self.security[self._seen :]
        self._seen = len(self.security)
        return events

    def refused(
        self,
        response: HTTPResponse,
        status: int,
        slug: str,
        reason: str,
        *,
        client: str = "127.0.0.1",
        path: str = PROMETHEUS,
    ) -> dict[str, Any]:
        """
        Check a security refusal end to end and return its problem body.
        """
        problem = assert_problem(self.case, response, status, slug)
        assert_security_headers(self.case, response, slug)
        [event] = self.new_events()
        self.case.assertEqual(event["log_level"], LogLevel.warn)
        self.case.assertEqual(
            {k: event[k] for k in ("reason", "client", "requestId", "status", "endpoint", "method", "path")},
            {
                "reason": reason,
                "client": client,
                "requestId": response.header("x-request-id"),
                "status": status,
                "endpoint": PROMETHEUS if path == PROMETHEUS else path,
                "method": "POST",
                "path": path,
            },
        )
        after = self.rejections()
        key = (path, reason)
        self.case.assertEqual(after.get(key, 0.0) - self._before.get(key, 0.0), 1.0, key)
        self.case.assertEqual(sum(after.values()) - sum(self._before.values()), 1.0)
        return problem

    def accepted(self, response: HTTPResponse, status: int = 202) -> dict[str, Any]:
        """
        Check an accepted webhook: no security event, nothing counted.
        """
        self.case.assertEqual(response.status, status, response.body)
        assert_security_headers(self.case, response, status)
        self.case.assertEqual(self.new_events(), [])
        self.case.assertEqual(self.rejections(), self._before)
        answer: dict[str, Any] = response.json()
        return answer


def ticking(clock: Clock, **limits: Any) -> RateLimiter:
    """
    A rate limiter refilled every interval on C{clock}, as the service's
    TimerService refills it.
    """
    limiter = RateLimiter(clock, **limits)
    ticks = LoopingCall(limiter.tick)
    ticks.clock = clock
    ticks.start(limiter.interval, now=False)
    return limiter


def signed_standard(key: bytes, message_id: str, timestamp: int, raw: bytes) -> dict[str, str]:
    signed = f"{message_id}.{timestamp}.".encode() + raw
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": f"v1,{signature}"}


def presenting(certificate: crypto.X509 | None) -> type[StringTransport]:
    """
    A transport class whose connections presented C{certificate}, as a
    TLS connection's transport answers for it.
    """

    class Presenting(StringTransport):
        def getPeerCertificate(self) -> crypto.X509 | None:
            return certificate

    return Presenting


def stop(case: SynchronousTestCase, service: GatewayService) -> None:
    """
    Stop C{service} as SIGTERM does, its grace period passing on its clock
    (the listeners answer 503 for that long before they close).
    """
    stopping = service.stopService()
    clock = service.gateway.reactor
    assert isinstance(clock, MemoryReactorClock)
    clock.advance(service.config.service.shutdown_grace)
    case.successResultOf(stopping)
