"""
Attacks on the gateway's memory, through the real plugin on loopback: a
sender posting alerts with huge labels, or floods of new alerts and
groups, must not grow the process past its byte bounds, and memory must
come back once what was accepted is delivered.  Each attack is bounded in
count and time; each test asserts what a real sender sees meanwhile and
the resident memory of the gateway process (VmRSS of /proc/<pid>/status).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from tests.integration._openapi import APIDocument, load_document
from tests.integration.harness import (
    GatewayProcess,
    StubProcessor,
    am_fingerprint,
    http_client,
    json_headers,
    sleep,
)

TOKEN = "memory-itest-token-5d2c"
WEBHOOK = "/webhook/prometheus"
ATTACKS = 150
# 128 labels of 4,096 characters: within the count and length limits.
HUGE_LABELS = 126
HUGE_VALUE = 4096
MIB = 1024 * 1024


def rss_mib(pid: int) -> float:
    """
    The process's resident memory now, in MiB.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def huge_alert(index: int) -> dict[str, Any]:
    """
    A new alert (its own fingerprint) of one group, with about 0.5 MB of
    labels.
    """
    labels = {"alertname": "MemoryAttack", "namespace": "attack"}
    filler = f"{index:06d}" * (HUGE_VALUE // 6 + 1)
    for n in range(HUGE_LABELS):
        labels[f"l{n:03d}"] = filler[n : n + HUGE_VALUE]
    return {"status": "firing", "labels": labels, "startsAt": "2026-11-26T03:49:49Z"}


def body(*alerts: dict[str, Any]) -> bytes:
    return json.dumps({"version": "4", "status": "firing", "receiver": "gw", "alerts": list(alerts)}).encode()


def real_alert(pod: str) -> dict[str, Any]:
    labels = {"alertname": "KubePodCrashLooping", "namespace": "payments", "pod": pod, "severity": "critical"}
    return {"status": "firing", "labels": labels, "annotations": {"summary": f"{pod} is crash looping"}}


def delivered(stub: StubProcessor, pod: str) -> bool:
    """
    Whether the processor got the alert of C{pod}, alone or in a batch.
    """
    for received in stub.received:
        alerts: Any = received.body
        for alert in alerts if isinstance(alerts, list) else [alerts]:
            if alert.get("labels", {}).get("pod") == pod:
                return True
    return False


class MemoryAttackTests(TestCase):
    timeout = 180

    async def start(self, config: dict[str, Any]) -> tuple[GatewayProcess, StubProcessor]:
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        settings: dict[str, Any] = {
            "alert_processor": {"endpoint": url},
            "webhook": {"auth": {"token": TOKEN}},
            "logging": {"format": "json", "level": "info"},
        }
        for key, value in config.items():
            settings[key] = {**settings.get(key, {}), **value}
        gateway = GatewayProcess(settings)
        await gateway.start()
        self.addCleanup(gateway.stop)
        # Let start-up settle before the baseline is read.
        await sleep(1.0)
        return gateway, stub

    async def post(self, gateway: GatewayProcess, data: bytes) -> tuple[int, Any]:
        response = await http_client().post(gateway.url + WEBHOOK, data=data, headers=json_headers(TOKEN))
        return response.code, json.loads(await response.content())

    async def test_huge_labels_refused_per_alert(self) -> None:
        """
        At the defaults, 150 webhooks each carrying an alert with 0.5 MB of
        labels are answered 400 invalid-payload, with the pointer to that
        alert's labels and their size; the gateway's memory barely moves
        (less than 80 MiB, in fact a few), and a real sender's alert posted
        after them is accepted and delivered.
        """
        gateway, stub = await self.start({})
        start = rss_mib(gateway.pid)
        peak = start
        for index in range(ATTACKS):
            code, answer = await self.post(gateway, body(huge_alert(index)))
            self.assertEqual((code, answer["type"]), (400, "urn:alertgateway:problem:invalid-payload"), answer)
            [error] = answer["errors"]
            self.assertEqual(error["pointer"], "/alerts/0/labels")
            self.assertRegex(error["message"], r"^labels total \d+ bytes; at most 16384$")
            peak = max(peak, rss_mib(gateway.pid))
        self.assertLess(peak - start, 80, (start, peak))
        code, answer = await self.post(gateway, body(real_alert("api-1")))
        self.assertEqual((code, answer["alerts"][0]["status"]), (202, "new"), answer)
        await stub.wait_for(1)
        self.assertEqual(stub.received[0].body["labels"]["pod"], "api-1")

    async def test_huge_labels_let_through_stay_bounded(self) -> None:
        """
        With the label bytes limit raised so that the 150 alerts of 0.5 MB
        of labels are accepted (all 202: ten forwarded alone, the rest
        folded into a storm), the gateway grows by less than 80 MiB: the
        storm keeps each member by its fingerprint and at most 1 KiB of
        labels (here none fit, and the events say so), and its events stay
        within their byte bound (and are as docs/openapi.yaml describes).  Once everything is delivered and the
        storm closed, the state's estimate is back to nearly nothing and
        resident memory has come back toward where it started.
        """
        config = {
            "limits": {"max_label_bytes": MIB},
            "dedup": {"window": "10s", "expire_interval": "1s"},
            "storm": {"flush_interval": "1s", "quiet_period": "3s"},
        }
        gateway, stub = await self.start(config)
        start = rss_mib(gateway.pid)
        peak = start
        verdicts: dict[str, int] = {}
        for index in range(ATTACKS):
            code, answer = await self.post(gateway, body(huge_alert(index)))
            self.assertEqual(code, 202, answer)
            verdict = answer["alerts"][0]["status"]
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
            peak = max(peak, rss_mib(gateway.pid))
        self.assertEqual(verdicts, {"new": 10, "aggregated": ATTACKS - 10})
        self.assertLess(peak - start, 80, (start, peak))

        def closed() -> bool:
            return any(r.body.get("type") == "storm" and r.body.get("state") == "closed" for r in stub.received)

        await stub.wait_until(closed, timeout=60)
        events = [r.body for r in stub.received if r.body.get("type") == "storm"]
        members = [m for event in events for m in event["members"]]
        self.assertEqual(events[-1]["memberCount"], ATTACKS)
        self.assertEqual(len(members) + events[-1]["unlistedMembers"], ATTACKS)
        expected = {am_fingerprint(huge_alert(index)["labels"]) for index in range(ATTACKS)}
        self.assertLessEqual({m["fingerprint"] for m in members}, expected)
        self.assertEqual({(json.dumps(m["labels"]), m["labelsOmitted"]) for m in members}, {("{}", HUGE_LABELS)})
        for event in events:
            self.assertLess(len(json.dumps(event)), 256 * 1024 + 4096)
        api = APIDocument(load_document())
        for received in stub.received:
            if received.body.get("type") == "storm":
                self.assertEqual(api.check_outbound(received.headers, received.body), [], received.body["state"])
        # The episodes lapse (dedup.window 10s) and the storm is gone.
        for _ in range(30):
            left = await gateway.sample("gateway_state_bytes")
            if left is not None and left < 64 * 1024:
                break
            await sleep(1.0)
        self.assertLess(left or 0, 64 * 1024)
        end = rss_mib(gateway.pid)
        self.assertLess(end - start, 40, (start, peak, end))

    async def test_flood_of_new_alerts_evicts_not_refuses(self) -> None:
        """
        A flood of 10,000 new alerts in 2,000 groups of five (one short of
        nothing: every group is watched) against a small state.max_bytes:
        the state's estimate never passes it, the least recently active
        episodes and groups are evicted (counted), every webhook is still
        accepted, and a real sender's alert after the flood is delivered
        and then recognised as a duplicate.
        """
        gateway, stub = await self.start(
            {"state": {"max_bytes": MIB}, "alert_processor": {"batch_size": 100}, "queue": {"max_items": 20_000}}
        )
        start = rss_mib(gateway.pid)
        for batch in range(20):
            alerts = [real_alert(f"flood-{batch}-{n}") for n in range(500)]
            for n, alert in enumerate(alerts):
                alert["labels"]["namespace"] = f"flood-{batch}-{n // 5}"
            code, answer = await self.post(gateway, body(*alerts))
            self.assertEqual((code, answer["accepted"]), (202, 500), answer)
            state = await gateway.sample("gateway_state_bytes")
            assert state is not None
            self.assertLessEqual(state, MIB)
        evicted = await gateway.sample("gateway_dedup_evictions_total")
        assert evicted is not None
        self.assertGreater(evicted, 5000)
        self.assertLess(rss_mib(gateway.pid) - start, 80)
        code, answer = await self.post(gateway, body(real_alert("api-after-flood")))
        self.assertEqual((code, answer["alerts"][0]["status"]), (202, "new"), answer)
        code, answer = await self.post(gateway, body(real_alert("api-after-flood")))
        self.assertEqual((code, answer["alerts"][0]["status"]), (202, "duplicate"), answer)
        await stub.wait_until(lambda: delivered(stub, "api-after-flood"), timeout=60)
