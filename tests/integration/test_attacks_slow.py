"""
Slow senders, connection floods and large bodies against the real plugin
on loopback, each attack bounded in connections and time, each judged by
what a real sender experiences meanwhile: its webhook is accepted (202).

- Headers trickled a byte every 3 s hold no place among the requests in
  flight and are cut at C{service.header_timeout}.
- Bodies trickled after complete headers hold places until
  C{service.body_timeout}, then free them.
- Idle connections past C{service.max_connections} make room for new
  ones, oldest first.
- Large and chunked bodies never touch the temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    GatewayProcess,
    fixture,
    gateway_to_stub,
    http_client,
    json_headers,
    reactor,
    sleep,
)

TOKEN = "slow-attack-itest-token-71b2"
PATH = "/webhook/prometheus"


class Client(Protocol):
    """
    A raw client connection that records what it receives and when the
    gateway ends it.
    """

    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred[float] = Deferred()
        self.lost_at: float | None = None
        self._trickle: LoopingCall | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost_at = reactor.seconds()
        if self._trickle is not None and self._trickle.running:
            self._trickle.stop()
        self.lost.callback(self.lost_at)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def trickle(self, every: float, data: bytes = b"X") -> None:
        """
        Send C{data} every C{every} seconds until the gateway closes the
        connection.
        """
        self._trickle = LoopingCall(self.write, data)
        self._trickle.clock = reactor
        self._trickle.start(every, now=False)

    def close(self) -> Deferred[float]:
        if self.lost_at is None and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]
        return self.lost


class _AttackTestCase(TestCase):
    timeout = 60

    async def start(self, service: dict[str, Any], env: dict[str, str] | None = None) -> GatewayProcess:
        """
        A stub processor and a gateway forwarding to it with a bearer token
        and C{service}, all stopped at the end of the test.
        """
        gateway, _ = await gateway_to_stub(
            self,
            {
                "webhook": {"auth": {"token": TOKEN}},
                "service": service,
                "queue": {"backend": "memory"},
                # Every webhook here is new to the gateway.
                "dedup": {"enabled": False},
            },
            env,
        )
        return gateway

    async def connect(self, gateway: GatewayProcess, count: int) -> list[Client]:
        """
        C{count} raw connections to the webhook listener, aborted (if still
        open) at the end of the test, before the gateway stops.
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.ports["webhook"])
        clients = [await connectProtocol(endpoint, Client()) for _ in range(count)]

        async def _close() -> None:
            await DeferredList([c.close() for c in clients])

        self.addCleanup(_close)
        return clients

    async def webhook(self, gateway: GatewayProcess) -> tuple[int, dict[str, Any]]:
        """
        A real sender's webhook: its status and problem (if refused).
        """
        response = await http_client().post(
            gateway.url + PATH, data=fixture("alertmanager-firing.json"), headers=json_headers(TOKEN)
        )
        content = await response.content()
        return response.code, json.loads(content) if content else {}

    async def until_accepted(self, gateway: GatewayProcess, within: float) -> tuple[float, list[int]]:
        """
        Post a real webhook every 0.25 s until one is accepted: how long
        that took, and the statuses on the way.
        """
        start = reactor.seconds()
        seen: list[int] = []
        while reactor.seconds() - start < within:
            code, _ = await self.webhook(gateway)
            seen.append(code)
            if code == 202:
                return reactor.seconds() - start, seen
            await sleep(0.25)
        raise self.failureException(f"no webhook accepted within {within} s: {seen}")

    def security_events(self, gateway: GatewayProcess, reason: str) -> list[dict[str, Any]]:
        return [e for e in gateway.lines if e.get("logger") == "alertgateway.security" and e.get("reason") == reason]


