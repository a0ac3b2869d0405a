"""
A processor in trouble, through the real plugin and the stub processor:
one that slows down (5 ms, then 0.7 s) gets everything delivered within
seconds, each alert at most twice; after an outage delivery resumes within
the breaker's capped recovery, or within a health check with
C{alert_processor.health_path}; a rate-limited Alertmanager webhook is
answered 503 with C{Retry-After}, which Alertmanager retries.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    Answer,
    GatewayProcess,
    StubProcessor,
    am_fingerprint,
    http_client,
    json_headers,
    sleep,
)

TOKEN = "trouble-itest-token-61ad"
DOWN = Answer(503)
UP = Answer(200)


def _body(index: int, test: str) -> bytes:
    labels = {"alertname": "TroubleProbe", "namespace": f"itest-{index}", "test": test}
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {},
        "startsAt": "2026-11-26T04:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": am_fingerprint(labels),
    }
    return json.dumps({"receiver": "gateway", "status": "firing", "alerts": [alert], "version": "4"}).encode()


class _TroubleCase(TestCase):
    timeout = 90

    async def start(self, **sections: dict[str, Any]) -> tuple[GatewayProcess, StubProcessor]:
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        config: dict[str, Any] = {
            "alert_processor": {"endpoint": url},
            "webhook": {"auth": {"token": TOKEN}},
            "storm": {"enabled": False},
        }
        for key, value in sections.items():
            config[key] = {**config.get(key, {}), **value}
        gateway = GatewayProcess(config)
        await gateway.start()
        self.addCleanup(gateway.stop, signal.SIGKILL)
        return gateway, stub

    async def post(self, gateway: GatewayProcess, body: bytes) -> Any:
        response = await http_client().post(gateway.url + "/webhook/prometheus", data=body, headers=json_headers(TOKEN))
        await response.content()
        return response

    async def accept(self, gateway: GatewayProcess, count: int, test: str) -> None:
        for index in range(count):
            response = await self.post(gateway, _body(index, test))
            self.assertEqual(response.code, 202)


class SlowerProcessorTests(_TroubleCase):
    async def test_latency_jump(self) -> None:
        """
        After 40 fast deliveries (the adaptive timeout down to its floor,
        0.5 s), the processor takes 0.7 s per answer (the configured
        timeout is 5 s): 20 more alerts are all delivered within 30 s, none
        received more than twice, and the breaker never opens.
        """
        gateway, stub = await self.start(alert_processor={"timeout": "5s", "max_retries": 3})
        await self.accept(gateway, 40, "fast")
        await stub.wait_for(40, timeout=20)
        stub.delay = 0.7
        started = time.monotonic()
        await self.accept(gateway, 20, "slow")
        await stub.wait_until(lambda: len({r.body["fingerprint"] for r in stub.received}) >= 60, timeout=30)
        self.assertLess(time.monotonic() - started, 30)
        slow = [r.body["fingerprint"] for r in stub.attempts if r.body["labels"]["test"] == "slow"]
        self.assertLessEqual(max(slow.count(f) for f in set(slow)), 2)
        opened = [e for e in gateway.lines if str(e.get("message", "")).startswith("Circuit breaker open")]
        self.assertEqual(opened, [])
        self.assertEqual(await gateway.sample("gateway_queue_depth"), 0)


class OutageTests(_TroubleCase):
    async def test_resumes_within_the_capped_recovery(self) -> None:
        """
        During an outage long enough for failed probes to double the
        recovery timeout many times, the doubling stops at
        max_recovery_timeout: delivery resumes within it of the processor's
        return.
        """
        gateway, stub = await self.start(
            circuit_breaker={"failure_threshold": 2, "recovery_timeout": "500ms", "max_recovery_timeout": "2s"},
            alert_processor={"max_retries": 0, "timeout": "1s"},
        )
        stub.fallback = DOWN
        await self.accept(gateway, 3, "outage")
        await sleep(8)
        self.assertEqual(stub.received, [])
        stub.fallback = UP
        back = time.monotonic()
        await stub.wait_for(3, timeout=10)
        self.assertLess(time.monotonic() - back, 2 + 1.5)

    async def test_health_check_resumes_at_once(self) -> None:
        """
        With alert_processor.health_path the breaker's long recovery
        timeout is cut short: delivery resumes within a couple of seconds
        of the processor answering healthy, and gateway_processor_up says
        what the check says.
        """
        gateway, stub = await self.start(
            circuit_breaker={"failure_threshold": 2, "recovery_timeout": "60s", "max_recovery_timeout": "60s"},
            alert_processor={"max_retries": 0, "timeout": "1s", "health_path": "/healthz", "health_interval": "500ms"},
        )
        stub.fallback = DOWN
        stub.health = 503
        await self.accept(gateway, 3, "health")
        await sleep(2)
        self.assertEqual(await gateway.sample("gateway_processor_up"), 0)
        self.assertGreater(stub.health_checks, 0)
        stub.fallback = UP
        stub.health = 200
        back = time.monotonic()
        await stub.wait_for(3, timeout=10)
        self.assertLess(time.monotonic() - back, 3)
        self.assertEqual(await gateway.sample("gateway_processor_up"), 1)


class RateLimitTests(_TroubleCase):
    async def test_alertmanager_gets_503(self) -> None:
        """
        With the default reject_status, a rate-limited webhook on an
        Alertmanager endpoint is answered 503 Service Unavailable with
        Retry-After (Alertmanager retries it; it would drop a 429).
        """
        gateway, _ = await self.start(rate_limiting={"global_limit": 60, "burst_size": 1})
        first = await self.post(gateway, _body(1, "limited"))
        second = await self.post(gateway, _body(2, "limited"))
        self.assertEqual((first.code, second.code), (202, 503))
        self.assertEqual(second.phrase, b"Service Unavailable")
        self.assertTrue(second.headers.hasHeader(b"Retry-After"))
