"""
The running plugin's webhook surface: every fixture delivered with the
right identity, authentication, the body limit, refusals as problem+json,
and retries towards a processor that fails for a while.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

from treq.client import HTTPClient
from twisted.trial.unittest import TestCase
from twisted.web.client import FileBodyProducer
from twisted.web.iweb import UNKNOWN_LENGTH

from tests.integration.harness import (
    Answer,
    GatewayProcess,
    StubProcessor,
    am_fingerprint,
    distinct,
    fixture,
    fixture_json,
    http_client,
    json_headers,
)

TOKEN = "itest-token-8d1f0c"


class _GatewayTestCase(TestCase):
    timeout = 60

    async def start(self, config: dict[str, Any] | None = None) -> tuple[GatewayProcess, StubProcessor]:
        """
        A stub processor and a gateway forwarding to it, both stopped at the
        end of the test (the gateway first, so its pooled connections to the
        stub close before the stub does).
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        settings: dict[str, Any] = {"alert_processor": {"endpoint": url}, "webhook": {"auth": {"token": TOKEN}}}
        for key, value in (config or {}).items():
            settings[key] = {**settings.get(key, {}), **value}
        gateway = GatewayProcess(settings)
        await gateway.start()
        self.addCleanup(gateway.stop)
        return gateway, stub

    async def post(
        self,
        client: HTTPClient,
        url: str,
        body: bytes,
        *,
        token: str | None = TOKEN,
        request_id: str | None = None,
    ) -> tuple[Any, Any]:
        response = await client.post(url, data=body, headers=json_headers(token, request_id))
        content = await response.content()
        try:
            decoded = json.loads(content)
        except ValueError:
            decoded = content
        return response, decoded


def _expected(name: str) -> list[tuple[str, str]]:
    """
    (fingerprint, status) of each alert of a fixture, in body order:
    Alertmanager's own fingerprint where the fixture carries it (its
    captures are real), else the fingerprint of the labels the gateway must
    derive (Grafana legacy: C{alertname} from C{ruleName} plus C{tags}).
    """
    body = fixture_json(name)
    if name == "grafana-legacy.json":
        labels = {**body["tags"], "alertname": body["ruleName"]}
        return [(am_fingerprint(labels), "firing")]
    if name.startswith("alertmanager-"):
        return [(a["fingerprint"], a["status"]) for a in body["alerts"]]
    return [(am_fingerprint(a["labels"]), a["status"]) for a in body["alerts"]]


