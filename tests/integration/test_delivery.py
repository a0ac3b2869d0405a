"""
Delivery guarantees through the real plugin and the stub processor: the
durable queue holds what was answered 202 through processor outages and
C{kill -9}, per fingerprint in acceptance order; a full queue is a 503 with
C{Retry-After}; a refused alert becomes a dead letter that the
C{alertgateway queue} commands show and send again; the circuit breaker
opens and closes as the processor fails and recovers.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    Answer,
    GatewayProcess,
    Received,
    StubProcessor,
    am_fingerprint,
    http_client,
    json_headers,
    resolved_json,
    run,
    sleep,
    source_env,
    venv_script,
)

TOKEN = "delivery-token-5e1f"
# A processor outage as the stub plays it: 503, try again in a second.
DOWN = Answer(503, {"Retry-After": "1"})
UP = Answer(200)

# Quick in-line retries off, short timeouts, a breaker that recovers fast,
# no storm aggregation (the tests post many alerts of one alertname).
FAST: dict[str, Any] = {
    "webhook": {"auth": {"token": TOKEN}},
    "storm": {"enabled": False},
    "circuit_breaker": {
        "failure_threshold": 3,
        "recovery_timeout": "500ms",
        "max_recovery_timeout": "1s",
        "half_open_requests": 1,
    },
    "queue": {"retry_interval": "300ms"},
}


def _config(processor: str, **sections: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {key: dict(value) for key, value in FAST.items()}
    config["alert_processor"] = {"endpoint": processor, "max_retries": 0, "timeout": "1s"}
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


def _body(index: int, status: str = "firing", test: str = "delivery") -> dict[str, Any]:
    """
    An Alertmanager body with one alert of its own (labels C{n=index}).
    """
    labels = {"alertname": "DeliveryProbe", "namespace": "itest", "test": test, "n": str(index)}
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": f"probe {index}"},
        "startsAt": "2026-11-26T04:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": am_fingerprint(labels),
    }
    body = {
        "receiver": "gateway",
        "status": "firing",
        "alerts": [alert],
        "groupLabels": {"alertname": "DeliveryProbe"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="DeliveryProbe", n="{index}"}}',
        "truncatedAlerts": 0,
    }
    return resolved_json(body) if status == "resolved" else body


def _fingerprint(index: int, test: str = "delivery") -> str:
    return str(_body(index, test=test)["alerts"][0]["fingerprint"])


def _streams(records: list[Received]) -> dict[str, list[str]]:
    """
    The statuses delivered per fingerprint, in the order received.
    """
    streams: dict[str, list[str]] = {}
    for record in records:
        streams.setdefault(record.body["fingerprint"], []).append(record.body["status"])
    return streams


class _DeliveryCase(TestCase):
    timeout = 45

    async def start(
        self, stub: StubProcessor | None = None, directory: Path | None = None, **sections: dict[str, Any]
    ) -> tuple[GatewayProcess, StubProcessor]:
        if stub is None:
            stub = StubProcessor()
            await stub.start()
            self.addCleanup(stub.stop)
        assert stub.port is not None
        url = f"http://127.0.0.1:{stub.port.getHost().port}"  # type: ignore[attr-defined]
        gateway = GatewayProcess(_config(url, **sections), directory=directory)
        await gateway.start()
        self.addCleanup(gateway.stop, signal.SIGKILL)
        return gateway, stub

    async def post(self, gateway: GatewayProcess, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        response = await http_client().post(
            gateway.url + "/webhook/prometheus", data=json.dumps(body).encode(), headers=json_headers(TOKEN)
        )
        text = await response.content()
        headers = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
        return response.code, headers, json.loads(text) if text else None

    async def accept(self, gateway: GatewayProcess, body: dict[str, Any]) -> None:
        code, _, answer = await self.post(gateway, body)
        self.assertEqual(code, 202, answer)

    async def ready(self, gateway: GatewayProcess) -> tuple[int, dict[str, Any]]:
        response = await http_client().get(gateway.url + "/health/ready")
        return response.code, json.loads(await response.content())

    async def queue_cli(self, gateway: GatewayProcess, *args: str) -> str:
        """
        Run C{alertgateway queue ARGS --config FILE} in the gateway's
        working directory (where the relative C{queue.path} points).
        """
        done = await run(
            [venv_script("alertgateway"), "queue", *args, "--config", str(gateway.config_path)],
            env=source_env(),
            cwd=str(gateway.directory),
        )
        self.assertEqual(done.code, 0, done.output)
        return done.out


class OutageTests(_DeliveryCase):
    async def test_outage_queues_then_delivers_each_once_in_order(self) -> None:
        """
        While the processor answers 503 every alert is still answered 202
        and stays queued (depth on /health/ready, with the sqlite backend);
        once it answers 200 again each alert is delivered exactly once, and
        the firing and resolved notices of one fingerprint arrive in the
        order they were accepted.
        """
        gateway, stub = await self.start()
        stub.fallback = DOWN
        count = 5
        for index in range(count):
            await self.accept(gateway, _body(index))
        for index in range(count):
            await self.accept(gateway, _body(index, "resolved"))
        await stub.wait_until(lambda: len(stub.attempts) >= 1)
        code, body = await self.ready(gateway)
        self.assertEqual(code, 200, body)
        self.assertEqual(body["queue"]["backend"], "sqlite")
        self.assertEqual(body["queue"]["depth"], 2 * count)
        self.assertEqual(stub.received, [])

        stub.fallback = UP
        await stub.wait_for(2 * count, timeout=20)
        # Nothing more arrives afterwards: exactly once.
        await sleep(1.5)
        expected = {_fingerprint(i): ["firing", "resolved"] for i in range(count)}
        self.assertEqual(_streams(stub.received), expected)
        self.assertEqual(len(stub.received), 2 * count)
        self.assertEqual(await gateway.sample("gateway_queue_depth"), 0)
        code, body = await self.ready(gateway)
        self.assertEqual(body["queue"]["depth"], 0)


class CrashTests(_DeliveryCase):
    async def test_kill_9_loses_nothing_accepted(self) -> None:
        """
        C{kill -9} right after the 202s, with the processor not answering
        (the first alert of each fingerprint mid-send, the resolved ones
        queued behind): a gateway started again with the same configuration
        in the same directory (default C{var/queue.db}) delivers every
        accepted alert, per fingerprint in order, and a re-sent alert
        carries the same Idempotency-Key as the attempt the crash cut off.
        """
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        stub = StubProcessor()
        await stub.start()
        self.addCleanup(stub.stop)
        stub.hold = True
        first, _ = await self.start(stub, directory)
        count = 4
        for index in range(count):
            await self.accept(first, _body(index, test="crash"))
        for index in range(count):
            await self.accept(first, _body(index, "resolved", test="crash"))
        await stub.wait_held(count)
        await first.stop(signal.SIGKILL)
        self.assertTrue((directory / "var" / "queue.db").exists())
        cut_off = {r.body["fingerprint"]: r.headers["idempotency-key"] for r in stub.attempts}
        self.assertEqual(len(cut_off), count)
        stub.hold = False
        stub.held = []

        second, _ = await self.start(stub, directory)
        await stub.wait_for(2 * count, timeout=20)
        await sleep(1.0)
        expected = {_fingerprint(i, "crash"): ["firing", "resolved"] for i in range(count)}
        self.assertEqual(_streams(stub.received), expected)
        for record in stub.received:
            if record.body["status"] == "firing":
                self.assertEqual(record.headers["idempotency-key"], cut_off[record.body["fingerprint"]])
        self.assertTrue(
            any("alerts to deliver from before" in str(e.get("message", "")) for e in second.lines), second.output()
        )
        self.assertEqual(await second.stop(), 0, second.output())

    async def test_stop_leaves_undelivered_alerts_on_disk(self) -> None:
        """
        A SIGTERM while the processor is down exits 0 and leaves what was
        not delivered in the queue database; the next start delivers it.
        """
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        stub = StubProcessor()
        await stub.start()
        self.addCleanup(stub.stop)
        stub.fallback = DOWN
        first, _ = await self.start(stub, directory, service={"shutdown_grace": "1s"})
        await self.accept(first, _body(1, test="stop"))
        await stub.wait_until(lambda: len(stub.attempts) >= 1)
        self.assertEqual(await first.stop(), 0, first.output())
        self.assertEqual(stub.received, [])

        stub.fallback = UP
        await self.start(stub, directory)
        await stub.wait_for(1, timeout=15)
        self.assertEqual(_streams(stub.received), {_fingerprint(1, "stop"): ["firing"]})


class QueueFullTests(_DeliveryCase):
    async def test_full_queue_answers_503_with_retry_after(self) -> None:
        """
        With C{queue.max_items} 2 and the processor down, the third alert is
        a 503 C{queue-full} problem with C{Retry-After}; nothing of it was
        kept, so once the queue drained the same body, sent again as
        Alertmanager would, is accepted as new and delivered.
        """
        gateway, stub = await self.start(queue={"max_items": 2})
        stub.fallback = DOWN
        await self.accept(gateway, _body(1, test="full"))
        await self.accept(gateway, _body(2, test="full"))
        code, headers, problem = await self.post(gateway, _body(3, test="full"))
        self.assertEqual(code, 503, problem)
        self.assertEqual(headers["content-type"], "application/problem+json")
        self.assertTrue(problem["type"].endswith("queue-full"), problem)
        self.assertGreater(int(headers["retry-after"]), 0)

        stub.fallback = UP
        await stub.wait_for(2, timeout=15)
        code, _, answer = await self.post(gateway, _body(3, test="full"))
        self.assertEqual(code, 202, answer)
        self.assertEqual([a["status"] for a in answer["alerts"]], ["new"])
        await stub.wait_for(3, timeout=15)
        self.assertEqual(sorted(_streams(stub.received)), sorted(_fingerprint(i, "full") for i in (1, 2, 3)))

    async def test_bytes_bound_refusal_is_not_remembered_by_dedup(self) -> None:
        """
        With C{queue.max_bytes} room for one alert only (each is about
        700 bytes), a second is a 503
        C{queue-full}; once the queue drained, the same body sent again is
        accepted as new (the refused one left no trace in deduplication)
        and delivered.
        """
        gateway, stub = await self.start(queue={"max_bytes": 1000})
        stub.fallback = DOWN
        await self.accept(gateway, _body(1, test="bytes"))
        code, headers, problem = await self.post(gateway, _body(2, test="bytes"))
        self.assertEqual(code, 503, problem)
        self.assertIn("retry-after", headers)

        stub.fallback = UP
        await stub.wait_for(1, timeout=15)
        code, _, answer = await self.post(gateway, _body(2, test="bytes"))
        self.assertEqual(code, 202, answer)
        self.assertEqual([a["status"] for a in answer["alerts"]], ["new"])
        await stub.wait_for(2, timeout=15)


class DeadLetterTests(_DeliveryCase):
    async def test_400_is_a_dead_letter_listed_and_retried(self) -> None:
        """
        An alert the processor refuses with 400 becomes a dead letter
        (C{gateway_dead_letters_total}), listed by C{alertgateway queue
        list}; C{queue retry} hands it back to the running gateway, which
        delivers it within C{queue.retry_interval} once the processor
        accepts it; the list is then empty.
        """
        gateway, stub = await self.start()
        stub.answers = [Answer(400)]
        await self.accept(gateway, _body(7, test="dead"))
        await stub.wait_until(lambda: len(stub.attempts) >= 1)
        await gateway.wait_for_event(lambda e: "dead letter" in str(e.get("message", "")))
        self.assertEqual(await gateway.sample("gateway_dead_letters_total"), 1)

        listed = await self.queue_cli(gateway, "list")
        self.assertIn(_fingerprint(7, "dead"), listed)
        items = [json.loads(line) for line in (await self.queue_cli(gateway, "list", "--json")).splitlines()]
        self.assertEqual([i["body"]["fingerprint"] for i in items], [_fingerprint(7, "dead")])
        self.assertIn("400", items[0]["reason"])
        self.assertEqual(await self.queue_cli(gateway, "list", "--state", "pending"), "")

        await self.queue_cli(gateway, "retry")
        await stub.wait_for(1, timeout=10)
        self.assertEqual(stub.received[0].body["fingerprint"], _fingerprint(7, "dead"))
        self.assertEqual(stub.received[0].headers["idempotency-key"], stub.attempts[0].headers["idempotency-key"])
        self.assertEqual(await self.queue_cli(gateway, "list", "--state", "all"), "")

    async def test_purge_drops_dead_letters(self) -> None:
        """
        C{alertgateway queue purge} drops dead letters for good: they are
        not listed any more and never delivered.
        """
        gateway, stub = await self.start()
        stub.answers = [Answer(400)]
        await self.accept(gateway, _body(8, test="purge"))
        await gateway.wait_for_event(lambda e: "dead letter" in str(e.get("message", "")))
        self.assertIn(_fingerprint(8, "purge"), await self.queue_cli(gateway, "list"))
        self.assertIn("1 dead", await self.queue_cli(gateway, "purge"))
        self.assertEqual(await self.queue_cli(gateway, "list", "--state", "all"), "")
        await sleep(0.8)
        self.assertEqual(stub.received, [])


class BreakerTests(_DeliveryCase):
    async def test_breaker_opens_while_processor_fails_and_closes_after(self) -> None:
        """
        Consecutive failures open the breaker: gateway_circuit_breaker_state
        is 1 on /metrics and /health/ready stays 200 with
        circuitBreaker.state open while webhooks keep being accepted; once
        the processor answers again the breaker closes (0) and the queue
        is delivered.
        """
        # Open for 2s: long enough to look at it before the first probe.
        gateway, stub = await self.start(circuit_breaker={"recovery_timeout": "2s", "max_recovery_timeout": "2s"})
        # The processor's name (alert_processor.name), never its URL.
        target = "alert-processor"
        self.assertEqual(await gateway.sample("gateway_circuit_breaker_state", target=target), 0)
        stub.fallback = Answer(503)
        for index in range(3):
            await self.accept(gateway, _body(index, test="breaker"))
        await gateway.wait_for_event(lambda e: "-> open" in str(e.get("message", "")))
        self.assertEqual(await gateway.sample("gateway_circuit_breaker_state", target=target), 1)
        code, body = await self.ready(gateway)
        self.assertEqual(code, 200, body)
        self.assertEqual(body["circuitBreaker"]["state"], "open")
        self.assertEqual(body["circuitBreaker"]["target"], target)
        await self.accept(gateway, _body(9, test="breaker"))
        opened = await gateway.sample("gateway_circuit_breaker_transitions_total", target=target, to="open")
        self.assertIsNotNone(opened)
        self.assertGreaterEqual(opened or 0, 1)

        stub.fallback = UP
        await stub.wait_for(4, timeout=15)
        self.assertEqual(await gateway.sample("gateway_circuit_breaker_state", target=target), 0)
        code, body = await self.ready(gateway)
        self.assertEqual(body["circuitBreaker"]["state"], "closed")
        self.assertGreaterEqual(await gateway.sample("gateway_forward_timeout_seconds") or 0, 0.5)
        self.assertGreater(await gateway.sample("gateway_forward_failure_ratio") or 0, 0)
        retried = await gateway.sample("gateway_forward_attempts_total", outcome="retry", **{"class": "5xx"})
        self.assertGreaterEqual(retried or 0, 3)
