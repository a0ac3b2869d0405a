# -*- test-case-name: tests.unit.test_sinks -*-
"""
The Alert Processor over HTTP: each alert POSTed as JSON to
C{<endpoint>/api/v1/alerts}, or several in one request to
C{<endpoint>/api/v1/alerts/batch}, with its idempotency key, through treq
on an injected clock.  What comes back says whether to retry (timeouts,
connection failures, 408, 425, 429, 5xx, honouring C{Retry-After}) or to
give up on the alert (any other 4xx).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn, Protocol, cast

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import IConsumer, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.python.failure import Failure
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.headers import HOP_BY_HOP
from alertgateway.delivery.sinks import AttemptClass, Rejected, Retryable

__all__ = ["BytesProducer", "HTTPSink", "PostingClient", "outgoing_headers", "parse_retry_after"]

_ERROR_BODY_LIMIT = 4096


class PostingClient(Protocol):
    """
    The part of C{treq.client.HTTPClient} (and C{StubTreq}) that we use.
    """

    def post(
        self,
        url: str,
        /,
        *,
        headers: dict[bytes | str, list[bytes | str]] | None = ...,
        data: bytes | None = ...,
        unbuffered: bool = ...,
    ) -> Deferred[Any]: ...


def parse_retry_after(value: str | None, now: float) -> float | None:
    """
    Read a C{Retry-After} header: delay-seconds or an HTTP date.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        # RFC 5322's "-0000" zone parses as naive; HTTP dates are UTC.
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


@implementer(IBodyProducer)
class BytesProducer:
    """
    A request body of a few kilobytes, written at once.

    treq's default producer cooperates through the global reactor's
    scheduler; an alert gains nothing from being spread over reactor turns,
    and this needs no reactor at all.
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _BoundedReader(TwistedProtocol):
    """
    Collect at most C{limit} bytes of a response body, dropping the rest.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        # Cancelling (a timeout) drops the connection rather than leaving it
        # to deliver a body nobody reads.
        self.finished: Deferred[bytes] = Deferred(lambda _: self._abort())

    def _abort(self) -> None:
        # deliverBody connects the reader at once, to a transport that
        # IResponse promises is a push producer.
        cast(IPushProducer, self.transport).stopProducing()

    def dataReceived(self, data: bytes) -> None:
        room = self._limit - self._size
        if room > 0:
            self._chunks.append(data[:room])
            self._size += min(room, len(data))

    def connectionLost(self, reason: Failure | None = None) -> None:
        # Cancelled (timed out) readers have already been answered.
        if not self.finished.called:
            self.finished.callback(b"".join(self._chunks))


def read_bounded(response: IResponse, limit: int) -> Deferred[bytes]:
    """
    Read at most C{limit} bytes of C{response}'s body.
    """
    reader = _BoundedReader(limit)
    response.deliverBody(reader)
    return reader.finished


def _timed_out(result: object, timeout: float) -> NoReturn:
    raise Retryable(f"no response within {timeout:g}s", kind=AttemptClass.TIMEOUT, timeout=timeout)


def _failure_kind(error: Exception) -> AttemptClass:
    """
    Classify a failed exchange for the failure-pattern metrics.
    """
    reasons = [error] + [r.value for r in getattr(error, "reasons", None) or () if isinstance(r, Failure)]
    names = " ".join(type(r).__name__ for r in reasons) + " " + " ".join(str(r) for r in reasons)
    if "SSL" in names or "TLS" in names or "certificate" in names:
        return AttemptClass.TLS
    if "Timeout" in names or "timed out" in names:
        return AttemptClass.TIMEOUT
    return AttemptClass.CONNECT


def _is_cancellation(error: Exception) -> bool:
    """
    Whether C{error} is a cancellation, perhaps wrapped by the Agent
    (C{ResponseNeverReceived} and its kin carry their causes in C{reasons}),
    or a cancelled connection attempt.
    """
    if isinstance(error, (CancelledError, ConnectingCancelledError)):
        return True
    reasons = getattr(error, "reasons", None) or ()
    return any(isinstance(reason, Failure) and reason.check(CancelledError) for reason in reasons)


def outgoing_headers(envelope: Envelope) -> dict[bytes | str, list[bytes | str]]:
    """
    The headers of the request that delivers C{envelope}.

    The envelope's own headers (copied from the webhook, then the
    endpoint's static ones) come first; a later one replaces an earlier one
    of the same name in any case, so a static header outweighs what a
    sender sent.  Hop-by-hop headers and those the gateway sets itself are
    dropped whatever configuration let through: names differing only in
    case would otherwise reach the wire twice.
    """
    chosen: dict[str, tuple[str, str]] = {}
    for name, value in envelope.headers:
        if name.lower() not in HOP_BY_HOP:
            chosen[name.lower()] = (name, value)
    headers: dict[bytes | str, list[bytes | str]] = {name: [value] for name, value in chosen.values()}
    headers["Content-Type"] = ["application/json"]
    headers["X-Request-ID"] = [envelope.request_id]
    headers["Idempotency-Key"] = [envelope.idempotency_key]
    return headers


