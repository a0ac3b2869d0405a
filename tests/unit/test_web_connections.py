"""
The edge against slow and numerous senders: the deadline of each phase of
a request, the requests answered as soon as their headers are in (and
their bodies dropped), the cap on open connections, bodies kept out of
temporary files, and the security log and metric of what is closed.
"""

from __future__ import annotations

import errno
import tempfile
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.web.channel import GatewayChannel, Phase
from alertgateway.web.connections import Closure, Connections, EdgeLimits, EdgeLog
from tests.unit._http import (
    AUTH,
    PROMETHEUS,
    Connection,
    Edge,
    alert,
    body,
    capture_events,
    request_bytes,
)

HEAD = request_bytes("POST", PROMETHEUS, headers=AUTH, body=b"")[: -len(b"Content-Length: 0\r\n\r\n")]


def head(length: int | None, *extra: str) -> bytes:
    """
    A webhook's request line and headers, announcing a body of C{length}
    bytes (C{None}: chunked).
    """
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return HEAD + "\r\n".join([framing, *extra]).encode() + b"\r\n\r\n"


def peer(n: int, host: str = "127.0.0.1") -> IPv4Address:
    return IPv4Address("TCP", host, 40000 + n)


class _EdgeCase(SynchronousTestCase):
    def edge(self, **limits: Any) -> Edge:
        max_body_bytes = limits.pop("body", 10_000)
        edge = Edge(self, clock=Clock(), limits=EdgeLimits(**limits), max_body_bytes=max_body_bytes)
        self.clock = edge.clock
        return edge

    def closures(self, edge: Edge, reason: Closure) -> float:
        return edge.rejections().get(("-", reason.value), 0.0)


class HeaderDeadlineTests(_EdgeCase):
    """
    service.header_timeout: headers complete within it, however they
    trickle.
    """

    def test_trickled_headers_closed(self) -> None:
        """
        A sender that sends its request line, then a header byte every 3 s,
        is cut off header_timeout after it connected, although every 3 s it
        sent something; until then it holds no place among the requests in
        flight.  The closure is one security event and one count.
        """
        edge = self.edge(header_timeout=10.0)
        connection = Connection(edge.site, closes=True)
        connection.send(b"POST /webhook/prometheus HTTP/1.1\r\nX-Slow: ")
        for _ in range(3):
            self.clock.advance(3)
            connection.feed(b"a")
            self.assertFalse(connection.closed)
            self.assertEqual(edge.site.in_flight, 0)
        self.clock.advance(1)
        self.assertTrue(connection.aborted)
        self.assertEqual(connection.transport.value(), b"")
        [event] = edge.new_events()
        self.assertEqual((event["reason"], event["client"], event["endpoint"]), ("slow_headers", "127.0.0.1", "-"))
        self.assertEqual(self.closures(edge, Closure.SLOW_HEADERS), 1.0)
        self.assertEqual(edge.site.connections.count, 0)

    def test_silent_connection_closed(self) -> None:
        """
        A connection that sends nothing at all is as slow: closed
        header_timeout after it opened, not after the idle timeout.
        """
        edge = self.edge(header_timeout=10.0)
        connection = Connection(edge.site, closes=True)
        self.clock.advance(9.9)
        self.assertFalse(connection.closed)
        self.clock.advance(0.1)
        self.assertTrue(connection.aborted)

    def test_trickling_senders_lock_nobody_out(self) -> None:
        """
        60 connections trickling their headers against
        max_concurrent_requests 50: a real webhook arriving meanwhile is
        accepted at once.
        """
        edge = self.edge(header_timeout=10.0, max_concurrent_requests=50)
        slow = [Connection(edge.site, peer(n), closes=True) for n in range(60)]
        for connection in slow:
            connection.send(b"POST /webhook/prometheus HTTP/1.1\r\nHost: x\r\n")
        self.clock.advance(3)
        for connection in slow:
            connection.feed(b"X")
        edge.accepted(edge.post())
        self.clock.advance(7)
        self.assertTrue(all(c.aborted for c in slow))
        # Logged once for the one client they all come from; counted 60
        # times.
        self.assertEqual(len(edge.new_events()), 1)
        self.assertEqual(self.closures(edge, Closure.SLOW_HEADERS), 60.0)

    def test_keep_alive_idle_then_headers(self) -> None:
        """
        Between requests a connection waits the idle timeout (60 s), not
        header_timeout, and is then closed gently; the next request's
        headers are due header_timeout after its first byte.
        """
        edge = self.edge(header_timeout=10.0)
        connection = Connection(edge.site, closes=True)
        edge.accepted(edge.post(connection=connection))
        self.clock.advance(59)
        self.assertFalse(connection.closed)
        connection.send(b"POST /webhook/prometheus HTTP/1.1\r\n")
        self.clock.advance(9.9)
        self.assertFalse(connection.closed)
        self.clock.advance(0.1)
        self.assertTrue(connection.aborted)
        self.assertEqual([e["reason"] for e in edge.new_events()], ["slow_headers"])

        idle = Connection(edge.site, closes=True)
        edge.accepted(edge.post(connection=idle))
        self.clock.advance(60)
        self.assertTrue(idle.closed)
        self.assertFalse(idle.aborted)

    def test_in_flight_from_headers(self) -> None:
        """
        A request counts as in flight once its headers are in, while its
        body arrives, until it is answered.
        """
        edge = self.edge()
        connection = Connection(edge.site)
        raw = body(alert("A"))
        connection.send(head(len(raw))[:-2])
        self.assertEqual(edge.site.in_flight, 0)
        connection.feed(b"\r\n" + raw[:5])
        self.assertEqual(edge.site.in_flight, 1)
        connection.feed(raw[5:])
        edge.accepted(connection.responses()[0])
        self.assertEqual(edge.site.in_flight, 0)


