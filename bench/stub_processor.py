"""
A fast stub Alert Processor for the benchmark.

It answers 200 to every ``POST /api/v1/alerts`` and records, per forwarded
body, its arrival time (``time.time()``) keyed by the alert's ``seq``
label, and the receipt-to-processor latency when the body carries the
sender's clock in the annotation ``bench_sent``.  Bodies are not parsed:
two regular expressions find those values, so the stub stays cheap next to
the load generator on the same CPU.

    GET  /stats               {"count", "storms", "timed"}
    GET  /latency             percentiles of arrival - bench_sent (ms)
    GET  /arrivals?from=A&to=B  {"arrivals": {seq: time}} (all without from/to)
    POST /reset               forget everything

Run: ``python -m bench.stub_processor [--port 0]``; prints ``PORT <n>``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from array import array
from typing import Any

from twisted.web.resource import Resource

from bench.serve import serve
from bench.stats import percentiles

_SEQ = re.compile(rb'"seq":\s*"(\d+)"')
_SENT = re.compile(rb'"bench_sent":\s*"([0-9.]+)"')
_STORM = re.compile(rb'"type":\s*"storm"')


class Recorder:
    """
    What has arrived: a count, storm events, arrival times by sequence
    number and measured latencies.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.storms = 0
        self.arrivals: dict[int, float] = {}
        self.latencies = array("d")

    def record(self, body: bytes, now: float) -> None:
        self.count += 1
        if _STORM.search(body):
            self.storms += 1
            return
        seq = _SEQ.search(body)
        if seq is not None:
            self.arrivals[int(seq.group(1))] = now
        sent = _SENT.search(body)
        if sent is not None:
            self.latencies.append(now - float(sent.group(1)))

    def stats(self) -> dict[str, Any]:
        return {"count": self.count, "storms": self.storms, "timed": len(self.latencies)}

    def latency(self) -> dict[str, Any]:
        found = percentiles([value * 1000.0 for value in self.latencies])
        return {"count": len(self.latencies), "ms": found}

    def window(self, first: int | None, last: int | None) -> dict[str, Any]:
        if first is None or last is None:
            chosen = self.arrivals
        else:
            chosen = {seq: at for seq, at in self.arrivals.items() if first <= seq <= last}
        return {"arrivals": {str(seq): at for seq, at in chosen.items()}}


def _int_arg(request: Any, name: bytes) -> int | None:
    values = request.args.get(name)
    return int(values[0]) if values else None


class Processor(Resource):
    """
    The whole stub: one leaf resource dispatching on method and path.
    """

    isLeaf = True

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def render_POST(self, request: Any) -> bytes:
        now = time.time()
        if request.path == b"/reset":
            self.recorder.reset()
            return b"{}"
        body = request.content.read()
        if request.path.endswith(b"/batch"):
            # alert_processor.batch_size: one item per alert.
            for item in json.loads(body):
                self.recorder.record(json.dumps(item["alert"]).encode(), now)
        else:
            self.recorder.record(body, now)
        request.setHeader(b"content-type", b"application/json")
        return b'{"status":"ok"}'

    def render_GET(self, request: Any) -> bytes:
        answers = {
            b"/stats": self.recorder.stats,
            b"/latency": self.recorder.latency,
            b"/arrivals": lambda: self.recorder.window(_int_arg(request, b"from"), _int_arg(request, b"to")),
        }
        produce = answers.get(request.path)
        if produce is None:
            request.setResponseCode(404)
            return b"{}"
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(produce()).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    serve(Processor(Recorder()), args.port)


if __name__ == "__main__":
    main()
