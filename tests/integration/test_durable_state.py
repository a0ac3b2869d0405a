"""
Decisions as durable as the queue, through the real plugin and a stub
processor: a storm's accepted members survive C{kill -9} (with the
embedded default, and with Redis state and queue); an alert forwarded
before a restart is a duplicate after it, its count and escalation carry
on, and a signed message replayed after a restart is refused; an HA pair
of senders does not escalate an alert that one sender repeating it would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import time
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    GatewayProcess,
    Received,
    StubProcessor,
    am_fingerprint,
    http_client,
    json_headers,
    sleep,
)
from tests.redis_server import RedisServer

TOKEN = "durable-itest-token-3b9d"
KEY = b"durable-state-signing-key-0123456"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
# Quiet long enough after the last sighting for nothing more to come.
SETTLE = 1.5


def _alert(n: int, alertname: str = "DurableProbe", status: str = "firing", **labels: str) -> dict[str, Any]:
    all_labels = {"alertname": alertname, "namespace": "itest", "pod": f"pod-{n}", **labels}
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": f"probe {n}"},
        "startsAt": "2026-11-26T04:00:00Z",
        "endsAt": "2026-11-26T04:20:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": am_fingerprint(all_labels),
    }


def _body(*alerts: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "receiver": "gateway",
            "status": alerts[0]["status"],
            "alerts": list(alerts),
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.invalid",
            "version": "4",
            "groupKey": "{}:{}",
            "truncatedAlerts": 0,
        }
    ).encode()


def _seen(records: list[Received]) -> set[str]:
    """
    Every fingerprint the processor was told of: forwarded alone, or listed
    in a storm event.
    """
    seen: set[str] = set()
    for record in records:
        body = record.body
        if body.get("type") == "storm":
            seen.update(member["fingerprint"] for member in body.get("members", []))
        else:
            seen.add(body["fingerprint"])
    return seen


class _DurableCase(TestCase):
    timeout = 90

    async def stub(self) -> StubProcessor:
        stub = StubProcessor()
        await stub.start()
        self.addCleanup(stub.stop)
        return stub

    async def gateway(self, stub: StubProcessor, directory: Path, **sections: dict[str, Any]) -> GatewayProcess:
        """
        A gateway forwarding to C{stub}, running in C{directory} (so that
        the next one started there finds its database).
        """
        assert stub.port is not None
        config: dict[str, Any] = {
            "alert_processor": {"endpoint": f"http://127.0.0.1:{stub.port.getHost().port}", "timeout": "2s"},  # type: ignore[attr-defined]
            "webhook": {"auth": {"token": TOKEN}},
            "dedup": {"expire_interval": "200ms"},
        }
        for key, value in sections.items():
            config[key] = {**config.get(key, {}), **value}
        gateway = GatewayProcess(config, directory=directory)
        await gateway.start()
        self.addCleanup(gateway.stop, signal.SIGKILL)
        return gateway

    def directory(self) -> Path:
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        return directory

    async def post(
        self, gateway: GatewayProcess, body: bytes, path: str = "/webhook/prometheus", **headers: str
    ) -> tuple[int, Any]:
        sent = json_headers(TOKEN)
        for name, value in headers.items():
            sent[name.replace("_", "-").encode()] = [value.encode()]
        response = await http_client().post(gateway.url + path, data=body, headers=sent)
        text = await response.content()
        return response.code, json.loads(text) if text else None

    async def verdicts(self, gateway: GatewayProcess, *alerts: dict[str, Any]) -> list[tuple[str, int]]:
        code, answer = await self.post(gateway, _body(*alerts))
        self.assertEqual(code, 202, answer)
        return [(a["status"], a["duplicateCount"]) for a in answer["alerts"]]


class StormCrashTests(_DurableCase):
    """
    30 distinct alerts of one group accepted during a storm, then C{kill
    -9}: every one reaches the processor after a restart.
    """

    storm = {"threshold": 3, "flush_interval": "2s", "quiet_period": "3s", "max_members_listed": 100}

    async def storm_then_kill(self, **sections: dict[str, Any]) -> None:
        stub = await self.stub()
        directory = self.directory()
        first = await self.gateway(stub, directory, storm=self.storm, **sections)
        await self.connected(first, sections)
        alerts = [_alert(n, alertname="StormProbe") for n in range(30)]
        for start in range(0, 30, 5):
            code, answer = await self.post(first, _body(*alerts[start : start + 5]))
            self.assertEqual(code, 202, answer)
        # The storm started; members wait for its next update.
        await first.stop(signal.SIGKILL)
        second = await self.gateway(stub, directory, storm=self.storm, **sections)
        await self.connected(second, sections)
        expected = {a["fingerprint"] for a in alerts}
        await stub.wait_until(lambda: expected <= _seen(stub.received), timeout=30)
        await stub.wait_until(
            lambda: any(r.body.get("type") == "storm" and r.body.get("state") == "closed" for r in stub.received),
            timeout=30,
        )
        self.assertEqual(await second.stop(), 0, second.output())

    async def connected(self, gateway: GatewayProcess, sections: dict[str, Any]) -> None:
        """
        With Redis, wait for the connection: until then a gateway decides
        from local memory (state.redis.on_failure: fail_open).
        """
        if "state" not in sections:
            return
        for _ in range(100):
            if await gateway.sample("gateway_redis_up") == 1:
                return
            await sleep(0.1)
        self.fail(f"never connected to Redis:\n{gateway.output()[-4000:]}")

    async def test_embedded_default(self) -> None:
        """
        With the default state and queue (SQLite), a restart resumes the
        open storm: its waiting members are listed, and it is closed.
        """
        await self.storm_then_kill()

    async def test_redis(self) -> None:
        """
        The same with state.backend: redis and queue.backend: redis.
        """
        server = RedisServer().start()
        self.addCleanup(server.stop)
        redis = {"url": server.url, "key_prefix": "itest-durable:"}
        # The killed gateway's queue partitions are taken over once its
        # leases are this old.
        queue = {"backend": "redis", "redis": {"claim_idle": "2s"}}
        await self.storm_then_kill(state={"backend": "redis", "redis": redis}, queue=queue)


class RestartTests(_DurableCase):
    """
    What a restart, clean or not, keeps of the decisions.
    """

    async def carries_on(self, sig: signal.Signals) -> None:
        stub = await self.stub()
        directory = self.directory()
        escalation = {"environments": {"production": {"total": 10, "within": 3, "window": "5m"}}, "min_spacing": "0s"}
        first = await self.gateway(stub, directory, escalation=escalation)
        probe = _alert(1)
        self.assertEqual(await self.verdicts(first, probe), [("new", 0)])
        self.assertEqual(await self.verdicts(first, probe), [("duplicate", 1)])
        await stub.wait_for(1)
        # Past state.flush_interval: the duplicate's count is on disk.
        await sleep(SETTLE)
        await first.stop(sig)
        second = await self.gateway(stub, directory, escalation=escalation)
        self.assertEqual(await self.verdicts(second, probe), [("duplicate", 2)])
        self.assertEqual(await self.verdicts(second, probe), [("escalated", 3)])
        self.assertEqual(await self.verdicts(second, probe), [("duplicate", 4)])
        await stub.wait_for(2)
        await sleep(SETTLE)
        self.assertEqual([r.body["decision"] for r in stub.received], ["new", "escalated"])
        response = await http_client().get(
            second.url + f"/v1/alerts/{probe['fingerprint']}", headers=json_headers(TOKEN)
        )
        status = json.loads(await response.content())
        self.assertEqual((status["duplicateCount"], status["escalation"]), (4, "immediate"))

    async def test_sigterm(self) -> None:
        """
        An alert forwarded before a SIGTERM is a duplicate after the
        restart, not forwarded again; its count and escalation carry on,
        and the status API answers from the restored state.
        """
        await self.carries_on(signal.SIGTERM)

    async def test_kill_9(self) -> None:
        """
        The same after C{kill -9}.
        """
        await self.carries_on(signal.SIGKILL)

    async def test_signed_replay_refused_after_restart(self) -> None:
        """
        A signed message accepted just before a C{kill -9} is refused as a
        replay after the restart.
        """
        stub = await self.stub()
        directory = self.directory()
        endpoint = {
            "path": "/webhook/signed",
            "source": "alertmanager",
            "auth": {"type": "hmac", "scheme": "standard", "secrets": [SECRET]},
        }
        webhook = {"endpoints": [endpoint]}
        first = await self.gateway(stub, directory, webhook=webhook)
        body = _body(_alert(7))
        now = int(time.time())
        digest = hmac.new(KEY, f"msg-1.{now}.".encode() + body, hashlib.sha256).digest()
        headers = {
            "webhook_id": "msg-1",
            "webhook_timestamp": str(now),
            "webhook_signature": "v1," + base64.b64encode(digest).decode(),
        }
        code, answer = await self.post(first, body, "/webhook/signed", **headers)
        self.assertEqual(code, 202, answer)
        await first.stop(signal.SIGKILL)
        second = await self.gateway(stub, directory, webhook=webhook)
        code, problem = await self.post(second, body, "/webhook/signed", **headers)
        self.assertEqual(code, 401, problem)
        self.assertIn("replay", problem["detail"])


class HAPairTests(_DurableCase):
    """
    escalation.min_spacing against an HA pair, scaled down (2 s instead of
    30 s) so that the test runs in seconds.
    """

    async def test_pair_not_escalated_single_sender_is(self) -> None:
        """
        Copies of one alert from two replicas a moment apart, three rounds:
        not escalated (rule: 3 duplicates within 5m).  One sender repeating
        it every 2.5 s: escalated at its third duplicate.  The pair's
        episode is resolved once both replicas resolved it, not before.
        """
        stub = await self.stub()
        gateway = await self.gateway(
            stub,
            self.directory(),
            escalation={"min_spacing": "2s"},
            dedup={"ignore_labels": ["replica"]},
            storm={"enabled": False},
        )
        pair: list[str] = []
        for _ in range(3):
            for replica in ("a", "b"):
                pair += [s for s, _ in await self.verdicts(gateway, _alert(1, replica=replica))]
                await sleep(0.1)
            await sleep(2.3)
        self.assertNotIn("escalated", pair)
        single: list[str] = []
        for round in range(4):
            if round:
                await sleep(2.5)
            single += [s for s, _ in await self.verdicts(gateway, _alert(2))]
        self.assertEqual(single, ["new", "duplicate", "duplicate", "escalated"])
        first = await self.verdicts(gateway, _alert(1, status="resolved", replica="a"))
        last = await self.verdicts(gateway, _alert(1, status="resolved", replica="b"))
        self.assertEqual([first[0][0], last[0][0]], ["duplicate", "resolved"])
