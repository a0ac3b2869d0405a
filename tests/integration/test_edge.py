"""
The running plugin's edge controls over real sockets (issue 3): basic,
API-key and signature authentication with replay protection, per-endpoint
address filtering, rate limits, request content encodings and types,
response compression, security headers, header forwarding, and the
security log and metric every refusal leaves.

Signatures are computed here from the schemes' definitions, not with the
gateway's code.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import time
import urllib.parse
import uuid
from io import BytesIO
from typing import Any

from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from tests.integration.harness import (
    GatewayProcess,
    StubProcessor,
    distinct,
    fixture,
    fixture_json,
    http_client,
    json_headers,
    reactor,
    sleep,
)

TOKEN = "edge-itest-token-9a4e"
GRAFANA_SECRET = "grafana-hmac-secret-77c1"
GRAFANA_TIMESTAMP = "X-Grafana-Alerting-Timestamp"
STANDARD_KEY = b"standard-webhooks-key-0123456789"
STANDARD_SECRET = "whsec_" + base64.b64encode(STANDARD_KEY).decode()
OLD_STANDARD_SECRET = "whsec_" + base64.b64encode(b"the-previous-key-before-rotation").decode()
BASIC_USERS = {"alertmanager": "basic-pass-1f", "alertmanager-next": "basic-pass-2e"}
API_KEYS = ("api-key-old-51", "api-key-new-52")
PROBLEM_JSON = [b"application/problem+json"]
SECURITY_HEADERS = {
    b"X-Content-Type-Options": b"nosniff",
    b"Cache-Control": b"no-store",
}


def grafana_signature(body: bytes, timestamp: int | None, secret: str = GRAFANA_SECRET) -> str:
    """
    Grafana's X-Grafana-Alerting-Signature: hex HMAC-SHA256 of the body,
    or of C{"<timestamp>:<body>"} when a timestamp header is sent.
    """
    message = body if timestamp is None else f"{timestamp}:".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def standard_signature(message_id: str, timestamp: int, body: bytes, key: bytes = STANDARD_KEY) -> str:
    """
    A Standard Webhooks C{v1} signature: base64 HMAC-SHA256 over
    C{"<id>.<timestamp>.<body>"} with the decoded secret.
    """
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers_of(**values: str) -> dict[bytes | str, list[bytes | str]]:
    headers: dict[bytes | str, list[bytes | str]] = {
        b"Content-Type": [b"application/json"],
        b"User-Agent": [b"alertgateway-edge-tests/1.0"],
    }
    for name, value in values.items():
        headers[name.replace("_", "-").encode()] = [value.encode()]
    return headers


def _endpoint(path: str, source: str = "alertmanager", **options: Any) -> dict[str, Any]:
    return {"path": path, "source": source, **options}


class _EdgeTestCase(TestCase):
    timeout = 60

    async def start(
        self, config: dict[str, Any], endpoints: list[dict[str, Any]] | None = None
    ) -> tuple[GatewayProcess, StubProcessor]:
        """
        A stub processor and a gateway forwarding to it (bearer TOKEN by
        default, the given endpoints), both stopped at the end of the test.
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        webhook: dict[str, Any] = {"auth": {"token": TOKEN}}
        if endpoints is not None:
            webhook["endpoints"] = endpoints
        settings: dict[str, Any] = {"alert_processor": {"endpoint": url}, "webhook": webhook}
        for key, value in config.items():
            settings[key] = {**settings.get(key, {}), **value}
        gateway = GatewayProcess(settings)
        await gateway.start()
        self.addCleanup(gateway.stop)
        return gateway, stub

    async def post(self, url: str, body: bytes, headers: dict[bytes | str, list[bytes | str]]) -> tuple[Any, Any]:
        response = await http_client().post(url, data=body, headers=headers)
        content = await response.content()
        try:
            decoded = json.loads(content)
        except ValueError:
            decoded = content
        return response, decoded

    def assert_refused(self, response: Any, body: Any, status: int, slug: str) -> None:
        self.assertEqual(response.code, status, body)
        self.assertEqual(response.headers.getRawHeaders(b"Content-Type"), PROBLEM_JSON)
        self.assertEqual(body["type"], f"urn:alertgateway:problem:{slug}", body)


