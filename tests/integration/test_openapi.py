"""
C{docs/openapi.yaml} is a valid OpenAPI 3.1 document and tells the truth:
the running plugin's answers (status, headers, bodies), the problem types of
L{alertgateway.web.problems} and what reaches the Alert Processor all match
it, and schemathesis finds nothing that disagrees with it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from alertgateway.web import problems
from tests.integration._openapi import DOCUMENT_PATH, APIDocument, Exchange, escape, exchange, load_document
from tests.integration.harness import GatewayProcess, StubProcessor, fixture, reactor, run, sleep

TOKEN = "openapi-token-5c2e"
FIXTURES = {
    "alertmanager-firing.json": "/webhook/prometheus",
    "alertmanager-firing-and-resolved.json": "/webhook/prometheus",
    "grafana-unified.json": "/webhook/grafana",
    "grafana-legacy.json": "/webhook/grafana",
}
# Small enough that a test can pass it, large enough for every fixture.
MAX_BODY = 8192


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
            },
        )
        scheme = self.document["components"]["securitySchemes"]["bearerAuth"]
        self.assertEqual((scheme["type"], scheme["scheme"]), ("http", "bearer"))

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
        made = {
            "not_found": problems.not_found("/nowhere"),
            "method_not_allowed": problems.method_not_allowed("GET", ["POST"]),
            "unauthorized": problems.unauthorized("No token.", error="invalid_token"),
            "forbidden": problems.forbidden("Not from here."),
            "payload_too_large": problems.payload_too_large(1024),
            "unsupported_media_type": problems.unsupported_media_type("text/plain"),
            "malformed_body": problems.malformed_body("Not JSON."),
            "invalid_payload": problems.invalid_payload("Bad.", [{"pointer": "/alerts/0/labels", "message": "empty"}]),
            "queue_full": problems.queue_full(5),
            "shutting_down": problems.shutting_down(),
            "internal_error": problems.internal_error(),
        }
        constructors = set(problems.__all__) - {"PROBLEM_CONTENT_TYPE", "Problem"}
        self.assertEqual(constructors, set(made), "a problem constructor is not covered by the document test")
        documented = {entry["const"] for entry in self.document["components"]["schemas"]["ProblemType"]["oneOf"]}
        self.assertEqual(documented, {p.type for p in made.values()})
        by_type = _problem_schemas(self.document)
        for problem in made.values():
            name = by_type.get(problem.type)
            self.assertIsNotNone(name, f"no schema for {problem.type}")
            constants = self.document["components"]["schemas"][name]["allOf"][1]["properties"]
            self.assertEqual(constants["title"]["const"], problem.title, name)
            self.assertEqual(constants["status"]["const"], problem.status, name)
            body = problem.to_json("req-1", "/webhook/prometheus")
            self.assertEqual(self.api.schema_errors(f"/components/schemas/{name}", body), [], name)

    def test_checker_reports_answers_that_disagree(self) -> None:
        """
        The checker the integration tests use is not vacuous: an undocumented
        status, a missing required header, a wrong media type, a body off
        its schema, a wrong C{Allow} and an answer on the wrong listener are
        each reported.
        """
        good = Exchange(
            "webhook",
            "GET",
            "/health/live",
            200,
            {"content-type": ["application/json"], "x-request-id": ["abc"]},
            b'{"status":"alive"}',
        )
        self.assertEqual(self.api.check(good), [])
        variants: list[tuple[str, Exchange]] = [
            ("status", attrs.evolve(good, status=418)),
            ("header", attrs.evolve(good, headers={"content-type": ["application/json"]})),
            ("media type", attrs.evolve(good, headers={"content-type": ["text/html"], "x-request-id": ["abc"]})),
            ("body", attrs.evolve(good, body=b'{"status":"dead"}')),
            ("listener", attrs.evolve(good, listener="metrics")),
            ("unknown path", attrs.evolve(good, path="/nope")),
            (
                "allow",
                attrs.evolve(
                    good,
                    method="DELETE",
                    status=405,
                    headers={"content-type": ["application/problem+json"], "x-request-id": ["abc"], "allow": ["GET"]},
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
        client: Any = None,
    ) -> Exchange:
        """
        Send one request and fail the test if the answer disagrees with the
        document.
        """
        base = gateway.url if listener == "webhook" else f"http://127.0.0.1:{gateway.ports['metrics']}"
        answer = await exchange(base, listener, method, path, body=body, headers=headers, client=client)
        self.assertEqual(self.api.check(answer), [], answer.describe())
        self.assertIsNotNone(answer.header("x-request-id"), answer.describe())
        if answer.request_id is not None and _sane(answer.request_id):
            self.assertEqual(answer.header("x-request-id"), answer.request_id, "a sane X-Request-ID is echoed")
        return answer

    def assertProblem(self, answer: Exchange, status: int, slug: str) -> dict[str, Any]:
        """
        Assert that C{answer} is the problem C{slug} with C{status}.
        """
        self.assertEqual(answer.status, status, answer.describe())
        self.assertEqual(answer.header("content-type"), "application/problem+json", answer.describe())
        body: dict[str, Any] = answer.json()
        self.assertEqual(body["type"], f"urn:alertgateway:problem:{slug}", answer.describe())
        self.assertEqual(body["instance"], answer.path)
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
        C{X-Request-ID} and a documented C{Idempotency-Key}.
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
                    body=fixture(name),
                    headers=_headers(**{"X-Request-ID": request_id}),
                )
                self.assertEqual(answer.status, 202, answer.describe())
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
        An empty body, malformed JSON, a body that is not a webhook payload,
        an unsupported version and a batch without a valid alert are
        documented 400 problems with JSON pointers; a batch with valid and
        invalid alerts is the documented 207 with one result per alert.
        """
        gateway = await self.start_gateway()
        cases = [
            (b"", "malformed-body"),
            (b'{"alerts": [', "malformed-body"),
            (b'{"alerts": [{"labels": {"a": "b"}, "value": NaN}]}', "malformed-body"),
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
                ],
            }
        ).encode()
        answer = await self.request(gateway, "POST", "/v1/webhook/prometheus", body=partial, headers=_headers())
        self.assertEqual(answer.status, 207, answer.describe())
        result = answer.json()
        self.assertEqual([a["status"] for a in result["alerts"]], ["accepted", "rejected", "rejected"])
        self.assertEqual([e["pointer"] for e in result["alerts"][1]["errors"]], ["/alerts/1/startsAt"])
        self.assertEqual([e["pointer"] for e in result["alerts"][2]["errors"]], ["/alerts/2/labels"])
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
        problem, before its credentials are even looked at.
        """
        gateway = await self.start_gateway({"security": {"allowed_ips": ["192.0.2.0/24"]}})
        for token in (TOKEN, None):
            answer = await self.request(
                gateway,
                "POST",
                "/webhook/prometheus",
                body=fixture("alertmanager-firing.json"),
                headers=_headers(token),
            )
            self.assertProblem(answer, 403, "forbidden")

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
        client = HTTPClient(Agent(reactor, pool=pool))
        answer = await self.request(gateway, "GET", "/health/ready", client=client)
        self.assertEqual(answer.status, 200)
        answer = await self.request(
            gateway,
            "POST",
            "/webhook/prometheus",
            body=fixture("alertmanager-firing.json"),
            headers=_headers(),
            client=client,
        )
        self.assertEqual(answer.status, 202)
        stopping: Deferred[int] = Deferred.fromCoroutine(gateway.stop())
        ready = await self._poll(lambda: self.request(gateway, "GET", "/health/ready", client=client), 503)
        self.assertEqual(ready.json()["state"], "stopping")
        answer = await self.request(
            gateway,
            "POST",
            "/webhook/prometheus",
            body=fixture("alertmanager-firing.json"),
            headers=_headers(),
            client=client,
        )
        self.assertProblem(answer, 503, "shutting-down")
        self.assertEqual(answer.header("retry-after"), "1")
        await stopping

    async def _poll(self, send: Callable[[], Any], status: int, timeout: float = 5.0) -> Exchange:
        waited = 0.0
        while True:
            answer: Exchange = await send()
            if answer.status == status or waited >= timeout:
                self.assertEqual(answer.status, status, answer.describe())
                return answer
            await sleep(0.05)
            waited += 0.05


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
        on the webhook listener, and for C{/metrics} on the metrics listener.
        """
        gateway = await self.start_gateway()
        paths = self.api.document["paths"]
        webhook_operations = sum(len(self.api.methods(p)) for p in paths if "servers" not in paths[p])
        code, output = await self.schemathesis(gateway.url, "--exclude-path", "/metrics")
        self.assertEqual(code, 0, output)
        self.assertEqual(_tested(output), webhook_operations, output)
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
