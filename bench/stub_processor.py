"""
A fast stub Alert Processor for the benchmark.

It answers 200 to ``POST /api/v1/alerts`` (one alert or storm event) and
to ``POST /api/v1/alerts/batch`` (a JSON array of items, each with the
single body under ``alert``), counts the requests, alerts and storm events
it gets, and records per alert its arrival time (``time.time()``) keyed by
its ``seq`` label, and the receipt-to-processor latency when the alert
carries the sender's clock in the annotation ``bench_sent``.

It must never be what limits a measurement, so it is a bare HTTP/1.1
server on a Twisted ``Protocol`` (keep-alive, pipelining, Content-Length
or chunked bodies) rather than twisted.web, which costs several times more
per request; and bodies are not parsed: regular expressions find the
values above (a batch holding a storm event is decoded, to tell the
storm's members from alerts).

    GET  /stats                 {"requests", "count", "alerts", "storms", "timed"}
    GET  /latency               percentiles of arrival - bench_sent (ms)
    GET  /arrivals?from=A&to=B  {"arrivals": {seq: time}} (all without from/to)
    POST /reset                 forget everything

Run: ``python -m bench.stub_processor [--port 0]``; prints ``PORT <n>``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from array import array
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from twisted.internet.interfaces import IReactorTCP
from twisted.internet.protocol import Factory, Protocol

from bench.stats import percentiles

_SEQ = re.compile(rb'"seq":\s*"(\d+)"')
_SENT = re.compile(rb'"bench_sent":\s*"([0-9.]+)"')
_STORM = re.compile(rb'"type":\s*"storm"')
# Each item of a batch starts with its idempotency key (the gateway writes
# it first), which no alert body contains.
_ITEM = re.compile(rb'\{\s*"idempotencyKey"\s*:')

ALERTS_PATH = b"/api/v1/alerts"
BATCH_PATH = b"/api/v1/alerts/batch"

# Far above anything the gateway sends: a body larger than this is a bug.
MAX_BODY = 64 * 1024 * 1024


class Recorder:
    """
    What has arrived: requests, alerts and storm events, arrival times by
    sequence number and measured latencies.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.alerts = 0
        self.storms = 0
        self.arrivals: dict[int, float] = {}
        self.latencies = array("d")

    def _alerts(self, body: bytes, count: int, now: float) -> None:
        """
        ``count`` alerts (no storm event) found in ``body``.
        """
        self.alerts += count
        arrivals = self.arrivals
        for seq in _SEQ.findall(body):
            arrivals[int(seq)] = now
        latencies = self.latencies
        for sent in _SENT.findall(body):
            latencies.append(now - float(sent))

    def single(self, body: bytes) -> None:
        """
        The body of ``POST /api/v1/alerts``: one alert or storm event.
        """
        self.requests += 1
        if _STORM.search(body) is not None:
            self.storms += 1
        else:
            self._alerts(body, 1, self.clock())

    def batch(self, body: bytes) -> None:
        """
        The body of ``POST /api/v1/alerts/batch``: items of alerts (the
        common case, counted without decoding) or storm events.
        """
        self.requests += 1
        now = self.clock()
        if _STORM.search(body) is None:
            self._alerts(body, len(_ITEM.findall(body)), now)
            return
        for item in json.loads(body):
            alert = item["alert"]
            if alert.get("type") == "storm":
                self.storms += 1
            else:
                self._alerts(json.dumps(alert).encode(), 1, now)

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            # Items: alerts and storm events, whether batched or not.
            "count": self.alerts + self.storms,
            "alerts": self.alerts,
            "storms": self.storms,
            "timed": len(self.latencies),
        }

    def latency(self) -> dict[str, Any]:
        found = percentiles([value * 1000.0 for value in self.latencies])
        return {"count": len(self.latencies), "ms": found}

    def window(self, first: int | None, last: int | None) -> dict[str, Any]:
        if first is None or last is None:
            chosen = self.arrivals
        else:
            chosen = {seq: at for seq, at in self.arrivals.items() if first <= seq <= last}
        return {"arrivals": {str(seq): at for seq, at in chosen.items()}}