class AuthenticationTests(_EdgeTestCase):
    async def test_basic_auth_with_rotated_users(self) -> None:
        """
        An endpoint with auth type basic accepts every configured user with
        its password (each user's alerts reach the processor) and answers
        401 with a Basic challenge to a wrong password, no credentials, or
        the global bearer token.
        """
        users = [{"username": name, "password": password} for name, password in BASIC_USERS.items()]
        gateway, stub = await self.start({}, [_endpoint("/webhook/basic", auth={"type": "basic", "users": users})])
        url = gateway.url + "/webhook/basic"
        body = fixture("alertmanager-firing.json")
        for name, password in BASIC_USERS.items():
            credentials = base64.b64encode(f"{name}:{password}".encode()).decode()
            mine = distinct("alertmanager-firing.json", name)
            response, answer = await self.post(url, mine, headers_of(Authorization=f"Basic {credentials}"))
            self.assertEqual(response.code, 202, (name, answer))
        wrong = base64.b64encode(b"alertmanager:basic-pass-2e").decode()
        for authorization in (f"Basic {wrong}", None, f"Bearer {TOKEN}"):
            headers = headers_of(Authorization=authorization) if authorization else headers_of()
            response, problem = await self.post(url, body, headers)
            self.assert_refused(response, problem, 401, "unauthorized")
            self.assertTrue(response.headers.getRawHeaders(b"WWW-Authenticate")[0].startswith(b"Basic "))
        await stub.wait_for(4)
        self.assertEqual({r.body["labels"]["itest_copy"] for r in stub.received}, set(BASIC_USERS))

    async def test_api_key(self) -> None:
        """
        An api_key endpoint accepts each configured key in X-API-Key (the
        alerts sent with each reach the processor) and refuses a wrong key,
        a missing one and a key sent as a bearer token.
        """
        gateway, stub = await self.start(
            {}, [_endpoint("/webhook/keyed", auth={"type": "api_key", "tokens": list(API_KEYS)})]
        )
        url = gateway.url + "/webhook/keyed"
        body = fixture("alertmanager-firing.json")
        for key in API_KEYS:
            response, answer = await self.post(
                url, distinct("alertmanager-firing.json", key), headers_of(X_API_Key=key)
            )
            self.assertEqual(response.code, 202, (key, answer))
        for headers in (
            headers_of(X_API_Key="api-key-wrong-53"),
            headers_of(),
            headers_of(Authorization=f"Bearer {API_KEYS[0]}"),
        ):
            response, problem = await self.post(url, body, headers)
            self.assert_refused(response, problem, 401, "unauthorized")
        await stub.wait_for(4)
        self.assertEqual({r.body["labels"]["itest_copy"] for r in stub.received}, set(API_KEYS))

    async def test_grafana_hmac_with_timestamp(self) -> None:
        """
        Grafana's signature over "<timestamp>:<body>" with the configured
        timestamp header is accepted once; the same request again is a
        replay (401), as are a stale timestamp, a signature over the body
        alone, a signature with another secret and a missing signature.
        """
        gateway, stub = await self.start(
            {},
            [
                _endpoint(
                    "/webhook/grafana",
                    "grafana",
                    auth={"type": "hmac", "secret": GRAFANA_SECRET, "timestamp_header": GRAFANA_TIMESTAMP},
                )
            ],
        )
        url = gateway.url + "/webhook/grafana"
        body = fixture("grafana-unified.json")
        now = int(time.time())
        signed = headers_of(
            X_Grafana_Alerting_Signature=grafana_signature(body, now), X_Grafana_Alerting_Timestamp=str(now)
        )
        response, answer = await self.post(url, body, signed)
        self.assertEqual(response.code, 202, answer)
        response, problem = await self.post(url, body, signed)
        self.assert_refused(response, problem, 401, "unauthorized")
        self.assertIn("replay", problem["detail"])
        stale = now - 600
        for headers in (
            headers_of(
                X_Grafana_Alerting_Signature=grafana_signature(body, stale), X_Grafana_Alerting_Timestamp=str(stale)
            ),
            headers_of(
                X_Grafana_Alerting_Signature=grafana_signature(body, None), X_Grafana_Alerting_Timestamp=str(now)
            ),
            headers_of(
                X_Grafana_Alerting_Signature=grafana_signature(body, now, "another-secret"),
                X_Grafana_Alerting_Timestamp=str(now),
            ),
            headers_of(X_Grafana_Alerting_Timestamp=str(now)),
        ):
            response, problem = await self.post(url, body, headers)
            self.assert_refused(response, problem, 401, "unauthorized")
        await stub.wait_for(len(fixture_json("grafana-unified.json")["alerts"]))
        self.assertEqual(
            await gateway.sample("gateway_security_rejections_total", endpoint="/webhook/grafana", reason="signature"),
            5.0,
        )

    async def test_standard_webhooks(self) -> None:
        """
        A Standard Webhooks signature is accepted, also when listed after
        others (rotation) or made with the older of two configured secrets
        (each message's alerts reach the processor); the same webhook-id
        again is a replay (401), and a wrong signature, a stale timestamp
        or missing headers are 401.
        """
        gateway, stub = await self.start(
            {},
            [
                _endpoint(
                    "/webhook/standard",
                    auth={"type": "hmac", "scheme": "standard", "secrets": [STANDARD_SECRET, OLD_STANDARD_SECRET]},
                )
            ],
        )
        url = gateway.url + "/webhook/standard"
        body = fixture("alertmanager-firing.json")
        now = int(time.time())
        old_key = base64.b64decode(OLD_STANDARD_SECRET.removeprefix("whsec_"))

        def signed(message_id: str, signature: str, timestamp: int = now) -> dict[bytes | str, list[bytes | str]]:
            return headers_of(webhook_id=message_id, webhook_timestamp=str(timestamp), webhook_signature=signature)

        # A message of its own alerts each, so that each is forwarded.
        messages = {m: distinct("alertmanager-firing.json", m) for m in ("msg_1", "msg_2", "msg_3")}
        accepted = [
            (messages["msg_1"], signed("msg_1", standard_signature("msg_1", now, messages["msg_1"]))),
            (messages["msg_2"], signed("msg_2", "v1,Zm9vYmFy " + standard_signature("msg_2", now, messages["msg_2"]))),
            (messages["msg_3"], signed("msg_3", standard_signature("msg_3", now, messages["msg_3"], old_key))),
        ]
        for message, headers in accepted:
            response, answer = await self.post(url, message, headers)
            self.assertEqual(response.code, 202, answer)
        response, problem = await self.post(url, *accepted[0])
        self.assert_refused(response, problem, 401, "unauthorized")
        self.assertIn("replay", problem["detail"])
        stale = now - 600
        for headers in (
            signed("msg_4", standard_signature("msg_4", now, body, b"not-a-configured-key")),
            signed("msg_5", standard_signature("msg_5", now, body + b" ")),
            signed("msg_6", standard_signature("msg_6", stale, body), stale),
            headers_of(webhook_id="msg_7", webhook_timestamp=str(now)),
        ):
            response, problem = await self.post(url, body, headers)
            self.assert_refused(response, problem, 401, "unauthorized")
        await stub.wait_for(6)
        self.assertEqual({r.body["labels"]["itest_copy"] for r in stub.received}, set(messages))

    async def test_replay_refused_for_the_whole_tolerance_window(self) -> None:
        """
        A message stamped up to the tolerance ahead is accepted, and a replay
        of it is still refused after the tolerance has elapsed since it was
        first seen, for as long as its timestamp is acceptable (memory must
        cover twice the tolerance).
        """
        # The default webhook.auth's tolerance is narrowed too, so that no
        # wider window configured elsewhere can hide a short memory.
        gateway, _ = await self.start(
            {"webhook": {"auth": {"token": TOKEN, "tolerance": "2s"}}},
            [
                _endpoint(
                    "/webhook/standard",
                    auth={"type": "hmac", "scheme": "standard", "secret": STANDARD_SECRET, "tolerance": "2s"},
                )
            ],
        )
        url = gateway.url + "/webhook/standard"
        body = fixture("alertmanager-firing.json")
        ahead = int(time.time()) + 2
        headers = headers_of(
            webhook_id="msg_ahead",
            webhook_timestamp=str(ahead),
            webhook_signature=standard_signature("msg_ahead", ahead, body),
        )
        response, answer = await self.post(url, body, headers)
        self.assertEqual(response.code, 202, answer)
        await sleep(2.2)
        response, problem = await self.post(url, body, headers)
        self.assert_refused(response, problem, 401, "unauthorized")
        self.assertIn("replay", problem["detail"])


