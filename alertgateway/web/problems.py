# -*- test-case-name: tests.unit.test_web_webhook,tests.unit.test_problems -*-
"""
RFC 9457 problem details: the one shape of every refusal the gateway sends.

Handlers raise L{Problem}; the base resource in L{alertgateway.web.resource}
turns it into an C{application/problem+json} response.  Each kind of refusal
has a constructor here, so the same situation is always described the same
way and C{docs/openapi.yaml} can list every C{type}.

A problem is bounded whatever the request: at most L{MAX_ERRORS} errors
(C{omittedErrors} counts the rest) and L{MAX_ECHOED_CHARS} characters of
each value that may echo the request.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from alertgateway.guards.errors import Reason, Refused

# The constructors, one per kind of refusal (the limits below are public
# too, but they make no problem).
__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "Problem",
    "forbidden",
    "internal_error",
    "invalid_payload",
    "invalid_query",
    "malformed_body",
    "method_not_allowed",
    "not_found",
    "payload_too_large",
    "processor_rejected",
    "queue_full",
    "rate_limited",
    "refused",
    "request_timeout",
    "shutting_down",
    "state_unavailable",
    "too_busy",
    "unauthorized",
    "unsupported_encoding",
    "unsupported_media_type",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
ACCEPTED_TYPES = ("application/json", "application/x-www-form-urlencoded", "application/xml", "text/xml")
_TYPE_PREFIX = "urn:alertgateway:problem:"
# The most errors an answer lists, and the most characters of a value taken
# from the request it echoes: a 1 MB body of small faults got an 11 MB
# answer.
MAX_ERRORS = 100
MAX_ECHOED_CHARS = 256
# The most characters of a detail, which may quote what the client sent.
_MAX_DETAIL_CHARS = 1024


def _echo(value: str, limit: int = MAX_ECHOED_CHARS) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


def _pointer(value: str) -> str:
    """
    A JSON pointer cut to L{MAX_ECHOED_CHARS}, still a pointer: an escape
    (C{~0}, C{~1}) is never cut in half.
    """
    if len(value) <= MAX_ECHOED_CHARS:
        return value
    cut = value[:MAX_ECHOED_CHARS]
    return cut[:-1] if cut.endswith("~") else cut


def _bounded_errors(errors: Iterable[Mapping[str, str]], limit: int = MAX_ERRORS) -> tuple[list[dict[str, str]], int]:
    """
    The first C{limit} of C{errors}, each pointer and message cut to
    L{MAX_ECHOED_CHARS}, and how many were left out.
    """
    listed = list(errors)
    kept = [
        {key: _pointer(text) if key == "pointer" else _echo(text) for key, text in error.items()}
        for error in listed[:limit]
    ]
    return kept, len(listed) - len(kept)


class Problem(Exception):
    """
    A refusal, ready to be written as problem+json.

    @ivar slug: The last part of the C{type} URI, e.g. C{invalid-payload}.
    @ivar headers: Extra response headers (C{Allow}, C{WWW-Authenticate},
        C{Retry-After}).
    @ivar errors: RFC 6901 pointers into the request body with messages.
    @ivar reason: For security refusals, what kind they are.
    """

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        errors: Iterable[Mapping[str, str]] = (),
        extensions: Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> None:
        detail = _echo(detail, _MAX_DETAIL_CHARS)
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.errors, omitted = _bounded_errors(errors)
        self.extensions = dict(extensions or {})
        if omitted:
            self.extensions["omittedErrors"] = omitted
        # Set on refusals that the security log records (auth, signature,
        # address, rate, concurrency, size, content).
        self.reason = reason

    @property
    def type(self) -> str:
        return _TYPE_PREFIX + self.slug

    def to_json(self, request_id: str, instance: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            # The request path, the client's to choose.
            "instance": _echo(instance),
            "requestId": request_id,
        }
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extensions)
        return body


def not_found(path: str) -> Problem:
    return Problem(404, "not-found", "Not Found", f"No resource at {_echo(path)}.")


def method_not_allowed(method: str, allowed: Iterable[str]) -> Problem:
    allow = ", ".join(allowed)
    return Problem(
        405,
        "method-not-allowed",
        "Method Not Allowed",
        f"{_echo(method)} is not allowed here; use {allow}.",
        headers={"Allow": allow},
    )


def unauthorized(detail: str, *, challenge: str | None = None, reason: Reason | None = None) -> Problem:
    """
    401 with the challenge of the endpoint's scheme (Bearer by default).
    """
    if challenge is None:
        challenge = 'Bearer realm="alertgateway"'
    if reason is None:
        reason = Reason.SIGNATURE if challenge.startswith("Signature") else Reason.AUTH
    return Problem(
        401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": challenge}, reason=reason.value
    )


def refused(refusal: Refused) -> Problem:
    """
    The problem a guard's refusal is answered with.
    """
    if refusal.reason is Reason.ADDRESS:
        return forbidden(refusal.detail)
    return unauthorized(refusal.detail, challenge=refusal.challenge, reason=refusal.reason)


def forbidden(detail: str) -> Problem:
    return Problem(403, "forbidden", "Forbidden", detail, reason="address")


def rate_limited(status: int, retry_after: float, scope: str, headers: Mapping[str, str]) -> Problem:
    """
    429 (or 503, for senders such as Alertmanager that drop a notification
    answered with any 4xx) when a rate limit is reached.
    """
    wait = max(1, math.ceil(retry_after))
    return Problem(
        status,
        "rate-limited",
        "Too Many Requests" if status == 429 else "Service Unavailable",
        f"The {scope} rate limit is reached; retry in {wait} s.",
        headers={**headers, "Retry-After": str(wait)},
        extensions={"scope": scope},
        reason="rate",
    )


def too_busy(limit: int, *, bodies: bool = False) -> Problem:
    """
    503 past C{service.max_concurrent_requests} requests in progress or,
    with C{bodies}, past C{service.max_buffered_bytes} of their bodies.
    """
    detail = (
        f"Request bodies in progress would hold more than {limit} bytes (service.max_buffered_bytes); retry shortly."
        if bodies
        else f"More than {limit} requests are in progress (service.max_concurrent_requests); retry shortly."
    )
    return Problem(
        503,
        "too-busy",
        "Too Busy",
        detail,
        headers={"Retry-After": "1"},
        reason="concurrency",
    )


def unsupported_encoding(given: str) -> Problem:
    return Problem(
        415,
        "unsupported-encoding",
        "Unsupported Content Encoding",
        f"Content-Encoding {_echo(given)!r} is not supported; send gzip or identity.",
        headers={"Accept-Encoding": "gzip"},
        reason="content",
    )


def payload_too_large(limit: int) -> Problem:
    return Problem(
        413,
        "payload-too-large",
        "Payload Too Large",
        f"The request body exceeds the limit of {limit} bytes (service.max_body_bytes).",
        # The rest of an oversized body is not worth reading on this
        # connection.
        headers={"Connection": "close"},
        extensions={"limit": limit},
        reason="size",
    )


def unsupported_media_type(given: str) -> Problem:
    return Problem(
        415,
        "unsupported-media-type",
        "Unsupported Media Type",
        f"Content-Type {_echo(given)!r} is not supported; send {', '.join(ACCEPTED_TYPES)}.",
        headers={"Accept-Post": ", ".join(ACCEPTED_TYPES)},
        reason="content",
    )


def malformed_body(detail: str) -> Problem:
    return Problem(
        400, "malformed-body", "Malformed Body", detail, errors=[{"pointer": "", "message": detail}], reason="content"
    )


def invalid_payload(detail: str, errors: Iterable[Mapping[str, str]]) -> Problem:
    return Problem(400, "invalid-payload", "Invalid Payload", detail, errors=errors)


def invalid_query(parameter: str, message: str) -> Problem:
    return Problem(
        400,
        "invalid-query",
        "Invalid Query",
        f"Query parameter {parameter!r} {message}.",
        extensions={"parameter": parameter},
    )


def queue_full(retry_after: int) -> Problem:
    return Problem(
        503,
        "queue-full",
        "Queue Full",
        "The delivery queue is full; retry later.",
        headers={"Retry-After": str(retry_after)},
    )


def state_unavailable(retry_after: int) -> Problem:
    return Problem(
        503,
        "state-unavailable",
        "Shared State Unavailable",
        "The shared state (Redis) cannot be reached and state.redis.on_failure is fail_closed; retry later.",
        headers={"Retry-After": str(retry_after)},
    )


def request_timeout(timeout: float) -> Problem:
    return Problem(
        503,
        "request-timeout",
        "Request Timeout",
        f"The request was not handled within {timeout:g} s (service.request_timeout); retry.",
        headers={"Retry-After": "1"},
    )


def processor_rejected() -> Problem:
    return Problem(
        502,
        "processor-rejected",
        "Processor Rejected",
        "The Alert Processor refused an alert of this request for good; it is kept as a dead letter.",
    )


def shutting_down() -> Problem:
    return Problem(
        503,
        "shutting-down",
        "Shutting Down",
        "This instance is shutting down; retry on another.",
        headers={"Retry-After": "1", "Connection": "close"},
    )


def internal_error() -> Problem:
    return Problem(500, "internal-error", "Internal Server Error", "The gateway failed to handle the request.")
