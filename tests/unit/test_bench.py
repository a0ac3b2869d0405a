"""
The benchmark's own pieces that a run relies on: the stub processor (it
must take exactly what the gateway sends, single and batched, and count
it), the summary line, and the history kept in bench/RESULTS.md.
"""

from __future__ import annotations

import json
from typing import Any

from treq.client import HTTPClient
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.test.iosim import ConnectionCompleter
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import Agent, HTTPConnectionPool

from alertgateway.core.model import Alert, fingerprint
from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.http import BytesProducer, HTTPSink
from bench.report import HISTORY_HEADING, append_history, history_row, summary_line
from bench.runner import ALL, parse_args
from bench.scenarios import cost_of
from bench.stub_processor import Recorder, StubFactory, StubHTTP, listen

NOW = 1795665000.0


def seq_envelope(seq: int, sent: float | None = None) -> Envelope:
    """
    The envelope of a new alert numbered C{seq}, stamped with the sender's
    clock C{sent} as the benchmark's load generators do.
    """
    labels = {"alertname": "BenchAlertFiring", "namespace": f"bench-{seq}", "seq": str(seq)}
    annotations = {} if sent is None else {"bench_sent": f"{sent:.6f}"}
    alert = Alert(
        fingerprint=fingerprint(labels),
        source="alertmanager",
        status="firing",
        labels=labels,
        annotations=annotations,
        starts_at="2026-11-26T03:49:49Z",
        ends_at=None,
        generator_url="",
        received_at="2026-11-26T03:50:00.000Z",
    )
    return Envelope.for_alert(alert, f"req-{seq}")


def post(path: bytes, body: bytes, *extra: bytes) -> bytes:
    """
    A complete HTTP/1.1 POST with a Content-Length.
    """
    head = [b"POST " + path + b" HTTP/1.1", b"Host: stub", b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def get(target: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: stub\r\n\r\n"


def answers(data: bytes) -> list[tuple[bytes, Any]]:
    """
    The status lines and decoded JSON bodies of the responses in C{data}.
    """
    found: list[tuple[bytes, Any]] = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length"))
        found.append((lines[0], json.loads(rest[:length])))
        data = rest[length:]
    return found


class StubWithGatewaySinkTests(SynchronousTestCase):
    """
    The stub processor behind the gateway's own HTTP sink (a real Agent,
    connected to the stub over an in-memory connection).
    """

    def test_single_and_batch(self) -> None:
        """
        A single delivery and a batch both get 200; the stub counts two
        requests and three alerts, and records each alert's arrival by its
        C{seq} and its receipt-to-processor latency from C{bench_sent}.
        """
        reactor = MemoryReactorClock()
        recorder = Recorder(clock=lambda: NOW)
        listen(reactor, recorder, 8081)
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor))
        client = HTTPClient(agent, data_to_body_producer=BytesProducer)
        sink = HTTPSink(client, "http://127.0.0.1:8081", clock=reactor, timeout=5.0)
        completer = ConnectionCompleter(reactor)

        single = sink.deliver(seq_envelope(1, sent=NOW - 0.002))
        pump = completer.succeedOnce()
        assert pump is not None
        pump.flush()
        self.successResultOf(single)

        batch = sink.deliver_batch([seq_envelope(2, sent=NOW - 0.004), seq_envelope(3)])
        # The pool keeps the connection: the batch goes on the same one.
        self.assertEqual(reactor.tcpClients, [])
        pump.flush()
        self.successResultOf(batch)

        self.assertEqual(recorder.stats(), {"requests": 2, "count": 3, "alerts": 3, "storms": 0, "timed": 2})
        self.assertEqual(recorder.window(None, None), {"arrivals": {"1": NOW, "2": NOW, "3": NOW}})
        self.assertEqual(recorder.window(2, 3), {"arrivals": {"2": NOW, "3": NOW}})
        latency = recorder.latency()
        self.assertEqual(latency["count"], 2)
        self.assertAlmostEqual(latency["ms"]["max"], 4.0, places=3)