class AddressTests(_EdgeTestCase):
    async def test_per_endpoint_allowed_ips_and_the_security_log(self) -> None:
        """
        An endpoint whose allowed_ips exclude loopback answers 403 (also
        when the untrusted client claims an allowed address in
        X-Forwarded-For) while another endpoint allowing 127.0.0.1 accepts;
        each refusal is one JSON warning in the alertgateway.security log
        with reason, client, status and endpoint, no credential in it, and
        is counted in gateway_security_rejections_total.
        """
        gateway, stub = await self.start(
            {"security": {"allowed_ips": ["127.0.0.0/8", "::1"]}},
            [
                _endpoint("/webhook/internal", allowed_ips=["10.0.0.0/8", "fd00::/8"]),
                _endpoint("/webhook/prometheus", allowed_ips=["127.0.0.1"]),
            ],
        )
        body = fixture("alertmanager-firing.json")
        for number, extra in enumerate(({}, {"X-Forwarded-For": "10.1.2.3"})):
            headers = json_headers(TOKEN, f"denied-{number}")
            headers.update({name.encode(): [value.encode()] for name, value in extra.items()})
            response, problem = await self.post(gateway.url + "/webhook/internal", body, headers)
            self.assert_refused(response, problem, 403, "forbidden")
            for name, value in SECURITY_HEADERS.items():
                self.assertEqual(response.headers.getRawHeaders(name), [value])
        response, answer = await self.post(gateway.url + "/webhook/prometheus", body, json_headers(TOKEN))
        self.assertEqual(response.code, 202, answer)
        await stub.wait_for(2)

        event = json.loads(
            await gateway.wait_for_event(
                lambda e: e.get("logger") == "alertgateway.security" and e.get("requestId") == "denied-1"
            )
        )
        self.assertEqual(event["level"], "warn")
        self.assertEqual(
            (event["reason"], event["client"], event["status"], event["endpoint"]),
            ("address", "127.0.0.1", 403, "/webhook/internal"),
        )
        security = [e for e in gateway.lines if e.get("logger") == "alertgateway.security"]
        self.assertEqual(len(security), 2, security)
        self.assertNotIn(TOKEN, gateway.output())
        self.assertEqual(
            await gateway.sample("gateway_security_rejections_total", endpoint="/webhook/internal", reason="address"),
            2.0,
        )
        # Not refused, so not counted (a series never incremented may be
        # absent).
        self.assertIn(
            await gateway.sample("gateway_security_rejections_total", endpoint="/webhook/prometheus", reason="address"),
            (None, 0.0),
        )

    async def test_host_name_in_allowed_ips(self) -> None:
        """
        A host name in an endpoint's allowed_ips is resolved by the running
        gateway: once C{localhost} has resolved, requests from 127.0.0.1
        are accepted there, while a name that does not resolve to it keeps
        its endpoint closed.
        """
        gateway, stub = await self.start(
            {},
            [
                _endpoint("/webhook/named", allowed_ips=["localhost"]),
                _endpoint("/webhook/elsewhere", allowed_ips=["unresolvable.invalid"]),
            ],
        )
        body = fixture("alertmanager-firing.json")
        # Resolution runs in a thread from start-up; give it a moment.
        deadline = reactor.seconds() + 10
        while True:
            response, answer = await self.post(gateway.url + "/webhook/named", body, json_headers(TOKEN))
            if response.code != 403 or reactor.seconds() > deadline:
                break
            await sleep(0.1)
        self.assertEqual(response.code, 202, answer)
        response, problem = await self.post(gateway.url + "/webhook/elsewhere", body, json_headers(TOKEN))
        self.assert_refused(response, problem, 403, "forbidden")
        await stub.wait_for(2)