class BodyDeadlineTests(_EdgeCase):
    """
    service.body_timeout and service.min_body_rate.
    """

    def test_slow_body_closed(self) -> None:
        """
        A body still incomplete body_timeout after its headers closes the
        connection: the request leaves an access-log line with 408, the
        closure a security event, and its place in flight is free again.
        """
        edge = self.edge(body_timeout=30.0, min_body_rate=0)
        connection = Connection(edge.site, closes=True)
        connection.send(head(1000) + b"{")
        self.assertEqual(edge.site.in_flight, 1)
        for _ in range(9):
            self.clock.advance(3)
            connection.feed(b" ")
        self.assertFalse(connection.closed)
        self.clock.advance(3)
        self.assertTrue(connection.aborted)
        self.assertEqual(edge.site.in_flight, 0)
        self.assertEqual([e["status"] for e in edge.access.records()], [408])
        [event] = edge.new_events()
        self.assertEqual(event["reason"], "slow_body")
        self.assertEqual(self.closures(edge, Closure.SLOW_BODY), 1.0)

    def test_min_rate_buys_time(self) -> None:
        """
        Each min_body_rate bytes received give the body one more second: a
        large body that keeps coming at the rate is taken although it takes
        longer than body_timeout; a trickle below it is cut once the time
        it bought is used up.
        """
        edge = self.edge(body_timeout=5.0, min_body_rate=100)
        raw = body(alert("A"), padding="x" * 900)
        steady = Connection(edge.site, closes=True)
        steady.send(head(len(raw)))
        sent = 0
        while sent < len(raw):
            self.clock.advance(1)
            self.assertFalse(steady.closed, sent)
            steady.feed(raw[sent : sent + 100])
            sent += 100
        edge.accepted(steady.responses()[0])

        trickle = Connection(edge.site, closes=True)
        trickle.send(head(len(raw)))
        # 10 bytes a second for 5 s bought half a second more.
        for _ in range(5):
            self.clock.advance(1)
            trickle.feed(b" " * 10)
        self.clock.advance(0.4)
        self.assertFalse(trickle.closed)
        self.clock.advance(0.1)
        self.assertTrue(trickle.aborted)

    def test_bytes_past_the_limit_buy_nothing(self) -> None:
        """
        A body going on past max_body_bytes earns no more time for the
        bytes past it.
        """
        edge = self.edge(body_timeout=5.0, min_body_rate=100, body=1000)
        connection = Connection(edge.site, closes=True)
        connection.send(head(None))
        connection.feed(b"%x\r\n%s\r\n" % (3000, b"x" * 3000))
        # 1000 bytes bought 10 s, the other 2000 nothing.
        self.clock.advance(14.9)
        self.assertFalse(connection.closed)
        self.clock.advance(0.1)
        self.assertTrue(connection.aborted)


