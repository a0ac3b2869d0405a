"""
The site and the resource tree: routing, request ids, body bounding, the
access log and the request metrics.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel

from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.testing import GatewayReactor
from alertgateway.web.health import HealthResource, LiveResource, Readiness
from alertgateway.web.resource import HandlerResource, Response
from alertgateway.web.site import GatewayRequest, GatewaySite
from alertgateway.web.tree import Branch, mount
from tests.unit._http import (
    AUTH,
    PROMETHEUS,
    TOKEN,
    AccessLines,
    Connection,
    access_records,
    alert,
    assert_problem,
    assert_security_headers,
    body,
    capture_events,
    fixture,
    make_config,
    make_service,
    request_bytes,
    webhook_site,
)

_GENERATED_ID = re.compile(r"[0-9a-f]{32}")


class RoutingTests(SynchronousTestCase):
    """
    Paths that name nothing are 404 problems, whatever the method.
    """

    def setUp(self) -> None:
        self.service, _, _ = make_service()

    def test_not_found(self) -> None:
        """
        Unknown paths, the root, the bare /v1 and /webhook branches and
        paths below an endpoint are all 404 problem+json naming the path.
        """
        for method, path in (
            ("GET", "/"),
            ("GET", "/nope"),
            ("POST", "/v1"),
            ("GET", "/webhook"),
            ("POST", "/webhook/"),
            ("POST", "/webhook/prometheus/extra"),
            ("DELETE", "/v1/webhook/unknown"),
            ("GET", "/health/ready/more"),
        ):
            response = Connection(self.service.site).request(method, path, headers=AUTH)
            problem = assert_problem(self, response, 404, "not-found")
            self.assertEqual(problem["instance"], path, path)

    def test_head_of_get_resource(self) -> None:
        """
        HEAD is served wherever GET is, with the headers and no body.
        """
        connection = Connection(self.service.site)
        response = connection.request("HEAD", "/health")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"")
        self.assertNotEqual(response.header("content-length"), "0")
        self.assertTrue(connection.transport.value().endswith(b"\r\n\r\n"))

    def test_get_only_resource(self) -> None:
        """
        A GET resource refuses POST with 405 and Allow listing GET and HEAD.
        """
        response = Connection(self.service.site).request("POST", "/health/live", body=b"{}")
        assert_problem(self, response, 405, "method-not-allowed")
        self.assertEqual(response.header("allow"), "GET, HEAD")

    def test_keep_alive(self) -> None:
        """
        Several requests are answered on one connection, in order.
        """
        connection = Connection(self.service.site)
        statuses = [connection.request("GET", path).status for path in ("/health", "/nope", "/health/live")]
        self.assertEqual(statuses, [200, 404, 200])
        self.assertFalse(connection.closed)

    def test_no_store(self) -> None:
        """
        No answer of the gateway may be cached by an intermediary.
        """
        for path in ("/health", "/nope"):
            self.assertEqual(Connection(self.service.site).request("GET", path).header("cache-control"), "no-store")


class Unencodable(HandlerResource):
    """
    A resource whose answer cannot be written as JSON.
    """

    endpoint = "/odd"

    async def handle_GET(self, request: GatewayRequest) -> Response:
        return Response(200, {"value": object()}, headers={"X-Odd": "yes"})


class EncodingFailureTests(SynchronousTestCase):
    """
    An answer that cannot be encoded.
    """

    def test_generic_500(self) -> None:
        """
        It becomes the generic 500 problem (without a request id, the body
        being built once for all), with the security headers, and the
        failure is logged.
        """
        root = Branch()
        mount(root, "/odd", Unencodable())
        site = GatewaySite(root, clock=Clock(), metrics=GatewayMetrics().http, max_body_bytes=100, idle_timeout=60)
        failures = capture_events(self, lambda e: "log_failure" in e)
        response = Connection(site).request("GET", "/odd")
        self.assertEqual(response.status, 500)
        self.assertEqual(response.header("content-type"), "application/problem+json")
        self.assertEqual(response.json()["type"], "urn:alertgateway:problem:internal-error")
        self.assertNotIn("requestId", response.json())
        self.assertIsNotNone(response.header("x-request-id"))
        self.assertIsNone(response.header("x-odd"))
        assert_security_headers(self, response)
        self.assertEqual(len(failures), 1)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)


class MountTests(SynchronousTestCase):
    """
    Building the tree with L{mount}.
    """

    def test_parent_after_child(self) -> None:
        """
        Mounting a resource at a path that already has children keeps them
        below the new resource, so mounting order does not matter.
        """
        root = Branch()
        mount(root, "/a/b", LiveResource())
        mount(root, "/a", HealthResource("gw", Readiness()))
        site = GatewaySite(root, clock=Clock(), metrics=GatewayMetrics().http, max_body_bytes=100, idle_timeout=60)
        self.assertEqual(Connection(site).request("GET", "/a/b").json(), {"status": "alive"})
        self.assertEqual(Connection(site).request("GET", "/a").json()["service"], "gw")
        self.assertEqual(Connection(site).request("GET", "/a/c").status, 404)


class RequestIdTests(SynchronousTestCase):
    """
    X-Request-ID: kept when sane, generated otherwise, always echoed.
    """

    def setUp(self) -> None:
        self.service, _, _ = make_service()

    def request_id(self, path: str, given: str | None) -> str | None:
        headers = {} if given is None else {"X-Request-ID": given}
        return Connection(self.service.site).request("GET", path, headers=headers).header("x-request-id")

    def test_sane_echoed(self) -> None:
        """
        Letters, digits and ._:- up to 128 characters are kept, on every
        kind of answer, 404 included.
        """
        for given in ("abc", "A-1_b.c:d", "x" * 128):
            for path in ("/health", "/nope"):
                self.assertEqual(self.request_id(path, given), given)

    def test_insane_replaced(self) -> None:
        """
        Ids too long, empty or with other characters are replaced by a
        generated one rather than echoed.
        """
        for given in ("x" * 129, "", "a b", "<script>", "id;drop", "caf\u00e9"):
            answered = self.request_id("/nope", given)
            assert answered is not None
            self.assertRegex(answered, _GENERATED_ID, repr(given))

    def test_generated_unique(self) -> None:
        """
        Without a client id each request gets its own.
        """
        ids = {self.request_id("/health", None) for _ in range(5)}
        self.assertEqual(len(ids), 5)
        for request_id in ids:
            assert request_id is not None
            self.assertRegex(request_id, _GENERATED_ID)


class BodyBoundTests(SynchronousTestCase):
    """
    GatewayRequest keeps nothing of a body past the limit.
    """

    def request(self) -> GatewayRequest:
        service, _, _ = make_service(make_config("service:\n  max_body_bytes: 10\n"))
        channel: Any = HTTPChannel()
        channel.site = service.site
        channel.factory = service.site
        channel.makeConnection(StringTransport())
        return GatewayRequest(channel)

    def test_declared_length_over_limit(self) -> None:
        """
        A Content-Length past the limit marks the request at once and the
        body that follows is dropped.
        """
        request = self.request()
        request.gotLength(11)
        self.assertTrue(request.body_too_large)
        request.handleContentChunk(b"x" * 11)
        self.assertEqual(request.body.read(), b"")

    def test_growing_past_limit(self) -> None:
        """
        Without a length, what was kept is dropped once the limit is
        passed, and nothing more is kept.
        """
        request = self.request()
        request.gotLength(None)
        request.handleContentChunk(b"x" * 10)
        self.assertFalse(request.body_too_large)
        self.assertEqual(request.body.read(), b"x" * 10)
        request.handleContentChunk(b"y")
        self.assertTrue(request.body_too_large)
        request.handleContentChunk(b"z" * 5)
        self.assertEqual(request.body.read(), b"")


class AccessLogTests(SynchronousTestCase):
    """
    One access line per request, with what operators need and no secrets.
    """

    def setUp(self) -> None:
        self.reactor = GatewayReactor()
        # The probe paths are the handiest requests here: logged like any.
        config = make_config("logging:\n  access_log_exclude: []\n")
        self.service, _, self.stream = make_service(config, reactor=self.reactor)

    @property
    def events(self) -> list[dict[str, Any]]:
        return access_records(self.service, self.stream)

    def test_fields(self) -> None:
        """
        A webhook's access line carries remote, method, path, status,
        bytes, duration_ms, requestId, endpoint and user_agent.
        """
        connection = Connection(self.service.site)
        connection.send(
            request_bytes(
                "POST",
                "/v1" + PROMETHEUS,
                headers={**AUTH, "User-Agent": "Alertmanager/0.25.0", "X-Request-ID": "req-1"},
                body=body(alert("A")),
            )
        )
        [response] = connection.responses()
        [event] = self.events
        self.assertEqual(
            {k: event[k] for k in ("remote", "method", "path", "status", "requestId", "endpoint", "user_agent")},
            {
                "remote": "127.0.0.1",
                "method": "POST",
                "path": "/v1/webhook/prometheus",
                "status": 202,
                "requestId": "req-1",
                "endpoint": PROMETHEUS,
                "user_agent": "Alertmanager/0.25.0",
            },
        )
        self.assertEqual(event["bytes"], len(response.body))
        self.assertEqual(event["duration_ms"], 0.0)

    def test_long_fields_clipped(self) -> None:
        """
        A path and a User-Agent of kilobytes (the client's to choose) are
        logged as their first 256 characters and how many more there were,
        so one request cannot cost kilobytes of log.
        """
        long_path = PROMETHEUS + "/" + "p" * 5000
        Connection(self.service.site).request("GET", long_path, headers={"User-Agent": "u" * 9000})
        [event] = self.events
        self.assertEqual(event["path"], long_path[:256] + f"...[{len(long_path) - 256} more]")
        self.assertEqual(event["user_agent"], "u" * 256 + "...[8744 more]")

    def test_duration(self) -> None:
        """
        duration_ms runs from the request line to the end of the response.
        """
        connection = Connection(self.service.site)
        connection.send(b"GET /health HTTP/1.1\r\nHost: x\r\n", "GET")
        self.reactor.advance(0.25)
        connection.feed(b"\r\n")
        [event] = self.events
        self.assertEqual(event["duration_ms"], 250.0)

    def test_one_per_request(self) -> None:
        """
        Every request leaves exactly one line, refusals and 404 included,
        each labelled with the endpoint that answered.
        """
        connection = Connection(self.service.site)
        connection.request("GET", "/nope")
        connection.request("POST", PROMETHEUS, body=b"{}")
        connection.request("GET", "/health/ready")
        self.assertEqual(
            [(e["status"], e["endpoint"]) for e in self.events],
            [(404, "unmatched"), (401, PROMETHEUS), (503, "/health/ready")],
        )

    def test_no_secrets(self) -> None:
        """
        Neither the bearer token nor anything of the body, nor the query
        string, reaches the access log or its JSON line.
        """
        self.patch_observer()
        Connection(self.service.site).request(
            "POST", PROMETHEUS + "?token=querysecret", headers=AUTH, body=body(alert("BodySecret"))
        )
        Connection(self.service.site).request(
            "POST", PROMETHEUS, headers={"Authorization": "Bearer wrongsecret"}, body=body(alert("BodySecret"))
        )
        self.assertEqual(len(self.events), 2)
        written = self.stream.getvalue()
        for secret in (TOKEN, "wrongsecret", "BodySecret", "querysecret"):
            self.assertNotIn(secret, written)

    def patch_observer(self) -> None:
        # Route events through the service's own (JSON) observer, as twistd
        # would, so the line written is checked too.
        globalLogPublisher.addObserver(self.service.log_observer)
        self.addCleanup(globalLogPublisher.removeObserver, self.service.log_observer)

    def test_json_line(self) -> None:
        """
        With logging.format json the access line is one JSON object on one
        line, its fields at the top level.
        """
        Connection(self.service.site).request("GET", "/health/live", headers={"X-Request-ID": "json-1"})
        [record] = self.events
        self.assertEqual(record["requestId"], "json-1")
        self.assertEqual(record["status"], 200)
        self.assertEqual(record["path"], "/health/live")
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["logger"], "alertgateway.access")
        self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")

    def test_client_closed(self) -> None:
        """
        A request whose sender leaves before the answer is still logged and
        counted once, with nginx's 499, after the time it was in flight.
        """
        clock = Clock()
        metrics = GatewayMetrics()
        access = AccessLines()
        site = webhook_site(submit=lambda envelopes: Deferred(), clock=clock, metrics=metrics, access_log=access.log)
        connection = Connection(site)
        connection.send(request_bytes("POST", PROMETHEUS, headers=AUTH, body=body(alert("A"))))
        clock.advance(2)
        connection.lose()
        [event] = access.records()
        self.assertEqual((event["status"], event["endpoint"], event["duration_ms"]), (499, PROMETHEUS, 2000.0))
        self.assertEqual(
            metrics.registry.get_sample_value("gateway_requests_total", {"endpoint": PROMETHEUS, "code": "499"}), 1.0
        )
        self.assertEqual(connection.transport.value(), b"")


class RequestMetricsTests(SynchronousTestCase):
    """
    gateway_requests_total and gateway_request_duration_seconds.
    """

    def setUp(self) -> None:
        self.reactor = GatewayReactor()
        self.service, _, _ = make_service(reactor=self.reactor)

    def sample(self, name: str, labels: dict[str, str]) -> float | None:
        value: float | None = self.service.metrics.registry.get_sample_value(name, labels)
        return value

    def test_counted_by_endpoint_and_code(self) -> None:
        """
        Requests are counted by endpoint label and status code; /v1 aliases
        share their endpoint's label; unknown paths share one label.
        """
        connection = Connection(self.service.site)
        connection.request("POST", PROMETHEUS, headers=AUTH, body=body(alert("A")))
        connection.request("POST", "/v1" + PROMETHEUS, headers=AUTH, body=body(alert("B")))
        connection.request("POST", PROMETHEUS, body=body(alert("C")))
        connection.request("GET", "/a")
        connection.request("GET", "/b")
        total = "gateway_requests_total"
        self.assertEqual(self.sample(total, {"endpoint": PROMETHEUS, "code": "202"}), 2.0)
        self.assertEqual(self.sample(total, {"endpoint": PROMETHEUS, "code": "401"}), 1.0)
        self.assertEqual(self.sample(total, {"endpoint": "unmatched", "code": "404"}), 2.0)

    def test_duration_buckets(self) -> None:
        """
        The duration histogram has the plan's buckets up to 1 s and puts a
        0.3 s request in the 0.5 s bucket, not the 0.25 s one.
        """
        connection = Connection(self.service.site)
        connection.send(b"GET /health HTTP/1.1\r\nHost: x\r\n", "GET")
        self.reactor.advance(0.3)
        connection.feed(b"\r\n")
        name = "gateway_request_duration_seconds_bucket"
        for bound, expected in (("0.001", 0.0), ("0.1", 0.0), ("0.25", 0.0), ("0.5", 1.0), ("1.0", 1.0)):
            self.assertEqual(self.sample(name, {"endpoint": "/health", "le": bound}), expected, bound)
        self.assertEqual(self.sample("gateway_request_duration_seconds_sum", {"endpoint": "/health"}), 0.3)

    def test_endpoints_declared(self) -> None:
        """
        Each webhook endpoint's duration series exists before its first
        request, so rates over it are defined from the start.
        """
        self.assertEqual(self.sample("gateway_request_duration_seconds_count", {"endpoint": PROMETHEUS}), 0.0)
        self.assertEqual(self.sample("gateway_request_duration_seconds_count", {"endpoint": "/webhook/grafana"}), 0.0)

    def test_disabled_counts_nothing(self) -> None:
        """
        With metrics.enabled: false the gateway is given recorders that do
        nothing: a request and its alerts leave no series behind.
        """
        service, _, _ = make_service(make_config("metrics:\n  enabled: false\n"))
        response = Connection(service.site).request("POST", PROMETHEUS, headers=AUTH, body=body(alert("A")))
        self.assertEqual(response.status, 202)
        self.assertFalse(service.metrics.counting)
        registry = service.metrics.registry
        self.assertIsNone(registry.get_sample_value("gateway_requests_total", {"endpoint": PROMETHEUS, "code": "202"}))
        self.assertIsNone(
            registry.get_sample_value("gateway_alerts_received_total", {"source": "alertmanager", "status": "firing"})
        )


class RequestTimeoutTests(SynchronousTestCase):
    def test_hanging_handler_answers_503(self) -> None:
        """
        A webhook whose handling does not finish within the site's
        request_timeout is answered 503 request-timeout with Retry-After,
        instead of hanging.
        """
        clock = Clock()
        site = webhook_site(submit=lambda envelopes: Deferred(), clock=clock)
        site.request_timeout = 5.0
        connection = Connection(site)
        connection.send(
            b"POST /webhook/prometheus HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(fixture("alertmanager-firing.json"))).encode()
            + b"\r\n\r\n"
            + fixture("alertmanager-firing.json")
        )
        self.assertEqual(connection.responses(), [])
        clock.advance(5)
        [response] = connection.responses()
        self.assertEqual(response.status, 503)
        self.assertEqual(response.json()["type"], "urn:alertgateway:problem:request-timeout")
        self.assertEqual(response.header("retry-after"), "1")


class AccessLogSwitchTests(SynchronousTestCase):
    def test_access_log_off(self) -> None:
        """
        logging.access_log: false writes no access line, but the request is
        still counted and timed in the metrics.
        """
        service, _, stream = make_service(make_config("logging:\n  access_log: false\n"))
        response = Connection(service.site).request("POST", PROMETHEUS, headers=AUTH, body=body(alert("A")))
        self.assertEqual(response.status, 202)
        self.assertEqual(access_records(service, stream), [])
        counted = service.metrics.registry.get_sample_value(
            "gateway_requests_total", {"endpoint": PROMETHEUS, "code": "202"}
        )
        self.assertEqual(counted, 1)

    def test_probes_and_scrapes_left_out(self) -> None:
        """
        By default requests for /health, /health/live, /health/ready and
        /metrics (on the webhook port or its own) leave no access line,
        whatever their answer, and are still counted; other paths are
        logged.
        """
        service, _, stream = make_service(make_config("metrics:\n  port: 8080\n"))
        webhook = Connection(service.site)
        for path in ("/health", "/health/live", "/health/ready", "/metrics", "/health/ready?verbose=1"):
            webhook.request("GET", path)
        Connection(service.metrics_site).request("GET", "/metrics")
        webhook.request("GET", "/health/more")
        webhook.request("POST", PROMETHEUS, headers=AUTH, body=body(alert("A")))
        self.assertEqual(
            [(e["path"], e["status"]) for e in access_records(service, stream)],
            [("/health/more", 404), (PROMETHEUS, 202)],
        )
        counted = service.metrics.registry.get_sample_value(
            "gateway_requests_total", {"endpoint": "/health/ready", "code": "503"}
        )
        self.assertEqual(counted, 2)

    def test_exclusions_configured(self) -> None:
        """
        logging.access_log_exclude names the paths left out, exactly: here
        the metrics are logged and a webhook path is not.
        """
        service, _, stream = make_service(make_config(f"logging:\n  access_log_exclude: [{PROMETHEUS}]\n"))
        Connection(service.metrics_site).request("GET", "/metrics")
        Connection(service.site).request("POST", PROMETHEUS, headers=AUTH, body=body(alert("A")))
        Connection(service.site).request("POST", "/v1" + PROMETHEUS, headers=AUTH, body=body(alert("B")))
        self.assertEqual(
            [(e["path"], e["status"]) for e in access_records(service, stream)],
            [("/metrics", 200), ("/v1" + PROMETHEUS, 202)],
        )