class RateLimitTests(_EdgeTestCase):
    async def test_endpoint_limits_answer_429_or_503(self) -> None:
        """
        Past an endpoint's rate_limit the gateway answers 429 (its
        reject_status) with Retry-After and the RateLimit / RateLimit-Policy
        headers, on the /v1 alias too (one bucket); an endpoint with
        reject_status 503 answers 503 with Retry-After instead.  Both are counted in
        gateway_rate_limited_total and logged as security refusals.
        """
        gateway, stub = await self.start(
            {},
            [
                _endpoint("/webhook/prometheus", rate_limit=2, reject_status=429),
                _endpoint("/webhook/alertmanager", rate_limit=1, reject_status=503),
            ],
        )
        body = fixture("alertmanager-firing.json")
        prometheus = gateway.url + "/webhook/prometheus"
        # Alerts of their own for each accepted request, so that all six
        # are forwarded.
        for number in range(2):
            response, answer = await self.post(
                prometheus, distinct("alertmanager-firing.json", f"limited-{number}"), json_headers(TOKEN)
            )
            self.assertEqual(response.code, 202, answer)
            self.assertTrue(response.headers.getRawHeaders(b"RateLimit"), "no RateLimit header on an accepted request")
        for url in (prometheus, gateway.url + "/v1/webhook/prometheus"):
            response, problem = await self.post(url, body, json_headers(TOKEN))
            self.assert_refused(response, problem, 429, "rate-limited")
            self.assertGreaterEqual(int(response.headers.getRawHeaders(b"Retry-After")[0]), 1)
            [policy] = response.headers.getRawHeaders(b"RateLimit-Policy")
            self.assertIn(b"q=2", policy)
            [state] = response.headers.getRawHeaders(b"RateLimit")
            self.assertIn(b"r=0", state)

        alertmanager = gateway.url + "/webhook/alertmanager"
        response, answer = await self.post(alertmanager, body, json_headers(TOKEN))
        self.assertEqual(response.code, 202, answer)
        response, problem = await self.post(alertmanager, body, json_headers(TOKEN))
        self.assert_refused(response, problem, 503, "rate-limited")
        self.assertGreaterEqual(int(response.headers.getRawHeaders(b"Retry-After")[0]), 1)
        await stub.wait_for(6)

        rate_limited = {
            path: await gateway.sample("gateway_rate_limited_total", endpoint=path, scope="endpoint")
            for path in ("/webhook/prometheus", "/webhook/alertmanager")
        }
        self.assertEqual(rate_limited, {"/webhook/prometheus": 2.0, "/webhook/alertmanager": 1.0})
        self.assertEqual(
            await gateway.sample("gateway_security_rejections_total", endpoint="/webhook/prometheus", reason="rate"),
            2.0,
        )