class EarlyAnswerTests(_EdgeCase):
    """
    Requests refused when their headers are in: answered at once, their
    body read only to be dropped.
    """

    def test_declared_length_over_the_limit(self) -> None:
        """
        A Content-Length over max_body_bytes is answered 413 (Connection:
        close) before any of the body is read; the body is then dropped as
        it comes and the connection closed after its last byte, so a sender
        that reads only once it has sent everything still gets the answer.
        """
        edge = self.edge(body=1000)
        connection = Connection(edge.site, closes=True)
        connection.send(head(5000))
        [response] = connection.responses()
        edge.refused(response, 413, "payload-too-large", "size")
        self.assertEqual(response.header("connection"), "close")
        self.assertEqual(edge.site.in_flight, 0)
        connection.feed(b"x" * 4999)
        self.assertFalse(connection.closed)
        self.assertEqual(edge.site.buffered, 0)
        connection.feed(b"x")
        self.assertTrue(connection.closed)
        self.assertFalse(connection.aborted)

    def test_expect_continue(self) -> None:
        """
        A sender waiting for 100 Continue gets the final answer instead, and
        the connection is closed at once: the body will not come.
        """
        edge = self.edge(body=1000)
        connection = Connection(edge.site, closes=True)
        connection.send(head(5000, "Expect: 100-continue"))
        [response] = connection.responses()
        self.assertEqual(response.status, 413)
        self.assertNotIn(b"100 Continue", connection.transport.value())
        self.assertTrue(connection.closed)

    def test_too_many_in_flight(self) -> None:
        """
        Past max_concurrent_requests a request with a body is answered 503
        too-busy when its headers are in, without reading its body (chunked
        or not), and the connection closed once the body is dropped.
        """
        edge = self.edge(max_concurrent_requests=1)
        raw = body(alert("A"))
        first = Connection(edge.site, peer(1))
        first.send(head(len(raw)) + raw[:3])
        busy = Connection(edge.site, peer(2), closes=True)
        edge.watch()
        busy.send(head(len(raw)))
        [response] = busy.responses()
        edge.refused(response, 503, "too-busy", "concurrency")
        self.assertEqual(response.header("retry-after"), "1")
        self.assertEqual(edge.site.buffered, len(raw))
        busy.feed(raw)
        self.assertTrue(busy.closed)
        chunked = Connection(edge.site, peer(3), closes=True)
        edge.watch()
        chunked.send(head(None) + b"%x\r\n%s\r\n" % (len(raw), raw))
        edge.refused(chunked.responses()[0], 503, "too-busy", "concurrency")
        self.assertFalse(chunked.closed)
        chunked.feed(b"0\r\n\r\n")
        self.assertTrue(chunked.closed)
        self.assertFalse(chunked.aborted)
        edge.watch()
        first.feed(raw[3:])
        edge.accepted(first.responses()[0])

    def test_body_memory(self) -> None:
        """
        Past max_buffered_bytes of bodies held, a declared body is answered
        503 too-busy at once; a chunked one is dropped once it would pass
        it and answered so at its end.  Answered requests give their bytes
        back.
        """
        edge = self.edge(max_buffered_bytes=1000, body=1000)
        raw = body(alert("A"), padding="x" * 600)
        first = Connection(edge.site, peer(1))
        first.send(head(len(raw)) + raw[:3])
        self.assertEqual(edge.site.buffered, len(raw))
        second = Connection(edge.site, peer(2), closes=True)
        edge.watch()
        second.send(head(len(raw)))
        problem = edge.refused(second.responses()[0], 503, "too-busy", "concurrency")
        self.assertIn("service.max_buffered_bytes", problem["detail"])

        chunked = Connection(edge.site, peer(3))
        edge.watch()
        chunked.send(head(None) + b"%x\r\n%s\r\n" % (len(raw), raw) + b"0\r\n\r\n")
        edge.refused(chunked.responses()[0], 503, "too-busy", "concurrency")
        self.assertEqual(edge.site.buffered, len(raw))

        edge.watch()
        first.feed(raw[3:])
        edge.accepted(first.responses()[0])
        self.assertEqual(edge.site.buffered, 0)
        edge.accepted(edge.post(raw))

    def test_no_temporary_file(self) -> None:
        """
        Bodies of 100 KB and more, and chunked bodies, are held in memory:
        with the temporary directory full they are still answered.
        """

        def full(*args: object, **kwargs: object) -> Any:
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(tempfile, "TemporaryFile", full)
        self.patch(tempfile, "NamedTemporaryFile", full)
        edge = self.edge(body=1_000_000)
        raw = body(alert("A"), padding="x" * 150_000)
        edge.accepted(edge.post(raw))
        connection = Connection(edge.site)
        response = connection.request("POST", PROMETHEUS, headers=AUTH, chunks=[raw[:70_000], raw[70_000:]])
        edge.accepted(response)


