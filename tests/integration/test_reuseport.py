"""
Several gateway processes on one host share one webhook port
(C{service.reuse_port: true}, C{SO_REUSEPORT}): the kernel spreads the
connections over them, each keeps its own metrics listener, one can stop
while the other goes on answering, and a port held by a socket without the
option makes the gateway exit instead of running without a listener.
"""

from __future__ import annotations

import json
import signal
import socket
from typing import Any

from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    GatewayProcess,
    StubProcessor,
    am_fingerprint,
    free_port,
    http_client,
    json_headers,
    sleep,
)

TOKEN = "reuseport-token-77c2"
WEBHOOK = "/webhook/prometheus"
REQUESTS = 40


def _body(index: int) -> dict[str, Any]:
    """
    An Alertmanager body with one alert of its own (labels C{n=index}), so
    that no process takes one for a duplicate of another's.
    """
    labels = {"alertname": "ReusePortProbe", "namespace": "itest", "n": str(index)}
    return {
        "receiver": "gateway",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"probe {index}"},
                "startsAt": "2026-11-26T04:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": am_fingerprint(labels),
            }
        ],
        "groupLabels": {"alertname": "ReusePortProbe"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="ReusePortProbe", n="{index}"}}',
        "truncatedAlerts": 0,
    }


def _config(port: int, processor: str) -> dict[str, Any]:
    """
    The configuration every process of the host shares: the webhook
    listener on C{service.host:service.port} with C{reuse_port} (the
    harness's C{service.listen} would replace host and port: emptied), and
    each process's metrics on a port of its own (the harness's C{tcp:0}).
    """
    return {
        "service": {"host": "127.0.0.1", "port": port, "reuse_port": True, "listen": []},
        "alert_processor": {"endpoint": processor, "max_retries": 0, "timeout": "2s"},
        "webhook": {"auth": {"token": TOKEN}},
        "queue": {"backend": "memory"},
        "storm": {"enabled": False},
    }


class SharedPortTests(TestCase):
    timeout = 60

    async def _stub(self) -> str:
        self.stub = StubProcessor()
        url = await self.stub.start()
        self.addCleanup(self.stub.stop)
        return url

    async def _gateway(self, config: dict[str, Any]) -> GatewayProcess:
        gateway = GatewayProcess(config)
        await gateway.start()
        self.addCleanup(gateway.stop, signal.SIGKILL)
        return gateway

    async def _post(self, port: int, index: int) -> None:
        """
        Post one alert on a new connection (the harness's client keeps
        none), so the kernel picks a process for each.
        """
        response = await http_client().post(
            f"http://127.0.0.1:{port}{WEBHOOK}", data=json.dumps(_body(index)).encode(), headers=json_headers(TOKEN)
        )
        text = await response.content()
        self.assertEqual(response.code, 202, text)

    async def _answered(self, gateway: GatewayProcess) -> int:
        """
        How many webhooks this process answered 202, from its own
        C{/metrics}.
        """
        value = await gateway.sample("gateway_requests_total", endpoint=WEBHOOK, code="202")
        return int(value or 0)

    async def _counts(self, gateways: list[GatewayProcess], total: int) -> list[int]:
        """
        Each process's count of 202s, once they add up to C{total} (the
        counter moves as the response is finished: give it a moment).
        """
        counts: list[int] = []
        for _ in range(50):
            counts = [await self._answered(g) for g in gateways]
            if sum(counts) >= total:
                break
            await sleep(0.1)
        return counts

    async def test_two_processes_share_the_port(self) -> None:
        """
        Two gateways started with the same C{service.port} and
        C{reuse_port: true} both listen on it (each logs C{Listening for
        webhook} on that port) with distinct metrics ports; 40 webhooks on
        fresh connections are all answered 202 and delivered, and each
        process answered some of them, so the kernel spread the connections.
        """
        port = free_port()
        config = _config(port, await self._stub())
        gateways = [await self._gateway(config), await self._gateway(config)]
        for gateway in gateways:
            self.assertEqual(gateway.ports["webhook"], port, gateway.output())
        self.assertNotEqual(gateways[0].ports["metrics"], gateways[1].ports["metrics"])

        for index in range(REQUESTS):
            await self._post(port, index)
        await self.stub.wait_for(REQUESTS, timeout=20)
        self.assertEqual(
            sorted(r.body["fingerprint"] for r in self.stub.received),
            sorted(str(_body(i)["alerts"][0]["fingerprint"]) for i in range(REQUESTS)),
        )
        counts = await self._counts(gateways, REQUESTS)
        self.assertEqual(sum(counts), REQUESTS, counts)
        # Both are all but certain: the kernel hashes each connection's
        # source port, and 40 fresh connections all landing on one of two
        # sockets has a probability of 2**-39.
        self.assertTrue(all(count > 0 for count in counts), counts)

    async def test_other_process_serves_after_one_stops(self) -> None:
        """
        Once one of two processes has stopped (SIGTERM, exit 0), its socket
        is gone from the port's group and every new connection goes to the
        other one: processes can be restarted one at a time.
        """
        port = free_port()
        config = _config(port, await self._stub())
        leaving, staying = await self._gateway(config), await self._gateway(config)
        self.assertEqual(await leaving.stop(), 0, leaving.output())

        for index in range(10):
            await self._post(port, index)
        self.assertEqual(await self._counts([staying], 10), [10])
        await self.stub.wait_for(10, timeout=20)

    async def test_port_held_without_reuseport(self) -> None:
        """
        With the port bound by a socket that did not set C{SO_REUSEPORT} (a
        gateway without C{service.reuse_port}, another program) the gateway
        cannot listen: it logs C{Cannot listen} and exits non-zero rather
        than running without its webhook listener.
        """
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain:
            plain.bind(("127.0.0.1", 0))
            plain.listen(1)
            config = _config(plain.getsockname()[1], "http://127.0.0.1:9/")
            gateway = GatewayProcess(config)
            with self.assertRaises(RuntimeError):
                await gateway.start()
            code = await gateway.ended()
        self.assertNotEqual(code, 0, gateway.output())
        self.assertTrue(
            any(line.get("message", "").startswith("Cannot listen") for line in gateway.lines), gateway.output()
        )