class StubProtocolTests(SynchronousTestCase):
    """
    The stub's HTTP/1.1 on a string transport: framing, reports and storms.
    """

    def setUp(self) -> None:
        self.recorder = Recorder(clock=lambda: NOW)
        self.transport = StringTransport()
        protocol = StubFactory(self.recorder).buildProtocol(None)
        protocol.makeConnection(self.transport)
        self.protocol: StubHTTP = protocol

    def test_pipelined_and_split(self) -> None:
        """
        Requests arriving together are answered in order, and one arriving
        in pieces is answered once complete.
        """
        one = json.dumps({"labels": {"seq": "1"}}).encode()
        two = json.dumps({"labels": {"seq": "2"}}).encode()
        data = post(b"/api/v1/alerts", one) + post(b"/api/v1/alerts", two)
        self.protocol.dataReceived(data[:10])
        self.assertEqual(self.transport.value(), b"")
        self.protocol.dataReceived(data[10:-5])
        self.assertEqual(len(answers(self.transport.value())), 1)
        self.protocol.dataReceived(data[-5:])
        self.assertEqual([status for status, _ in answers(self.transport.value())], [b"HTTP/1.1 200 OK"] * 2)
        self.assertEqual(sorted(self.recorder.arrivals), [1, 2])

    def test_chunked(self) -> None:
        """
        A chunked body is put back together before it is recorded.
        """
        body = json.dumps({"labels": {"seq": "5"}}).encode()
        chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (4, body[:4], len(body) - 4, body[4:])
        head = b"POST /api/v1/alerts HTTP/1.1\r\nHost: stub\r\nTransfer-Encoding: chunked\r\n\r\n"
        self.protocol.dataReceived(head + chunks[:6])
        self.assertEqual(self.transport.value(), b"")
        self.protocol.dataReceived(chunks[6:-3])
        self.assertEqual(self.transport.value(), b"")
        self.protocol.dataReceived(chunks[-3:])
        self.assertEqual(answers(self.transport.value()), [(b"HTTP/1.1 200 OK", {"status": "ok"})])
        self.assertEqual(list(self.recorder.arrivals), [5])

    def test_storms(self) -> None:
        """
        Storm events, alone or in a batch, are counted apart from alerts,
        and the members they list are not taken for arrivals.
        """
        storm = {"type": "storm", "members": [{"labels": {"seq": "9"}}]}
        alert = {"labels": {"seq": "3"}}
        items = [{"idempotencyKey": "k", "requestId": "r", "headers": {}, "alert": a} for a in (storm, alert)]
        self.protocol.dataReceived(post(b"/api/v1/alerts", json.dumps(storm).encode()))
        self.protocol.dataReceived(post(b"/api/v1/alerts/batch", json.dumps(items).encode()))
        self.assertEqual(self.recorder.stats(), {"requests": 2, "count": 3, "alerts": 1, "storms": 2, "timed": 0})
        self.assertEqual(list(self.recorder.arrivals), [3])

    def test_reports_and_reset(self) -> None:
        """
        GET /stats, /arrivals and /latency report what was recorded; POST
        /reset forgets it; anything else is 404.
        """
        body = json.dumps({"labels": {"seq": "4"}, "annotations": {"bench_sent": f"{NOW - 0.001:.6f}"}}).encode()
        self.protocol.dataReceived(post(b"/api/v1/alerts", body))
        self.transport.clear()
        self.protocol.dataReceived(get(b"/stats") + get(b"/arrivals?from=4&to=4") + get(b"/latency"))
        stats, arrivals, latency = (found for _, found in answers(self.transport.value()))
        self.assertEqual(stats["alerts"], 1)
        self.assertEqual(arrivals, {"arrivals": {"4": NOW}})
        self.assertEqual(latency["count"], 1)
        self.transport.clear()
        self.protocol.dataReceived(post(b"/reset", b"") + get(b"/stats") + get(b"/nowhere"))
        (_, _), (_, stats), (status, _) = answers(self.transport.value())
        self.assertEqual(stats["count"], 0)
        self.assertEqual(status, b"HTTP/1.1 404 Not Found")
        self.transport.clear()
        self.protocol.dataReceived(get(b"/latency"))
        self.assertEqual(answers(self.transport.value()), [(b"HTTP/1.1 200 OK", {"count": 0, "ms": None})])

    def test_connection_close(self) -> None:
        """
        A request asking to close the connection is answered, then the
        connection is closed and nothing after it is read.
        """
        self.protocol.dataReceived(post(b"/api/v1/alerts", b"{}", b"Connection: close") + get(b"/stats"))
        self.assertEqual(answers(self.transport.value()), [(b"HTTP/1.1 200 OK", {"status": "ok"})])
        self.assertIn(b"Connection: close", self.transport.value())
        self.assertTrue(self.transport.disconnecting)

    def test_too_large(self) -> None:
        """
        A body announced larger than anything the gateway sends is refused
        with 413 and the connection closed, without waiting for it.
        """
        self.protocol.dataReceived(b"POST /api/v1/alerts HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n")
        self.assertEqual(answers(self.transport.value()), [(b"HTTP/1.1 413 Content Too Large", {})])
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.recorder.stats()["requests"], 0)