class ConnectionCapTests(_EdgeCase):
    """
    service.max_connections.
    """

    def test_oldest_idle_closed_first(self) -> None:
        """
        At the cap a new connection is taken and the one idle the longest
        closed: silent new connections by when they opened, kept-alive ones
        by when their last answer went.  A kept-alive one is closed gently,
        a silent one aborted.
        """
        edge = self.edge(max_connections=3)
        one, two, three = (Connection(edge.site, peer(n), closes=True) for n in range(3))
        self.clock.advance(1)
        edge.accepted(edge.post(connection=two))
        four = Connection(edge.site, peer(4), closes=True)
        self.assertEqual([c.aborted for c in (one, two, three, four)], [True, False, False, False])
        Connection(edge.site, peer(5), closes=True)
        self.assertTrue(three.aborted)
        Connection(edge.site, peer(6), closes=True)
        self.assertTrue(two.closed)
        self.assertFalse(two.aborted)
        self.assertEqual(edge.site.connections.count, 3)
        self.assertEqual(self.closures(edge, Closure.CONNECTIONS), 3.0)

    def test_refused_when_none_idle(self) -> None:
        """
        When every open connection carries a request in progress, a new one
        is closed as soon as it is made; once one is answered and idle, it
        makes room again.
        """
        edge = self.edge(max_connections=2)
        raw = body(alert("A"))
        busy = [Connection(edge.site, peer(n), closes=True) for n in range(2)]
        for connection in busy:
            connection.send(head(len(raw)))
        refused = Connection(edge.site, peer(3, "192.0.2.7"), closes=True)
        self.assertTrue(refused.aborted)
        [event] = edge.new_events()
        self.assertEqual((event["reason"], event["client"]), ("connections", "192.0.2.7"))
        edge.watch()
        busy[0].feed(raw)
        edge.accepted(busy[0].responses()[0])
        room = Connection(edge.site, peer(4), closes=True)
        self.assertTrue(busy[0].closed)
        self.assertEqual([e["reason"] for e in edge.new_events()], ["connections"])
        edge.accepted(edge.post(connection=room))


class EdgeLogTests(SynchronousTestCase):
    """
    The security log of closures: at most once per client per minute,
    every one counted.
    """

    def test_once_per_client_per_minute(self) -> None:
        """
        A client's closures are logged once a minute, each client's on its
        own; the count has them all.  Past max_clients remembered, a new
        client's closure is counted only.
        """
        clock = Clock()
        counted: list[tuple[str, str]] = []
        log = EdgeLog(clock, lambda endpoint, reason: counted.append((endpoint, reason)), max_clients=2)
        events = capture_events(self, lambda e: e.get("log_namespace") == "alertgateway.security")
        for _ in range(5):
            log.closed("198.51.100.1", Closure.SLOW_HEADERS, "slow")
            clock.advance(10)
        log.closed("198.51.100.2", Closure.SLOW_BODY, "slow")
        log.closed("198.51.100.3", Closure.SLOW_BODY, "slow")
        clock.advance(10)
        log.closed("198.51.100.1", Closure.SLOW_HEADERS, "slow")
        self.assertEqual(
            [(e["client"], e["reason"]) for e in events],
            [("198.51.100.1", "slow_headers"), ("198.51.100.2", "slow_body"), ("198.51.100.1", "slow_headers")],
        )
        self.assertEqual(len(counted), 8)
        self.assertEqual(set(counted), {("-", "slow_headers"), ("-", "slow_body")})


class ConnectionsTests(SynchronousTestCase):
    """
    The bookkeeping of open connections, without HTTP.
    """

    def test_no_cap(self) -> None:
        """
        Without a cap every connection is admitted.
        """
        connections = Connections(None)
        self.assertTrue(all(connections.admit() for _ in range(100)))

    def test_busy_ones_kept(self) -> None:
        """
        Only connections without a request in progress are closed to make
        room, the longest idle first.
        """
        closed: list[str] = []

        class Named:
            def __init__(self, name: str) -> None:
                self.name = name

            def make_room(self) -> None:
                closed.append(self.name)

        connections = Connections(2)
        a, b, c = Named("a"), Named("b"), Named("c")
        connections.opened(a)
        connections.opened(b)
        connections.busy(a)
        self.assertTrue(connections.admit())
        self.assertEqual(closed, ["b"])
        connections.opened(c)
        connections.busy(c)
        self.assertFalse(connections.admit())
        connections.idle(c)
        connections.idle(a)
        self.assertTrue(connections.admit())
        self.assertEqual(closed, ["b", "c"])
        self.assertEqual(connections.count, 1)


class PhaseTests(SynchronousTestCase):
    """
    The phases a connection goes through.
    """

    def test_phases(self) -> None:
        """
        Headers from the start, body once they are in, handling once the
        body is, idle once answered.
        """
        edge = Edge(self, clock=Clock())
        connection = Connection(edge.site)
        channel = connection.protocol
        assert isinstance(channel, GatewayChannel)
        raw = body(alert("A"))
        self.assertIs(channel.phase, Phase.HEADERS)
        connection.send(head(len(raw)))
        self.assertIs(channel.phase, Phase.BODY)
        connection.feed(raw)
        self.assertIs(channel.phase, Phase.IDLE)