class FixtureDeliveryTests(_GatewayTestCase):
    async def test_every_fixture_reaches_the_processor(self) -> None:
        """
        Each of the four fixtures, posted to its endpoint and to the same
        endpoint under /v1, answers 202 with one result per alert (new when
        firing, resolved when resolved); every alert reaches the processor
        at /api/v1/alerts with the source, the status and Alertmanager's
        fingerprint, carrying the client's X-Request-ID and an
        Idempotency-Key that is the same for the same occurrence and
        differs between firing and resolved.

        The same occurrences are delivered more than once here, so
        deduplication is off (tests/integration/test_dedup.py covers it).
        """
        gateway, stub = await self.start({"dedup": {"enabled": False}})
        client = http_client()
        posts = [
            ("/webhook/prometheus", "alertmanager-firing.json", "alertmanager"),
            ("/webhook/prometheus", "alertmanager-firing-and-resolved.json", "alertmanager"),
            ("/webhook/grafana", "grafana-unified.json", "grafana"),
            ("/webhook/grafana", "grafana-legacy.json", "grafana"),
        ]
        expected_by_request: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        for number, (path, name, source) in enumerate(posts):
            for prefix in ("", "/v1"):
                request_id = f"itest-{number}{prefix.replace('/', '-')}"
                response, body = await self.post(
                    client, gateway.url + prefix + path, fixture(name), request_id=request_id
                )
                expected = _expected(name)
                self.assertEqual(response.code, 202, (prefix + path, name, body))
                self.assertEqual(response.headers.getRawHeaders(b"X-Request-ID"), [request_id.encode()])
                self.assertEqual(body["status"], "accepted")
                self.assertEqual(body["requestId"], request_id)
                self.assertEqual([(a["fingerprint"], a["alertStatus"]) for a in body["alerts"]], expected)
                self.assertEqual(
                    [a["status"] for a in body["alerts"]],
                    ["new" if status == "firing" else "resolved" for _, status in expected],
                )
                expected_by_request[request_id] = (source, expected)

        total = sum(len(alerts) for _, alerts in expected_by_request.values())
        await stub.wait_for(total)
        self.assertEqual(len(stub.received), total)

        keys: dict[tuple[str, str], set[str]] = {}
        for request_id, (source, expected) in expected_by_request.items():
            delivered = [r for r in stub.received if r.headers.get("x-request-id") == request_id]
            self.assertEqual(
                sorted((r.body["fingerprint"], r.body["status"]) for r in delivered), sorted(expected), request_id
            )
            for record in delivered:
                self.assertEqual(record.path, "/api/v1/alerts")
                self.assertEqual(record.body["source"], source)
                self.assertEqual(record.headers["content-type"], "application/json")
                self.assertEqual(am_fingerprint(record.body["labels"]), record.body["fingerprint"])
                key = record.headers.get("idempotency-key", "")
                self.assertTrue(key, f"no Idempotency-Key on {record.body['fingerprint']}")
                # A legacy Grafana alert has no startsAt, so no occurrence
                # to be stable for (the gateway uses receivedAt there).
                if record.body["startsAt"] is not None:
                    keys.setdefault((record.body["fingerprint"], record.body["status"]), set()).add(key)

        for occurrence, found in keys.items():
            self.assertEqual(len(found), 1, f"{occurrence} delivered with different keys {found}")
        # The firing-and-resolved fixture resolves an alert the other one
        # fires (same labels, same start): the processor must tell them apart.
        self.assertNotEqual(keys[("995194533ae82003", "firing")], keys[("995194533ae82003", "resolved")])

    async def test_request_id_generated_when_missing_or_insane(self) -> None:
        """
        Without an X-Request-ID, or with one that is not a sane token, the
        gateway makes one, echoes it and forwards that same id (two
        different alerts, so that both are forwarded).
        """
        gateway, stub = await self.start()
        client = http_client()
        response, body = await self.post(
            client, gateway.url + "/webhook/grafana", distinct("grafana-legacy.json", "generated")
        )
        self.assertEqual(response.code, 202, body)
        generated = response.headers.getRawHeaders(b"X-Request-ID")[0].decode()
        self.assertEqual(body["requestId"], generated)
        insane = "bad id\twith spaces" + "x" * 200
        response, body = await self.post(
            client, gateway.url + "/webhook/grafana", distinct("grafana-legacy.json", "replaced"), request_id=insane
        )
        self.assertEqual(response.code, 202, body)
        replaced = response.headers.getRawHeaders(b"X-Request-ID")[0].decode()
        self.assertNotEqual(replaced, insane)
        self.assertNotEqual(replaced, generated)
        await stub.wait_for(2)
        self.assertEqual(sorted(r.headers["x-request-id"] for r in stub.received), sorted([generated, replaced]))


class AuthenticationTests(_GatewayTestCase):
    async def test_missing_or_wrong_token_is_401(self) -> None:
        """
        Without a bearer token, with a wrong one, or with another scheme,
        the webhook answers 401 problem+json with a Bearer challenge and
        forwards nothing; the right token is then accepted.
        """
        gateway, stub = await self.start()
        client = http_client()
        url = gateway.url + "/webhook/prometheus"
        body = fixture("alertmanager-firing.json")
        for token in (None, "wrong-token", TOKEN + "x"):
            response, problem = await self.post(client, url, body, token=token)
            self.assertEqual(response.code, 401, (token, problem))
            challenge = response.headers.getRawHeaders(b"WWW-Authenticate")
            self.assertTrue(challenge and challenge[0].startswith(b"Bearer"), challenge)
            self.assertEqual(response.headers.getRawHeaders(b"Content-Type"), [b"application/problem+json"])
            self.assertEqual(problem["status"], 401)
        headers = json_headers()
        headers[b"Authorization"] = [f"Basic {TOKEN}".encode()]
        response = await client.post(url, data=body, headers=headers)
        await response.content()
        self.assertEqual(response.code, 401)
        response, answer = await self.post(client, url, body)
        self.assertEqual(response.code, 202, answer)
        await stub.wait_for(2)
        self.assertEqual({r.headers["x-request-id"] for r in stub.received}, {answer["requestId"]})

    async def test_rotated_tokens_all_accepted(self) -> None:
        """
        Every token of webhook.auth.tokens is accepted (rotation), on the
        /v1 path too.
        """
        gateway, _ = await self.start({"webhook": {"auth": {"tokens": ["old-token-1", "new-token-2"]}}})
        client = http_client()
        for token, path in (("old-token-1", "/webhook/grafana"), ("new-token-2", "/v1/webhook/grafana")):
            response, body = await self.post(client, gateway.url + path, fixture("grafana-legacy.json"), token=token)
            self.assertEqual(response.code, 202, (token, body))


