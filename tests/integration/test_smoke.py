"""
The real plugin, started with twistd, takes the fixtures and delivers them.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import TestCase

from tests.integration.harness import GatewayProcess, StubProcessor, fixture, http_client


class FixturesReachProcessorTests(TestCase):
    timeout = 60

    async def test_alertmanager_fixture_delivered(self) -> None:
        """
        Alertmanager's captured webhook answers 202 and both alerts reach the
        processor with Alertmanager's own fingerprints.
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = GatewayProcess(
            {"alert_processor": {"endpoint": url}, "webhook": {"auth": {"token": "s3cret"}}},
        )
        await gateway.start()
        self.addCleanup(gateway.stop)
        headers: dict[bytes | str, list[bytes | str]] = {
            b"Content-Type": [b"application/json"],
            b"Authorization": [b"Bearer s3cret"],
        }
        response = await http_client().post(
            gateway.url + "/webhook/prometheus",
            data=fixture("alertmanager-firing.json"),
            headers=headers,
        )
        body = json.loads(await response.content())
        self.assertEqual(response.code, 202, body)
        await stub.wait_for(2)
        self.assertEqual(sorted(r.body["fingerprint"] for r in stub.received), ["704fae8241e05a07", "995194533ae82003"])
        self.assertEqual(await gateway.stop(), 0)