XML_BODY = b"""<?xml version="1.0" encoding="UTF-8"?>
<alerts version="4">
  <alert status="firing">
    <labels>
      <label name="alertname">EdgeXmlAlert</label>
      <label name="severity">warning</label>
    </labels>
    <annotations><annotation name="summary">sent as XML</annotation></annotations>
    <startsAt>2026-11-26T03:49:49Z</startsAt>
    <endsAt>0001-01-01T00:00:00Z</endsAt>
    <generatorURL>http://prometheus.example/graph</generatorURL>
  </alert>
</alerts>
"""

XML_ENTITY_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE alerts [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<alerts version="4"><alert status="firing"><labels><label name="alertname">&b;</label></labels></alert></alerts>
"""


class ContentTests(_EdgeTestCase):
    async def test_request_encodings_and_types(self) -> None:
        """
        A gzip-encoded JSON body, an XML body and a form body carrying the
        JSON in its payload field are each accepted and their alerts reach
        the processor with their labels; XML with an entity declaration is
        400.
        """
        gateway, stub = await self.start({})
        url = gateway.url + "/webhook/prometheus"
        firing = fixture("alertmanager-firing.json")

        gzipped = json_headers(TOKEN, "gzip-body")
        gzipped[b"Content-Encoding"] = [b"gzip"]
        response, answer = await self.post(url, gzip.compress(firing), gzipped)
        self.assertEqual((response.code, answer["accepted"]), (202, 2), answer)

        xml = json_headers(TOKEN, "xml-body")
        xml[b"Content-Type"] = [b"application/xml"]
        response, answer = await self.post(url, XML_BODY, xml)
        self.assertEqual((response.code, answer["accepted"]), (202, 1), answer)

        form = json_headers(TOKEN, "form-body")
        form[b"Content-Type"] = [b"application/x-www-form-urlencoded"]
        # Not the alerts of the gzip body, which would be duplicates.
        other = distinct("alertmanager-firing.json", "form")
        encoded = urllib.parse.urlencode({"payload": other.decode()}).encode()
        response, answer = await self.post(url, encoded, form)
        self.assertEqual((response.code, answer["accepted"]), (202, 2), answer)

        xml[b"X-Request-ID"] = [b"xml-entities"]
        response, problem = await self.post(url, XML_ENTITY_BOMB, xml)
        self.assert_refused(response, problem, 400, "malformed-body")

        await stub.wait_for(5)
        by_request: dict[str, list[str]] = {}
        for record in stub.received:
            by_request.setdefault(record.headers["x-request-id"], []).append(record.body["labels"]["alertname"])
        self.assertEqual(
            by_request,
            {
                "gzip-body": ["KubePodCrashLooping"] * 2,
                "xml-body": ["EdgeXmlAlert"],
                "form-body": ["KubePodCrashLooping"] * 2,
            },
        )
        [xml_alert] = [r.body for r in stub.received if r.headers["x-request-id"] == "xml-body"]
        self.assertEqual(xml_alert["labels"], {"alertname": "EdgeXmlAlert", "severity": "warning"})
        self.assertEqual(xml_alert["annotations"], {"summary": "sent as XML"})

    async def test_response_compression_and_security_headers(self) -> None:
        """
        An answer past service.gzip_min_bytes is gzipped for a client that
        accepts gzip (Vary: Accept-Encoding) and plain for one that does
        not or refuses it with q=0; every answer, accepted, refused, not
        found or a probe, carries the security headers.
        """
        gateway, _ = await self.start({"service": {"gzip_min_bytes": 64}})
        url = gateway.url + "/webhook/prometheus"
        body = fixture("alertmanager-firing.json")
        # treq always asks for gzip and inflates behind our back: a bare
        # Agent shows what is really on the wire.
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        answers = []
        for accept in ("gzip", "br;q=1.0, gzip;q=0", None):
            headers = Headers({b"Content-Type": [b"application/json"], b"Authorization": [f"Bearer {TOKEN}".encode()]})
            if accept is not None:
                headers.setRawHeaders(b"Accept-Encoding", [accept.encode()])
            response = await agent.request(b"POST", url.encode(), headers, FileBodyProducer(BytesIO(body)))
            content = await readBody(response)
            self.assertEqual(response.code, 202)
            self.assertEqual(response.headers.getRawHeaders(b"Vary"), [b"Accept-Encoding"])
            # Twisted's client moves Content-Length to response.length.
            self.assertEqual(response.length, len(content))
            encoding = response.headers.getRawHeaders(b"Content-Encoding")
            if accept == "gzip":
                self.assertEqual(encoding, [b"gzip"])
                content = gzip.decompress(content)
            else:
                self.assertIsNone(encoding, accept)
            answers.append(json.loads(content))
        self.assertEqual([a["accepted"] for a in answers], [2, 2, 2])

        client = http_client()
        checks = [
            await client.post(url, data=body, headers=json_headers(TOKEN)),
            await client.post(url, data=body, headers=json_headers("wrong-token")),
            await client.get(gateway.url + "/no/such/path"),
            await client.get(gateway.url + "/health/ready"),
        ]
        for response in checks:
            await response.content()
            for name, value in SECURITY_HEADERS.items():
                self.assertEqual(response.headers.getRawHeaders(name), [value], (response.code, name))
        self.assertEqual([r.code for r in checks], [202, 401, 404, 200])


class HeaderForwardingTests(_EdgeTestCase):
    async def test_forward_and_add_headers(self) -> None:
        """
        Headers listed in webhook.forward_headers (X-Scope-OrgID,
        traceparent) and the endpoint's add_headers reach the processor
        with each alert; the sender's Authorization and cookies, and
        headers not listed, do not.
        """
        traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
        gateway, stub = await self.start(
            {"webhook": {"auth": {"token": TOKEN}, "forward_headers": ["X-Scope-OrgID", "traceparent"]}},
            [_endpoint("/webhook/prometheus", add_headers={"X-Gateway-Source": "edge-itest"})],
        )
        headers = json_headers(TOKEN, "forwarded")
        headers.update(
            {
                b"X-Scope-OrgID": [b"tenant-a"],
                b"traceparent": [traceparent.encode()],
                b"X-Not-Listed": [b"stays-here"],
                b"Cookie": [b"session=secret-cookie"],
            }
        )
        response, answer = await self.post(
            gateway.url + "/webhook/prometheus", fixture("alertmanager-firing.json"), headers
        )
        self.assertEqual(response.code, 202, answer)
        await stub.wait_for(2)
        for record in stub.received:
            self.assertEqual(record.headers.get("x-scope-orgid"), "tenant-a")
            self.assertEqual(record.headers.get("traceparent"), traceparent)
            self.assertEqual(record.headers.get("x-gateway-source"), "edge-itest")
            self.assertEqual(record.headers.get("x-request-id"), "forwarded")
            for absent in ("authorization", "x-not-listed", "cookie"):
                self.assertNotIn(absent, record.headers)
            self.assertNotIn(TOKEN, json.dumps(record.headers))