class BodyLimitTests(_GatewayTestCase):
    async def test_oversized_body_is_413_and_the_server_keeps_serving(self) -> None:
        """
        A body over service.max_body_bytes is refused with 413
        problem+json, whether its length is announced or streamed in
        chunks; the gateway answers the next valid request with 202.
        """
        gateway, stub = await self.start({"service": {"max_body_bytes": 2048}})
        client = http_client()
        url = gateway.url + "/webhook/prometheus"
        payload = fixture_json("alertmanager-firing.json")
        payload["alerts"][0]["annotations"]["description"] = "x" * 4096
        oversized = json.dumps(payload).encode()
        response, problem = await self.post(client, url, oversized)
        self.assertEqual(response.code, 413, problem)
        self.assertEqual(response.headers.getRawHeaders(b"Content-Type"), [b"application/problem+json"])
        self.assertEqual(problem["status"], 413)

        # An unknown length (chunked upload) must be bounded while reading.
        def chunks() -> Any:
            producer = FileBodyProducer(BytesIO(oversized))
            producer.length = UNKNOWN_LENGTH
            return producer

        response = await client.post(url, data=chunks(), headers=json_headers(TOKEN))
        await response.content()
        self.assertEqual(response.code, 413)

        response, answer = await self.post(client, url, fixture("alertmanager-firing.json"))
        self.assertEqual(response.code, 202, answer)
        await stub.wait_for(2)


class RefusalTests(_GatewayTestCase):
    async def test_refusals_are_problem_json(self) -> None:
        """
        Malformed JSON and an invalid payload are 400, an unknown path 404,
        a GET on a webhook 405 with Allow, a non-JSON content type 415, a
        batch with one bad alert 207 with per-alert results; every refusal
        is application/problem+json with the request id, and only the valid
        alert of the 207 is forwarded (its result says new).
        """
        gateway, stub = await self.start()
        client = http_client()
        url = gateway.url + "/webhook/prometheus"

        def check_problem(response: Any, body: Any, status: int) -> None:
            self.assertEqual(response.code, status, body)
            self.assertEqual(response.headers.getRawHeaders(b"Content-Type"), [b"application/problem+json"])
            for key in ("type", "title", "status", "detail", "requestId"):
                self.assertIn(key, body)
            self.assertEqual(body["status"], status)
            self.assertEqual(response.headers.getRawHeaders(b"X-Request-ID"), [body["requestId"].encode()])

        response, body = await self.post(client, url, b'{"alerts": [')
        check_problem(response, body, 400)
        response, body = await self.post(client, url, b'{"version": "4", "alerts": [{"labels": {}}]}')
        check_problem(response, body, 400)
        self.assertTrue(body["errors"][0]["pointer"].startswith("/alerts/0"), body)
        response, body = await self.post(client, gateway.url + "/webhook/nothing-here", b"{}")
        check_problem(response, body, 404)

        response = await client.get(url)
        check_problem(response, json.loads(await response.content()), 405)
        self.assertIn(b"POST", response.headers.getRawHeaders(b"Allow")[0])

        headers = json_headers(TOKEN)
        headers[b"Content-Type"] = [b"text/plain"]
        response = await client.post(url, data=fixture("alertmanager-firing.json"), headers=headers)
        check_problem(response, json.loads(await response.content()), 415)

        payload = fixture_json("alertmanager-firing.json")
        payload["alerts"][1]["labels"] = "not a label set"
        response, body = await self.post(client, url, json.dumps(payload).encode())
        self.assertEqual(response.code, 207, body)
        self.assertEqual([a["status"] for a in body["alerts"]], ["new", "rejected"])
        await stub.wait_for(1)
        self.assertEqual([r.body["fingerprint"] for r in stub.received], ["704fae8241e05a07"])


class RetryTests(_GatewayTestCase):
    async def test_processor_503_then_200_is_delivered(self) -> None:
        """
        A processor answering 503 (with Retry-After: 1) and then 200 gets
        the alert delivered on the retry, no sooner than it asked, with the
        same Idempotency-Key on both attempts.
        """
        gateway, stub = await self.start({"alert_processor": {"max_retries": 3}})
        stub.answers = [Answer(503, {"Retry-After": "1"})]
        client = http_client()
        response, body = await self.post(client, gateway.url + "/webhook/grafana", fixture("grafana-legacy.json"))
        self.assertEqual(response.code, 202, body)
        await stub.wait_for(1, timeout=15)
        self.assertEqual([a.code for a in stub.attempts], [503, 200])
        first, second = stub.attempts
        self.assertGreaterEqual(second.at - first.at, 0.9)
        self.assertEqual(first.headers["idempotency-key"], second.headers["idempotency-key"])
        self.assertEqual(stub.received[0].body["fingerprint"], _expected("grafana-legacy.json")[0][0])
