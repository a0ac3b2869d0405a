"""
The plugin's life under twistd: refusing an invalid configuration before
starting, and a graceful SIGTERM (not ready, in-flight work finished,
exit 0).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from tests.integration.harness import (
    GatewayProcess,
    StubProcessor,
    am_fingerprint,
    fixture,
    fixture_json,
    http_client,
    json_headers,
    reactor,
    run,
    sleep,
    source_env,
    twistd,
    venv_script,
)

TOKEN = "lifecycle-token-51c2"

INVALID_CONFIG = """\
service:
  prot: 8080
webhook:
  endpoints:
    - path: webhook/custom
      source: alertmanager
alert_processor:
  timeout: soon
"""


class InvalidConfigTests(TestCase):
    timeout = 60

    async def test_twistd_refuses_invalid_config_like_check_config(self) -> None:
        """
        twistd with an invalid configuration exits non-zero without
        listening, printing every `key.path: message` line that
        `alertgateway check-config` prints for the same file (which exits 2),
        as one block on stderr under a line naming the file, and no usage
        text.
        """
        path = Path(self.mktemp()).resolve()
        path.mkdir()
        config = path / "bad.yaml"
        config.write_text(INVALID_CONFIG)

        checked = await run([venv_script("alertgateway"), "check-config", str(config)], env=source_env())
        self.assertEqual(checked.code, 2, checked.output)
        problems = [line for line in checked.output.splitlines() if line.strip()]
        # One line per problem, each naming its key path.
        self.assertEqual(len(problems), 3, problems)
        for key in ("service.prot:", "webhook.endpoints[0].path:", "alert_processor.timeout:"):
            self.assertTrue(any(line.startswith(key) for line in problems), (key, problems))

        started = await run(
            [twistd(), "-n", "--pidfile=", "alertgateway", "--config", str(config)],
            env=source_env(),
            cwd=str(path),
            timeout=30,
        )
        self.assertNotEqual(started.code, 0, started.output)
        printed = started.output.splitlines()
        for line in problems:
            self.assertIn(line, printed)
        self.assertNotIn("Listening for", started.output)
        self.assertNotIn("Traceback", started.output)
        self.assertEqual(
            started.err.splitlines(),
            [f"twistd alertgateway: invalid configuration in {config}, not started:", *problems],
        )
        self.assertNotIn("Usage:", started.output)


class _RawClient(Protocol):
    """
    A hand-driven HTTP client: the test decides when each byte is sent.
    """

    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed.callback(self.data)


def _abort(client: _RawClient) -> Deferred[bytes]:
    if not client.closed.called and client.transport is not None:
        client.transport.abortConnection()  # type: ignore[attr-defined]
    return client.closed


class _ShutdownTestCase(TestCase):
    timeout = 60

    async def _gateway(self, stub: StubProcessor) -> GatewayProcess:
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = GatewayProcess(
            {
                "alert_processor": {"endpoint": url},
                "webhook": {"auth": {"token": TOKEN}},
                # The listeners answer 503 for that long after SIGTERM.
                "service": {"shutdown_grace": "4s"},
            }
        )
        await gateway.start()
        self.addCleanup(gateway.stop, signal.SIGKILL)
        return gateway


class ShutdownTests(_ShutdownTestCase):
    async def test_sigterm_not_ready_drains_then_exits_0(self) -> None:
        """
        On SIGTERM the gateway reports not ready (503 on /health/ready over
        a connection opened before, gateway_ready 0 on /metrics), answers
        new webhooks 503 shutting-down with Retry-After (on new connections
        too: the listener stays open for the grace period), waits for the
        delivery still in flight to the processor to finish and then exits
        0 at the end of the grace period.
        """
        stub = StubProcessor()
        stub.hold = True
        gateway = await self._gateway(stub)
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        # A kept-alive connection is how a load balancer's probe still
        # reaches the gateway after it stopped listening.
        kept = HTTPClient(Agent(reactor, pool=pool))
        response = await kept.get(gateway.url + "/health/ready")
        self.assertEqual((response.code, (await response.json())["status"]), (200, "ready"))

        response = await http_client().post(
            gateway.url + "/webhook/grafana", data=fixture("grafana-legacy.json"), headers=json_headers(TOKEN)
        )
        self.assertEqual(response.code, 202, await response.content())
        await stub.wait_held(1)

        gateway.send_signal(signal.SIGTERM)
        await gateway.wait_for_event(lambda e: str(e.get("message", "")).startswith("Shutting down"))
        response = await kept.get(gateway.url + "/health/ready")
        body = await response.json()
        self.assertEqual(response.code, 503, body)
        self.assertNotEqual(body["status"], "ready")
        metrics = await http_client().get(gateway.metrics_url)
        self.assertIn("gateway_ready 0.0", (await metrics.text()).splitlines())
        response = await kept.post(
            gateway.url + "/webhook/grafana", data=fixture("grafana-legacy.json"), headers=json_headers(TOKEN)
        )
        problem = json.loads(await response.content())
        self.assertEqual(response.code, 503, problem)
        self.assertEqual(response.headers.getRawHeaders(b"Content-Type"), [b"application/problem+json"])
        # A new connection too: the listener stays open for the grace
        # period, answering 503 shutting-down (which Alertmanager retries),
        # not refusing the connection.
        response = await http_client().post(
            gateway.url + "/webhook/grafana", data=fixture("grafana-legacy.json"), headers=json_headers(TOKEN)
        )
        problem = json.loads(await response.content())
        self.assertEqual((response.code, problem["type"]), (503, "urn:alertgateway:problem:shutting-down"))
        self.assertTrue(response.headers.hasHeader(b"Retry-After"))

        self.assertIsNone(gateway.exit_code, "exited with a delivery in flight")
        stub.release()
        self.assertEqual(await gateway.ended(timeout=15), 0, gateway.output())
        self.assertEqual([r.body["labels"]["alertname"] for r in stub.received], ["Disk usage high"])
        self.assertEqual(len(stub.attempts), 1)
        self.assertIn("Stopped", [e.get("message") for e in gateway.lines])


class UploadDuringShutdownTests(_ShutdownTestCase):
    async def test_sigterm_finishes_request_being_uploaded(self) -> None:
        """
        A webhook whose body is still arriving when SIGTERM comes is an
        in-flight request: the gateway waits for the rest of it, answers it
        202, delivers its alert and only then exits 0.
        """
        stub = StubProcessor()
        gateway = await self._gateway(stub)
        body = fixture("grafana-legacy.json")
        client = _RawClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.ports["webhook"]), client)
        assert client.transport is not None
        self.addCleanup(_abort, client)
        head = (
            "POST /webhook/grafana HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        client.transport.write(head + body[:100])
        # Nothing observable tells that the gateway has read the first part;
        # on loopback a moment is plenty.
        await sleep(0.3)

        gateway.send_signal(signal.SIGTERM)
        await gateway.wait_for_event(lambda e: str(e.get("message", "")).startswith("Shutting down"))
        client.transport.write(body[100:])
        answer = await client.closed.addTimeout(10, reactor)
        status_line = answer.split(b"\r\n", 1)[0]
        self.assertEqual(status_line, b"HTTP/1.1 202 Accepted", answer)
        self.assertEqual(await gateway.ended(timeout=15), 0, gateway.output())
        expected = fixture_json("grafana-legacy.json")
        labels: dict[str, Any] = {**expected["tags"], "alertname": expected["ruleName"]}
        self.assertEqual([r.body["fingerprint"] for r in stub.received], [am_fingerprint(labels)])
