"""
Deduplication, escalation, correlation and storms through the running
plugin (issue 4): what each webhook answer says, what reaches the stub
processor (and in which order), the status API and the metrics.

Everything the gateway forwards for one alert is delivered in the order it
was decided, so a duplicate forwarded by mistake would show up between the
forwards these tests expect, not only as a count.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    GatewayProcess,
    Received,
    StubProcessor,
    am_fingerprint,
    distinct_json,
    fixture_json,
    http_client,
    json_headers,
    reactor,
    require_binary,
    resolved_json,
    run,
    sleep,
)

TOKEN = "dedup-itest-token-3b8e51"
AM = "alertmanager-firing.json"
WEBHOOK = "/webhook/prometheus"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _alerts(*labels: dict[str, str], status: str = "firing") -> dict[str, Any]:
    """
    An Alertmanager webhook body with one alert per label set.
    """
    return {"version": "4", "status": status, "alerts": [{"status": status, "labels": dict(ls)} for ls in labels]}


def _streams(stub: StubProcessor) -> dict[str, list[tuple[str, str]]]:
    """
    The alerts the processor received, per fingerprint: (status, decision),
    in the order received.
    """
    streams: dict[str, list[tuple[str, str]]] = {}
    for record in _alert_records(stub):
        streams.setdefault(record.body["fingerprint"], []).append((record.body["status"], record.body["decision"]))
    return streams


def _alert_records(stub: StubProcessor) -> list[Received]:
    return [r for r in stub.received if r.body.get("type") != "storm"]


def _storm_records(stub: StubProcessor) -> list[Received]:
    return [r for r in stub.received if r.body.get("type") == "storm"]


class _DedupTestCase(TestCase):
    timeout = 60

    async def start(self, config: dict[str, Any] | None = None) -> tuple[GatewayProcess, StubProcessor]:
        """
        A stub processor and a gateway forwarding to it (bearer TOKEN, plus
        C{config}), both stopped at the end of the test.
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        settings: dict[str, Any] = {
            "alert_processor": {"endpoint": url},
            "webhook": {"auth": {"token": TOKEN}},
            # Repeats posted back to back each count toward escalation.
            "escalation": {"min_spacing": "0s"},
        }
        settings.update(config or {})
        gateway = GatewayProcess(settings)
        await gateway.start()
        self.addCleanup(gateway.stop)
        return gateway, stub

    async def post(self, gateway: GatewayProcess, body: dict[str, Any], request_id: str | None = None) -> Any:
        """
        Post a webhook; it must be accepted whole (202).  Its answer.
        """
        response = await http_client().post(
            gateway.url + WEBHOOK, data=json.dumps(body).encode(), headers=json_headers(TOKEN, request_id)
        )
        answer = json.loads(await response.content())
        self.assertEqual(response.code, 202, answer)
        return answer

    async def get(self, gateway: GatewayProcess, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
        """
        GET a status API path; its status code and decoded body.
        """
        response = await http_client().get(gateway.url + path, headers=json_headers(token))
        return response.code, json.loads(await response.content())

    async def until(self, condition: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
        """
        Wait until the coroutine function C{condition} returns true.
        """
        deadline = reactor.seconds() + timeout
        while not await condition():
            if reactor.seconds() > deadline:
                self.fail(f"timed out waiting for {what}")
            await sleep(0.05)

    async def metrics(self, gateway: GatewayProcess) -> Samples:
        """
        The samples of /metrics, which must pass C{promtool check metrics}.
        """
        promtool = require_binary("promtool", "prometheus")
        response = await http_client().get(gateway.metrics_url)
        exposition = await response.content()
        self.assertEqual(response.code, 200)
        checked = await run([promtool, "check", "metrics"], stdin=exposition)
        self.assertEqual(checked.code, 0, checked.output + exposition.decode())
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(exposition.decode())
            for s in family.samples
        }


class EpisodeTests(_DedupTestCase):
    async def test_one_forward_per_episode_and_one_escalation(self) -> None:
        """
        The same Alertmanager webhook posted three times is forwarded once:
        the answers say new, then duplicate with duplicateCount 1 and 2.
        The next repeat crosses the production rule (3 duplicates within
        5m) and is forwarded once more, with its escalation object; later
        repeats are duplicates again (one escalation per episode).  The
        resolution is forwarded once (its repeat is a duplicate) and a
        firing after it is new again.  Per alert the processor receives
        exactly new, escalated, resolved, new; the status API and the
        dedup and escalation metrics (valid for promtool) say the same.
        """
        gateway, stub = await self.start()
        firing = fixture_json(AM)
        fingerprints = [a["fingerprint"] for a in firing["alerts"]]

        answers = [await self.post(gateway, firing) for _ in range(5)]
        self.assertEqual(
            [[a["status"] for a in answer["alerts"]] for answer in answers],
            [["new"] * 2, ["duplicate"] * 2, ["duplicate"] * 2, ["escalated"] * 2, ["duplicate"] * 2],
        )
        self.assertEqual(
            [[a["duplicateCount"] for a in answer["alerts"]] for answer in answers], [[n, n] for n in range(5)]
        )
        for answer in answers:
            self.assertEqual([a["fingerprint"] for a in answer["alerts"]], fingerprints)
            self.assertEqual([a["dedupKey"] for a in answer["alerts"]], fingerprints)
            self.assertEqual([a["alertStatus"] for a in answer["alerts"]], ["firing", "firing"])
        # One correlation group: both alerts have the same alertname and namespace.
        [group] = {a["groupId"] for answer in answers for a in answer["alerts"]}

        code, state = await self.get(gateway, f"/v1/alerts/{fingerprints[0]}")
        self.assertEqual(code, 200, state)
        self.assertEqual(
            {k: state[k] for k in ("fingerprint", "dedupKey", "status", "duplicateCount", "escalation", "groupId")},
            {
                "fingerprint": fingerprints[0],
                "dedupKey": fingerprints[0],
                "status": "firing",
                "duplicateCount": 4,
                "escalation": "immediate",
                "groupId": group,
            },
        )
        self.assertEqual((state["environment"], state["source"], state["storm"]), ("production", "alertmanager", None))
        self.assertLess(state["firstSeen"], state["lastSeen"])

        resolved = resolved_json(firing)
        answers = [await self.post(gateway, resolved) for _ in range(2)]
        self.assertEqual(
            [[(a["status"], a["alertStatus"]) for a in answer["alerts"]] for answer in answers],
            [[("resolved", "resolved")] * 2, [("duplicate", "resolved")] * 2],
        )
        code, state = await self.get(gateway, f"/v1/alerts/{fingerprints[1]}")
        self.assertEqual((code, state["status"]), (200, "resolved"), state)

        # Firing again, as Alertmanager sends it: a new start.
        again = json.loads(json.dumps(firing))
        for alert in again["alerts"]:
            alert["startsAt"] = "2026-11-26T04:30:00Z"
        answer = await self.post(gateway, again)
        self.assertEqual([(a["status"], a["duplicateCount"]) for a in answer["alerts"]], [("new", 0)] * 2)

        await stub.wait_for(8)
        expected = [("firing", "new"), ("firing", "escalated"), ("resolved", "resolved"), ("firing", "new")]
        self.assertEqual(_streams(stub), dict.fromkeys(fingerprints, expected))
        for fingerprint in fingerprints:
            new, escalated, closed, renewed = [r for r in stub.received if r.body["fingerprint"] == fingerprint]
            self.assertEqual(
                escalated.body["escalation"],
                {
                    "level": "immediate",
                    "reason": "3 duplicates within 5m",
                    "duplicateCount": 3,
                    "window": "5m",
                    "environment": "production",
                },
            )
            for record in (new, closed, renewed):
                self.assertNotIn("escalation", record.body)
            self.assertEqual([r.body["duplicateCount"] for r in (new, escalated, closed, renewed)], [0, 3, 4, 0])
            for record in (new, escalated, closed, renewed):
                self.assertEqual(
                    (record.body["dedupKey"], record.body["groupId"], record.body["environment"]),
                    (fingerprint, group, "production"),
                )
                self.assertLessEqual(record.body["firstSeen"], record.body["lastSeen"])
            # One episode until the resolution, another after it.
            self.assertEqual({r.body["firstSeen"] for r in (new, escalated, closed)}, {new.body["firstSeen"]})
            self.assertGreater(renewed.body["firstSeen"], closed.body["lastSeen"])
            keys = [r.headers["idempotency-key"] for r in (new, escalated, closed, renewed)]
            self.assertEqual(len(set(keys)), 4, keys)

        code, state = await self.get(gateway, f"/v1/alerts/{fingerprints[0]}")
        self.assertEqual(
            (code, state["status"], state["duplicateCount"], state["escalation"]), (200, "firing", 0, None), state
        )

        async def delivered() -> bool:
            _, state = await self.get(gateway, f"/v1/alerts/{fingerprints[0]}")
            return bool(state["delivery"] == "delivered")

        await self.until(delivered, "the status API to say delivered")

        samples = await self.metrics(gateway)
        # Posts 2, 3 and 5 and the repeated resolution, two alerts each.
        self.assertEqual(samples[("gateway_alerts_deduplicated_total", frozenset({("source", "alertmanager")}))], 8)
        escalations = frozenset({("environment", "production"), ("level", "immediate")})
        self.assertEqual(samples[("gateway_escalations_total", escalations)], 2)
        self.assertEqual(samples[("gateway_dedup_tracked", frozenset())], 2)
        self.assertEqual(samples[("gateway_storms_active", frozenset())], 0)
        self.assertEqual(len(stub.received), 8)


class KeysTests(_DedupTestCase):
    async def test_replicas_environments_groups_and_the_alert_list(self) -> None:
        """
        With dedup.ignore_labels [replica], the same alert from two
        replicas is one dedup key: the second is a duplicate, not
        forwarded.  The environment is the first environment label present
        (lower-cased), else the environment whose namespace patterns match,
        else the default; alerts of another alertname are another group.  A
        resolution the gateway does not know is forwarded.  GET /v1/alerts
        lists every tracked alert once over pages joined by nextCursor,
        ordered by dedupKey, filters by status and refuses a bad limit
        with invalid-query; unknown fingerprints are 404 and requests
        without the token 401.
        """
        gateway, stub = await self.start(
            {
                "dedup": {"ignore_labels": ["replica"]},
                "escalation": {"environments": {"development": {"namespaces": ["dev-*"]}}},
            }
        )
        plain = [a["fingerprint"] for a in fixture_json(AM)["alerts"]]
        replica_a = await self.post(gateway, distinct_json(AM, "a", label="replica"))
        replica_b = await self.post(gateway, distinct_json(AM, "b", label="replica"))
        self.assertEqual([a["status"] for a in replica_a["alerts"]], ["new", "new"])
        self.assertEqual([a["status"] for a in replica_b["alerts"]], ["duplicate", "duplicate"])
        for answer in (replica_a, replica_b):
            self.assertEqual([a["dedupKey"] for a in answer["alerts"]], plain)
            self.assertNotEqual([a["fingerprint"] for a in answer["alerts"]], plain)

        environments = _alerts(
            {"alertname": "EnvLabel", "env": "Staging", "namespace": "dev-api"},
            {"alertname": "EnvBoth", "environment": "development", "env": "staging"},
            {"alertname": "EnvNamespace", "namespace": "dev-api"},
            {"alertname": "EnvDefault", "namespace": "shop"},
        )
        answer = await self.post(gateway, environments)
        self.assertEqual([a["status"] for a in answer["alerts"]], ["new"] * 4)
        groups = {a["groupId"] for a in answer["alerts"]} | {replica_a["alerts"][0]["groupId"]}
        self.assertEqual(len(groups), 5)
        unknown = _alerts({"alertname": "NeverSeen", "namespace": "shop"}, status="resolved")
        answer = await self.post(gateway, unknown)
        self.assertEqual([a["status"] for a in answer["alerts"]], ["resolved"])

        await stub.wait_for(7)
        forwarded = {r.body["labels"]["alertname"]: r.body for r in stub.received}
        self.assertEqual(
            {name: forwarded[name]["environment"] for name in ("EnvLabel", "EnvBoth", "EnvNamespace", "EnvDefault")},
            {
                "EnvLabel": "staging",
                "EnvBoth": "development",
                "EnvNamespace": "development",
                "EnvDefault": "production",
            },
        )
        self.assertEqual(
            (forwarded["NeverSeen"]["status"], forwarded["NeverSeen"]["decision"]), ("resolved", "resolved")
        )
        self.assertEqual(
            sorted(r.body["labels"].get("replica", "") for r in stub.received if r.body["dedupKey"] in plain),
            ["a", "a"],
        )

        tracked = sorted(
            plain
            + [a["dedupKey"] for a in answer["alerts"]]
            + [am_fingerprint(a["labels"]) for a in environments["alerts"]]
        )
        pages: list[Any] = []
        query: dict[str, str] = {"limit": "3"}
        while True:
            code, page = await self.get(gateway, "/v1/alerts?" + urlencode(query))
            self.assertEqual(code, 200, page)
            pages.append(page)
            if page["nextCursor"] is None:
                break
            query["cursor"] = page["nextCursor"]
        self.assertEqual([p["count"] for p in pages], [3, 3, 1])
        self.assertEqual([a["dedupKey"] for p in pages for a in p["alerts"]], tracked)
        code, firing = await self.get(gateway, "/v1/alerts?status=firing&limit=1000")
        self.assertEqual((code, firing["count"], firing["nextCursor"]), (200, 6, None), firing)
        code, closed = await self.get(gateway, "/v1/alerts?status=resolved")
        self.assertEqual([a["fingerprint"] for a in closed["alerts"]], [answer["alerts"][0]["fingerprint"]])

        code, problem = await self.get(gateway, "/v1/alerts?limit=1001")
        self.assertEqual(
            (code, problem["type"], problem["parameter"]), (400, "urn:alertgateway:problem:invalid-query", "limit")
        )
        code, state = await self.get(gateway, f"/v1/alerts/{replica_a['alerts'][0]['fingerprint']}")
        self.assertEqual((code, state["dedupKey"], state["duplicateCount"]), (200, plain[0], 1), state)
        code, problem = await self.get(gateway, "/v1/alerts/0123456789abcdef")
        self.assertEqual((code, problem["type"]), (404, "urn:alertgateway:problem:not-found"))
        for path in ("/v1/alerts", f"/v1/alerts/{plain[0]}"):
            code, problem = await self.get(gateway, path, token=None)
            self.assertEqual((code, problem["type"]), (401, "urn:alertgateway:problem:unauthorized"), path)


class StormTests(_DedupTestCase):
    async def test_storm_is_folded_into_events_and_closed(self) -> None:
        """
        With storm.threshold 3, six new alerts of one group in one webhook:
        the first three are forwarded alone, the fourth starts a storm
        (forwarded at once as one storm event listing the four), the last
        two are aggregated; after storm.quiet_period a closing summary lists
        them, so every member is in some storm event, in order on the
        storm's key.  gateway_storms_active and
        gateway_storm_alerts_aggregated_total (valid for promtool) follow,
        and the status API names the storm.  Once dedup.window has lapsed
        without a sighting the alert is forgotten and new again.
        """
        gateway, stub = await self.start(
            {
                "storm": {"threshold": 3, "quiet_period": "1s"},
                "dedup": {"window": "2s", "expire_interval": "0.2s"},
            }
        )
        members = [
            {"alertname": "StormItest", "namespace": "storm", "pod": f"api-{n}", "severity": "page"} for n in range(6)
        ]
        fingerprints = [am_fingerprint(labels) for labels in members]
        answer = await self.post(gateway, _alerts(*members), request_id="storm-start")
        self.assertEqual([a["status"] for a in answer["alerts"]], ["new"] * 3 + ["aggregated"] * 3)
        self.assertEqual([a["fingerprint"] for a in answer["alerts"]], fingerprints)
        [group] = {a["groupId"] for a in answer["alerts"]}

        samples = await self.metrics(gateway)
        self.assertEqual(samples[("gateway_storms_active", frozenset())], 1)
        self.assertEqual(samples[("gateway_storm_alerts_aggregated_total", frozenset())], 3)
        await stub.wait_until(lambda: len(_storm_records(stub)) >= 1)
        started = _storm_records(stub)[0]
        code, state = await self.get(gateway, f"/v1/alerts/{fingerprints[5]}")
        self.assertEqual((code, state["storm"], state["status"]), (200, started.body["stormId"], "firing"), state)

        await stub.wait_until(lambda: any(r.body.get("state") == "closed" for r in _storm_records(stub)))
        storm = _storm_records(stub)
        self.assertEqual([r.body["state"] for r in storm], ["started", "closed"])
        self.assertEqual([r.body["sequence"] for r in storm], [1, 2])
        self.assertEqual([r.body["memberCount"] for r in storm], [4, 6])
        self.assertEqual([r.body["unlistedMembers"] for r in storm], [0, 0])
        self.assertEqual(
            [[m["fingerprint"] for m in r.body["members"]] for r in storm], [fingerprints[:4], fingerprints[4:]]
        )
        for record in storm:
            self.assertEqual((record.body["stormId"], record.body["groupId"]), (started.body["stormId"], group))
            self.assertEqual(record.body["groupLabels"], {"alertname": "StormItest", "namespace": "storm"})
            self.assertEqual(
                [m["labels"] for m in record.body["members"]],
                [{"pod": m["labels"]["pod"], "severity": "page"} for m in record.body["members"]],
            )
            self.assertEqual(record.headers["idempotency-key"], f"{record.body['stormId']}-{record.body['sequence']}")
        self.assertEqual([r.headers["x-request-id"] for r in storm], ["storm-start", "storm"])
        self.assertEqual(sorted(_streams(stub)), sorted(fingerprints[:3]))
        self.assertEqual(await gateway.sample("gateway_storm_alerts_aggregated_total"), 3.0)
        self.assertEqual((await self.metrics(gateway))[("gateway_storms_active", frozenset())], 0)

        # dedup.window after the last sighting, the alert is forgotten ...
        async def forgotten() -> bool:
            code, _ = await self.get(gateway, f"/v1/alerts/{fingerprints[0]}")
            return code == 404

        await self.until(forgotten, "the first member to be forgotten")
        # ... and its next firing is new, forwarded alone (no storm now).
        answer = await self.post(gateway, _alerts(members[0]))
        self.assertEqual([a["status"] for a in answer["alerts"]], ["new"])
        await stub.wait_until(lambda: len(_streams(stub).get(fingerprints[0], [])) == 2)
        self.assertEqual(_streams(stub)[fingerprints[0]], [("firing", "new")] * 2)
        self.assertEqual(len(_storm_records(stub)), 2)
