"""
The alert status API, GET /v1/alerts and /v1/alerts/{fingerprint}, through
a real site over an in-memory connection.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.config import AuthConfig, AuthType, parse_config
from alertgateway.core.decider import DeciderSettings
from alertgateway.core.decision import Decision
from alertgateway.core.model import Alert, fingerprint
from alertgateway.core.storms import StormSettings
from alertgateway.guards.addresses import AddressFilter, ClientAddress
from alertgateway.guards.auth import BearerAuthenticator
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.state.memory import MemoryState
from alertgateway.web.site import GatewaySite
from alertgateway.web.status import AlertsResource
from alertgateway.web.tree import Branch, mount
from tests.unit._http import (
    AUTH,
    PROMETHEUS,
    TOKEN,
    Connection,
    HTTPResponse,
    alert,
    assert_problem,
    assert_security_headers,
    body,
    capture_events,
    is_security,
    make_config,
    make_service,
)

# 2027-01-15T08:00:00Z: a clock at 0 would hide times printed as 1970.
START = 1_800_000_000.0
START_TEXT = "2027-01-15T08:00:00.000Z"


def make_alert(status: str = "firing", **labels: str) -> Alert:
    """
    A PodCrash alert of pod p-1 in payments, C{labels} added or replaced.
    """
    merged = {"alertname": "PodCrash", "namespace": "payments", "pod": "p-1", **labels}
    return Alert(
        fingerprint(merged),
        "alertmanager",
        status,
        merged,
        {},
        "2026-11-26T03:49:49Z",
        None,
        "",
        "2026-11-26T03:50:00.000Z",
        {"group": {"groupKey": '{}:{alertname="PodCrash"}'}},
    )


def make_storms() -> StormSettings:
    return StormSettings(threshold=3, window=60, flush_interval=10, quiet_period=30, max_members_listed=2)


def started_clock() -> Clock:
    clock = Clock()
    clock.advance(START)
    return clock


OTHER = IPv4Address("TCP", "192.0.2.7", 5000)


class StatusSite:
    """
    The status API alone on a site, over episodes a decider fills.
    """

    def __init__(
        self, *, token: str | None = TOKEN, allowed: tuple[str, ...] = (), proxies: tuple[str, ...] = ()
    ) -> None:
        self.clock: Clock = started_clock()
        self.metrics = GatewayMetrics()
        self.state = MemoryState(DeciderSettings(storms=make_storms(), min_spacing=0.0), max_tracked=10_000)
        root = Branch()
        resource = AlertsResource(
            self.state,
            BearerAuthenticator([token]) if token is not None else None,
            addresses=AddressFilter(allowed),
            clients=ClientAddress(proxies),
            metrics=self.metrics.webhooks,
        )
        mount(root, "/v1/alerts", resource)
        self.site = GatewaySite(
            root, clock=self.clock, metrics=self.metrics.http, max_body_bytes=10_000, idle_timeout=60
        )

    def decide(self, alerts: list[Alert]) -> Decision:
        """
        Decide on C{alerts} now, committed at once.
        """
        d = self.state.decide(alerts, self.clock.seconds(), lambda decision, write: succeed(None))
        decided: list[Decision] = []
        d.addCallback(decided.append)
        return decided[0]

    def tick(self) -> None:
        self.state.tick(self.clock.seconds(), lambda decision, write: succeed(None))

    def get(
        self,
        path: str,
        headers: Mapping[str, str] = AUTH,
        peer: IPv4Address | None = None,
        method: str = "GET",
    ) -> HTTPResponse:
        return Connection(self.site, peer).request(method, path, headers=headers)

    def rejections(self) -> dict[tuple[str, str], float]:
        found: dict[tuple[str, str], float] = {}
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == "gateway_security_rejections_total":
                    found[(sample.labels["endpoint"], sample.labels["reason"])] = sample.value
        return found


def pods(count: int) -> list[Alert]:
    # Each in its own namespace, so that no storm folds them.
    return [make_alert(pod=f"p{n}", namespace=f"ns{n}") for n in range(count)]


def page(response: HTTPResponse) -> dict[str, Any]:
    assert response.status == 200, response.body
    found: dict[str, Any] = response.json()
    return found


class AlertTests(SynchronousTestCase):
    """
    GET /v1/alerts/{fingerprint}.
    """

    def setUp(self) -> None:
        self.status = StatusSite()

    def test_fields(self) -> None:
        """
        A tracked alert answers 200 with exactly the documented fields:
        sightings, duplicates, environment, escalation, group, storm,
        delivery and source.
        """
        alert = make_alert(env="staging")
        verdicts = self.status.decide([alert]).rulings
        self.status.clock.advance(2.5)
        self.status.decide([alert] * 5)
        response = self.status.get(f"/v1/alerts/{alert.fingerprint}")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("content-type"), "application/json")
        assert_security_headers(self, response)
        self.assertEqual(
            response.json(),
            {
                "fingerprint": alert.fingerprint,
                "dedupKey": alert.fingerprint,
                "status": "firing",
                "firstSeen": START_TEXT,
                "lastSeen": "2027-01-15T08:00:02.500Z",
                "duplicateCount": 5,
                "environment": "staging",
                "escalation": "normal",
                "groupId": verdicts[0].group_id,
                "storm": None,
                "delivery": "queued",
                "source": "alertmanager",
            },
        )

    def test_resolved_and_storm(self) -> None:
        """
        A resolved alert says so; one folded into a storm names the storm.
        """
        alerts = [make_alert(pod=p) for p in "abcd"]
        self.status.decide([*alerts, make_alert("resolved", pod="a")])
        resolved = page(self.status.get(f"/v1/alerts/{alerts[0].fingerprint}"))
        folded = page(self.status.get(f"/v1/alerts/{alerts[3].fingerprint}"))
        self.assertEqual((resolved["status"], resolved["storm"]), ("resolved", None))
        self.assertRegex(folded["storm"], r"^[0-9a-f]{16}$")

    def test_unknown(self) -> None:
        """
        An unknown fingerprint, or a path below a fingerprint, is a 404
        problem.
        """
        alert = make_alert()
        self.status.decide([alert])
        problem = assert_problem(self, self.status.get("/v1/alerts/0123456789abcdef"), 404, "not-found")
        self.assertEqual(problem["instance"], "/v1/alerts/0123456789abcdef")
        assert_problem(self, self.status.get(f"/v1/alerts/{alert.fingerprint}/more"), 404, "not-found")
        self.assertEqual(self.status.get(f"/v1/alerts/{alert.fingerprint}/").status, 200)

    def test_methods(self) -> None:
        """
        Only GET (and HEAD) are allowed.
        """
        response = self.status.get(f"/v1/alerts/{make_alert().fingerprint}", method="DELETE")
        assert_problem(self, response, 405, "method-not-allowed")
        self.assertEqual(response.header("allow"), "GET, HEAD")
        assert_problem(self, self.status.get("/v1/alerts", method="POST"), 405, "method-not-allowed")


class ListTests(SynchronousTestCase):
    """
    GET /v1/alerts: filters, limits and cursors.
    """

    def setUp(self) -> None:
        self.status = StatusSite()
        self.alerts = pods(5)
        self.status.decide(self.alerts)
        self.status.decide([make_alert("resolved", pod="p1", namespace="ns1")])

    def test_everything_by_key(self) -> None:
        """
        Without a query every tracked alert is listed, ordered by dedup key,
        with the count and no next cursor.
        """
        for path in ("/v1/alerts", "/v1/alerts/"):
            with self.subTest(path=path):
                found = page(self.status.get(path))
                self.assertEqual([a["dedupKey"] for a in found["alerts"]], sorted(a.fingerprint for a in self.alerts))
                self.assertEqual((found["count"], found["nextCursor"]), (5, None))
                self.assertEqual(set(found), {"alerts", "count", "nextCursor"})

    def test_status_filter(self) -> None:
        """
        status=firing and status=resolved list only alerts in that state.
        """
        firing = page(self.status.get("/v1/alerts?status=firing"))
        resolved = page(self.status.get("/v1/alerts?status=resolved"))
        self.assertEqual(firing["count"], 4)
        self.assertEqual({a["status"] for a in firing["alerts"]}, {"firing"})
        self.assertEqual([a["fingerprint"] for a in resolved["alerts"]], [self.alerts[1].fingerprint])

    def test_limit_bounds(self) -> None:
        """
        limit takes 1 to 1000; anything else, empty, fractional, negative,
        not ASCII digits or absurdly long, is a 400 invalid-query problem
        naming the parameter.
        """
        self.assertEqual(page(self.status.get("/v1/alerts?limit=1"))["count"], 1)
        self.assertEqual(page(self.status.get("/v1/alerts?limit=1000"))["count"], 5)
        for bad in ("0", "1001", "-1", "1.5", "ten", "", "%C2%B2", "%D9%A3", "9" * 5000, "0x10"):
            with self.subTest(limit=bad[:10]):
                problem = assert_problem(self, self.status.get(f"/v1/alerts?limit={bad}"), 400, "invalid-query")
                self.assertEqual(problem["parameter"], "limit")

    def test_bad_status(self) -> None:
        """
        A status other than firing or resolved is a 400 invalid-query.
        """
        for bad in ("FIRING", "pending", ""):
            with self.subTest(status=bad):
                problem = assert_problem(self, self.status.get(f"/v1/alerts?status={bad}"), 400, "invalid-query")
                self.assertEqual(problem["parameter"], "status")

    def test_bad_cursor(self) -> None:
        """
        A cursor this service did not return is a 400 invalid-query, even
        when it happens to be base64 of something.
        """
        invalid_utf8 = base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("=")
        for bad in ("!!!!", "a", "%C3%A9", invalid_utf8, "YWJj==", "YW+j", "YWJ"):
            with self.subTest(cursor=bad):
                problem = assert_problem(self, self.status.get(f"/v1/alerts?cursor={bad}"), 400, "invalid-query")
                self.assertEqual(problem["parameter"], "cursor")

    def test_paging(self) -> None:
        """
        Following nextCursor lists every alert once, in order, the last page
        without a next cursor; an empty cursor starts from the beginning.
        """
        status = StatusSite()
        status.decide(pods(25))
        seen: list[str] = []
        cursor = ""
        counts = []
        while True:
            found = page(status.get(f"/v1/alerts?limit=7&cursor={cursor}"))
            seen += [a["dedupKey"] for a in found["alerts"]]
            counts.append(found["count"])
            if found["nextCursor"] is None:
                break
            cursor = quote(found["nextCursor"])
        self.assertEqual(counts, [7, 7, 7, 4])
        self.assertEqual(seen, sorted(a.fingerprint for a in pods(25)))
        exact = page(status.get("/v1/alerts?limit=25"))
        self.assertEqual((exact["count"], exact["nextCursor"]), (25, None))

    def test_paging_while_changing(self) -> None:
        """
        Alerts that stay tracked between pages are listed exactly once
        while others come and go.
        """
        status = StatusSite()
        first = pods(20)
        status.decide(first)
        status.clock.advance(200)
        stay = first[::2]
        status.decide(stay)
        seen: list[str] = []
        found = page(status.get("/v1/alerts?limit=4"))
        for n in range(30):
            seen += [a["dedupKey"] for a in found["alerts"]]
            if found["nextCursor"] is None:
                break
            # Some alerts lapse, others arrive, between two pages.
            status.clock.advance(60)
            status.tick()
            status.decide([make_alert(pod=f"new{n}", namespace=f"new{n}")])
            found = page(status.get(f"/v1/alerts?limit=4&cursor={quote(found['nextCursor'])}"))
        self.assertEqual(len(seen), len(set(seen)))
        self.assertLessEqual({a.fingerprint for a in stay}, set(seen))
        self.assertEqual(seen, sorted(seen))


class GuardTests(SynchronousTestCase):
    """
    Authentication and addresses, as for the webhooks.
    """

    def test_authentication_required(self) -> None:
        """
        Without the webhooks' credentials both operations answer 401 with a
        challenge, logged and counted as security refusals; with them, 200.
        """
        status = StatusSite()
        events = capture_events(self, is_security)
        fingerprint = make_alert().fingerprint
        status.decide([make_alert()])
        for path, endpoint in (("/v1/alerts", "/v1/alerts"), (f"/v1/alerts/{fingerprint}", "/v1/alerts/{fingerprint}")):
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                with self.subTest(path=path, headers=headers):
                    response = status.get(path, headers=headers)
                    assert_problem(self, response, 401, "unauthorized")
                    self.assertIn("Bearer", response.header("www-authenticate") or "")
            self.assertEqual(status.rejections()[(endpoint, "auth")], 2.0)
            self.assertEqual(status.get(path).status, 200)
        self.assertEqual([e["log_level"] for e in events], [LogLevel.warn] * 4)
        self.assertEqual(
            {(e["reason"], e["status"], e["method"], e["client"]) for e in events}, {("auth", 401, "GET", "127.0.0.1")}
        )

    def test_no_authentication(self) -> None:
        """
        Without an authenticator anyone allowed in may read.
        """
        status = StatusSite(token=None)
        self.assertEqual(status.get("/v1/alerts", headers={}).status, 200)

    def test_defaults(self) -> None:
        """
        Built with its episodes and authenticator only, the resource lets
        every address in and still logs a refusal (there is nothing to count
        it in).
        """
        root = Branch()
        mount(
            root,
            "/v1/alerts",
            AlertsResource(MemoryState(DeciderSettings(), max_tracked=10), BearerAuthenticator([TOKEN])),
        )
        site = GatewaySite(root, clock=Clock(), metrics=GatewayMetrics().http, max_body_bytes=100, idle_timeout=60)
        events = capture_events(self, is_security)
        self.assertEqual(Connection(site, OTHER).request("GET", "/v1/alerts", headers=AUTH).status, 200)
        assert_problem(self, Connection(site, OTHER).request("GET", "/v1/alerts"), 401, "unauthorized")
        self.assertEqual([e["reason"] for e in events], ["auth"])

    def test_addresses(self) -> None:
        """
        An address outside security.allowed_ips is refused with 403 before
        its credentials are looked at; behind a trusted proxy the client's
        own address counts.
        """
        status = StatusSite(allowed=("127.0.0.1",), proxies=("192.0.2.0/24",))
        events = capture_events(self, is_security)
        assert_problem(self, status.get("/v1/alerts", headers={}, peer=OTHER), 403, "forbidden")
        self.assertEqual(status.rejections(), {("/v1/alerts", "address"): 1.0})
        self.assertEqual([e["client"] for e in events], ["192.0.2.7"])
        forwarded = {**AUTH, "X-Forwarded-For": "127.0.0.1"}
        self.assertEqual(status.get("/v1/alerts", headers=forwarded, peer=OTHER).status, 200)
        refused = status.get("/v1/alerts", headers={**AUTH, "X-Forwarded-For": "198.51.100.1"}, peer=OTHER)
        assert_problem(self, refused, 403, "forbidden")


class ServiceTests(SynchronousTestCase):
    """
    The status API as the gateway mounts it.
    """

    def test_authenticated_like_webhooks(self) -> None:
        """
        When any webhook endpoint requires authentication the status API
        requires the webhooks' credentials, and shows what the webhooks
        accepted.
        """
        service, _, _ = make_service()
        connection = Connection(service.site)
        self.assertEqual(connection.request("POST", PROMETHEUS, headers=AUTH, body=body(alert("A"))).status, 202)
        assert_problem(self, connection.request("GET", "/v1/alerts"), 401, "unauthorized")
        found = page(connection.request("GET", "/v1/alerts", headers=AUTH))
        self.assertEqual([a["status"] for a in found["alerts"]], ["firing"])
        self.assertEqual(
            service.metrics.registry.get_sample_value(
                "gateway_security_rejections_total", {"endpoint": "/v1/alerts", "reason": "auth"}
            ),
            1.0,
        )

    def test_open_when_webhooks_are(self) -> None:
        """
        When no webhook endpoint requires authentication, neither does the
        status API.
        """
        config = parse_config(
            "webhook: {endpoints: [{path: /webhook/prometheus, auth_required: false}]}\n"
            "alert_processor: {endpoint: 'file:unused.jsonl'}\n",
            environ={},
        )
        service, _, _ = make_service(config)
        self.assertEqual(Connection(service.site).request("GET", "/v1/alerts").status, 200)

    def test_closed_when_endpoints_have_their_own_credentials(self) -> None:
        """
        Endpoints with credentials of their own and a webhook.auth that
        checks none: the configuration refuses that, and a gateway built
        from it anyway (bypassing validation) refuses every reader of the
        status API rather than answer anyone, while the endpoint keeps
        taking its own token.
        """
        config = parse_config(
            "webhook: {auth: {token: reader}, endpoints: [{path: /webhook/prometheus, auth: {token: sender}}]}\n"
            "alert_processor: {endpoint: 'file:unused.jsonl'}\nqueue: {backend: memory}\n",
            environ={},
        )
        unchecked = attrs.evolve(config, webhook=attrs.evolve(config.webhook, auth=AuthConfig(type=AuthType.NONE)))
        service, _, _ = make_service(unchecked)
        connection = Connection(service.site)
        sender = {"Authorization": "Bearer sender"}
        self.assertEqual(connection.request("POST", PROMETHEUS, headers=sender, body=body(alert("A"))).status, 202)
        for headers in ({}, sender, {"Authorization": "Bearer reader"}):
            assert_problem(self, connection.request("GET", "/v1/alerts", headers=headers), 401, "unauthorized")
        # As configured, webhook.auth's holders read it and the senders of
        # the endpoint do not.
        service, _, _ = make_service(config)
        connection = Connection(service.site)
        assert_problem(self, connection.request("GET", "/v1/alerts", headers=sender), 401, "unauthorized")
        reader = {"Authorization": "Bearer reader"}
        self.assertEqual(connection.request("GET", "/v1/alerts", headers=reader).status, 200)

    def test_allowed_ips(self) -> None:
        """
        security.allowed_ips guards the status API as it does the webhooks.
        """
        service, _, _ = make_service(make_config("security: {allowed_ips: [127.0.0.1]}\n"))
        assert_problem(
            self, Connection(service.site, OTHER).request("GET", "/v1/alerts", headers=AUTH), 403, "forbidden"
        )
        self.assertEqual(Connection(service.site).request("GET", "/v1/alerts", headers=AUTH).status, 200)