class SlowHeaderTests(_AttackTestCase):
    async def test_trickled_headers_lock_nobody_out(self) -> None:
        """
        60 connections send a request line, then a header byte every 3 s,
        against max_concurrent_requests 50: a real webhook is accepted at
        once (at the latest 12 s after they started), and the gateway cuts
        every one of them header_timeout (10 s) after it connected; the
        closures are one security log line for their one client and 60
        counts.
        """
        gateway = await self.start({"max_concurrent_requests": 50})
        started = reactor.seconds()
        slow = await self.connect(gateway, 60)
        for client in slow:
            client.write(b"POST /webhook/prometheus HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
            client.trickle(3.0)
        await sleep(3.5)
        waited, seen = await self.until_accepted(gateway, 12 - (reactor.seconds() - started))
        self.assertLessEqual(reactor.seconds() - started, 12)
        # The first one, at once.
        self.assertEqual(seen, [202])
        self.assertLess(waited, 1.0)
        ends = await DeferredList([c.lost for c in slow])
        closed_after = [at - started for _, at in ends]
        self.assertGreaterEqual(min(closed_after), 9.5)
        self.assertLessEqual(max(closed_after), 12.0)
        self.assertTrue(all(c.received == b"" for c in slow))
        closures = await gateway.sample("gateway_security_rejections_total", endpoint="-", reason="slow_headers")
        self.assertEqual(closures, 60)
        self.assertEqual(len(self.security_events(gateway, "slow_headers")), 1)


class SlowBodyTests(_AttackTestCase):
    async def test_trickled_bodies_hold_places_until_body_timeout(self) -> None:
        """
        60 connections send complete headers, then a body byte every 3 s,
        against max_concurrent_requests 50 and body_timeout 5 s: the first
        50 hold every place, so a real webhook is refused 503 too-busy, the
        10 past the limit are answered 503 at once without their body; at
        body_timeout the 50 are cut (408 in the access log) and the real
        webhook is accepted.
        """
        gateway = await self.start({"max_concurrent_requests": 50, "body_timeout": "5s", "min_body_rate": 1024})
        started = reactor.seconds()
        slow = await self.connect(gateway, 60)
        for client in slow:
            client.write(f"POST {PATH} HTTP/1.1\r\nHost: gateway\r\nContent-Length: 1000\r\n\r\n{{".encode())
            client.trickle(3.0, b" ")
        await sleep(1.0)
        code, problem = await self.webhook(gateway)
        self.assertEqual((code, problem.get("type")), (503, "urn:alertgateway:problem:too-busy"))
        answered = [c for c in slow if c.received.startswith(b"HTTP/1.1 503")]
        self.assertEqual(len(answered), 10)
        await self.until_accepted(gateway, 10)
        elapsed = reactor.seconds() - started
        self.assertLessEqual(elapsed, 7.5)
        await DeferredList([c.lost for c in slow])
        statuses = [e["status"] for e in await gateway.settled_access_log() if e.get("path") in (PATH, "-")]
        self.assertEqual(statuses.count(408), 50)
        closures = await gateway.sample("gateway_security_rejections_total", endpoint="-", reason="slow_body")
        self.assertEqual(closures, 50)


class ConnectionFloodTests(_AttackTestCase):
    async def test_idle_flood_past_max_connections(self) -> None:
        """
        300 idle connections against max_connections 100: the oldest idle
        ones are closed to make room, the open ones stay at the cap, and a
        real webhook is accepted at once.
        """
        gateway = await self.start({"max_connections": 100})
        flood = await self.connect(gateway, 300)
        await sleep(0.5)
        started = reactor.seconds()
        code, _ = await self.webhook(gateway)
        latency = reactor.seconds() - started
        self.assertEqual(code, 202)
        self.assertLess(latency, 2.0)
        evicted = [c for c in flood if c.lost_at is not None]
        self.assertGreaterEqual(len(evicted), 200)
        # The first to come were the first to go.
        self.assertEqual({flood.index(c) for c in evicted} & set(range(100)), set(range(100)))
        self.assertLessEqual(await gateway.sample("gateway_connections_open") or 0, 100)
        closures = await gateway.sample("gateway_security_rejections_total", endpoint="-", reason="connections")
        self.assertGreaterEqual(closures or 0, 200)
        self.assertEqual(len(self.security_events(gateway, "connections")), 1)


class LargeBodyTests(_AttackTestCase):
    def temporary_directory(self) -> Path:
        directory = Path(tempfile.mkdtemp(prefix="alertgateway-tmpdir-"))
        self.addCleanup(shutil.rmtree, directory, True)
        return directory

    def open_in(self, gateway: GatewayProcess, directory: Path) -> list[str]:
        """
        The files the gateway holds open in C{directory} (a temporary file,
        deleted at once, still shows under /proc).
        """
        fds = Path(f"/proc/{gateway.pid}/fd")
        targets = []
        for fd in fds.iterdir():
            try:
                targets.append(os.readlink(fd))
            except OSError:
                continue
        return [t for t in targets if t.startswith(str(directory))]

    async def test_large_bodies_never_touch_the_temporary_directory(self) -> None:
        """
        A 150 KB body (twisted.web's own spools from 100 KB) and a chunked
        one are held in memory while they arrive, never in TMPDIR, and
        accepted; a Content-Length over max_body_bytes (1 MiB) is answered
        413 before its body is sent.
        """
        tmp = self.temporary_directory()
        gateway = await self.start({}, env={"TMPDIR": str(tmp)})
        document = json.loads(fixture("alertmanager-firing.json"))
        document["commonAnnotations"] = {**document.get("commonAnnotations", {}), "padding": "x" * 150_000}
        raw = json.dumps(document).encode()
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\n"
        )
        [sized, chunked, oversized] = await self.connect(gateway, 3)

        sized.write(f"{head}Content-Length: {len(raw)}\r\n\r\n".encode() + raw[:120_000])
        half = len(raw) // 2
        chunked.write(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + b"%x\r\n%s\r\n" % (half, raw[:half]))
        await sleep(0.5)
        self.assertEqual(self.open_in(gateway, tmp), [])
        sized.write(raw[120_000:])
        chunked.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(raw) - half, raw[half:]))

        oversized.write(f"{head}Content-Length: {2 * 1024 * 1024}\r\n\r\n".encode())
        await sleep(0.5)
        for client in (sized, chunked):
            self.assertTrue(client.received.startswith(b"HTTP/1.1 202 "), client.received[:200])
        self.assertTrue(oversized.received.startswith(b"HTTP/1.1 413 "), oversized.received[:200])
        self.assertIn(b"Connection: close", oversized.received)
        self.assertEqual(self.open_in(gateway, tmp), [])
        self.assertEqual(list(tmp.iterdir()), [])