class SummaryTests(SynchronousTestCase):
    """
    The one-line summary at the end of the report.
    """

    def test_every_figure(self) -> None:
        """
        Every figure, in a fixed order, with its unit: ratios with two
        decimals, latencies in ms, costs in %, RSS in MB.
        """
        values = {
            "rss": 58.4,
            "access": 3.24,
            "metrics": 0.61,
            "d1667": 7.93,
            "d167": 3.14,
            "h": 0.312,
            "c": 0.551,
            "b": 0.434,
            "a": 0.7149,
        }
        self.assertEqual(
            summary_line(values),
            "summary: a=0.71 b=0.43 c=0.55 h=0.31 d167=3.1ms d1667=7.9ms metrics=0.6% access=3.2% rss=58MB",
        )

    def test_only_what_was_measured(self) -> None:
        """
        A scenario that did not run leaves its figures out.
        """
        self.assertEqual(summary_line({"b": 0.2, "h": 0.1}), "summary: b=0.20 h=0.10")
        self.assertEqual(summary_line({}), "summary: ")

    def test_cost(self) -> None:
        """
        A feature's cost is the share of throughput it takes: 1 - on/off;
        nothing measured costs nothing.
        """
        self.assertAlmostEqual(cost_of(950.0, 1000.0), 0.05)
        self.assertEqual(cost_of(0.0, 0.0), 0.0)


class HistoryTests(SynchronousTestCase):
    """
    The history table of bench/RESULTS.md.
    """

    ROW = history_row("2026-12-06", "abc1234", "full", {"a": 0.71, "rss": 58.0})

    def test_row(self) -> None:
        """
        A row has the date, the commit, the kind of run and every figure,
        "-" for those not measured.
        """
        self.assertEqual(self.ROW, "| 2026-12-06 | abc1234 | full | 0.71 | - | - | - | - | - | - | - | 58MB |")

    def test_made_when_missing(self) -> None:
        """
        A page without history gets the section at its end, the page's
        text kept as it was.
        """
        page = "# Results\n\nProse.\n\n"
        updated = append_history(page, self.ROW)
        self.assertTrue(updated.startswith("# Results\n\nProse.\n\n" + HISTORY_HEADING + "\n"))
        lines = updated.splitlines()
        self.assertEqual(lines[-1], self.ROW)
        self.assertTrue(lines[-3].startswith("| date | commit | run | a |"))
        self.assertEqual(lines[-3].count("|"), lines[-2].count("|"))

    def test_appended_to_the_table(self) -> None:
        """
        A later row goes right after the table's last row, before whatever
        follows the section.
        """
        page = append_history("# Results\n", self.ROW) + "\n## Later\n\nMore prose.\n"
        later = history_row("2026-12-07", "def5678", "quick", {"a": 0.72})
        lines = append_history(page, later).splitlines()
        self.assertEqual(lines[lines.index(self.ROW) + 1], later)
        self.assertEqual(lines[-3:], ["## Later", "", "More prose."])


class RecordTests(SynchronousTestCase):
    """
    Which runs are recorded in the history.
    """

    def test_full_run_records(self) -> None:
        """
        A full run of every scenario (whatever order they were named in)
        is recorded without being asked; --record records any other run.
        """
        self.assertTrue(parse_args([]).record)
        self.assertTrue(parse_args(["--scenarios", ",".join(reversed(ALL))]).record)
        self.assertTrue(parse_args(["--quick", "--record"]).record)
        self.assertTrue(parse_args(["--scenarios", "a", "--record"]).record)

    def test_partial_runs_do_not(self) -> None:
        """
        Quick runs, runs of some scenarios and runs of another duration are
        not comparable with full ones: recorded only when asked.
        """
        self.assertFalse(parse_args(["--quick"]).record)
        self.assertFalse(parse_args(["--scenarios", "a,b"]).record)
        self.assertFalse(parse_args(["--duration", "5"]).record)
