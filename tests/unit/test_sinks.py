"""
The sinks: the Alert Processor over HTTP (through StubTreq) and the
JSON-lines file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import cast

import attrs
from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import Agent, HTTPConnectionPool

from alertgateway.delivery.http import BytesProducer, HTTPSink, PostingClient, outgoing_headers, parse_retry_after
from alertgateway.delivery.pool import QuietConnectionPool
from alertgateway.delivery.sinks import FileSink, Rejected, Retryable
from alertgateway.testing import HANG, RESET, STALL, Answer, StubProcessor
from tests.unit._http import capture_events
from tests.unit._support import envelope

# Thu, 26 Nov 2026 03:50:00 GMT
NOW = 1795665000.0


class HTTPSinkTests(SynchronousTestCase):
    """
    One delivery attempt against a stub processor.
    """

    def sink(self, *answers: Answer, endpoint: str = "http://processor.test:8081/") -> tuple[HTTPSink, StubProcessor]:
        self.clock = Clock()
        self.clock.advance(NOW)
        processor = StubProcessor(*answers)
        self.stub = StubTreq(processor)
        return HTTPSink(cast(PostingClient, self.stub), endpoint, clock=self.clock, timeout=5.0), processor

    def test_post(self) -> None:
        """
        An alert is POSTed as JSON to <endpoint>/api/v1/alerts with the
        request id and its idempotency key; 2xx is success.
        """
        sink, processor = self.sink(Answer(200))
        e = envelope("A", request_id="req-7")
        self.successResultOf(sink.deliver(e))
        [received] = processor.received
        self.assertEqual((received.method, received.path), ("POST", "/api/v1/alerts"))
        self.assertEqual(received.header("content-type"), "application/json")
        self.assertEqual(received.header("x-request-id"), "req-7")
        self.assertEqual(received.header("idempotency-key"), e.idempotency_key)
        self.assertEqual(json.loads(received.body), dict(e.body))

    def test_envelope_headers(self) -> None:
        """
        The envelope's headers (forwarded and static) go with the alert.
        """
        sink, processor = self.sink(Answer(202))
        e = attrs.evolve(envelope("A"), headers=(("X-Scope-OrgID", "tenant-1"), ("traceparent", "00-ab-cd-01")))
        self.successResultOf(sink.deliver(e))
        [received] = processor.received
        self.assertEqual(received.headers["x-scope-orgid"], ["tenant-1"])
        self.assertEqual(received.headers["traceparent"], ["00-ab-cd-01"])

    def test_own_headers_kept(self) -> None:
        """
        Whatever an envelope carries, in whatever case, the request id,
        idempotency key, content type and length are the gateway's, once
        each, and hop-by-hop headers are not sent.
        """
        sink, processor = self.sink(Answer(202))
        e = attrs.evolve(
            envelope("A", request_id="req-9"),
            headers=(
                ("x-request-id", "forged"),
                ("IDEMPOTENCY-KEY", "forged"),
                ("content-type", "text/plain"),
                ("Content-Length", "1"),
                ("Connection", "close"),
                ("Transfer-Encoding", "chunked"),
                ("Host", "elsewhere.test"),
                ("Upgrade", "h2c"),
            ),
        )
        self.successResultOf(sink.deliver(e))
        [received] = processor.received
        self.assertEqual(received.headers["x-request-id"], ["req-9"])
        self.assertEqual(received.headers["idempotency-key"], [e.idempotency_key])
        self.assertEqual(received.headers["content-type"], ["application/json"])
        self.assertEqual(received.headers["content-length"], [str(len(received.body))])
        self.assertEqual(received.headers["host"], ["processor.test:8081"])
        self.assertNotIn("upgrade", received.headers)
        self.assertNotIn("transfer-encoding", received.headers)
        self.assertEqual(json.loads(received.body), dict(e.body))

    def test_2xx(self) -> None:
        """
        Every 2xx code counts as delivered.
        """
        for code in (200, 201, 202, 204):
            sink, _ = self.sink(Answer(code))
            self.successResultOf(sink.deliver(envelope("A")))

    def test_retryable_codes(self) -> None:
        """
        5xx, 429, 425 and 408 are worth retrying; the reason names the code
        and the start of the body.
        """
        for code in (500, 502, 503, 504, 429, 425, 408):
            sink, _ = self.sink(Answer(code, body=b"overloaded, try later"))
            failure = self.failureResultOf(sink.deliver(envelope("A")), Retryable)
            self.assertIn(f"HTTP {code}: overloaded", str(failure.value))
            self.assertIsNone(failure.value.retry_after)

    def test_rejected_codes(self) -> None:
        """
        Other 4xx (and 3xx, which we do not follow) refuse the alert for
        good.
        """
        for code in (400, 401, 403, 404, 409, 422, 304):
            sink, _ = self.sink(Answer(code, body=b"bad alert"))
            failure = self.failureResultOf(sink.deliver(envelope("A")), Rejected)
            self.assertIn(f"HTTP {code}", str(failure.value))

    def test_retry_after_seconds(self) -> None:
        """
        Retry-After in seconds is passed on with the failure.
        """
        sink, _ = self.sink(Answer(503, {"Retry-After": "17"}))
        self.assertEqual(self.failureResultOf(sink.deliver(envelope("A")), Retryable).value.retry_after, 17.0)

    def test_retry_after_date(self) -> None:
        """
        Retry-After as an HTTP date is turned into seconds from now.
        """
        sink, _ = self.sink(Answer(429, {"Retry-After": "Thu, 26 Nov 2026 03:50:42 GMT"}))
        self.assertEqual(self.failureResultOf(sink.deliver(envelope("A")), Retryable).value.retry_after, 42.0)

    def test_connection_error(self) -> None:
        """
        A connection dropped without a response is retryable.
        """
        sink, _ = self.sink(RESET)
        d = sink.deliver(envelope("A"))
        self.stub.flush()
        self.failureResultOf(d, Retryable)

    def test_timeout(self) -> None:
        """
        A processor that does not answer within the timeout costs a
        retryable attempt, measured on the injected clock.
        """
        sink, processor = self.sink(HANG)
        d = sink.deliver(envelope("A"))
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        failure = self.failureResultOf(d, Retryable)
        self.assertEqual(str(failure.value), "no response within 5s")
        self.assertEqual(len(processor.hanging), 1)

    def test_timeout_reading_body(self) -> None:
        """
        The timeout covers reading the body too: a processor that sends its
        status and then stalls costs a retryable attempt and its connection
        is dropped, not left to deliver a body nobody reads.
        """
        sink, processor = self.sink(STALL)
        d = sink.deliver(envelope("A"))
        self.stub.flush()
        self.assertNoResult(d)
        self.clock.advance(5)
        self.assertEqual(str(self.failureResultOf(d, Retryable).value), "no response within 5s")
        self.assertEqual(processor.lost, [])
        self.stub.flush()
        self.assertEqual(processor.lost, processor.hanging)

    def test_cancel(self) -> None:
        """
        Cancelling a delivery (a stopping worker) fails it with
        CancelledError, not as an attempt to retry.
        """
        sink, _ = self.sink(HANG)
        d = sink.deliver(envelope("A"))
        d.cancel()
        self.failureResultOf(d, CancelledError)

    def test_cancel_reading_body(self) -> None:
        """
        Cancelling while the body is being read fails the delivery with
        CancelledError and drops the connection.
        """
        sink, processor = self.sink(STALL)
        d = sink.deliver(envelope("A"))
        self.stub.flush()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.stub.flush()
        self.assertEqual(processor.lost, processor.hanging)

    def test_cancel_while_connecting(self) -> None:
        """
        Cancelling before the connection to the processor is even made is a
        cancellation too, not a failed attempt.
        """
        reactor = MemoryReactorClock()
        client = HTTPClient(Agent(reactor), data_to_body_producer=BytesProducer)
        sink = HTTPSink(client, "http://127.0.0.1:8081", clock=reactor, timeout=5.0)
        d = sink.deliver(envelope("A"))
        self.assertEqual(len(reactor.tcpClients), 1)
        d.cancel()
        self.failureResultOf(d, CancelledError)

    def test_long_error_body(self) -> None:
        """
        Only the start of a long error body is kept for the reason.
        """
        sink, _ = self.sink(Answer(500, body=b"x" * 100_000))
        reason = str(self.failureResultOf(sink.deliver(envelope("A")), Retryable).value)
        self.assertLess(len(reason), 300)

    def test_credential(self) -> None:
        """
        The processor credential (alert_processor.auth_header and
        auth_secret) goes with every single and batch delivery, replacing a
        header of that name in any case that an endpoint adds, and is never
        one of a batch item's headers (it is the gateway's, not the
        alert's).
        """
        self.clock = Clock()
        processor = StubProcessor(Answer(202), Answer(202))
        sink = HTTPSink(
            cast(PostingClient, StubTreq(processor)),
            "http://processor.test:8081",
            clock=self.clock,
            timeout=5.0,
            credential=("Authorization", "Bearer proc-token"),
        )
        static = attrs.evolve(envelope("A"), headers=(("authorization", "Bearer endpoint-static"),))
        self.successResultOf(sink.deliver(static))
        self.successResultOf(sink.deliver_batch([envelope("B"), envelope("C")]))
        single, batch = processor.received
        for received in (single, batch):
            self.assertEqual(received.headers["authorization"], ["Bearer proc-token"])
        self.assertNotIn(b"proc-token", batch.body)

    def test_close(self) -> None:
        """
        Closing the HTTP sink has nothing to wait for.
        """
        sink, _ = self.sink()
        self.successResultOf(sink.close())


class OutgoingHeadersTests(SynchronousTestCase):
    """
    The headers of a delivery, as built before they reach treq.
    """

    def test_later_replaces_earlier(self) -> None:
        """
        Of two headers whose names differ only in case the later one is
        sent, under its own spelling: a static header outweighs the
        sender's.
        """
        e = attrs.evolve(envelope("A"), headers=(("X-Scope-OrgID", "sender"), ("x-scope-orgid", "static")))
        headers = outgoing_headers(e)
        self.assertEqual(headers["x-scope-orgid"], ["static"])
        self.assertNotIn("X-Scope-OrgID", headers)

    def test_exact(self) -> None:
        """
        Nothing but the envelope's (allowed) headers and the gateway's own
        three.
        """
        e = attrs.evolve(envelope("A", request_id="r1"), headers=(("X-Env", "prod"), ("TE", "trailers")))
        self.assertEqual(
            outgoing_headers(e),
            {
                "X-Env": ["prod"],
                "Content-Type": ["application/json"],
                "X-Request-ID": ["r1"],
                "Idempotency-Key": [e.idempotency_key],
            },
        )


class ParseRetryAfterTests(SynchronousTestCase):
    """
    Reading Retry-After.
    """

    def test_values(self) -> None:
        """
        Seconds, past and future HTTP dates (also with RFC 5322's -0000
        zone) and garbage.
        """
        cases = {
            None: None,
            "0": 0.0,
            " 120 ": 120.0,
            "Thu, 26 Nov 2026 03:51:00 GMT": 60.0,
            "Thu, 26 Nov 2026 03:51:00 -0000": 60.0,
            "Thu, 26 Nov 2026 03:00:00 GMT": 0.0,
            "soon": None,
            "-5": None,
        }
        for value, expected in cases.items():
            self.assertEqual(parse_retry_after(value, NOW), expected, value)

    def test_local_zone_ignored(self) -> None:
        """
        An HTTP date is UTC whatever the host's time zone, also in the
        -0000 form that parses without a zone.
        """
        saved = os.environ.get("TZ")

        def restore() -> None:
            if saved is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = saved
            time.tzset()

        self.addCleanup(restore)
        os.environ["TZ"] = "America/New_York"
        time.tzset()
        self.assertEqual(parse_retry_after("Thu, 26 Nov 2026 03:51:00 -0000", NOW), 60.0)
        self.assertEqual(parse_retry_after("Thu, 26 Nov 2026 03:51:00 GMT", NOW), 60.0)


class FileSinkTests(SynchronousTestCase):
    """
    One JSON line per alert, in a file made on first use.
    """

    def test_lines(self) -> None:
        """
        Each delivery appends one JSON line: the alert as sent to a
        processor, plus its request id and idempotency key; the directory is
        created; reopening appends.
        """
        path = Path(self.mktemp()) / "sub" / "alerts.jsonl"
        sink = FileSink(str(path))
        a, b = envelope("A", request_id="r1"), envelope("B", "resolved", request_id="r2")
        self.successResultOf(sink.deliver(a))
        self.successResultOf(sink.deliver(b))
        self.successResultOf(sink.close())
        self.successResultOf(sink.deliver(a))
        self.successResultOf(sink.close())
        lines = path.read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines]
        self.assertEqual(len(records), 3)
        self.assertEqual(records[0], {**a.body, "requestId": "r1", "idempotencyKey": a.idempotency_key})
        self.assertEqual(records[1]["status"], "resolved")
        self.assertEqual(records[2]["requestId"], "r1")

    def test_headers_recorded(self) -> None:
        """
        An envelope's headers are recorded with its line; one without
        headers has no headers key.
        """
        path = Path(self.mktemp())
        sink = FileSink(str(path))
        self.successResultOf(sink.deliver(attrs.evolve(envelope("A"), headers=(("X-Env", "prod"),))))
        self.successResultOf(sink.deliver(envelope("B")))
        self.successResultOf(sink.close())
        first, second = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
        self.assertEqual(first["headers"], {"X-Env": "prod"})
        self.assertNotIn("headers", second)

    def test_fsync_on_close(self) -> None:
        """
        close() syncs the file to disk before closing it.
        """
        path = Path(self.mktemp())
        sink = FileSink(str(path))
        self.successResultOf(sink.deliver(envelope("A")))
        synced: list[int] = []
        real_fsync = os.fsync

        def recording_fsync(fd: int) -> None:
            synced.append(fd)
            real_fsync(fd)

        self.patch(os, "fsync", recording_fsync)
        self.successResultOf(sink.close())
        self.assertEqual(len(synced), 1)
        self.successResultOf(sink.close())
        self.assertEqual(len(synced), 1)

    def test_unwritable(self) -> None:
        """
        A file that cannot be opened or written is a retryable failure, not
        an exception out of deliver.
        """
        blocker = Path(self.mktemp())
        blocker.write_text("a file, not a directory")
        sink = FileSink(str(blocker / "alerts.jsonl"))
        failure = self.failureResultOf(sink.deliver(envelope("A")), Retryable)
        self.assertIn("cannot write", str(failure.value))
        self.successResultOf(sink.close())


class BytesProducerTests(SynchronousTestCase):
    """
    The request body producer the service gives treq.
    """

    def test_writes_at_once(self) -> None:
        """
        The whole body is written when production starts, its length is
        known up front, and flow control has nothing to act on.
        """
        producer = BytesProducer(b'{"a":1}')
        self.assertEqual(producer.length, 7)
        consumer = StringTransport()
        self.successResultOf(producer.startProducing(consumer))
        self.assertEqual(consumer.value(), b'{"a":1}')
        producer.pauseProducing()
        producer.resumeProducing()
        producer.stopProducing()
        self.assertEqual(consumer.value(), b'{"a":1}')


class QuietConnectionPoolTests(SynchronousTestCase):
    """
    The pool the HTTP sink connects to the processor through.
    """

    def factory_lines(self, pool: HTTPConnectionPool, reactor: MemoryReactorClock) -> list[str]:
        """
        What is logged while one of C{pool}'s connections is made and
        closed, as a real connector starts and stops its factory.
        """
        events = capture_events(self)
        pool.getConnection(("http", b"processor.test", 8081), TCP4ClientEndpoint(reactor, "processor.test", 8081))
        factory = reactor.tcpClients[0][2]
        factory.doStart()
        factory.doStop()
        return [str(e.get("log_format") or e.get("format") or e.get("message")) for e in events]

    def test_connections_are_not_logged(self) -> None:
        """
        A connection of the pool logs no "Starting factory" or "Stopping
        factory" line, where twisted.web's own pool logs both at info for
        every connection.
        """
        reactor = MemoryReactorClock()
        self.assertEqual(self.factory_lines(QuietConnectionPool(reactor), reactor), [])
        reactor = MemoryReactorClock()
        noisy = self.factory_lines(HTTPConnectionPool(reactor), reactor)
        self.assertTrue(any("Starting factory" in line for line in noisy), noisy)
