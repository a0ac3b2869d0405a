# -*- test-case-name: tests.unit.test_sinks -*-
"""
Where alerts are delivered: the Alert Processor over HTTP
(L{alertgateway.delivery.http}), or a JSON-lines file when the gateway
runs alone.

A sink's C{deliver} fires on success, or fails with L{Retryable} (try again
later) or L{Rejected} (the receiver refuses this alert for good).
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from alertgateway.delivery.envelope import Envelope

__all__ = ["AttemptClass", "FileSink", "Rejected", "Retryable", "Sink"]


class AttemptClass(enum.Enum):
    """
    How a delivery attempt went, as C{gateway_forward_attempts_total}'s
    C{class} label says it.
    """

    OK = "ok"
    TIMEOUT = "timeout"
    CONNECT = "connect"
    TLS = "tls"
    TOO_MANY = "429"
    SERVER = "5xx"
    CLIENT = "4xx"
    IO = "io"


class Retryable(Exception):
    """
    The delivery failed in a way that may succeed later.

    @ivar retry_after: Seconds the receiver asked us to wait, if it did.
    @ivar kind: The class of failure: C{timeout}, C{connect}, C{tls},
        C{429}, C{5xx}, C{4xx} (408, 425) or C{io}.
    @ivar timeout: For C{timeout}, the time the attempt was given.
    """

    def __init__(
        self,
        reason: str,
        retry_after: float | None = None,
        kind: AttemptClass = AttemptClass.CONNECT,
        timeout: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.kind = kind
        self.timeout = timeout
        self.status = status


class Rejected(Exception):
    """
    The receiver refused the alert with a non-retryable status.

    @ivar status: The HTTP status, when there was one.
    """

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


class Sink(Protocol):
    """
    Where envelopes are delivered.

    @ivar batches: Whether L{deliver_batch} sends several envelopes in one
        exchange (worth waiting a reactor turn to fill).
    """

    batches: bool

    def deliver(self, envelope: Envelope) -> Deferred[None]: ...

    def deliver_batch(self, envelopes: Sequence[Envelope]) -> Deferred[None]:
        """
        Deliver several envelopes: all of them, or fail.
        """

    def close(self) -> Deferred[None]: ...


class FileSink:
    """
    Append one JSON line per alert to a file: the embedded default with
    which the gateway runs without an Alert Processor.
    """

    batches = False

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def deliver(self, envelope: Envelope) -> Deferred[None]:
        record = {
            **envelope.body,
            "requestId": envelope.request_id,
            "idempotencyKey": envelope.idempotency_key,
        }
        if envelope.headers:
            record["headers"] = dict(envelope.headers)
        try:
            if self._file is None:
                self.open()
            assert self._file is not None
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError as e:
            return fail(Retryable(f"cannot write {self.path}: {e}", kind=AttemptClass.IO))
        return succeed(None)

    def deliver_batch(self, envelopes: Sequence[Envelope]) -> Deferred[None]:
        """
        One line each, in order; fails at the first that cannot be written.
        """
        for envelope in envelopes:
            written = self.deliver(envelope)
            if written.called and isinstance(written.result, Failure):
                return written
        return succeed(None)

    def close(self) -> Deferred[None]:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        return succeed(None)
