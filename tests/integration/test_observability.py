"""
What the running plugin tells operators: the JSON access log (without
secrets or bodies, probes and scrapes left out), /metrics (valid for
promtool, with the contract's metric names and values), and a log with
nothing to act on in a normal day on Redis.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    GatewayProcess,
    StubProcessor,
    distinct,
    fixture,
    fixture_json,
    http_client,
    json_headers,
    require_binary,
    run,
    sleep,
)
from tests.redis_server import RedisServer

TOKEN = "obs-token-2f6e9a1b77"
WRONG_TOKEN = "obs-wrong-token-c0ffee42"
# A value that appears only in a request body, to prove bodies are not logged.
BODY_MARKER = "body-marker-5e1d7c"


def _access_line_for(request_id: str) -> Callable[[dict[str, Any]], bool]:
    def matches(event: dict[str, Any]) -> bool:
        return event.get("type") == "access" and event.get("requestId") == request_id

    return matches


class _GatewayTestCase(TestCase):
    timeout = 60

    async def start(self) -> tuple[GatewayProcess, StubProcessor]:
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = GatewayProcess({"alert_processor": {"endpoint": url}, "webhook": {"auth": {"token": TOKEN}}})
        await gateway.start()
        self.addCleanup(gateway.stop)
        return gateway, stub


class AccessLogTests(_GatewayTestCase):
    async def test_one_json_access_line_per_request_without_secrets(self) -> None:
        """
        Every request, accepted or refused, leaves exactly one JSON
        access-log line with time, remote, method, path, status, bytes,
        duration_ms, requestId, endpoint and user_agent, except the
        readiness probe's (logging.access_log_exclude by default); neither the
        configured nor a wrong bearer token, nor anything from a body,
        appears anywhere in the process's output, even at debug level and
        after shutdown.
        """
        gateway, stub = await self.start()
        client = http_client()
        payload = fixture_json("alertmanager-firing.json")
        payload["alerts"][0]["annotations"]["summary"] = BODY_MARKER
        body = json.dumps(payload).encode()
        requests: list[tuple[str, str, str | None, int]] = [
            ("POST", "/webhook/prometheus", TOKEN, 202),
            ("POST", "/v1/webhook/prometheus", WRONG_TOKEN, 401),
            ("POST", "/webhook/prometheus", None, 401),
            ("GET", "/health/ready", None, 200),
            ("GET", "/no/such/path", TOKEN, 404),
        ]
        sent: list[dict[str, Any]] = []
        for number, (method, path, token, status) in enumerate(requests):
            request_id = f"access-{number}"
            headers = json_headers(token, request_id)
            if method == "POST":
                response = await client.post(gateway.url + path, data=body, headers=headers)
            else:
                response = await client.get(gateway.url + path, headers=headers)
            content = await response.content()
            self.assertEqual(response.code, status, (path, content))
            sent.append({"requestId": request_id, "method": method, "path": path, "status": status})
            sent[-1]["bytes"] = len(content)

        # The probe is left out of the access log by default.
        sent = [request for request in sent if request["path"] != "/health/ready"]
        # The access line is written when the response is finished, which
        # may reach our pipe after the client saw the response.
        for request in sent:
            await gateway.wait_for_event(_access_line_for(request["requestId"]))
        await stub.wait_for(2)

        lines = list(gateway.access_log())
        self.assertEqual(sorted(line["requestId"] for line in lines), [r["requestId"] for r in sent])
        fields = {
            "time",
            "remote",
            "method",
            "path",
            "status",
            "bytes",
            "duration_ms",
            "requestId",
            "endpoint",
            "user_agent",
        }
        by_id = {line["requestId"]: line for line in lines}
        for request in sent:
            line = by_id[request["requestId"]]
            self.assertLessEqual(fields, set(line), line)
            for key in ("method", "path", "status", "bytes"):
                self.assertEqual(line[key], request[key], (key, line))
            self.assertEqual(line["remote"], "127.0.0.1")
            self.assertEqual(line["user_agent"], "alertgateway-tests/1.0")
            self.assertIsInstance(line["duration_ms"], (int, float))
            self.assertGreaterEqual(line["duration_ms"], 0)
            datetime.fromisoformat(line["time"])
        self.assertEqual(by_id["access-0"]["endpoint"], "/webhook/prometheus")
        self.assertEqual(by_id["access-1"]["endpoint"], "/webhook/prometheus")

        self.assertEqual(await gateway.stop(), 0)
        output = gateway.output()
        for secret in (TOKEN, WRONG_TOKEN, BODY_MARKER):
            self.assertNotIn(secret, output)


class MetricsTests(_GatewayTestCase):
    async def test_metrics_pass_promtool_and_count_the_traffic(self) -> None:
        """
        /metrics on the metrics listener passes `promtool check metrics`
        and exposes gateway_requests_total, gateway_request_duration_seconds,
        gateway_alerts_received_total, gateway_alerts_forwarded_total and
        gateway_forward_duration_seconds with the traffic just sent: two
        firing alerts received and delivered, one 202 and one 401.
        """
        promtool = require_binary("promtool", "prometheus")
        gateway, stub = await self.start()
        client = http_client()
        url = gateway.url + "/webhook/prometheus"
        response = await client.post(url, data=fixture("alertmanager-firing.json"), headers=json_headers(TOKEN))
        self.assertEqual(response.code, 202, await response.content())
        response = await client.post(url, data=b"{}", headers=json_headers())
        self.assertEqual(response.code, 401, await response.content())
        await stub.wait_for(2)

        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        exposition = b""
        # The forwarded counter moves once the gateway has read the stub's
        # answer, a moment after the stub recorded the alert.
        for _ in range(50):
            response = await client.get(gateway.metrics_url)
            exposition = await response.content()
            self.assertEqual(response.code, 200)
            samples = {
                (s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(exposition.decode())
                for s in family.samples
            }
            if samples.get(("gateway_alerts_forwarded_total", frozenset({("outcome", "delivered")}))) == 2:
                break
            await sleep(0.1)
        self.assertTrue(response.headers.getRawHeaders(b"Content-Type")[0].startswith(b"text/plain"))

        checked = await run([promtool, "check", "metrics"], stdin=exposition)
        self.assertEqual(checked.code, 0, checked.output + exposition.decode())

        names = {name for name, _ in samples}
        for name in (
            "gateway_requests_total",
            "gateway_request_duration_seconds_bucket",
            "gateway_alerts_received_total",
            "gateway_alerts_forwarded_total",
            "gateway_forward_duration_seconds_bucket",
        ):
            self.assertIn(name, names)
        endpoint = ("endpoint", "/webhook/prometheus")
        self.assertEqual(samples[("gateway_requests_total", frozenset({endpoint, ("code", "202")}))], 1)
        self.assertEqual(samples[("gateway_requests_total", frozenset({endpoint, ("code", "401")}))], 1)
        self.assertEqual(samples[("gateway_request_duration_seconds_count", frozenset({endpoint}))], 2)
        received = frozenset({("source", "alertmanager"), ("status", "firing")})
        self.assertEqual(samples[("gateway_alerts_received_total", received)], 2)
        self.assertEqual(samples[("gateway_alerts_forwarded_total", frozenset({("outcome", "delivered")}))], 2)
        # One per request to the processor: the two alerts may share one.
        self.assertIn(samples[("gateway_forward_duration_seconds_count", frozenset())], (1, 2))
        for buckets in ("gateway_request_duration_seconds_bucket", "gateway_forward_duration_seconds_bucket"):
            bounds = {dict(labels)["le"] for name, labels in samples if name == buckets}
            # The plan's buckets, extended to 1 s.
            for le in ("0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "+Inf"):
                self.assertIn(le, bounds, buckets)


class QuietLogTests(TestCase):
    timeout = 60

    async def test_a_day_on_redis_logs_what_matters(self) -> None:
        """
        A gateway on Redis (state and queue) delivering alerts, probed and
        scraped, then stopped with SIGTERM: exit 0, not one warning or
        error in its whole log, no line per outbound connection (twisted's
        "Starting factory"), no access line for the probes and the scrapes,
        one for each webhook, and a log that ends in an orderly shutdown.
        """
        server = RedisServer().start()
        self.addCleanup(server.stop)
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = GatewayProcess(
            {
                "alert_processor": {"endpoint": url},
                "webhook": {"auth": {"token": TOKEN}},
                "state": {"backend": "redis", "redis": {"url": server.url, "timeout": "1s"}},
                "queue": {"backend": "redis", "redis": {"partitions": 4, "claim_idle": "2s"}},
                # Info, as in production: the factories logged at info.
                "logging": {"level": "info"},
            }
        )
        await gateway.start()
        self.addCleanup(gateway.stop)
        client = http_client()
        for number in range(3):
            response = await client.post(
                gateway.url + "/webhook/prometheus",
                data=distinct("alertmanager-firing.json", f"quiet-{number}"),
                headers=json_headers(TOKEN, f"quiet-{number}"),
            )
            self.assertEqual(response.code, 202, await response.content())
            for probe in (gateway.url + "/health/ready", gateway.url + "/health/live", gateway.metrics_url):
                answer = await client.get(probe)
                await answer.content()
                self.assertEqual(answer.code, 200, probe)
        await stub.wait_for(6)
        # The processor's connections are closed by the gateway's pool on
        # the way out too.
        self.assertEqual(await gateway.stop(), 0, gateway.output())

        noisy = [e for e in gateway.lines if e.get("level") in ("warn", "error", "critical")]
        self.assertEqual(noisy, [])
        self.assertFalse([line for line in gateway.raw_lines if "factory" in line.lower()])
        self.assertEqual(
            sorted((e["method"], e["path"], e["requestId"]) for e in gateway.access_log()),
            [("POST", "/webhook/prometheus", f"quiet-{n}") for n in range(3)],
        )
        messages = [e.get("message") for e in gateway.lines]
        self.assertIn("Disconnected from Redis (queue)", messages)
        self.assertIn("Disconnected from Redis (state)", messages)
        self.assertEqual(messages[-1], "Server Shut Down.")
        self.assertEqual(gateway.stderr, "")
