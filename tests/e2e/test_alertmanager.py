"""
End to end with a real Prometheus Alertmanager: alerts posted to its API go
through its webhook receiver (the one C{docs/operations.md} documents, bearer
token from C{http_config}) to the gateway, and on to the stub processor with
Alertmanager's fingerprints.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.trial.unittest import TestCase

from tests.e2e._alertmanager import DocumentedAlertmanager
from tests.integration.harness import (
    GatewayProcess,
    StubProcessor,
    http_client,
    require_binary,
)

TOKEN = "e2e-token-7a4d0f3e"
JSON: dict[bytes | str, list[bytes | str]] = {b"Content-Type": [b"application/json"]}


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class AlertmanagerToProcessorTests(TestCase):
    # Alertmanager starts in about a second and notifies after group_wait
    # (1 s); everything together must stay well under this.
    timeout = 30

    async def test_alerts_flow_with_alertmanager_fingerprints(self) -> None:
        """
        Two firing alerts posted to Alertmanager's API reach the processor
        through the gateway as source alertmanager, status firing, with
        exactly the fingerprints Alertmanager reports for them on
        /api/v2/alerts; the gateway saw Alertmanager's own User-Agent and
        accepted its bearer token, sent as docs/operations.md configures
        it.  Posting one of them again with endsAt
        in the past makes it reach the processor as resolved, with the same
        fingerprint.
        """
        binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = GatewayProcess({"alert_processor": {"endpoint": url}, "webhook": {"auth": {"token": TOKEN}}})
        await gateway.start()
        self.addCleanup(gateway.stop)
        alertmanager = DocumentedAlertmanager(binary, gateway.url + "/webhook/prometheus", TOKEN)
        await alertmanager.start()
        self.addCleanup(alertmanager.stop)

        client = http_client()
        started = datetime.now(UTC) - timedelta(minutes=1)
        alerts: list[dict[str, Any]] = [
            {
                "labels": {"alertname": "GatewayE2E", "instance": f"node-{n}:9100", "severity": "critical"},
                "annotations": {"summary": f"end-to-end alert {n}"},
                "startsAt": _rfc3339(started),
                "generatorURL": "http://prometheus.example/graph?g0.expr=up",
            }
            for n in (1, 2)
        ]
        response = await client.post(
            alertmanager.url + "/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers=JSON,
        )
        self.assertEqual(response.code, 200, await response.content())

        await stub.wait_for(2, timeout=10)
        response = await client.get(alertmanager.url + "/api/v2/alerts")
        known = {a["fingerprint"]: a["labels"] for a in json.loads(await response.content())}
        self.assertEqual(len(known), 2, known)
        delivered = {r.body["fingerprint"]: r.body for r in stub.received}
        self.assertEqual(set(delivered), set(known))
        for fingerprint, body in delivered.items():
            self.assertEqual(body["labels"], known[fingerprint])
            self.assertEqual(body["source"], "alertmanager")
            self.assertEqual(body["status"], "firing")
        self.assertTrue(all(r.headers.get("idempotency-key") for r in stub.received))
        # Access lines reach the log within 50 ms of the answer, which may
        # be after the alert reached the processor.
        await gateway.wait_for_event(lambda e: e.get("type") == "access" and e.get("path") == "/webhook/prometheus")
        webhook_lines = [line for line in gateway.access_log() if line["path"] == "/webhook/prometheus"]
        self.assertTrue(webhook_lines)
        for line in webhook_lines:
            self.assertEqual(line["status"], 202, line)
            self.assertTrue(line["user_agent"].startswith("Alertmanager/"), line)

        resolved = dict(alerts[0], endsAt=_rfc3339(datetime.now(UTC) - timedelta(seconds=1)))
        response = await client.post(
            alertmanager.url + "/api/v2/alerts",
            data=json.dumps([resolved]).encode(),
            headers=JSON,
        )
        self.assertEqual(response.code, 200, await response.content())
        resolved_fingerprint = next(f for f, labels in known.items() if labels == alerts[0]["labels"])

        def resolution_arrived() -> bool:
            return any(
                r.body["fingerprint"] == resolved_fingerprint and r.body["status"] == "resolved" for r in stub.received
            )

        await stub.wait_until(resolution_arrived, timeout=10)
        # The other alert of the group is still firing.
        latest = {r.body["fingerprint"]: r.body["status"] for r in stub.received}
        self.assertEqual(
            latest, {resolved_fingerprint: "resolved", **{f: "firing" for f in known if f != resolved_fingerprint}}
        )


class RateLimitedAlertmanagerTests(TestCase):
    timeout = 60

    async def test_nothing_lost_under_a_rate_limit(self) -> None:
        """
        Five groups notified at once against a rate limit of one webhook a
        second: the gateway refuses most of them 503 with Retry-After (its
        default for an Alertmanager endpoint), Alertmanager retries them
        (it would drop a 429), and every alert reaches the processor.
        """
        binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = GatewayProcess(
            {
                "alert_processor": {"endpoint": url},
                "webhook": {"auth": {"token": TOKEN}},
                "rate_limiting": {"global_limit": 60, "burst_size": 1},
            }
        )
        await gateway.start()
        self.addCleanup(gateway.stop)
        alertmanager = DocumentedAlertmanager(binary, gateway.url + "/webhook/prometheus", TOKEN)
        await alertmanager.start()
        self.addCleanup(alertmanager.stop)
        started = datetime.now(UTC) - timedelta(minutes=1)
        alerts = [
            {"labels": {"alertname": f"Limited{n}", "severity": "critical"}, "startsAt": _rfc3339(started)}
            for n in range(5)
        ]
        response = await http_client().post(
            alertmanager.url + "/api/v2/alerts", data=json.dumps(alerts).encode(), headers=JSON
        )
        self.assertEqual(response.code, 200, await response.content())
        await stub.wait_for(5, timeout=45)
        self.assertEqual({r.body["labels"]["alertname"] for r in stub.received}, {f"Limited{n}" for n in range(5)})
        refused = await gateway.sample(
            "gateway_security_rejections_total", endpoint="/webhook/prometheus", reason="rate"
        )
        self.assertGreater(refused or 0, 0)
