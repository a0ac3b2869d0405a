"""
Where alerts are delivered: the Alert Processor over HTTP, or a JSON-lines
file when the gateway runs alone.

A sink's C{deliver} fires on success, or fails with L{Retryable} (try again
later) or L{Rejected} (the receiver refuses this alert for good).
"""

from __future__ import annotations

import json
import os
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, Protocol

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.python.failure import Failure
from twisted.web.iweb import IResponse

from alertgateway.delivery.queue import Envelope

__all__ = ["FileSink", "HTTPSink", "Rejected", "Retryable", "Sink"]

_ERROR_BODY_LIMIT = 4096


class Retryable(Exception):
    """
    The delivery failed in a way that may succeed later.

    @ivar retry_after: Seconds the receiver asked us to wait, if it did.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Rejected(Exception):
    """
    The receiver refused the alert with a non-retryable status.
    """


class Sink(Protocol):
    def deliver(self, envelope: Envelope) -> Deferred[None]: ...

    def close(self) -> Deferred[None]: ...


class _HTTPClient(Protocol):
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
        timeout: float | None = ...,
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
    return max(0.0, when.timestamp() - now)


class _BoundedReader(TwistedProtocol):
    """
    Collect at most C{limit} bytes of a response body, dropping the rest.
    """

    def __init__(self, limit: int, finished: Deferred[bytes]) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self._finished = finished

    def dataReceived(self, data: bytes) -> None:
        room = self._limit - self._size
        if room > 0:
            self._chunks.append(data[:room])
            self._size += min(room, len(data))

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._finished.callback(b"".join(self._chunks))


def read_bounded(response: IResponse, limit: int, clock: IReactorTime, timeout: float) -> Deferred[bytes]:
    """
    Read at most C{limit} bytes of C{response}'s body, within C{timeout}.
    """
    finished: Deferred[bytes] = Deferred()
    response.deliverBody(_BoundedReader(limit, finished))
    return finished.addTimeout(timeout, clock)


class HTTPSink:
    """
    POST each alert as JSON to C{<endpoint>/api/v1/alerts}.
    """

    def __init__(self, client: _HTTPClient, endpoint: str, *, clock: IReactorTime, timeout: float) -> None:
        self._client = client
        self.url = endpoint.rstrip("/") + "/api/v1/alerts"
        self._clock = clock
        self._timeout = timeout

    def deliver(self, envelope: Envelope) -> Deferred[None]:
        return ensureDeferred(self._deliver(envelope))

    async def _deliver(self, envelope: Envelope) -> None:
        body = json.dumps(envelope.alert.to_json(), separators=(",", ":")).encode("utf-8")
        headers: dict[bytes | str, list[bytes | str]] = {
            "Content-Type": ["application/json"],
            "X-Request-ID": [envelope.request_id],
            "Idempotency-Key": [envelope.alert.idempotency_key],
        }
        try:
            response = await self._client.post(self.url, data=body, headers=headers, timeout=self._timeout)
            # Read (a bounded part of) the body in every case so the
            # connection can go back to the pool.
            text = await read_bounded(response, _ERROR_BODY_LIMIT, self._clock, self._timeout)
        except Exception as e:
            raise Retryable(f"{type(e).__name__}: {e}") from e
        code = response.code
        if 200 <= code < 300:
            return
        detail = f"HTTP {code}: {text[:200].decode('utf-8', 'replace')}"
        if code in (408, 425, 429) or code >= 500:
            header = response.headers.getRawHeaders(b"retry-after", [None])[0]
            retry_after = parse_retry_after(header.decode("latin-1") if header else None, self._clock.seconds())
            raise Retryable(detail, retry_after)
        raise Rejected(detail)

    def close(self) -> Deferred[None]:
        return succeed(None)


class FileSink:
    """
    Append one JSON line per alert to a file: the embedded default with
    which the gateway runs without an Alert Processor.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def deliver(self, envelope: Envelope) -> Deferred[None]:
        if self._file is None:
            self.open()
        assert self._file is not None
        record = {
            **envelope.alert.to_json(),
            "requestId": envelope.request_id,
            "idempotencyKey": envelope.alert.idempotency_key,
        }
        try:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError as e:
            return fail(Retryable(f"cannot write {self.path}: {e}"))
        return succeed(None)

    def close(self) -> Deferred[None]:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        return succeed(None)
