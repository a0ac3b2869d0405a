"""
Deduplication end to end with real Prometheus Alertmanagers (issue 4, "Done
when"): what Alertmanager repeats, and what an HA pair of Alertmanagers or
of Prometheus servers sends twice, reaches the processor once per episode.

Between each Alertmanager and the gateway a L{WebhookRecorder} keeps every
webhook and the gateway's answer to it, so the tests see the gateway call
each re-send a duplicate, not only that nothing more was forwarded.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.trial.unittest import TestCase

from tests.e2e._alertmanager import Exchange, RepeatingAlertmanager, WebhookRecorder, eventually, rfc3339
from tests.integration.harness import GatewayProcess, StubProcessor, am_fingerprint, require_binary, sleep

TOKEN = "e2e-dedup-token-51c9a2"
WEBHOOK = "/webhook/prometheus"
DEDUPLICATED = "gateway_alerts_deduplicated_total"
# How long a forward the gateway queued may take to reach the stub: when
# nothing more arrived after this, nothing more was forwarded.
DELIVERY_GRACE = 1.0


def _alert(instance: str, *, starts: datetime, ends: datetime | None = None, **labels: str) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": {"alertname": "GatewayDedupE2E", "instance": instance, "severity": "critical", **labels},
        "annotations": {"summary": f"dedup end-to-end alert on {instance}"},
        "startsAt": rfc3339(starts),
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
    }
    if ends is not None:
        alert["endsAt"] = rfc3339(ends)
    return alert


def _past() -> datetime:
    """
    An C{endsAt} a moment ago: Alertmanager takes the alert as resolved.
    """
    return datetime.now(UTC) - timedelta(seconds=1)


def _forwards(stub: StubProcessor) -> dict[str, list[tuple[str, str]]]:
    """
    What the processor received, per fingerprint: (status, decision), in
    order.
    """
    forwarded: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for received in stub.received:
        forwarded[received.body["fingerprint"]].append((received.body["status"], received.body["decision"]))
    return dict(forwarded)


def _statuses(exchanges: list[Exchange], fingerprint: str) -> list[str]:
    return [e.results()[fingerprint]["status"] for e in exchanges if fingerprint in e.results()]


def _firing(exchange: Exchange, *fingerprints: str) -> bool:
    """
    Whether a webhook carries all of C{fingerprints} as firing.
    """
    firing = {a["fingerprint"] for a in exchange.payload["alerts"] if a["status"] == "firing"}
    return firing.issuperset(fingerprints)


def _resolved_in(exchange: Exchange) -> set[str]:
    return {a["fingerprint"] for a in exchange.payload["alerts"] if a["status"] == "resolved"}


class DeduplicationWithAlertmanagerTests(TestCase):
    # Each test: gateway and Alertmanager start in ~2 s, then a few rounds
    # of notifications; together well under 40 s.
    timeout = 30

    async def _gateway(self, config: dict[str, Any]) -> tuple[StubProcessor, GatewayProcess, WebhookRecorder]:
        """
        A stub processor, the gateway forwarding to it (bearer token
        C{TOKEN}, plus C{config}), and a recorder in front of the gateway;
        all stopped after the test, the recorder first.
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = GatewayProcess(
            {"alert_processor": {"endpoint": url}, "webhook": {"auth": {"token": TOKEN}}, **config}
        )
        await gateway.start()
        self.addCleanup(gateway.stop)
        recorder = WebhookRecorder(gateway.url)
        self.recorder_url = await recorder.start()
        self.addCleanup(recorder.stop)
        return stub, gateway, recorder

    async def _alertmanager(self, binary: str, **route: str) -> RepeatingAlertmanager:
        alertmanager = RepeatingAlertmanager(binary, self.recorder_url + WEBHOOK, TOKEN, **route)
        await alertmanager.start()
        self.addCleanup(alertmanager.stop)
        return alertmanager

    async def _deduplicated(self, gateway: GatewayProcess) -> float:
        return await gateway.sample(DEDUPLICATED, source="alertmanager") or 0.0

    async def test_repeat_interval_resends_forwarded_once_per_episode(self) -> None:
        """
        Alertmanager with a 1 s C{repeat_interval} re-sends a firing group of
        two alerts again and again: the gateway answers the first webhook
        C{new} for both and every re-send C{duplicate} with a growing
        C{duplicateCount}, and the processor receives each alert once.
        Resolving one alert forwards its resolution once while the other
        keeps being re-sent as a duplicate; firing it again starts a new
        episode, forwarded once more as C{new}, whose re-sends are
        duplicates again.  C{gateway_alerts_deduplicated_total} counts
        exactly the duplicates the gateway answered.

        Escalation is off: the plan's production rule (3 duplicates within
        5m) would rightly forward an escalation after the third re-send,
        and this test pins the plain deduplicated stream.
        """
        binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
        stub, gateway, recorder = await self._gateway({"escalation": {"enabled": False}})
        alertmanager = await self._alertmanager(
            binary, group_wait="500ms", group_interval="500ms", repeat_interval="1s"
        )

        started = datetime.now(UTC) - timedelta(minutes=1)
        first, second = (_alert(f"node-{n}:9100", starts=started) for n in (1, 2))
        await alertmanager.post_alerts([first, second])
        fp1, fp2 = am_fingerprint(first["labels"]), am_fingerprint(second["labels"])
        self.assertEqual(set(await alertmanager.fingerprints()), {fp1, fp2})

        # The first notification and at least three repeats of it.
        await eventually(
            lambda: sum(_firing(e, fp1, fp2) for e in recorder.exchanges) >= 4,
            "four notifications of the firing group",
        )
        rounds = list(recorder.exchanges)
        self.assertEqual({e.code for e in rounds}, {202})
        for fingerprint in (fp1, fp2):
            results = [e.results()[fingerprint] for e in rounds]
            self.assertEqual([r["status"] for r in results], ["new"] + ["duplicate"] * (len(rounds) - 1))
            self.assertEqual([r["duplicateCount"] for r in results], list(range(len(rounds))))
            self.assertEqual({r["dedupKey"] for r in results}, {fingerprint})
        await sleep(DELIVERY_GRACE)
        self.assertEqual(_forwards(stub), {fp1: [("firing", "new")], fp2: [("firing", "new")]})

        # Resolve the first; the second stays firing and keeps repeating.
        await alertmanager.post_alerts([_alert("node-1:9100", starts=started, ends=_past())])
        await eventually(
            lambda: any(fp1 in _resolved_in(e) for e in recorder.exchanges), "the first alert's resolution"
        )
        resolved_at = next(i for i, e in enumerate(recorder.exchanges) if fp1 in _resolved_in(e))
        await eventually(
            lambda: sum(_firing(e, fp2) for e in recorder.exchanges[resolved_at + 1 :]) >= 2,
            "two repeats of the second alert after the resolution",
        )
        after = list(recorder.exchanges[resolved_at:])
        self.assertEqual(_statuses(after, fp1), ["resolved"])
        self.assertEqual(set(_statuses(after, fp2)), {"duplicate"})
        await sleep(DELIVERY_GRACE)
        self.assertEqual(
            _forwards(stub), {fp1: [("firing", "new"), ("resolved", "resolved")], fp2: [("firing", "new")]}
        )

        # Firing again: a new episode.
        refired_from = len(recorder.exchanges)
        await alertmanager.post_alerts([_alert("node-1:9100", starts=datetime.now(UTC))])
        await eventually(
            lambda: sum(_firing(e, fp1) for e in recorder.exchanges[refired_from:]) >= 3,
            "three notifications of the alert firing again",
        )
        again = [e for e in recorder.exchanges[refired_from:] if fp1 in e.results()]
        self.assertEqual(_statuses(again, fp1), ["new"] + ["duplicate"] * (len(again) - 1))
        self.assertEqual([e.results()[fp1]["duplicateCount"] for e in again], list(range(len(again))))
        await sleep(DELIVERY_GRACE)
        self.assertEqual(
            _forwards(stub),
            {fp1: [("firing", "new"), ("resolved", "resolved"), ("firing", "new")], fp2: [("firing", "new")]},
        )

        # With Alertmanager gone, the counter matches every answer.
        await alertmanager.stop()
        await recorder.settled()
        duplicates = sum(1 for e in recorder.exchanges for r in e.answer["alerts"] if r["status"] == "duplicate")
        self.assertGreaterEqual(duplicates, 3 * 2 + 2 + 2)
        self.assertEqual(await self._deduplicated(gateway), duplicates)

    async def test_ha_alertmanager_pair_forwards_once(self) -> None:
        """
        Two Alertmanagers (an HA pair, here independent: clustering off)
        are given the same two alerts and both notify the gateway: per
        alert the gateway answers one webhook C{new} and the other
        C{duplicate}, and the processor receives it once.  Both then send
        the resolution: one is forwarded, the other is a duplicate.  With
        the default settings, so a pair's doubled notifications do not
        escalate either.
        """
        binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
        stub, gateway, recorder = await self._gateway({})
        pair = [await self._alertmanager(binary, group_wait="1s", group_interval="500ms") for _ in range(2)]

        started = datetime.now(UTC) - timedelta(minutes=1)
        alerts = [_alert(f"db-{n}:9187", starts=started, namespace="payments") for n in (1, 2)]
        fingerprints = {am_fingerprint(a["labels"]) for a in alerts}
        for alertmanager in pair:
            await alertmanager.post_alerts(alerts)
            self.assertEqual(set(await alertmanager.fingerprints()), fingerprints)

        await eventually(
            lambda: all(any(_firing(e, *fingerprints) for e in recorder.sent_by(am)) for am in pair),
            "a notification from each Alertmanager",
        )
        await sleep(DELIVERY_GRACE)
        firing = list(recorder.exchanges)
        self.assertEqual([e.code for e in firing], [202, 202])
        for fingerprint in fingerprints:
            self.assertEqual(sorted(_statuses(firing, fingerprint)), ["duplicate", "new"])
        self.assertEqual(_forwards(stub), {f: [("firing", "new")] for f in fingerprints})

        ended = _past()
        resolved = [_alert(f"db-{n}:9187", starts=started, ends=ended, namespace="payments") for n in (1, 2)]
        for alertmanager in pair:
            await alertmanager.post_alerts(resolved)
        await eventually(
            lambda: all(any(_resolved_in(e) == fingerprints for e in recorder.sent_by(am)) for am in pair),
            "the resolution from each Alertmanager",
        )
        await sleep(DELIVERY_GRACE)
        closing = recorder.exchanges[len(firing) :]
        self.assertEqual([e.code for e in closing], [202, 202])
        for fingerprint in fingerprints:
            self.assertEqual(sorted(_statuses(closing, fingerprint)), ["duplicate", "resolved"])
        self.assertEqual(_forwards(stub), {f: [("firing", "new"), ("resolved", "resolved")] for f in fingerprints})
        self.assertEqual(await self._deduplicated(gateway), 4)

    async def test_ha_prometheus_replicas_forwarded_once(self) -> None:
        """
        An HA Prometheus pair: the same alert reaches Alertmanager twice,
        from each replica with its own C{replica} label, so Alertmanager
        has two alerts with two fingerprints and notifies both.  With
        C{dedup.ignore_labels: [replica]} the gateway gives both the same
        dedup key (Alertmanager's fingerprint of the labels without
        C{replica}), answers one C{new} and the other C{duplicate}, and
        forwards one alert carrying that key; resolving both replicas
        forwards one resolution.
        """
        binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
        stub, gateway, recorder = await self._gateway({"dedup": {"ignore_labels": ["replica"]}})
        alertmanager = await self._alertmanager(binary, group_wait="1s", group_interval="500ms")

        started = datetime.now(UTC) - timedelta(minutes=1)
        replicas = [_alert("api-1:8080", starts=started, replica=r) for r in ("prom-a", "prom-b")]
        # Each replica posts on its own, as two Prometheus servers do.
        for alert in replicas:
            await alertmanager.post_alerts([alert])
        by_replica = {a["labels"]["replica"]: am_fingerprint(a["labels"]) for a in replicas}
        fingerprints = set(by_replica.values())
        self.assertEqual(set(await alertmanager.fingerprints()), fingerprints)
        shared = {k: v for k, v in replicas[0]["labels"].items() if k != "replica"}
        key = am_fingerprint(shared)
        self.assertNotIn(key, fingerprints)

        await eventually(lambda: any(_firing(e, *fingerprints) for e in recorder.exchanges), "both replicas notified")
        await sleep(DELIVERY_GRACE)
        firing = list(recorder.exchanges)
        results = [r for e in firing for r in e.answer["alerts"]]
        self.assertEqual({r["dedupKey"] for r in results}, {key})
        # Usually one webhook with both; two if the second replica missed
        # the first group_wait: either way a single new.
        self.assertIn(len(results), (2, 3), results)
        self.assertEqual(sorted(r["status"] for r in results), ["duplicate"] * (len(results) - 1) + ["new"])
        self.assertEqual(len(stub.received), 1, [r.body for r in stub.received])
        forwarded = stub.received[0].body
        self.assertEqual((forwarded["status"], forwarded["decision"], forwarded["dedupKey"]), ("firing", "new", key))
        self.assertIn(forwarded["fingerprint"], fingerprints)
        self.assertEqual(
            forwarded["labels"]["replica"], next(r for r, f in by_replica.items() if f == forwarded["fingerprint"])
        )

        ended = _past()
        await alertmanager.post_alerts(
            [_alert("api-1:8080", starts=started, ends=ended, replica=r) for r in ("prom-a", "prom-b")]
        )
        await eventually(
            lambda: any(_resolved_in(e) == fingerprints for e in recorder.exchanges), "both replicas resolved"
        )
        await sleep(DELIVERY_GRACE)
        closing = [r for e in recorder.exchanges[len(firing) :] for r in e.answer["alerts"]]
        self.assertEqual(sorted(r["status"] for r in closing), ["duplicate", "resolved"])
        self.assertEqual({r["dedupKey"] for r in closing}, {key})
        self.assertEqual(
            [(r.body["status"], r.body["decision"], r.body["dedupKey"]) for r in stub.received],
            [("firing", "new", key), ("resolved", "resolved", key)],
        )
        # The firing replica(s) that were not new, and the second resolution.
        self.assertEqual(await self._deduplicated(gateway), len(results) - 1 + 1)
