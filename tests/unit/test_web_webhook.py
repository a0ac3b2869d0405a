"""
The webhook endpoints over a real site: every answer a sender can get.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.config import parse_config
from alertgateway.delivery.envelope import Envelope
from alertgateway.sources import ParseResult
from alertgateway.sources.limits import Limits
from alertgateway.testing import GatewayReactor, InlineExecutor
from alertgateway.web.channel import GatewayChannel
from tests.unit._http import (
    TOKEN,
    Connection,
    HTTPResponse,
    access_records,
    capture_events,
    fixture,
    make_config,
    make_service,
    request_bytes,
    stop,
    webhook_site,
)

PROMETHEUS = "/webhook/prometheus"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}


def alert(name: str, status: str = "firing") -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name}, "startsAt": "2026-11-26T03:49:49Z"}


def body(*alerts: object) -> bytes:
    return json.dumps({"version": "4", "status": "firing", "alerts": list(alerts)}).encode("utf-8")


def assert_problem(case: SynchronousTestCase, response: HTTPResponse, status: int, slug: str) -> dict[str, Any]:
    """
    Check the RFC 9457 shape every refusal shares and return its body.
    """
    case.assertEqual(response.status, status)
    case.assertEqual(response.header("content-type"), "application/problem+json")
    problem: dict[str, Any] = response.json()
    case.assertEqual(problem["type"], f"urn:alertgateway:problem:{slug}")
    case.assertEqual(problem["status"], status)
    case.assertIsInstance(problem["title"], str)
    case.assertIsInstance(problem["detail"], str)
    case.assertEqual(problem["requestId"], response.header("x-request-id"))
    return problem


class AcceptedTests(SynchronousTestCase):
    """
    Valid webhooks are queued and answered 202 or 207.
    """

    def setUp(self) -> None:
        self.service, self.reactor, _ = make_service()
        self.connection = Connection(self.service.site)

    def queued(self) -> list[Envelope]:
        envelopes: list[Envelope] = []
        while len(self.service.queue) > len(envelopes):
            taken = self.successResultOf(self.service.queue.take())
            envelopes.append(taken)
        return envelopes

    def test_fixture_accepted(self) -> None:
        """
        A real Alertmanager capture is answered 202 with one result per
        alert carrying Alertmanager's own fingerprints, and both alerts are
        queued with the request's id.
        """
        response = self.connection.request("POST", PROMETHEUS, headers=JSON, body=fixture("alertmanager-firing.json"))
        self.assertEqual(response.status, 202)
        self.assertEqual(response.header("content-type"), "application/json")
        answer = response.json()
        self.assertEqual(answer["status"], "accepted")
        self.assertEqual(answer["requestId"], response.header("x-request-id"))
        self.assertEqual(
            [(a["fingerprint"], a["status"], a["alertStatus"]) for a in answer["alerts"]],
            [("704fae8241e05a07", "new", "firing"), ("995194533ae82003", "new", "firing")],
        )
        queued = self.queued()
        self.assertEqual([e.key for e in queued], ["704fae8241e05a07", "995194533ae82003"])
        self.assertEqual({e.request_id for e in queued}, {answer["requestId"]})

    def test_grafana_unified_and_legacy(self) -> None:
        """
        The Grafana endpoint takes both payload generations.
        """
        for name in ("grafana-unified.json", "grafana-legacy.json"):
            response = self.connection.request("POST", "/webhook/grafana", headers=JSON, body=fixture(name))
            self.assertEqual(response.status, 202, name)
        self.assertEqual(len(self.service.queue), 2)

    def test_v1_alias(self) -> None:
        """
        Every endpoint is also served below /v1, as the same endpoint.
        """
        response = self.connection.request(
            "POST", "/v1" + PROMETHEUS, headers=JSON, body=fixture("alertmanager-firing-and-resolved.json")
        )
        self.assertEqual(response.status, 202)
        self.assertEqual([a["alertStatus"] for a in response.json()["alerts"]], ["firing", "resolved"])

    def test_trailing_slash(self) -> None:
        """
        A trailing slash names the same endpoint.
        """
        response = self.connection.request("POST", PROMETHEUS + "/", headers=JSON, body=body(alert("A")))
        self.assertEqual(response.status, 202)

    def test_missing_content_type_is_json(self) -> None:
        """
        A body without Content-Type is read as JSON (Alertmanager always
        sends one, curl users often do not).
        """
        response = self.connection.request("POST", PROMETHEUS, headers=AUTH, body=body(alert("A")))
        self.assertEqual(response.status, 202)

    def test_json_variants_accepted(self) -> None:
        """
        A charset parameter, any case, and application/*+json are JSON too.
        """
        for content_type in ("application/json; charset=utf-8", "Application/JSON", "application/vnd.alerts+json"):
            response = self.connection.request(
                "POST", PROMETHEUS, headers={**AUTH, "Content-Type": content_type}, body=body(alert("A"))
            )
            self.assertEqual(response.status, 202, content_type)

    def test_partial_batch(self) -> None:
        """
        Valid alerts of a batch are accepted although others are not: 207,
        one result per alert in body order, refusals with JSON pointers, and
        only the valid alerts queued.
        """
        response = self.connection.request(
            "POST", PROMETHEUS, headers=JSON, body=body(alert("A"), {"status": "firing", "labels": {}}, alert("C"))
        )
        self.assertEqual(response.status, 207)
        answer = response.json()
        self.assertEqual(answer["status"], "partial")
        self.assertEqual((answer["accepted"], answer["rejected"]), (2, 1))
        self.assertEqual([a["status"] for a in answer["alerts"]], ["new", "rejected", "new"])
        self.assertEqual([a["index"] for a in answer["alerts"]], [0, 1, 2])
        self.assertEqual(
            answer["alerts"][1]["errors"], [{"pointer": "/alerts/1/labels", "message": "must not be empty"}]
        )
        self.assertEqual([e.body["labels"]["alertname"] for e in self.queued()], ["A", "C"])

    def test_sane_request_id_forwarded(self) -> None:
        """
        A sane X-Request-ID from the sender is echoed and travels with the
        queued alert to the processor.
        """
        response = self.connection.request(
            "POST", PROMETHEUS, headers={**JSON, "X-Request-ID": "am-1234.abc:9"}, body=body(alert("A"))
        )
        self.assertEqual(response.header("x-request-id"), "am-1234.abc:9")
        self.assertEqual(response.json()["requestId"], "am-1234.abc:9")
        self.assertEqual([e.request_id for e in self.queued()], ["am-1234.abc:9"])

    def test_received_metrics(self) -> None:
        """
        gateway_alerts_received_total counts alerts by source and by status,
        refused ones as invalid.
        """
        self.connection.request(
            "POST", PROMETHEUS, headers=JSON, body=body(alert("A"), alert("B", "resolved"), {"labels": {}})
        )
        self.connection.request("POST", "/webhook/grafana", headers=JSON, body=fixture("grafana-unified.json"))
        registry = self.service.metrics.registry

        def received(source: str, status: str) -> float | None:
            value: float | None = registry.get_sample_value(
                "gateway_alerts_received_total", {"source": source, "status": status}
            )
            return value

        self.assertEqual(received("alertmanager", "firing"), 1.0)
        self.assertEqual(received("alertmanager", "resolved"), 1.0)
        self.assertEqual(received("alertmanager", "invalid"), 1.0)
        self.assertEqual(received("grafana", "firing"), 1.0)


class MalformedTests(SynchronousTestCase):
    """
    Bodies that are not JSON, or not a webhook, are answered 400.
    """

    def setUp(self) -> None:
        self.service, _, _ = make_service()
        self.connection = Connection(self.service.site)

    def post(self, raw: bytes) -> HTTPResponse:
        return self.connection.request("POST", PROMETHEUS, headers=JSON, body=raw)

    def test_malformed(self) -> None:
        """
        Empty bodies, broken JSON, NaN/Infinity, numbers beyond a double and
        bytes that are not UTF-8 are malformed bodies, with an error on the
        whole document.
        """
        for raw in (b"", b"  \n", b"{", b'{"alerts": NaN}', b'{"x": -Infinity}', b'{"x": 1e999}', b'{"a": "\xff"}'):
            problem = assert_problem(self, self.post(raw), 400, "malformed-body")
            self.assertEqual([e["pointer"] for e in problem["errors"]], [""], raw)
        self.assertEqual(len(self.service.queue), 0)

    def test_deep_nesting(self) -> None:
        """
        A body nested deeper than the JSON decoder can follow is refused as
        malformed, not a crash.
        """
        assert_problem(self, self.post(b"[" * 100_000 + b"]" * 100_000), 400, "malformed-body")

    def test_not_a_webhook(self) -> None:
        """
        A JSON document that is not a webhook at all is an invalid payload
        with pointers, and counted as invalid.
        """
        problem = assert_problem(self, self.post(b'{"alerts": {}}'), 400, "invalid-payload")
        self.assertEqual(problem["errors"], [{"pointer": "/alerts", "message": "must be an array of alerts"}])
        self.assertEqual(
            self.service.metrics.registry.get_sample_value(
                "gateway_alerts_received_total", {"source": "alertmanager", "status": "invalid"}
            ),
            1.0,
        )

    def test_no_valid_alert(self) -> None:
        """
        When no alert of a batch is valid the answer is 400 listing every
        alert's errors, and nothing is queued.
        """
        problem = assert_problem(self, self.post(body({"labels": {}}, "x")), 400, "invalid-payload")
        self.assertEqual([e["pointer"] for e in problem["errors"]], ["/alerts/0/labels", "/alerts/1"])
        self.assertEqual(len(self.service.queue), 0)


class RefusalTests(SynchronousTestCase):
    """
    Refusals before the body is looked at: method, media type, size.
    """

    def setUp(self) -> None:
        self.service, _, self.stream = make_service(make_config("service:\n  max_body_bytes: 1000\n"))
        self.connection = Connection(self.service.site)

    def test_method_not_allowed(self) -> None:
        """
        Anything but POST is 405 with Allow naming POST.
        """
        for method in ("GET", "PUT", "DELETE", "HEAD"):
            response = Connection(self.service.site).request(method, PROMETHEUS, headers=AUTH)
            self.assertEqual(response.status, 405, method)
            self.assertEqual(response.header("allow"), "POST")
            if method != "HEAD":
                assert_problem(self, response, 405, "method-not-allowed")

    def test_unsupported_media_type(self) -> None:
        """
        A body declared as something the gateway does not read is 415
        naming it and listing, also in Accept-Post, every type that is
        read; it is not parsed.
        """
        for content_type in ("text/plain", "application/jsonp", "multipart/form-data; boundary=x", "xml"):
            response = self.connection.request(
                "POST", PROMETHEUS, headers={**AUTH, "Content-Type": content_type}, body=body(alert("A"))
            )
            problem = assert_problem(self, response, 415, "unsupported-media-type")
            self.assertIn(content_type, problem["detail"])
            self.assertEqual(
                response.header("accept-post"),
                "application/json, application/x-www-form-urlencoded, application/xml, text/xml",
            )
        self.assertEqual(len(self.service.queue), 0)

    def test_too_large_with_length(self) -> None:
        """
        A body one byte past service.max_body_bytes is 413 naming the limit,
        and the connection is closed after the answer.
        """
        response = self.connection.request("POST", PROMETHEUS, headers=JSON, body=b" " * 1001)
        problem = assert_problem(self, response, 413, "payload-too-large")
        self.assertEqual(problem["limit"], 1000)
        self.assertEqual(response.header("connection"), "close")
        self.assertTrue(self.connection.closed)

    def test_at_limit_accepted(self) -> None:
        """
        A body of exactly max_body_bytes is read.
        """
        raw = body(alert("A"))
        response = self.connection.request("POST", PROMETHEUS, headers=JSON, body=raw + b" " * (1000 - len(raw)))
        self.assertEqual(response.status, 202)
        self.assertFalse(self.connection.closed)

    def test_too_large_chunked(self) -> None:
        """
        A chunked body that grows past the limit is 413 as well.
        """
        response = self.connection.request("POST", PROMETHEUS, headers=JSON, chunks=[b" " * 600, b" " * 600])
        assert_problem(self, response, 413, "payload-too-large")
        self.assertTrue(self.connection.closed)

    def test_far_too_large_dropped(self) -> None:
        """
        A sender that goes on far past the limit is disconnected while
        sending, without an answer, rather than read to the end.
        """
        self.connection.site.abort_after_bytes = 8000
        self.connection.send(
            b"POST /webhook/prometheus HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(9):
            self.connection.feed(b"3e8\r\n" + b" " * 1000 + b"\r\n")
        self.assertTrue(self.connection.transport.disconnected)
        self.assertEqual(self.connection.responses(), [])
        # The transport only records the abort; the connection ends as the
        # reactor would then end it.
        self.connection.lose()
        self.assertEqual(
            [(e["status"], e["method"], e["path"]) for e in access_records(self.service, self.stream)],
            [(413, "-", "-")],
        )


class GuardTests(SynchronousTestCase):
    """
    Who may post: bearer tokens and source addresses.
    """

    def setUp(self) -> None:
        self.service, _, _ = make_service(
            make_config("security:\n  allowed_ips: [10.0.0.0/8, '2001:db8::/32']\n", token="old-token")
        )

    def post(self, peer: IPv4Address | IPv6Address, headers: dict[str, str]) -> HTTPResponse:
        return Connection(self.service.site, peer).request("POST", PROMETHEUS, headers=headers, body=body(alert("A")))

    def inside(self) -> IPv4Address:
        return IPv4Address("TCP", "10.1.2.3", 5000)

    def test_missing_token(self) -> None:
        """
        No Authorization header: 401 with a Bearer challenge.
        """
        response = self.post(self.inside(), {})
        assert_problem(self, response, 401, "unauthorized")
        self.assertEqual(response.header("www-authenticate"), 'Bearer realm="alertgateway"')

    def test_wrong_scheme(self) -> None:
        """
        Basic credentials are not a bearer token: 401 invalid_request.
        """
        response = self.post(self.inside(), {"Authorization": "Basic b2xkLXRva2Vu"})
        assert_problem(self, response, 401, "unauthorized")
        self.assertEqual(response.header("www-authenticate"), 'Bearer realm="alertgateway", error="invalid_request"')

    def test_wrong_token(self) -> None:
        """
        An unknown token: 401 invalid_token, and the token is not echoed.
        """
        response = self.post(self.inside(), {"Authorization": "Bearer guessed"})
        assert_problem(self, response, 401, "unauthorized")
        self.assertEqual(response.header("www-authenticate"), 'Bearer realm="alertgateway", error="invalid_token"')
        self.assertNotIn(b"guessed", response.body)

    def test_good_token(self) -> None:
        """
        The configured token from an allowed address is accepted.
        """
        self.assertEqual(self.post(self.inside(), {"Authorization": "Bearer old-token"}).status, 202)

    def test_outside_allowed_ips(self) -> None:
        """
        An address outside security.allowed_ips is 403, even with a valid
        token, and before the token is looked at.
        """
        outside = IPv4Address("TCP", "192.0.2.1", 5000)
        problem = assert_problem(self, self.post(outside, {"Authorization": "Bearer old-token"}), 403, "forbidden")
        self.assertIn("192.0.2.1", problem["detail"])
        assert_problem(self, self.post(outside, {}), 403, "forbidden")

    def test_ipv6(self) -> None:
        """
        IPv6 peers are matched against IPv6 networks, and IPv4-mapped IPv6
        peers (a dual-stack listener) against the IPv4 networks.
        """
        good = {"Authorization": "Bearer old-token"}
        self.assertEqual(self.post(IPv6Address("TCP", "2001:db8::7", 5000), good).status, 202)
        self.assertEqual(self.post(IPv6Address("TCP", "::ffff:10.9.8.7", 5000), good).status, 202)
        assert_problem(self, self.post(IPv6Address("TCP", "::ffff:192.0.2.1", 5000), good), 403, "forbidden")
        assert_problem(self, self.post(IPv6Address("TCP", "2001:db9::1", 5000), good), 403, "forbidden")


class RotationTests(SynchronousTestCase):
    """
    webhook.auth.tokens lists tokens valid at once, for rotation.
    """

    def test_any_configured_token(self) -> None:
        """
        Both the token and every entry of tokens are accepted; others not.
        """
        config = parse_config(
            "webhook:\n  auth:\n    token: first\n    tokens: [second, third]\n"
            "alert_processor:\n  endpoint: file:unused.jsonl\nqueue: {backend: memory}\n",
            environ={},
        )
        service, _, _ = make_service(config)
        for token, status in (("first", 202), ("second", 202), ("third", 202), ("fourth", 401)):
            response = Connection(service.site).request(
                "POST", PROMETHEUS, headers={"Authorization": f"Bearer {token}"}, body=body(alert("A"))
            )
            self.assertEqual(response.status, status, token)

    def test_unauthenticated_endpoint(self) -> None:
        """
        An endpoint with auth_required false takes webhooks without a token.
        """
        config = parse_config(
            "webhook:\n  endpoints:\n    - {path: /hooks/open, source: alertmanager, auth_required: false}\n"
            "alert_processor:\n  endpoint: file:unused.jsonl\nqueue: {backend: memory}\n",
            environ={},
        )
        service, _, _ = make_service(config)
        response = Connection(service.site).request("POST", "/hooks/open", body=body(alert("A")))
        self.assertEqual(response.status, 202)


class UnavailableTests(SynchronousTestCase):
    """
    503: the queue is full or the gateway is shutting down.
    """

    def test_queue_full(self) -> None:
        """
        A batch that does not fit is refused whole with Retry-After, nothing
        of it queued; one that fits is still taken.
        """
        service, _, _ = make_service(make_config("queue:\n  backend: memory\n  max_items: 2\n"))
        connection = Connection(service.site)
        self.assertEqual(connection.request("POST", PROMETHEUS, headers=JSON, body=body(alert("A"))).status, 202)
        response = connection.request("POST", PROMETHEUS, headers=JSON, body=body(alert("B"), alert("C")))
        assert_problem(self, response, 503, "queue-full")
        self.assertEqual(response.header("retry-after"), "5")
        self.assertEqual(len(service.queue), 1)
        self.assertEqual(connection.request("POST", PROMETHEUS, headers=JSON, body=body(alert("D"))).status, 202)
        self.assertEqual(len(service.queue), 2)

    def test_queue_full_refused_before_parsing(self) -> None:
        """
        With no room for a single alert, a webhook is refused 503 queue-full
        before its body is parsed: even a body that would be 400 gets the
        503, so a flood while the processor is behind costs no parsing.
        """
        service, _, _ = make_service(make_config("queue:\n  backend: memory\n  max_items: 1\n"))
        connection = Connection(service.site)
        self.assertEqual(connection.request("POST", PROMETHEUS, headers=JSON, body=body(alert("A"))).status, 202)
        response = connection.request("POST", PROMETHEUS, headers=JSON, body=b'{"alerts": "not a list"}')
        assert_problem(self, response, 503, "queue-full")
        self.assertEqual(response.header("retry-after"), "5")

    def test_shutting_down(self) -> None:
        """
        Once shutdown has begun a webhook is 503 with Retry-After, nothing
        is queued, and the connection is closed so the sender reconnects
        elsewhere.
        """
        service, reactor, _ = make_service()
        reactor.advance(10)
        service.readiness.stop(reactor.seconds())
        connection = Connection(service.site)
        response = connection.request("POST", PROMETHEUS, headers=JSON, body=body(alert("A")))
        assert_problem(self, response, 503, "shutting-down")
        self.assertEqual(response.header("retry-after"), "1")
        self.assertTrue(connection.closed)
        self.assertEqual(len(service.queue), 0)

    def test_begun_before_shutdown(self) -> None:
        """
        A webhook whose request began before shutdown (its body still
        arriving) is in flight: it is taken, not refused.
        """
        service, reactor, _ = make_service()
        connection = Connection(service.site)
        raw = request_bytes("POST", PROMETHEUS, headers=JSON, body=body(alert("A")))
        connection.send(raw[:-10])
        reactor.advance(1)
        service.readiness.stop(reactor.seconds())
        connection.feed(raw[-10:])
        [response] = connection.responses()
        self.assertEqual(response.status, 202)
        self.assertEqual(len(service.queue), 1)


_LIMITS = Limits()


def _failing_parser(payload: object, received_at: str, limits: Limits = _LIMITS, /) -> ParseResult:
    raise RuntimeError("secret internal detail")


class StandaloneTests(SynchronousTestCase):
    """
    A webhook resource on its own site, with collaborators chosen per test.
    """

    def test_unexpected_error(self) -> None:
        """
        A handler that fails unexpectedly answers a generic 500 problem
        without any of the exception's text, and logs the failure.
        """
        failures = capture_events(self, lambda e: "log_failure" in e)
        response = Connection(webhook_site(parser=_failing_parser)).request(
            "POST", PROMETHEUS, headers=AUTH, body=body(alert("A"))
        )
        assert_problem(self, response, 500, "internal-error")
        self.assertNotIn(b"secret", response.body)
        self.assertNotIn(b"Traceback", response.body)
        self.assertEqual(len(failures), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_client_goes_away(self) -> None:
        """
        When the sender disconnects while its alerts are being committed,
        nothing is written to the connection, and the commit is not
        cancelled: half-written it could be neither kept nor taken back.
        """
        submitted: list[list[Envelope]] = []
        cancelled: list[Deferred[None]] = []

        def submit(envelopes: list[Envelope]) -> Deferred[None]:
            submitted.append(envelopes)
            return Deferred(cancelled.append)

        connection = Connection(webhook_site(submit=submit))
        connection.send(request_bytes("POST", PROMETHEUS, headers=AUTH, body=body(alert("A"))))
        self.assertEqual(len(submitted), 1)
        self.assertEqual(cancelled, [])
        connection.lose()
        self.assertEqual(cancelled, [])
        self.assertEqual(connection.transport.value(), b"")


class CountingReactor(GatewayReactor):
    """
    A memory reactor that counts the calls scheduled on it, cancelled
    ones too, but for the connections' own deadlines (headers, body, idle),
    which every request on a connection moves.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scheduled = 0

    def callLater(self, delay: float, callable: Any, *args: object, **kw: object) -> IDelayedCall:
        if getattr(callable, "__func__", None) is not GatewayChannel._expired:
            self.scheduled += 1
        return super().callLater(delay, callable, *args, **kw)


class DuplicatesTests(SynchronousTestCase):
    """
    What a webhook of only duplicates costs on the request path.
    """

    def test_nothing_touched(self) -> None:
        """
        On the durable queue and state, a webhook whose alerts are all
        duplicates is answered at once: no queue write, no job on the
        database's thread, and no timer, not even a request deadline set
        and cancelled; its bookkeeping is written later, in a batch.
        """
        db = os.path.join(self.mktemp(), "queue.db")
        Path(db).parent.mkdir(parents=True)
        config = make_config(f"queue:\n  backend: sqlite\n  path: {db}\n", sink=f"file:{self.mktemp()}")
        executor, reactor = InlineExecutor(), CountingReactor()
        service, _, _ = make_service(config, reactor, executor)
        service.startService()
        self.addCleanup(stop, self, service)
        connection = Connection(service.site)
        raw = fixture("alertmanager-firing.json")
        self.assertEqual(connection.request("POST", PROMETHEUS, headers=JSON, body=raw).status, 202)
        before = (executor.calls, reactor.scheduled, len(service.queue))
        again = connection.request("POST", PROMETHEUS, headers=JSON, body=raw)
        self.assertEqual(again.status, 202)
        self.assertEqual([a["status"] for a in again.json()["alerts"]], ["duplicate", "duplicate"])
        self.assertEqual((executor.calls, reactor.scheduled, len(service.queue)), before)