def _item_headers(envelope: Envelope) -> dict[str, str]:
    """
    The headers a single delivery of C{envelope} would carry beyond the
    gateway's own (forwarded and static ones), for a batch item.
    """
    own = {"content-type", "x-request-id", "idempotency-key"}
    return {str(n): str(v[0]) for n, v in outgoing_headers(envelope).items() if str(n).lower() not in own}


class HTTPSink:
    """
    POST each alert as JSON to C{<endpoint>/api/v1/alerts}.
    """

    batches = True

    def __init__(
        self,
        client: PostingClient,
        endpoint: str,
        *,
        clock: IReactorTime,
        timeout: float | Callable[[], float],
        credential: tuple[str, str] | None = None,
    ) -> None:
        """
        @param credential: The header and value that authenticate the
            gateway to the processor, sent with every request; added here,
            not to the queued envelopes, so that it is never stored.
        """
        self._client = client
        self.url = endpoint.rstrip("/") + "/api/v1/alerts"
        self.batch_url = self.url + "/batch"
        self._clock = clock
        # A number, or a function giving the current (adaptive) timeout.
        self._timeout = timeout if callable(timeout) else (lambda: timeout)
        self._credential = credential

    def _authenticated(self, headers: dict[bytes | str, list[bytes | str]]) -> dict[bytes | str, list[bytes | str]]:
        if self._credential is None:
            return headers
        name, value = self._credential
        # It replaces a header of the same name an endpoint adds.
        kept: dict[bytes | str, list[bytes | str]] = {
            n: v for n, v in headers.items() if str(n).lower() != name.lower()
        }
        kept[name] = [value]
        return kept

    def deliver(self, envelope: Envelope) -> Deferred[None]:
        body = envelope.json_body().encode("utf-8")
        return ensureDeferred(self._post(self.url, body, self._authenticated(outgoing_headers(envelope))))

    def deliver_batch(self, envelopes: Sequence[Envelope]) -> Deferred[None]:
        """
        POST several alerts in one request to C{<endpoint>/api/v1/alerts/batch}
        (C{alert_processor.batch_size}): a JSON array with, for each, what
        a single delivery would send in its body and headers.  A 2xx
        answer takes them all; anything else fails the whole batch, and
        the forwarder then delivers each on its own.
        """
        # Each alert's body is spliced in as the JSON it already is.
        items = [
            json.dumps(
                {
                    "idempotencyKey": envelope.idempotency_key,
                    "requestId": envelope.request_id,
                    "headers": _item_headers(envelope),
                },
                separators=(",", ":"),
            )[:-1]
            + ',"alert":'
            + envelope.json_body()
            + "}"
            for envelope in envelopes
        ]
        body = ("[" + ",".join(items) + "]").encode("utf-8")
        # The same batch (the same items) always has the same key.
        digest = hashlib.sha256("\x00".join(e.idempotency_key for e in envelopes).encode("utf-8")).hexdigest()
        headers: dict[bytes | str, list[bytes | str]] = {
            "Content-Type": ["application/json"],
            "X-Request-ID": [envelopes[0].request_id],
            "Idempotency-Key": [f"batch-{digest[:32]}"],
        }
        return ensureDeferred(self._post(self.batch_url, body, self._authenticated(headers)))

    async def _post(self, url: str, body: bytes, headers: dict[bytes | str, list[bytes | str]]) -> None:
        # The timeout covers the whole attempt and runs on our clock (treq's
        # own would schedule on the global reactor).  Any other cancellation
        # comes from outside (a stopping worker) and must not be mistaken
        # for a failed attempt, even when the Agent wraps it.
        timeout = self._timeout()
        attempt = ensureDeferred(self._exchange(url, body, headers)).addTimeout(
            timeout, self._clock, onTimeoutCancel=_timed_out
        )
        try:
            response, text = await attempt
        except Retryable:
            raise
        except Exception as e:
            if _is_cancellation(e):
                raise CancelledError() from e
            raise Retryable(f"{type(e).__name__}: {e}", kind=_failure_kind(e)) from e
        code = response.code
        if 200 <= code < 300:
            return
        detail = f"HTTP {code}: {text[:200].decode('utf-8', 'replace')}"
        if code in (408, 425, 429) or code >= 500:
            header = response.headers.getRawHeaders(b"retry-after", [None])[0]
            retry_after = parse_retry_after(header.decode("latin-1") if header else None, self._clock.seconds())
            kind = AttemptClass.TOO_MANY if code == 429 else AttemptClass.SERVER if code >= 500 else AttemptClass.CLIENT
            raise Retryable(detail, retry_after, kind=kind, status=code)
        raise Rejected(detail, status=code)

    async def _exchange(
        self, url: str, body: bytes, headers: dict[bytes | str, list[bytes | str]]
    ) -> tuple[IResponse, bytes]:
        # Unbuffered, so that only the bounded reader keeps any of the body;
        # it is read in every case so the connection can go back to the pool.
        response: IResponse = await self._client.post(url, data=body, headers=headers, unbuffered=True)
        text = await read_bounded(response, _ERROR_BODY_LIMIT)
        return response, text

    def close(self) -> Deferred[None]:
        return succeed(None)