def _response(status: bytes, body: bytes, close: bool = False) -> bytes:
    head = b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


OK_BODY = b'{"status":"ok"}'
OK = _response(b"200 OK", OK_BODY)


class Answers:
    """
    What each request gets: the recorder's work for POSTs, its reports
    for GETs.
    """

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def __call__(self, method: bytes, target: bytes, body: bytes) -> tuple[bytes, bytes]:
        """
        The status and the JSON body answering one request (``OK_BODY``
        itself for a recorded POST, so its answer is written ready-made).
        """
        path, _, query = target.partition(b"?")
        recorder = self.recorder
        if method == b"POST":
            if path == ALERTS_PATH:
                recorder.single(body)
                return b"200 OK", OK_BODY
            if path == BATCH_PATH:
                recorder.batch(body)
                return b"200 OK", OK_BODY
            if path == b"/reset":
                recorder.reset()
                return b"200 OK", b"{}"
        elif method == b"GET":
            if path == b"/stats":
                return b"200 OK", json.dumps(recorder.stats()).encode()
            if path == b"/latency":
                return b"200 OK", json.dumps(recorder.latency()).encode()
            if path == b"/arrivals":
                args = parse_qs(query.decode("ascii"))
                first, last = args.get("from"), args.get("to")
                window = recorder.window(int(first[0]) if first else None, int(last[0]) if last else None)
                return b"200 OK", json.dumps(window).encode()
        return b"404 Not Found", b"{}"


class StubHTTP(Protocol):
    """
    One client connection: requests parsed from the buffer as they
    complete, answered in order.
    """

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer and self._one():
            pass

    def _one(self) -> bool:
        """
        Answer the first request of the buffer if it is complete.
        """
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = buffer[:end].split(b"\r\n")
        method, target, _ = lines[0].split(b" ", 2)
        length = 0
        chunked = close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        start = end + 4
        if chunked:
            found = _dechunk(buffer, start)
            if found is None:
                return False
            body, rest = found
        else:
            if length > MAX_BODY:
                self._write(_response(b"413 Content Too Large", b"{}", close=True))
                assert self.transport is not None
                self.transport.loseConnection()
                self.buffer = b""
                return False
            if len(buffer) - start < length:
                return False
            body, rest = buffer[start : start + length], start + length
        self.buffer = buffer[rest:]
        status, answer = self.answers(method, target, body)
        self._write(OK if answer is OK_BODY and not close else _response(status, answer, close))
        if close:
            assert self.transport is not None
            self.transport.loseConnection()
            self.buffer = b""
            return False
        return True

    def _write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


def _dechunk(buffer: bytes, start: int) -> tuple[bytes, int] | None:
    """
    The body of a chunked message starting at ``start`` and where the
    message ends, or None while incomplete (trailers are not expected).
    """
    parts: list[bytes] = []
    at = start
    while True:
        eol = buffer.find(b"\r\n", at)
        if eol < 0:
            return None
        size = int(buffer[at:eol].split(b";", 1)[0], 16)
        at = eol + 2
        if size == 0:
            if len(buffer) < at + 2:
                return None
            return b"".join(parts), at + 2
        if len(buffer) < at + size + 2:
            return None
        parts.append(buffer[at : at + size])
        at += size + 2


class StubFactory(Factory):
    """
    Builds a connection per client, all recording into one recorder.
    """

    noisy = False

    def __init__(self, recorder: Recorder) -> None:
        self.answers = Answers(recorder)

    def buildProtocol(self, addr: Any) -> StubHTTP:
        return StubHTTP(self.answers)


def listen(reactor: IReactorTCP, recorder: Recorder, port: int = 0) -> Any:
    """
    The stub on 127.0.0.1:``port`` (0: any free port); the listening port.
    """
    return reactor.listenTCP(port, StubFactory(recorder), backlog=1024, interface="127.0.0.1")  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description="A fast stub Alert Processor for the benchmark.")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    from twisted.internet import reactor

    listening = listen(reactor, Recorder(), args.port)
    print(f"PORT {listening.getHost().port}", flush=True)
    reactor.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
