# -*- test-case-name: tests.unit.test_web_site -*-
"""
The one base Resource that turns a handler's result into a response.

A handler is a coroutine method C{handle_<METHOD>(request)} that returns a
L{Response} or raises a L{Problem}; it never writes.  L{HandlerResource}
wraps it once with C{Deferred.fromCoroutine}, cancels it when the client goes
away, writes the result (or the problem, or a generic 500 for anything
unexpected, never a traceback) and never calls C{finish()} on a lost
connection.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Coroutine, Mapping
from http import HTTPStatus
from typing import Any, NoReturn, TypeVar

import attrs
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from alertgateway.web import problems
from alertgateway.web.problems import PROBLEM_CONTENT_TYPE, Problem
from alertgateway.web.site import GatewayRequest

__all__ = ["HandlerResource", "NotFoundResource", "Response", "json_bytes"]

_log = Logger()

Handler = Callable[[GatewayRequest], "Deferred[Response] | Coroutine[Any, Any, Response]"]


def json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


@attrs.frozen
class Response:
    """
    What a handler answers: a status, a JSON-able body (or raw bytes) and
    headers.
    """

    status: int
    body: object
    content_type: str = "application/json"
    headers: Mapping[str, str] = attrs.field(factory=dict)

    def encoded(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else json_bytes(self.body)


class HandlerResource(Resource):
    """
    Dispatch to C{handle_<METHOD>} coroutines and write what they return.

    Subclasses set C{endpoint} (the metrics and access-log label).  Paths
    below a handler resource are 404 unless added with C{putChild}.
    """

    endpoint = "unmatched"

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self
        return NotFoundResource()

    def allowed_methods(self) -> list[str]:
        methods = sorted(name[len("handle_") :] for name in dir(self) if name.startswith("handle_"))
        if "GET" in methods and "HEAD" not in methods:
            methods.append("HEAD")
        return methods

    def _handler_for(self, method: str) -> Handler | None:
        if method == "HEAD":
            method = "GET"
        handler: Handler | None = getattr(self, f"handle_{method}", None)
        return handler

    def respond(self, request: GatewayRequest) -> Deferred[Response]:
        """
        Start handling C{request}; the result is written by L{render}.
        """
        method = request.method.decode("latin-1")
        handler = self._handler_for(method)
        if handler is None:
            return fail(problems.method_not_allowed(method, self.allowed_methods()))
        try:
            result = handler(request)
        except Exception:
            return fail()
        if isinstance(result, Deferred):
            return result
        return Deferred.fromCoroutine(result)

    def render(self, request: GatewayRequest) -> object:
        request.endpoint = self.endpoint
        d = self.respond(request)
        lost: list[Failure] = []

        def _connection_lost(reason: Failure) -> None:
            lost.append(reason)
            d.cancel()

        request.notifyFinish().addErrback(_connection_lost)
        site = request.gateway_site
        answered: list[bool] = []
        d.addBoth(_note, answered)
        # A handler that answered at once (a webhook of duplicates) needs
        # no deadline: a timer set and cancelled costs more than the rest
        # of its bookkeeping.
        if site.request_timeout is not None and not answered:
            # A handler that has not answered by the deadline is cancelled
            # and the sender told to retry, rather than left hanging.
            d.addTimeout(site.request_timeout, site.clock, onTimeoutCancel=_deadline_passed)
        d.addErrback(_to_problem, request)
        d.addCallback(_write, request, lost)
        d.addErrback(lambda f: _log.failure("Writing a response failed", failure=f))
        return NOT_DONE_YET


_T = TypeVar("_T")


def _note(result: _T, answered: list[bool]) -> _T:
    answered.append(True)
    return result


def _deadline_passed(result: object, timeout: float) -> NoReturn:
    raise problems.request_timeout(timeout)


def _to_problem(failure: Failure, request: GatewayRequest) -> Response:
    if failure.check(Problem):
        problem = failure.value
    elif failure.check(CancelledError):
        # The client went away; nothing will be written.
        problem = problems.internal_error()
    else:
        _log.failure(
            "Unhandled error in {method} {path} ({requestId})",
            failure=failure,
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"),
            requestId=request.request_id,
        )
        problem = problems.internal_error()
    assert isinstance(problem, Problem)
    return Response(
        status=problem.status,
        body=problem.to_json(request.request_id, request.path.decode("latin-1")),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
    )


def reason_phrase(status: int) -> bytes:
    """
    The status line's reason phrase: twisted.web has none for 422, 429 or
    431, and "429 Unknown Status" confuses whoever reads a sender's log.
    """
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Unknown Status"


def _write(response: Response, request: GatewayRequest, lost: list[Failure]) -> None:
    if lost:
        return
    try:
        body = response.encoded()
    except (TypeError, ValueError):
        _log.failure("Cannot encode the response to {path}", path=request.path.decode("latin-1"))
        response = _INTERNAL_ERROR
        body = _INTERNAL_ERROR_BODY
    request.setResponseCode(response.status, reason_phrase(response.status))
    request.setHeader(b"Content-Type", response.content_type.encode("ascii"))
    for header, header_value in SECURITY_HEADERS:
        request.setHeader(header, header_value)
    if len(body) >= request.gateway_site.gzip_min_bytes:
        # The answer depends on Accept-Encoding from this size on.
        request.setHeader(b"Vary", b"Accept-Encoding")
        if _accepts_gzip(request):
            body = gzip.compress(body, compresslevel=6, mtime=0)
            request.setHeader(b"Content-Encoding", b"gzip")
    for name, value in response.headers.items():
        request.setHeader(name.encode("ascii"), value.encode("latin-1"))
        if name.lower() == "connection" and value.lower() == "close":
            # twisted.web decides persistence from the request alone; a
            # response that says close must also end the connection.
            request.channel.persistent = False
    request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
    request.write(body)
    request.finish()


# On every answer: nothing here is for a browser to sniff, frame, cache or
# follow, and the server does not advertise its version.
SECURITY_HEADERS = (
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Cache-Control", b"no-store"),
    (b"X-Frame-Options", b"DENY"),
    (b"Content-Security-Policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"Server", b"alertgateway"),
)


def _accepts_gzip(request: GatewayRequest) -> bool:
    """
    Whether C{Accept-Encoding} allows gzip: named with a non-zero weight,
    or not named and C{*} has one.  C{q=0} refuses; a coding named outright
    outweighs C{*} wherever it stands.
    """
    weights: dict[str, float] = {}
    for line in request.requestHeaders.getRawHeaders(b"accept-encoding", []):
        for item in line.decode("latin-1").split(","):
            coding, _, params = item.partition(";")
            weights[coding.strip().lower()] = _weight(params)
    for coding in ("gzip", "x-gzip", "*"):
        if coding in weights:
            return weights[coding] > 0
    return False


def _weight(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                # An unreadable weight is not consent.
                return 0.0
    return 1.0


# Written when a response cannot be encoded: built once, ASCII only.
_INTERNAL_ERROR_BODY = json_bytes(
    {k: v for k, v in problems.internal_error().to_json("", "").items() if k not in ("requestId", "instance")}
)
_INTERNAL_ERROR = Response(status=500, body=_INTERNAL_ERROR_BODY, content_type=PROBLEM_CONTENT_TYPE)


class NotFoundResource(HandlerResource):
    """
    Every method, every path below: 404 problem+json.
    """

    isLeaf = True

    def respond(self, request: GatewayRequest) -> Deferred[Response]:
        return fail(problems.not_found(request.path.decode("latin-1")))
