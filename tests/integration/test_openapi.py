"""
C{docs/openapi.yaml} is a valid OpenAPI 3.1 document and tells the truth:
the running plugin's answers (status, headers, bodies), the problem types of
L{alertgateway.web.problems} and what reaches the Alert Processor all match
it, and schemathesis finds nothing that disagrees with it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from alertgateway.guards.errors import Reason, Refused
from alertgateway.web import problems
from tests.integration._openapi import DOCUMENT_PATH, APIDocument, Exchange, escape, exchange, load_document
from tests.integration.harness import (
    GatewayProcess,
    StubProcessor,
    am_fingerprint,
    distinct,
    fixture,
    reactor,
    resolved_json,
    run,
    sleep,
)

TOKEN = "openapi-token-5c2e"
FIXTURES = {
    "alertmanager-firing.json": "/webhook/prometheus",
    "alertmanager-firing-and-resolved.json": "/webhook/prometheus",
    "grafana-unified.json": "/webhook/grafana",
    "grafana-legacy.json": "/webhook/grafana",
}
# Small enough that a test can pass it, large enough for every fixture.
MAX_BODY = 8192
# One alert in the documented XML format.
XML_ALERTS = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<alerts version="4"><alert status="firing">'
    b'<labels><label name="alertname">DiskFull</label><label name="instance">node-3</label></labels>'
    b'<annotations><annotation name="summary">Disk /var is 97% full</annotation></annotations>'
    b"<startsAt>2026-11-26T03:49:49Z</startsAt><endsAt>0001-01-01T00:00:00Z</endsAt>"
    b"<generatorURL>http://prometheus:9090/graph</generatorURL>"
    b"</alert></alerts>"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


def _headers(token: str | None = TOKEN, **extra: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "alertgateway-openapi-tests/1.0"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.update(extra)
    return headers


class DocumentTests(TestCase):
    """
    The document on its own, and the checker the other tests rely on.
    """

    def setUp(self) -> None:
        self.document = load_document()
        self.api = APIDocument(self.document)

    def test_document_is_valid_openapi_3_1(self) -> None:
        """
        The document validates as OpenAPI 3.1 (structure, schema objects and
        every C{$ref}), and documents every endpoint of the issue.
        """
        # Imported here so that, were it missing, only this test fails.
        from openapi_spec_validator import validate as validate_openapi

        self.assertEqual(self.document["openapi"][:4], "3.1.")
        validate_openapi(self.document)
        self.assertEqual(
            {path: self.api.methods(path) for path in self.document["paths"]},
            {
                "/webhook/prometheus": ["POST"],
                "/v1/webhook/prometheus": ["POST"],
                "/webhook/grafana": ["POST"],
                "/v1/webhook/grafana": ["POST"],
                "/health": ["GET", "HEAD"],
                "/health/live": ["GET", "HEAD"],
                "/health/ready": ["GET", "HEAD"],
                "/metrics": ["GET", "HEAD"],
                "/v1/alerts": ["GET", "HEAD"],
                "/v1/alerts/{fingerprint}": ["GET", "HEAD"],
            },
        )
        schemes = self.document["components"]["securitySchemes"]
        self.assertEqual(
            {name: (s["type"], s.get("scheme") or s["name"]) for name, s in schemes.items()},
            {
                "bearerAuth": ("http", "bearer"),
                "basicAuth": ("http", "basic"),
                "apiKeyAuth": ("apiKey", "X-API-Key"),
                "grafanaSignature": ("apiKey", "X-Grafana-Alerting-Signature"),
                "standardWebhookId": ("apiKey", "webhook-id"),
                "standardWebhookTimestamp": ("apiKey", "webhook-timestamp"),
                "standardWebhookSignature": ("apiKey", "webhook-signature"),
            },
        )
        for path, item in self.document["paths"].items():
            if path.startswith("/v1/alerts"):
                # The status API is authenticated like the webhooks.
                for method in ("get", "head"):
                    alternatives = [sorted(requirement) for requirement in item[method]["security"]]
                    self.assertEqual(sorted(name for names in alternatives for name in names), sorted(schemes), path)
            if path.startswith(("/webhook/", "/v1/webhook/")):
                alternatives = [sorted(requirement) for requirement in item["post"]["security"]]
                self.assertEqual(len(alternatives), 5, path)
                self.assertEqual(sorted(name for names in alternatives for name in names), sorted(schemes), path)
                media = self.api.deref(item["post"]["requestBody"], "")[0]["content"]
                self.assertEqual(
                    sorted(media),
                    ["application/json", "application/x-www-form-urlencoded", "application/xml", "text/xml"],
                    path,
                )

    def test_examples_match_their_schemas(self) -> None:
        """
        Every example in the document (request bodies, responses, the
        outbound alert) is valid against the schema it illustrates.
        """
        checked = 0
        for location, media in _media_objects(self.document, ""):
            schema_location = f"{location}/schema"
            examples = [media["example"]] if "example" in media else []
            examples += [e["value"] for e in media.get("examples", {}).values()]
            for value in examples:
                self.assertEqual(self.api.schema_errors(schema_location, value), [], location)
                checked += 1
        for name, schema in self.document["components"]["schemas"].items():
            for value in schema.get("examples", []):
                self.assertEqual(self.api.schema_errors(f"/components/schemas/{name}", value), [], name)
                checked += 1
        self.assertGreaterEqual(checked, 6)

    def test_problem_types_are_the_ones_the_code_sends(self) -> None:
        """
        C{ProblemType} lists exactly the C{type} of every constructor in
        L{alertgateway.web.problems}; each has a schema whose constants are
        the constructor's type, title and status, and the problem's JSON is
        valid against it.  A new kind of problem fails here until the
        document describes it.
        """
        rate = {"RateLimit": '"global";r=0;t=1', "RateLimit-Policy": '"global";q=60;w=60'}
        made: dict[str, list[problems.Problem]] = {
            "not_found": [problems.not_found("/nowhere")],
            "method_not_allowed": [problems.method_not_allowed("GET", ["POST"])],
            "unauthorized": [
                problems.unauthorized("No token.", challenge='Bearer realm="alertgateway", error="invalid_token"'),
                problems.unauthorized("No key.", challenge='APIKey realm="alertgateway", header="X-API-Key"'),
            ],
            "forbidden": [problems.forbidden("Not from here.")],
            "refused": [
                problems.refused(Refused(Reason.SIGNATURE, "Bad.", challenge='Signature realm="alertgateway"')),
                problems.refused(Refused(Reason.ADDRESS, "Not from here.")),
            ],
            "payload_too_large": [problems.payload_too_large(1024)],
            "unsupported_media_type": [problems.unsupported_media_type("text/plain")],
            "unsupported_encoding": [problems.unsupported_encoding("br")],
            "malformed_body": [problems.malformed_body("Not JSON.")],
            "invalid_query": [problems.invalid_query("limit", "must be an integer from 1 to 1000")],
            "invalid_payload": [
                problems.invalid_payload("Bad.", [{"pointer": "/alerts/0/labels", "message": "empty"}])
            ],
            "rate_limited": [
                problems.rate_limited(429, 0.2, "global", rate),
                problems.rate_limited(503, 12.5, "client", rate),
            ],
            "too_busy": [problems.too_busy(10)],
            "queue_full": [problems.queue_full(5)],
            "state_unavailable": [problems.state_unavailable(5)],
            "shutting_down": [problems.shutting_down()],
            "request_timeout": [problems.request_timeout(30.0)],
            "processor_rejected": [problems.processor_rejected()],
            "internal_error": [problems.internal_error()],
        }
        constructors = set(problems.__all__) - {"PROBLEM_CONTENT_TYPE", "Problem"}
        self.assertEqual(constructors, set(made), "a problem constructor is not covered by the document test")
        documented = {entry["const"] for entry in self.document["components"]["schemas"]["ProblemType"]["oneOf"]}
        self.assertEqual(documented, {p.type for ps in made.values() for p in ps})
        by_type = _problem_schemas(self.document)
        for problem in (p for ps in made.values() for p in ps):
            name = by_type.get(problem.type)
            self.assertIsNotNone(name, f"no schema for {problem.type}")
            assert name is not None
            constants = self.document["components"]["schemas"][name]["allOf"][1]["properties"]
            self.assertIn(problem.title, _pinned(constants["title"]), name)
            self.assertIn(problem.status, _pinned(constants["status"]), name)
            body = problem.to_json("req-1", "/webhook/prometheus")
            self.assertEqual(self.api.schema_errors(f"/components/schemas/{name}", body), [], name)
            # The title goes with the status: a 429 named like a 503 is off
            # the document.
            if len(_pinned(constants["status"])) > 1:
                other = next(iter(_pinned(constants["title"]) - {problem.title}))
                wrong = {**body, "title": other}
                self.assertNotEqual(self.api.schema_errors(f"/components/schemas/{name}", wrong), [], name)
            for header, value in problem.headers.items():
                self.assertEqual(self._header_errors(problem.status, header, value), [], (name, header))

    def _header_errors(self, status: int, header: str, value: str) -> list[str]:
        """
        Check a problem's header against the definition the webhook
        responses give it for C{status}.
        """
        responses = self.document["paths"]["/webhook/prometheus"]["post"]["responses"]
        if str(status) not in responses or header.lower() == "connection":
            # 404, 405 and 500 are checked by the integration tests; the
            # Connection header is hop-by-hop, not part of the API.
            return []
        location = f"/paths/{escape('/webhook/prometheus')}/post/responses/{status}"
        response, location = self.api.deref(self.api.at(location), location)
        definition = response.get("headers", {}).get(header)
        if definition is None:
            return [f"{header} is not documented on {status}"]
        return self.api.header_value_errors(header, value, definition, f"{location}/headers/{escape(header)}")

    def test_checker_reports_answers_that_disagree(self) -> None:
        """
        The checker the integration tests use is not vacuous: an undocumented
        status, a missing required header, a wrong media type, a body off
        its schema, a wrong C{Allow} and an answer on the wrong listener are
        each reported.
        """
        security = {
            "x-content-type-options": ["nosniff"],
            "cache-control": ["no-store"],
            "x-frame-options": ["DENY"],
            "content-security-policy": ["default-src 'none'; frame-ancestors 'none'"],
            "referrer-policy": ["no-referrer"],
        }
        common = {"x-request-id": ["abc"], **security}
        good = Exchange(
            "webhook",
            "GET",
            "/health/live",
            200,
            {"content-type": ["application/json"], **common},
            b'{"status":"alive"}',
        )
        self.assertEqual(self.api.check(good), [])
        without_nosniff = {k: v for k, v in good.headers.items() if k != "x-content-type-options"}
        variants: list[tuple[str, Exchange]] = [
            ("status", attrs.evolve(good, status=418)),
            ("header", attrs.evolve(good, headers={"content-type": ["application/json"], **security})),
            ("security header", attrs.evolve(good, headers=without_nosniff)),
            ("cache control", attrs.evolve(good, headers={**good.headers, "cache-control": ["max-age=60"]})),
            ("content coding", attrs.evolve(good, headers={**good.headers, "content-encoding": ["br"]})),
            ("media type", attrs.evolve(good, headers={"content-type": ["text/html"], **common})),
            ("body", attrs.evolve(good, body=b'{"status":"dead"}')),
            ("listener", attrs.evolve(good, listener="metrics")),
            ("unknown path", attrs.evolve(good, path="/nope")),
            (
                "allow",
                attrs.evolve(
                    good,
                    method="DELETE",
                    status=405,
                    headers={"content-type": ["application/problem+json"], **common, "allow": ["GET"]},
                    body=json.dumps(
                        problems.method_not_allowed("DELETE", ["GET"]).to_json("abc", "/health/live")
                    ).encode(),
                ),
            ),
        ]
        for what, variant in variants:
            self.assertNotEqual(self.api.check(variant), [], f"a wrong {what} went unnoticed")


def _media_objects(node: Any, location: str) -> list[tuple[str, dict[str, Any]]]:
    """
    Every media type object (a value of a C{content} map) in the document,
    with its location.
    """
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{location}/{escape(str(key))}"
            if key == "content" and isinstance(value, dict):
                found += [(f"{here}/{escape(media)}", obj) for media, obj in value.items()]
            else:
                found += _media_objects(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _media_objects(value, f"{location}/{index}")
    return found


def _pinned(schema: dict[str, Any]) -> set[Any]:
    """
    The values a schema allows by C{const} or C{enum}.
    """
    return {schema["const"]} if "const" in schema else set(schema.get("enum", []))


def _problem_schemas(document: dict[str, Any]) -> dict[str, str]:
    """
    The name of the schema that pins each problem type.
    """
    found = {}
    for name, schema in document["components"]["schemas"].items():
        parts = schema.get("allOf", [])
        if len(parts) == 2 and parts[0].get("$ref") == "#/components/schemas/Problem":
            found[parts[1]["properties"]["type"]["const"]] = name
    return found


class _RunningGatewayTestCase(TestCase):
    timeout = 90

    def setUp(self) -> None:
        self.api = APIDocument(load_document())

    async def start_gateway(self, config: dict[str, Any] | None = None) -> GatewayProcess:
        """
        Start the plugin with a bearer token and a small body limit (plus
        C{config}), stopped at the end of the test.
        """
        settings: dict[str, Any] = {
            "webhook": {"auth": {"token": TOKEN}},
            "service": {"max_body_bytes": MAX_BODY},
        }
        for key, value in (config or {}).items():
            settings[key] = {**settings.get(key, {}), **value}
        gateway = GatewayProcess(settings)
        await gateway.start()
        self.addCleanup(gateway.stop)
        return gateway

    async def request(
        self,
        gateway: GatewayProcess,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        listener: str = "webhook",
        agent: Any = None,
    ) -> Exchange:
        """
        Send one request and fail the test if the answer disagrees with the
        document.
        """
        base = gateway.url if listener == "webhook" else f"http://127.0.0.1:{gateway.ports['metrics']}"
        answer = await exchange(base, listener, method, path, body=body, headers=headers, agent=agent)
        self.assertEqual(self.api.check(answer), [], answer.describe())
        self.assertIsNotNone(answer.header("x-request-id"), answer.describe())
        if answer.request_id is not None and _sane(answer.request_id):
            self.assertEqual(answer.header("x-request-id"), answer.request_id, "a sane X-Request-ID is echoed")
        return answer

    async def _poll(self, send: Callable[[], Any], status: int, timeout: float = 5.0) -> Exchange:
        """
        Send until the answer has C{status}; fail with the last answer after
        C{timeout} seconds.
        """
        waited = 0.0
        while True:
            answer: Exchange = await send()
            if answer.status == status or waited >= timeout:
                self.assertEqual(answer.status, status, answer.describe())
                return answer
            await sleep(0.05)
            waited += 0.05

    def assertProblem(self, answer: Exchange, status: int, slug: str) -> dict[str, Any]:
        """
        Assert that C{answer} is the problem C{slug} with C{status}.
        """
        self.assertEqual(answer.status, status, answer.describe())
        self.assertEqual(answer.header("content-type"), "application/problem+json", answer.describe())
        body: dict[str, Any] = answer.json()
        self.assertEqual(body["type"], f"urn:alertgateway:problem:{slug}", answer.describe())
        # The path, without the query.
        self.assertEqual(body["instance"], answer.path.split("?", 1)[0])
        return body


def _sane(request_id: str) -> bool:
    return 1 <= len(request_id) <= 128 and all(c.isascii() and (c.isalnum() or c in "._:-") for c in request_id)


class WebhookAnswersTests(_RunningGatewayTestCase):
    """
    Representative requests to the running plugin, each answer checked
    against the document.
    """

    async def test_fixtures_accepted_and_delivered_as_documented(self) -> None:
        """
        Every fixture, posted to its endpoint and to the same endpoint under
        C{/v1}, is answered 202 as documented; every alert reaches the
        processor as the documented C{ProcessorAlert} with the webhook's
        C{X-Request-ID} and a documented C{Idempotency-Key}.  Each post
        carries alerts of its own (a label more), so none is a duplicate
        and all twelve are forwarded.
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = await self.start_gateway({"alert_processor": {"endpoint": url}})
        sent: set[str] = set()
        accepted = 0
        for name, path in FIXTURES.items():
            for prefix in ("", "/v1"):
                request_id = f"openapi-{name.removesuffix('.json')}{prefix.replace('/', '.')}"
                answer = await self.request(
                    gateway,
                    "POST",
                    prefix + path,
                    body=distinct(name, request_id),
                    headers=_headers(**{"X-Request-ID": request_id}),
                )
                self.assertEqual(answer.status, 202, answer.describe())
                self.assertEqual(
                    [a["status"] for a in answer.json()["alerts"]],
                    ["new" if a["alertStatus"] == "firing" else "resolved" for a in answer.json()["alerts"]],
                )
                accepted += answer.json()["accepted"]
                sent.add(request_id)
        self.assertEqual(accepted, 12)
        await stub.wait_for(accepted)
        for received in stub.received:
            self.assertEqual(received.path, "/api/v1/alerts")
            self.assertEqual(self.api.check_outbound(received.headers, received.body), [], received.body)
            self.assertIn(received.headers["x-request-id"], sent)

    async def test_bad_bodies_are_documented_400_and_207(self) -> None:
        """
        An empty body, malformed JSON, a body nested past
        C{limits.max_json_depth}, a body that is not a webhook payload, an
        unsupported version and a batch without a valid alert are documented
        400 problems with JSON pointers; a batch with valid and invalid
        alerts (a bad timestamp, no labels, a label name outside Prometheus
        syntax, an alert past C{limits.max_alerts_per_request}) is the
        documented 207 with one result per alert.
        """
        gateway = await self.start_gateway({"limits": {"max_alerts_per_request": 4, "max_json_depth": 8}})
        deep = b'{"alerts": [{"labels": {"a": "b"}, "x": ' + b"[" * 10 + b"]" * 10 + b"}]}"
        cases = [
            (b"", "malformed-body"),
            (b'{"alerts": [', "malformed-body"),
            (b'{"alerts": [{"labels": {"a": "b"}, "value": NaN}]}', "malformed-body"),
            (deep, "malformed-body"),
            (b"[]", "invalid-payload"),
            (b'{"alerts": []}', "invalid-payload"),
            (b'{"version": "3", "alerts": [{"status": "firing", "labels": {"a": "b"}}]}', "invalid-payload"),
            (b'{"alerts": [{"status": "firing", "labels": {}}, {"labels": {"a": "b"}}]}', "invalid-payload"),
        ]
        for body, slug in cases:
            answer = await self.request(gateway, "POST", "/webhook/prometheus", body=body, headers=_headers())
            problem = self.assertProblem(answer, 400, slug)
            self.assertTrue(problem["errors"], answer.describe())
        partial = json.dumps(
            {
                "status": "firing",
                "alerts": [
                    {"labels": {"alertname": "Ok"}},
                    {"labels": {"alertname": "Bad"}, "startsAt": "yesterday"},
                    {"labels": {}},
                    {"labels": {"alertname": "Dash", "pod-name": "api-1"}},
                    {"labels": {"alertname": "Fifth"}},
                ],
            }
        ).encode()
        answer = await self.request(gateway, "POST", "/v1/webhook/prometheus", body=partial, headers=_headers())
        self.assertEqual(answer.status, 207, answer.describe())
        result = answer.json()
        self.assertEqual([a["status"] for a in result["alerts"]], ["new"] + ["rejected"] * 4)
        self.assertEqual(
            [[e["pointer"] for e in a["errors"]] for a in result["alerts"][1:]],
            [["/alerts/1/startsAt"], ["/alerts/2/labels"], ["/alerts/3/labels/pod-name"], ["/alerts/4"]],
        )
        legacy_bad_state = json.dumps({"ruleName": "Disk", "state": "paused"}).encode()
        answer = await self.request(gateway, "POST", "/webhook/grafana", body=legacy_bad_state, headers=_headers())
        self.assertProblem(answer, 400, "invalid-payload")

    async def test_refused_credentials_are_documented_401(self) -> None:
        """
        No Authorization header, a non-bearer credential and a wrong token
        are each the documented 401 problem with a C{WWW-Authenticate}
        bearer challenge.
        """
        gateway = await self.start_gateway()
        body = fixture("alertmanager-firing.json")
        for headers, error in [
            (_headers(token=None), None),
            ({**_headers(token=None), "Authorization": "Basic dXNlcjpwYXNz"}, "invalid_request"),
            (_headers(token="not-the-token"), "invalid_token"),
        ]:
            answer = await self.request(gateway, "POST", "/webhook/grafana", body=body, headers=headers)
            self.assertProblem(answer, 401, "unauthorized")
            challenge = answer.header("www-authenticate") or ""
            self.assertTrue(challenge.startswith("Bearer "), challenge)
            self.assertEqual(f'error="{error}"' in challenge, error is not None, challenge)

    async def test_unknown_paths_and_methods_are_documented_404_and_405(self) -> None:
        """
        Paths the document does not list are 404 on both listeners, and a
        method a path does not have is 405 with C{Allow} naming exactly the
        methods the document gives that path.
        """
        gateway = await self.start_gateway()
        for method, path, listener in [
            ("POST", "/webhook/unknown", "webhook"),
            ("GET", "/", "webhook"),
            ("GET", "/v1", "webhook"),
            ("POST", "/webhook/prometheus/extra", "webhook"),
            ("GET", "/metrics", "webhook"),
            ("GET", "/health", "metrics"),
        ]:
            answer = await self.request(gateway, method, path, headers=_headers(), listener=listener)
            self.assertProblem(answer, 404, "not-found")
        for method, path, listener in [
            ("GET", "/webhook/prometheus", "webhook"),
            ("PUT", "/v1/webhook/grafana", "webhook"),
            ("POST", "/health", "webhook"),
            ("DELETE", "/health/ready", "webhook"),
            ("POST", "/metrics", "metrics"),
        ]:
            answer = await self.request(gateway, method, path, headers=_headers(), listener=listener)
            self.assertProblem(answer, 405, "method-not-allowed")

    async def test_oversized_and_non_json_bodies_are_documented_413_and_415(self) -> None:
        """
        A body past C{service.max_body_bytes} is the documented 413 problem
        naming the limit; a C{text/plain} body is the documented 415 problem
        with C{Accept-Post}; C{application/*+json} and a charset parameter
        are taken as JSON.
        """
        gateway = await self.start_gateway()
        oversized = b'{"alerts": [' + b" " * (MAX_BODY * 2) + b"]}"
        answer = await self.request(gateway, "POST", "/webhook/prometheus", body=oversized, headers=_headers())
        self.assertEqual(self.assertProblem(answer, 413, "payload-too-large")["limit"], MAX_BODY)
        body = fixture("grafana-legacy.json")
        answer = await self.request(
            gateway, "POST", "/webhook/grafana", body=body, headers=_headers(**{"Content-Type": "text/plain"})
        )
        self.assertProblem(answer, 415, "unsupported-media-type")
        for content_type in ("application/json; charset=utf-8", "application/vnd.grafana+json"):
            answer = await self.request(
                gateway, "POST", "/webhook/grafana", body=body, headers=_headers(**{"Content-Type": content_type})
            )
            self.assertEqual(answer.status, 202, answer.describe())

    async def test_probes_and_metrics_are_documented(self) -> None:
        """
        GET and HEAD of C{/health}, C{/health/live}, C{/health/ready} (ready:
        200 once the listeners are up) on the webhook listener and of
        C{/metrics} on the metrics listener answer as documented; an insane
        C{X-Request-ID} is replaced by a generated one.
        """
        gateway = await self.start_gateway()
        for path, listener in [
            ("/health", "webhook"),
            ("/health/live", "webhook"),
            ("/health/ready", "webhook"),
            ("/metrics", "metrics"),
        ]:
            for method in ("GET", "HEAD"):
                answer = await self.request(gateway, method, path, listener=listener)
                self.assertEqual(answer.status, 200, answer.describe())
                if method == "HEAD":
                    self.assertEqual(answer.body, b"")
        ready = await self.request(gateway, "GET", "/health/ready")
        self.assertEqual(ready.json()["state"], "ready")
        insane = await self.request(gateway, "GET", "/health", headers={"X-Request-ID": "not sane!"})
        self.assertRegex(insane.header("x-request-id") or "", "^[0-9a-f]{32}$")
        metrics = await self.request(gateway, "GET", "/metrics", listener="metrics")
        self.assertIn(b"gateway_requests_total{", metrics.body)

    async def test_forbidden_address_is_documented_403(self) -> None:
        """
        A client outside C{security.allowed_ips} is the documented 403
        problem, before its credentials are even looked at.  Behind a
        trusted proxy the client is the rightmost untrusted address of
        C{X-Forwarded-For} (the default security.forwarded_header): a
        C{Forwarded} header is the client's own and is not read.  From an
        untrusted peer those headers are ignored.  A host name in the list
        allows the addresses it resolves to.
        """
        body = fixture("alertmanager-firing.json")
        gateway = await self.start_gateway({"security": {"allowed_ips": ["192.0.2.0/24"]}})
        for token in (TOKEN, None):
            answer = await self.request(gateway, "POST", "/webhook/prometheus", body=body, headers=_headers(token))
            self.assertProblem(answer, 403, "forbidden")
        # The loopback peer is not a trusted proxy here: the header is a lie.
        answer = await self.request(
            gateway, "POST", "/webhook/prometheus", body=body, headers=_headers(**{"X-Forwarded-For": "192.0.2.7"})
        )
        self.assertProblem(answer, 403, "forbidden")
        proxied = await self.start_gateway(
            {"security": {"allowed_ips": ["192.0.2.0/24"], "trusted_proxies": ["127.0.0.1/32", "10.0.0.0/8"]}}
        )
        for forwarded, status in [
            ({}, 403),
            ({"X-Forwarded-For": "192.0.2.7"}, 202),
            ({"X-Forwarded-For": "192.0.2.7, 10.1.2.3"}, 202),
            ({"X-Forwarded-For": "192.0.2.7, 198.51.100.9"}, 403),
            ({"X-Forwarded-For": "198.51.100.9, 192.0.2.7"}, 202),
            ({"Forwarded": 'for=192.0.2.60;proto=https, for="10.0.0.1"'}, 403),
            ({"Forwarded": "for=192.0.2.7", "X-Forwarded-For": "198.51.100.9"}, 403),
            ({"Forwarded": "for=198.51.100.9", "X-Forwarded-For": "192.0.2.7"}, 202),
        ]:
            answer = await self.request(
                proxied, "POST", "/webhook/prometheus", body=body, headers=_headers(**forwarded)
            )
            self.assertEqual(answer.status, status, f"{forwarded}: {answer.describe()}")
        named = await self.start_gateway({"security": {"allowed_ips": ["localhost"]}})
        # Host names resolve once the gateway has started, not before.
        answer = await self._poll(
            lambda: self.request(named, "POST", "/webhook/prometheus", body=body, headers=_headers()), 202
        )
        self.assertEqual(answer.json()["accepted"], len(json.loads(body)["alerts"]))

    async def test_full_queue_is_documented_503(self) -> None:
        """
        A batch that does not fit in the delivery queue is the documented
        503 C{queue-full} problem with C{Retry-After}.
        """
        gateway = await self.start_gateway({"queue": {"max_items": 1}})
        answer = await self.request(
            gateway, "POST", "/webhook/prometheus", body=fixture("alertmanager-firing.json"), headers=_headers()
        )
        self.assertProblem(answer, 503, "queue-full")
        self.assertEqual(answer.header("retry-after"), "5")

    async def test_shutdown_answers_are_documented_503(self) -> None:
        """
        After SIGTERM, on a connection opened before it, readiness is the
        documented 503 (state C{stopping}) and a webhook is the documented
        503 C{shutting-down} problem with C{Retry-After}.
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        # The processor never answers, so the drain keeps the gateway up for
        # service.shutdown_grace after SIGTERM.
        stub.hold = True
        gateway = await self.start_gateway({"alert_processor": {"endpoint": url, "timeout": "60s"}})
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 1
        self.addCleanup(pool.closeCachedConnections)
        agent = Agent(reactor, pool=pool)
        answer = await self.request(gateway, "GET", "/health/ready", agent=agent)
        self.assertEqual(answer.status, 200)
        answer = await self.request(
            gateway,
            "POST",
            "/webhook/prometheus",
            body=fixture("alertmanager-firing.json"),
            headers=_headers(),
            agent=agent,
        )
        self.assertEqual(answer.status, 202)
        stopping: Deferred[int] = Deferred.fromCoroutine(gateway.stop())
        ready = await self._poll(lambda: self.request(gateway, "GET", "/health/ready", agent=agent), 503)
        self.assertEqual(ready.json()["state"], "stopping")
        answer = await self.request(
            gateway,
            "POST",
            "/webhook/prometheus",
            body=fixture("alertmanager-firing.json"),
            headers=_headers(),
            agent=agent,
        )
        self.assertProblem(answer, 503, "shutting-down")
        self.assertEqual(answer.header("retry-after"), "1")
        await stopping


class StatusAnswersTests(_RunningGatewayTestCase):
    """
    The decisions in webhook answers, what they make the gateway send to
    the processor (escalations and storm events included) and the status
    API, each checked against the document.
    """

    async def test_decisions_and_status_api_are_documented(self) -> None:
        """
        Answers saying new, duplicate, escalated, resolved and aggregated
        are the documented 202; the escalations, resolutions and storm
        events reach the processor as the documented outbound request.
        GET and HEAD of C{/v1/alerts} (pages joined by C{nextCursor}, the
        status filter) and of C{/v1/alerts/{fingerprint}} answer as
        documented; an unknown fingerprint is the documented 404, a bad
        query the documented 400 C{invalid-query} naming the parameter,
        a request without the token the documented 401, another method
        the documented 405, and a client outside C{security.allowed_ips}
        the documented 403.
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = await self.start_gateway(
            {
                "alert_processor": {"endpoint": url},
                "storm": {"threshold": 2, "quiet_period": "0.5s"},
                "dedup": {"expire_interval": "0.2s"},
                # Repeats posted back to back each count toward escalation.
                "escalation": {"min_spacing": "0s"},
            }
        )
        firing = json.loads(fixture("alertmanager-firing.json"))
        decided: list[str] = []
        for body in [firing] * 4 + [resolved_json(firing)]:
            answer = await self.request(
                gateway, "POST", "/webhook/prometheus", body=json.dumps(body).encode(), headers=_headers()
            )
            self.assertEqual(answer.status, 202, answer.describe())
            decided += [a["status"] for a in answer.json()["alerts"]]
        pods = [{"alertname": "DocStorm", "namespace": "docs", "pod": f"pod-{n}"} for n in range(4)]
        storm = {"alerts": [{"status": "firing", "labels": labels} for labels in pods]}
        answer = await self.request(
            gateway, "POST", "/v1/webhook/prometheus", body=json.dumps(storm).encode(), headers=_headers()
        )
        decided += [a["status"] for a in answer.json()["alerts"]]
        self.assertEqual(
            decided,
            ["new"] * 2 + ["duplicate"] * 4 + ["escalated"] * 2 + ["resolved"] * 2 + ["new"] * 2 + ["aggregated"] * 2,
        )
        # Two alerts new, escalated and resolved; two alone and two storm events.
        await stub.wait_until(lambda: any(r.body.get("state") == "closed" for r in stub.received))
        self.assertEqual(len(stub.received), 10, [r.body for r in stub.received])
        for received in stub.received:
            self.assertEqual(self.api.check_outbound(received.headers, received.body), [], received.body)
        kinds = sorted(r.body.get("decision") or r.body["state"] for r in stub.received)
        self.assertEqual(kinds, sorted(["new"] * 4 + ["escalated"] * 2 + ["resolved"] * 2 + ["started", "closed"]))

        everything = await self.request(gateway, "GET", "/v1/alerts", headers=_headers())
        self.assertEqual((everything.status, everything.json()["count"]), (200, 6), everything.describe())
        listed: list[str] = []
        query = "limit=4"
        while True:
            page = await self.request(gateway, "GET", f"/v1/alerts?{query}", headers=_headers())
            self.assertEqual(page.status, 200, page.describe())
            listed += [a["dedupKey"] for a in page.json()["alerts"]]
            cursor = page.json()["nextCursor"]
            if cursor is None:
                break
            query = urlencode({"limit": "4", "cursor": cursor})
        self.assertEqual(listed, [a["dedupKey"] for a in everything.json()["alerts"]])
        for status, count in (("firing", 4), ("resolved", 2)):
            page = await self.request(gateway, "GET", f"/v1/alerts?status={status}", headers=_headers())
            self.assertEqual(page.json()["count"], count, page.describe())
        example = self.api.at("/components/parameters/FingerprintPath/example")
        for method in ("GET", "HEAD"):
            state = await self.request(gateway, method, f"/v1/alerts/{example}", headers=_headers())
            self.assertEqual(state.status, 200, state.describe())
        self.assertEqual((state.body, state.header("content-type")), (b"", "application/json"))
        state = await self.request(gateway, "GET", f"/v1/alerts/{example}", headers=_headers())
        self.assertEqual(
            (state.json()["status"], state.json()["escalation"], state.json()["duplicateCount"]),
            ("resolved", "immediate", 3),
        )
        for method in ("GET", "HEAD"):
            unknown = await self.request(gateway, method, "/v1/alerts/0000000000000000", headers=_headers())
            self.assertEqual(unknown.status, 404, unknown.describe())
        unknown = await self.request(gateway, "GET", "/v1/alerts/nothing", headers=_headers())
        self.assertProblem(unknown, 404, "not-found")
        for query, parameter in [
            ("status=pending", "status"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=ten", "limit"),
            ("cursor=%21%21", "cursor"),
        ]:
            refused = await self.request(gateway, "GET", f"/v1/alerts?{query}", headers=_headers())
            self.assertEqual(self.assertProblem(refused, 400, "invalid-query")["parameter"], parameter, query)
            head = await self.request(gateway, "HEAD", f"/v1/alerts?{query}", headers=_headers())
            self.assertEqual(head.status, 400, head.describe())
        for method, path in (("GET", "/v1/alerts"), ("HEAD", "/v1/alerts"), ("GET", f"/v1/alerts/{example}")):
            refused = await self.request(gateway, method, path, headers=_headers(token=None))
            self.assertEqual(refused.status, 401, refused.describe())
            self.assertTrue((refused.header("www-authenticate") or "").startswith("Bearer "), refused.describe())
        for method, path in (("POST", "/v1/alerts"), ("DELETE", f"/v1/alerts/{example}")):
            refused = await self.request(gateway, method, path, headers=_headers())
            self.assertProblem(refused, 405, "method-not-allowed")
        fenced = await self.start_gateway({"security": {"allowed_ips": ["192.0.2.0/24"]}})
        for path in ("/v1/alerts", f"/v1/alerts/{example}"):
            refused = await self.request(fenced, "GET", path, headers=_headers())
            self.assertProblem(refused, 403, "forbidden")


class EdgeAnswersTests(_RunningGatewayTestCase):
    """
    The answers of the edge controls (rate limits, requests in flight,
    credentials other than bearer, signatures, content types and codings,
    compression, forwarded headers), each checked against the document.
    """

    async def test_rate_limits_are_documented_429_and_503(self) -> None:
        """
        Past an endpoint's C{rate_limit} a webhook is the documented 429
        C{rate-limited} problem (scope C{endpoint}, C{Retry-After}, the
        C{RateLimit} headers), or 503 where the endpoint's C{reject_status}
        says so; the C{/v1} alias shares the bucket; accepted answers carry
        the C{RateLimit} headers too.  Each refusal is a security log event
        and is counted.
        """
        gateway = await self.start_gateway(
            {
                "webhook": {
                    "endpoints": [
                        {"path": "/webhook/prometheus", "rate_limit": 1, "reject_status": 429},
                        {"path": "/webhook/grafana", "rate_limit": 1, "reject_status": 503},
                    ]
                }
            }
        )
        am, grafana = fixture("alertmanager-firing.json"), fixture("grafana-legacy.json")
        first = await self.request(gateway, "POST", "/webhook/prometheus", body=am, headers=_headers())
        self.assertEqual(first.status, 202, first.describe())
        self.assertEqual(first.header("ratelimit-policy"), '"endpoint";q=1;w=60')
        self.assertEqual(first.header("ratelimit"), '"endpoint";r=0;t=60')
        refused = await self.request(gateway, "POST", "/v1/webhook/prometheus", body=am, headers=_headers())
        problem = self.assertProblem(refused, 429, "rate-limited")
        self.assertEqual((problem["title"], problem["scope"]), ("Too Many Requests", "endpoint"))
        self.assertTrue(1 <= int(refused.header("retry-after") or 0) <= 60, refused.describe())
        self.assertEqual(refused.header("ratelimit-policy"), '"endpoint";q=1;w=60')
        answer = await self.request(gateway, "POST", "/webhook/grafana", body=grafana, headers=_headers())
        self.assertEqual(answer.status, 202, answer.describe())
        unavailable = await self.request(gateway, "POST", "/webhook/grafana", body=grafana, headers=_headers())
        problem = self.assertProblem(unavailable, 503, "rate-limited")
        self.assertEqual((problem["title"], problem["scope"]), ("Service Unavailable", "endpoint"))
        self.assertIsNotNone(unavailable.header("retry-after"))
        event = json.loads(
            await gateway.wait_for_event(
                lambda e: e.get("logger") == "alertgateway.security" and e.get("status") == 503
            )
        )
        self.assertEqual((event["level"], event["reason"], event["client"]), ("warn", "rate", "127.0.0.1"))
        metrics = (await self.request(gateway, "GET", "/metrics", listener="metrics")).body.decode()
        for endpoint in ("/webhook/prometheus", "/webhook/grafana"):
            self.assertIn(f'gateway_rate_limited_total{{endpoint="{endpoint}",scope="endpoint"}} 1.0', metrics)
            self.assertIn(f'gateway_security_rejections_total{{endpoint="{endpoint}",reason="rate"}} 1.0', metrics)

    async def test_too_many_requests_in_flight_is_documented_503(self) -> None:
        """
        Past C{service.max_concurrent_requests} requests in progress (a slow
        upload counts from the end of its headers on) a webhook is the documented
        503 C{too-busy} problem with C{Retry-After: 1}; once the slow
        request is gone, webhooks are accepted again.
        """
        gateway = await self.start_gateway({"service": {"max_concurrent_requests": 1}})
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.ports["webhook"])
        slow = await connectProtocol(endpoint, Protocol())
        assert slow.transport is not None
        closed: Deferred[None] = Deferred()
        slow.connectionLost = lambda reason: closed.callback(None)

        def _close() -> Deferred[None]:
            assert slow.transport is not None
            slow.transport.loseConnection()
            return closed

        # Runs before the gateway is stopped, which waits for requests in flight.
        self.addCleanup(_close)
        slow.transport.write(b"POST /webhook/prometheus HTTP/1.1\r\nHost: gateway\r\nContent-Length: 100\r\n\r\n{")
        body = fixture("alertmanager-firing.json")
        send = lambda: self.request(gateway, "POST", "/webhook/prometheus", body=body, headers=_headers())  # noqa: E731
        busy = await self._poll(send, 503)
        self.assertProblem(busy, 503, "too-busy")
        self.assertEqual(busy.header("retry-after"), "1")
        slow.transport.loseConnection()
        await closed
        await self._poll(send, 202)
        metrics = (await self.request(gateway, "GET", "/metrics", listener="metrics")).body.decode()
        self.assertIn('gateway_security_rejections_total{endpoint="/webhook/prometheus",reason="concurrency"}', metrics)

    async def test_form_xml_and_gzip_bodies_are_documented(self) -> None:
        """
        The JSON document in a form's C{payload} field, the documented XML
        format (as C{application/xml} and C{text/xml}) and gzip-encoded
        bodies are accepted as documented; XML with a DTD or entities, a
        form without C{payload} and a body that is not the gzip it claims
        are 400; a gzip bomb is 413 although it is small on the wire; an
        unknown content coding and content type are the documented 415s.
        """
        gateway = await self.start_gateway()
        am = fixture("alertmanager-firing.json")
        form = urlencode({"payload": am.decode(), "other": "ignored"}).encode()
        form_type = {"Content-Type": "application/x-www-form-urlencoded"}
        accepted = [
            ("/webhook/prometheus", form, form_type),
            ("/webhook/prometheus", XML_ALERTS, {"Content-Type": "application/xml"}),
            ("/v1/webhook/grafana", XML_ALERTS, {"Content-Type": "text/xml; charset=utf-8"}),
            ("/webhook/prometheus", gzip.compress(am), {"Content-Encoding": "gzip"}),
            ("/webhook/grafana", gzip.compress(form), {**form_type, "Content-Encoding": "x-gzip"}),
            ("/webhook/prometheus", am, {"Content-Encoding": "identity"}),
        ]
        for path, body, headers in accepted:
            answer = await self.request(gateway, "POST", path, body=body, headers=_headers(**headers))
            self.assertEqual(answer.status, 202, f"{headers}: {answer.describe()}")
            if body is XML_ALERTS:
                labels = {"alertname": "DiskFull", "instance": "node-3"}
                self.assertEqual(answer.json()["alerts"][0]["fingerprint"], am_fingerprint(labels))
        xml_type = {"Content-Type": "application/xml"}
        no_status = b"<alerts><alert><labels><label name='a'>b</label></labels></alert></alerts>"
        refused = [
            (b'<!DOCTYPE alerts [<!ENTITY x "boom">]><alerts>&x;</alerts>', xml_type, "malformed-body", ""),
            (
                b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><alerts>&x;</alerts>',
                xml_type,
                "malformed-body",
                "",
            ),
            (b"<alerts><alert status='firing'>", xml_type, "malformed-body", ""),
            (b"<alert status='firing'/>", xml_type, "malformed-body", ""),
            (no_status, xml_type, "invalid-payload", "/alerts/0/status"),
            (b"data=1", form_type, "malformed-body", ""),
            (b"payload=%7Bnot+json", form_type, "malformed-body", ""),
            (am, {"Content-Encoding": "gzip"}, "malformed-body", ""),
        ]
        for body, headers, slug, pointer in refused:
            answer = await self.request(gateway, "POST", "/webhook/prometheus", body=body, headers=_headers(**headers))
            problem = self.assertProblem(answer, 400, slug)
            self.assertEqual([e["pointer"] for e in problem["errors"]], [pointer], answer.describe())
        bomb = gzip.compress(b'{"alerts": [' + b" " * (MAX_BODY * 200) + b"]}")
        self.assertLess(len(bomb), MAX_BODY)
        answer = await self.request(
            gateway, "POST", "/webhook/prometheus", body=bomb, headers=_headers(**{"Content-Encoding": "gzip"})
        )
        self.assertEqual(self.assertProblem(answer, 413, "payload-too-large")["limit"], MAX_BODY)
        for coding in ("br", "deflate", "gzip, br"):
            answer = await self.request(
                gateway, "POST", "/webhook/prometheus", body=am, headers=_headers(**{"Content-Encoding": coding})
            )
            self.assertProblem(answer, 415, "unsupported-encoding")
            self.assertEqual(answer.header("accept-encoding"), "gzip")
        answer = await self.request(
            gateway, "POST", "/webhook/prometheus", body=am, headers=_headers(**{"Content-Type": "application/yaml"})
        )
        self.assertProblem(answer, 415, "unsupported-media-type")
        self.assertEqual(
            answer.header("accept-post"),
            "application/json, application/x-www-form-urlencoded, application/xml, text/xml",
        )

    async def test_compressed_answers_are_documented(self) -> None:
        """
        An answer of at least C{service.gzip_min_bytes} carries C{Vary:
        Accept-Encoding} and is gzipped for a client that accepts gzip (not
        with C{q=0}, not otherwise); shorter answers are never compressed;
        HEAD says what GET would send.  The security headers are on every
        answer (the document requires them, so every request here checks
        them).
        """
        gateway = await self.start_gateway()
        gzip_ok = {"Accept-Encoding": "gzip, deflate"}
        metrics = await self.request(gateway, "GET", "/metrics", listener="metrics", headers=gzip_ok)
        self.assertEqual((metrics.header("content-encoding"), metrics.header("vary")), ("gzip", "Accept-Encoding"))
        assert metrics.wire_body is not None
        self.assertTrue(metrics.wire_body.startswith(b"\x1f\x8b"), metrics.wire_body[:10])
        self.assertLess(len(metrics.wire_body), len(metrics.body))
        self.assertIn(b"# TYPE gateway_security_rejections_total counter", metrics.body)
        for headers in ({}, {"Accept-Encoding": "gzip;q=0, identity"}, {"Accept-Encoding": "br"}):
            plain = await self.request(gateway, "GET", "/metrics", listener="metrics", headers=headers)
            self.assertEqual((plain.header("content-encoding"), plain.header("vary")), (None, "Accept-Encoding"))
            self.assertIsNone(plain.wire_body)
        head = await self.request(gateway, "HEAD", "/metrics", listener="metrics", headers=gzip_ok)
        self.assertEqual((head.status, head.header("content-encoding"), head.body), (200, "gzip", b""))
        small = await self.request(gateway, "GET", "/health/live", headers=gzip_ok)
        self.assertEqual((small.header("content-encoding"), small.header("vary")), (None, None))
        for header, value in SECURITY_HEADERS.items():
            self.assertEqual(small.header(header), value)
        many = {"status": "firing", "alerts": [{"labels": {"alertname": "Load", "n": str(i)}} for i in range(40)]}
        answer = await self.request(
            gateway, "POST", "/webhook/prometheus", body=json.dumps(many).encode(), headers=_headers(**gzip_ok)
        )
        self.assertEqual((answer.status, answer.header("content-encoding")), (202, "gzip"), answer.describe())
        self.assertEqual(answer.json()["accepted"], 40)
        bad = {"alerts": [{"labels": {"alertname": "Load", "n": str(i)}} for i in range(40)]}
        answer = await self.request(
            gateway, "POST", "/webhook/prometheus", body=json.dumps(bad).encode(), headers=_headers(**gzip_ok)
        )
        self.assertProblem(answer, 400, "invalid-payload")
        self.assertEqual(answer.header("content-encoding"), "gzip")

    async def test_other_credentials_are_documented_401(self) -> None:
        """
        Basic users and API keys (several at once, keys also from a file)
        are accepted, and refused with the documented 401 and their own
        C{WWW-Authenticate} challenge; so are Grafana signatures with a
        timestamp header and Standard Webhooks signatures (several secrets
        and signatures at once), which are also refused when stale, wrong,
        unsigned or replayed.
        """
        keys = Path(self.mktemp()).resolve()
        keys.parent.mkdir(parents=True, exist_ok=True)
        keys.write_text("key-old\nkey-new\n", encoding="utf-8")
        users = [{"username": "am", "password": "pw-1"}, {"username": "am2", "password": "pw-2"}]
        gateway = await self.start_gateway(
            {
                "webhook": {
                    "endpoints": [
                        {"path": "/webhook/prometheus", "auth": {"type": "basic", "users": users}},
                        {"path": "/webhook/grafana", "auth": {"type": "api_key", "token_file": str(keys)}},
                    ]
                }
            }
        )
        am, grafana = fixture("alertmanager-firing.json"), fixture("grafana-unified.json")
        for credentials, status in [("am:pw-1", 202), ("am2:pw-2", 202), ("am:pw-2", 401), ("am", 401)]:
            basic = "Basic " + base64.b64encode(credentials.encode()).decode()
            answer = await self.request(
                gateway, "POST", "/webhook/prometheus", body=am, headers=_headers(None, Authorization=basic)
            )
            self.assertEqual(answer.status, status, answer.describe())
        for headers in (_headers(), _headers(None), _headers(None, Authorization="Basic !!")):
            answer = await self.request(gateway, "POST", "/webhook/prometheus", body=am, headers=headers)
            self.assertProblem(answer, 401, "unauthorized")
            self.assertEqual(answer.header("www-authenticate"), 'Basic realm="alertgateway", charset="UTF-8"')
        for key, status in [("key-old", 202), ("key-new", 202), ("key-other", 401), (None, 401)]:
            headers = _headers(None) if key is None else _headers(None, **{"X-API-Key": key})
            answer = await self.request(gateway, "POST", "/webhook/grafana", body=grafana, headers=headers)
            self.assertEqual(answer.status, status, answer.describe())
            if status == 401:
                challenge = answer.header("www-authenticate")
                self.assertEqual(challenge, 'APIKey realm="alertgateway", header="X-API-Key"')

        old, new = (b"whsec-old-0123456789abcdef", b"whsec-new-0123456789abcdef")
        signed = await self.start_gateway(
            {
                "webhook": {
                    "endpoints": [
                        {
                            "path": "/webhook/prometheus",
                            "auth": {"type": "hmac", "scheme": "standard", "secrets": [_whsec(old), _whsec(new)]},
                        },
                        {
                            "path": "/webhook/grafana",
                            "auth": {
                                "type": "hmac",
                                "secret": "grafana-secret",
                                "timestamp_header": "X-Grafana-Alerting-Timestamp",
                            },
                        },
                    ]
                }
            }
        )
        now = int(time.time())
        for message_id, timestamp, secret, signatures, status in [
            ("msg_1", now, new, lambda s: f"v1,{s}", 202),
            ("msg_2", now - 30, old, lambda s: f"v1,bm9wZQ== v2,{s} v1,{s}", 202),
            ("msg_1", now, new, lambda s: f"v1,{s}", 401),
            ("msg_3", now - 600, new, lambda s: f"v1,{s}", 401),
            ("msg_4", now, b"someone-else", lambda s: f"v1,{s}", 401),
            ("msg_5", now, new, lambda s: f"v2,{s}", 401),
        ]:
            digest = hmac.new(secret, f"{message_id}.{timestamp}.".encode() + am, hashlib.sha256).digest()
            headers = {
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signatures(base64.b64encode(digest).decode()),
            }
            answer = await self.request(
                gateway=signed, method="POST", path="/webhook/prometheus", body=am, headers=_headers(None, **headers)
            )
            self.assertEqual(answer.status, status, f"{message_id}: {answer.describe()}")
            if status == 401:
                self.assertProblem(answer, 401, "unauthorized")
                self.assertEqual(answer.header("www-authenticate"), 'Signature realm="alertgateway"')

        def grafana_headers(body: bytes, timestamp: int, secret: bytes = b"grafana-secret") -> dict[str, str]:
            digest = hmac.new(secret, f"{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
            return {"X-Grafana-Alerting-Signature": digest, "X-Grafana-Alerting-Timestamp": str(timestamp)}

        other = grafana.replace(b"HighRequestLatency", b"HighErrorRate")
        first = grafana_headers(grafana, now)
        unstamped = {"X-Grafana-Alerting-Signature": first["X-Grafana-Alerting-Signature"]}
        for body, headers, status in [
            (grafana, first, 202),
            (grafana, first, 401),
            (gzip.compress(other), {**grafana_headers(other, now), "Content-Encoding": "gzip"}, 202),
            (grafana, unstamped, 401),
            (other, grafana_headers(grafana, now - 1), 401),
            (grafana, grafana_headers(grafana, now - 600), 401),
            (grafana, grafana_headers(grafana, now - 2, b"wrong-secret"), 401),
        ]:
            answer = await self.request(
                signed, "POST", "/webhook/grafana", body=body, headers=_headers(None, **headers)
            )
            self.assertEqual(answer.status, status, f"{headers}: {answer.describe()}")
            if status == 401:
                self.assertEqual(answer.header("www-authenticate"), 'Signature realm="alertgateway"')
        metrics = (await self.request(signed, "GET", "/metrics", listener="metrics")).body.decode()
        self.assertIn('gateway_security_rejections_total{endpoint="/webhook/grafana",reason="signature"} 5.0', metrics)

    async def test_forwarded_headers_reach_the_processor_as_documented(self) -> None:
        """
        The headers named in C{webhook.forward_headers} and an endpoint's
        C{add_headers} reach the Alert Processor with each alert, as the
        document's outbound request describes; credentials do not.
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = await self.start_gateway(
            {
                "alert_processor": {"endpoint": url},
                "webhook": {
                    "forward_headers": ["X-Scope-OrgID", "traceparent"],
                    "endpoints": [
                        {"path": "/webhook/prometheus", "add_headers": {"X-Gateway-Env": "test"}},
                        {"path": "/webhook/grafana"},
                    ],
                },
            }
        )
        trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        inbound = {"X-Scope-OrgID": "tenant-7", "traceparent": trace, "Cookie": "session=1", "X-API-Key": "k"}
        answer = await self.request(
            gateway,
            "POST",
            "/webhook/prometheus",
            body=fixture("alertmanager-firing.json"),
            headers=_headers(**inbound),
        )
        self.assertEqual(answer.status, 202, answer.describe())
        answer = await self.request(
            gateway, "POST", "/webhook/grafana", body=fixture("grafana-legacy.json"), headers=_headers()
        )
        self.assertEqual(answer.status, 202, answer.describe())
        # Two alerts from Alertmanager, one from Grafana.
        await stub.wait_for(3)
        by_source = {received.body["source"]: received for received in stub.received}
        for received in by_source.values():
            self.assertEqual(self.api.check_outbound(received.headers, received.body), [], received.headers)
            for credential in ("authorization", "cookie", "x-api-key"):
                self.assertNotIn(credential, received.headers)
        forwarded = by_source["alertmanager"].headers
        self.assertEqual(
            (forwarded["x-scope-orgid"], forwarded["traceparent"], forwarded["x-gateway-env"]),
            ("tenant-7", trace, "test"),
        )
        self.assertFalse({"x-scope-orgid", "traceparent", "x-gateway-env"} & set(by_source["grafana"].headers))


def _whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


class SchemathesisTests(_RunningGatewayTestCase):
    """
    Property-based requests generated from the document, answers checked by
    schemathesis.
    """

    # Checks run against every generated request.  Not run: positive and
    # negative data acceptance.  The gateway accepts what the document calls
    # schema-invalid (it ignores ill-typed members it only passes on, such as
    # a non-string sender fingerprint) and refuses some schema-valid data
    # (a timestamp that matches the pattern but is not a date), by design:
    # the request schemas describe what senders send, not the validator.
    CHECKS = ",".join(
        [
            "not_a_server_error",
            "status_code_conformance",
            "content_type_conformance",
            "response_headers_conformance",
            "response_schema_conformance",
            "unsupported_method",
            "allow_header_conformance",
            "ignored_auth",
            "missing_required_header",
        ]
    )

    async def schemathesis(self, base_url: str, *selection: str) -> tuple[int, str]:
        args = [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            str(DOCUMENT_PATH),
            "--url",
            base_url,
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--checks",
            self.CHECKS,
            "--max-examples",
            "20",
            "--generation-deterministic",
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "10",
            "--no-color",
            *selection,
        ]
        done = await run(args, env={**os.environ, "NO_COLOR": "1"}, cwd=self.mktemp_dir(), timeout=120)
        return done.code, done.output

    def mktemp_dir(self) -> str:
        path = Path(self.mktemp())
        path.mkdir(parents=True)
        return str(path)

    async def test_schemathesis_finds_no_disagreement(self) -> None:
        """
        Schemathesis (examples, boundary coverage and fuzzing, deterministic)
        against the running plugin finds no 5xx, no undocumented status,
        media type, header or body, that unsupported methods are 405 with a
        correct C{Allow} and that requests without the token are refused:
        on the webhook listener (the status API included), and for
        C{/metrics} on the metrics listener.  Its HTTP client accepts gzip,
        so compressed answers are checked too.
        """
        # Rate limits high enough that the generated requests reach the
        # parsers instead of the 429 (which EdgeAnswersTests checks).
        gateway = await self.start_gateway({"rate_limiting": {"global_limit": 1_000_000, "burst_size": 100_000}})
        # The alert of the document's example fingerprint is tracked, so
        # the examples phase gets a 200 from GET /v1/alerts/{fingerprint}.
        answer = await self.request(
            gateway, "POST", "/webhook/prometheus", body=fixture("alertmanager-firing.json"), headers=_headers()
        )
        self.assertEqual(answer.status, 202, answer.describe())
        example = self.api.at("/components/parameters/FingerprintPath/example")
        self.assertIn(example, [a["fingerprint"] for a in answer.json()["alerts"]])
        paths = self.api.document["paths"]
        webhook_operations = sum(len(self.api.methods(p)) for p in paths if "servers" not in paths[p])
        code, output = await self.schemathesis(gateway.url, "--exclude-path", "/metrics")
        self.assertEqual(code, 0, output)
        self.assertEqual(_tested(output), webhook_operations, output)
        # The status API was among them, and answered what it has: a page,
        # the example alert, an unknown one and refused queries.
        self.assertEqual(len(self.api.methods("/v1/alerts") + self.api.methods("/v1/alerts/{fingerprint}")), 4)
        answered = {
            (line["method"], line["path"].split("?")[0], line["status"]) for line in await gateway.settled_access_log()
        }
        for seen in [
            ("GET", "/v1/alerts", 200),
            ("GET", "/v1/alerts", 400),
            ("GET", "/v1/alerts", 401),
            ("GET", f"/v1/alerts/{example}", 200),
            ("HEAD", f"/v1/alerts/{example}", 200),
        ]:
            self.assertIn(seen, answered)
        self.assertTrue(any(p.startswith("/v1/alerts/") and c == 404 for _, p, c in answered), answered)
        metrics_url = f"http://127.0.0.1:{gateway.ports['metrics']}"
        code, output = await self.schemathesis(metrics_url, "--include-path", "/metrics")
        self.assertEqual(code, 0, output)
        self.assertEqual(_tested(output), len(self.api.methods("/metrics")), output)
        self.assertEqual(await gateway.stop(), 0, gateway.output())


def _tested(output: str) -> int:
    """
    How many API operations a schemathesis run tested, from its summary.
    """
    match = re.search(r"^\s*Tested: (\d+)\s*$", output, re.MULTILINE)
    return int(match.group(1)) if match else -1
