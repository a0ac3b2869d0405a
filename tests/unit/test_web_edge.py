"""
The edge of the webhook endpoint (issue 3) over a real site: every refusal
of the pipeline with its status, problem type, headers, security log event
and metric; the order of the checks; client addresses behind proxies;
content types and encodings; response compression and security headers;
headers carried to the Alert Processor.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import zlib
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlencode

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.config import parse_config
from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.http import HTTPSink, PostingClient
from alertgateway.guards.addresses import AddressFilter, ClientAddress, ProxyHeader
from alertgateway.guards.auth import (
    APIKeyAuthenticator,
    BasicAuthenticator,
    BearerAuthenticator,
    Credential,
    SignatureAuthenticator,
)
from alertgateway.guards.replays import ReplayCache
from alertgateway.guards.signatures import GrafanaVerifier, StandardWebhooksVerifier
from alertgateway.sources import PARSERS, ParseResult
from alertgateway.sources.limits import Limits
from alertgateway.state.errors import QueueFull
from alertgateway.testing import StubProcessor
from alertgateway.web.endpoints import Guards
from alertgateway.web.health import Lifecycle, Readiness
from alertgateway.web.problems import Problem
from tests.unit._http import (
    AUTH,
    GRAFANA,
    NOW,
    PROMETHEUS,
    TOKEN,
    Connection,
    Edge,
    HTTPResponse,
    alert,
    assert_problem,
    assert_security_headers,
    body,
    capture_events,
    make_config,
    make_service,
    request_bytes,
    signed_standard,
    ticking,
)

DEFAULT_LIMITS = Limits()
PROXY = IPv4Address("TCP", "10.0.0.1", 5000)
OUTSIDE = IPv4Address("TCP", "192.0.2.1", 5000)

# The billion laughs: ten levels of ten references, a gigabyte expanded.
BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE alerts [\n<!ENTITY lol0 "lol">\n'
    + b"".join(
        b'<!ENTITY lol%d "%s">\n' % (level, b"".join(b"&lol%d;" % (level - 1) for _ in range(10)))
        for level in range(1, 10)
    )
    + b']>\n<alerts><alert><labels><label name="alertname">&lol9;</label></labels></alert></alerts>'
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE alerts [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<alerts><alert><labels><label name="alertname">&xxe;</label></labels></alert></alerts>'
)
EXTERNAL_DTD = b'<?xml version="1.0"?><!DOCTYPE alerts SYSTEM "http://dtd.invalid/alerts.dtd"><alerts/>'
PARAMETER_ENTITY = b'<!DOCTYPE alerts [<!ENTITY % p SYSTEM "http://dtd.invalid/p.dtd"> %p;]><alerts/>'
INTERNAL_ENTITY = (
    b'<!DOCTYPE alerts [<!ENTITY name "DiskFull">]>'
    b'<alerts><alert><labels><label name="alertname">&name;</label></labels></alert></alerts>'
)

XML_ALERTS = b"""<?xml version="1.0" encoding="UTF-8"?>
<alerts version="4">
  <alert status="firing">
    <labels>
      <label name="alertname">DiskFull</label>
      <label name="severity">critical</label>
    </labels>
    <annotations><annotation name="summary">Disk / on db-1 is full &amp; growing</annotation></annotations>
    <startsAt>2026-11-26T03:49:49Z</startsAt>
    <endsAt>0001-01-01T00:00:00Z</endsAt>
    <generatorURL>http://prometheus.test/graph?g0.expr=up</generatorURL>
  </alert>
  <alert status="resolved">
    <labels><label name="alertname">CPUHigh</label></labels>
    <startsAt>2026-11-26T03:00:00Z</startsAt>
    <endsAt>2026-11-26T03:40:00Z</endsAt>
  </alert>
</alerts>
"""


def signed_grafana(secret: str, timestamp: int, raw: bytes) -> dict[str, str]:
    signature = hmac.new(secret.encode(), f"{timestamp}:".encode() + raw, hashlib.sha256).hexdigest()
    return {"X-Grafana-Alerting-Signature": signature, "X-Grafana-Alerting-Signature-Timestamp": str(timestamp)}


def grafana_signatures(clock: Clock) -> SignatureAuthenticator:
    return SignatureAuthenticator(
        GrafanaVerifier(
            ["hook-secret"],
            clock=clock,
            replays=ReplayCache(clock, 300),
            timestamp_header="X-Grafana-Alerting-Signature-Timestamp",
        )
    )


def gzipped(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def inflated(response: HTTPResponse) -> Any:
    return json.loads(gzip.decompress(response.body))


class Teapot:
    """
    An authenticator whose refusal carries no security reason.
    """

    needs_body = False
    challenge = "Teapot"

    def screen(self, headers: Mapping[str, str]) -> None:
        pass

    def check(self, headers: Mapping[str, str], body: bytes | None) -> Credential:
        raise Problem(418, "teapot", "I'm a teapot", "Short and stout.")


def _clock() -> Clock:
    clock = Clock()
    clock.advance(NOW)
    return clock


def _guards(**kwargs: Any) -> Guards:
    """
    Guards with the bearer token L{TOKEN} and C{kwargs}.
    """
    kwargs.setdefault("authenticator", BearerAuthenticator([TOKEN]))
    return Guards(**kwargs)


def _behind_proxy(allowed: list[str] | None = None, header: ProxyHeader = ProxyHeader.X_FORWARDED_FOR) -> Guards:
    return _guards(
        addresses=AddressFilter(allowed if allowed is not None else ["203.0.113.0/24"]),
        clients=ClientAddress(["10.0.0.0/24"], header),
    )


def _queue_full(envelopes: list[Envelope]) -> Deferred[None]:
    raise QueueFull("test")


class AddressTests(SynchronousTestCase):
    """
    security.allowed_ips, an endpoint's allowed_ips and the client address
    behind trusted proxies (BR-WH-022): 403 problems.
    """

    def test_global_allowed_ips(self) -> None:
        """
        A peer outside security.allowed_ips is refused 403 naming its
        address, logged and counted with reason address; one inside is
        taken.
        """
        edge = Edge(self, _guards(addresses=AddressFilter(["10.0.0.0/8"])))
        problem = edge.refused(edge.post(peer=OUTSIDE), 403, "forbidden", "address", client="192.0.2.1")
        self.assertIn("192.0.2.1", problem["detail"])
        self.assertIn("security.allowed_ips", problem["detail"])
        edge.accepted(edge.post(peer=IPv4Address("TCP", "10.9.9.9", 1)))

    def test_endpoint_allowed_ips(self) -> None:
        """
        An endpoint's own allowed_ips narrow the global list: an address the
        gateway allows may still not post to this endpoint.
        """
        edge = Edge(
            self, _guards(addresses=AddressFilter(["10.0.0.0/8"]), endpoint_addresses=AddressFilter(["10.1.0.0/16"]))
        )
        problem = edge.refused(
            edge.post(peer=IPv4Address("TCP", "10.2.0.1", 1)), 403, "forbidden", "address", client="10.2.0.1"
        )
        self.assertIn(PROMETHEUS, problem["detail"])
        edge.refused(edge.post(peer=OUTSIDE), 403, "forbidden", "address", client="192.0.2.1")
        edge.accepted(edge.post(peer=IPv4Address("TCP", "10.1.0.1", 1)))

    def test_ipv6(self) -> None:
        """
        IPv6 peers are matched against IPv6 networks; an IPv4-mapped peer
        is logged as its IPv4 address.
        """
        edge = Edge(self, _guards(addresses=AddressFilter(["2001:db8::/32"])))
        edge.accepted(edge.post(peer=IPv6Address("TCP", "2001:db8::7", 1)))
        edge.refused(
            edge.post(peer=IPv6Address("TCP", "::ffff:192.0.2.1", 1)), 403, "forbidden", "address", client="192.0.2.1"
        )

    def test_forwarded_for_from_trusted_proxy(self) -> None:
        """
        Behind a trusted proxy the client is X-Forwarded-For's address: it
        is what allowed_ips checks and what the security log names.
        """
        edge = Edge(self, _behind_proxy())
        edge.accepted(edge.post(peer=PROXY, headers={**AUTH, "X-Forwarded-For": "203.0.113.5"}))
        problem = edge.refused(
            edge.post(peer=PROXY, headers={**AUTH, "X-Forwarded-For": "198.51.100.1"}),
            403,
            "forbidden",
            "address",
            client="198.51.100.1",
        )
        self.assertIn("198.51.100.1", problem["detail"])

    def test_forwarded_for_ignored_from_others(self) -> None:
        """
        From a peer that is not a trusted proxy X-Forwarded-For and
        Forwarded are ignored: a client cannot claim an allowed address.
        """
        edge = Edge(self, _behind_proxy())
        for header in ("X-Forwarded-For", "Forwarded"):
            value = "203.0.113.5" if header == "X-Forwarded-For" else "for=203.0.113.5"
            edge.refused(
                edge.post(peer=OUTSIDE, headers={**AUTH, header: value}),
                403,
                "forbidden",
                "address",
                client="192.0.2.1",
            )

    def test_rightmost_untrusted(self) -> None:
        """
        The client is the rightmost address that is not a trusted proxy:
        addresses to its left were written by the client and may be forged.
        """
        edge = Edge(self, _behind_proxy())
        edge.refused(
            edge.post(peer=PROXY, headers={**AUTH, "X-Forwarded-For": "203.0.113.5, 198.51.100.7, 10.0.0.2"}),
            403,
            "forbidden",
            "address",
            client="198.51.100.7",
        )
        edge.accepted(edge.post(peer=PROXY, headers={**AUTH, "X-Forwarded-For": "198.51.100.7, 203.0.113.5"}))

    def test_forged_header_line(self) -> None:
        """
        A client's own X-Forwarded-For line followed by the one its proxy
        added are one list: the proxy's (last) address decides, not the
        forged first line.
        """
        edge = Edge(self, _behind_proxy())
        headers = [*AUTH.items(), ("X-Forwarded-For", "203.0.113.5"), ("X-Forwarded-For", "198.51.100.9")]
        edge.refused(edge.post(peer=PROXY, headers=headers), 403, "forbidden", "address", client="198.51.100.9")

    def test_rfc7239_forwarded(self) -> None:
        """
        Behind proxies that write RFC 7239 Forwarded (forwarded_header:
        forwarded) it is read, quoted IPv6 with a port included, and a
        client's X-Forwarded-For is not.
        """
        edge = Edge(self, _behind_proxy(allowed=["2001:db8::/32"], header=ProxyHeader.FORWARDED))
        edge.accepted(edge.post(peer=PROXY, headers={**AUTH, "Forwarded": 'for="[2001:db8::1]:4711";proto=https'}))
        edge.refused(
            edge.post(peer=PROXY, headers={**AUTH, "Forwarded": "for=198.51.100.1", "X-Forwarded-For": "2001:db8::1"}),
            403,
            "forbidden",
            "address",
            client="198.51.100.1",
        )

    def test_client_forwarded_not_believed(self) -> None:
        """
        Behind proxies that append to X-Forwarded-For (the default), a
        Forwarded header is the client's own, passed through: claiming an
        allowed address in it does not pass allowed_ips, the proxy's
        X-Forwarded-For address is the one checked and logged.
        """
        edge = Edge(self, _behind_proxy())
        headers = {**AUTH, "Forwarded": "for=203.0.113.5", "X-Forwarded-For": "198.51.100.1"}
        edge.refused(edge.post(peer=PROXY, headers=headers), 403, "forbidden", "address", client="198.51.100.1")

    def test_address_first(self) -> None:
        """
        A forbidden address is refused before anything else is looked at:
        without credentials, with an oversized body, over the rate limit
        it is 403, and it spends nothing of the rate budget.
        """
        clock = _clock()
        limiter = ticking(clock, global_limit=60, burst=1, endpoint_limits={})
        edge = Edge(
            self, _guards(addresses=AddressFilter(["10.0.0.0/8"]), limiter=limiter), clock=clock, max_body_bytes=200
        )
        for _ in range(3):
            edge.refused(
                edge.post(b"x" * 1000, headers={}, peer=OUTSIDE), 403, "forbidden", "address", client="192.0.2.1"
            )
        edge.accepted(edge.post(peer=IPv4Address("TCP", "10.0.0.5", 1)))


class RateLimitTests(SynchronousTestCase):
    """
    Token buckets global, per endpoint and per client (BR-WH-023): 429 or
    503 with Retry-After and the IETF draft RateLimit headers.
    """

    def setUp(self) -> None:
        self.clock = _clock()

    def edge(self, **limits: Any) -> Edge:
        limits.setdefault("endpoint_limits", {})
        return Edge(self, _guards(limiter=ticking(self.clock, **limits)), clock=self.clock)

    def rate_limited(self, edge: Edge, scope: str, endpoint: str = PROMETHEUS) -> float | None:
        return edge.sample("gateway_rate_limited_total", {"endpoint": endpoint, "scope": scope})

    def test_global_limit(self) -> None:
        """
        Past the global burst a webhook is 429 rate-limited naming the
        scope, with Retry-After, RateLimit-Policy and RateLimit (nothing
        remaining, seconds until the bucket is full), logged with reason
        rate and counted by scope; nothing of it is queued.
        """
        edge = self.edge(global_limit=60, burst=2)
        edge.accepted(edge.post())
        edge.accepted(edge.post())
        response = edge.post()
        problem = edge.refused(response, 429, "rate-limited", "rate")
        self.assertEqual(problem["title"], "Too Many Requests")
        self.assertEqual(problem["scope"], "global")
        self.assertEqual(response.header("retry-after"), "1")
        self.assertEqual(response.header("ratelimit-policy"), '"global";q=60;w=60')
        self.assertEqual(response.header("ratelimit"), '"global";r=0;t=2')
        self.assertEqual(self.rate_limited(edge, "global"), 1.0)
        self.assertIsNone(self.rate_limited(edge, "endpoint"))
        self.assertEqual(len(edge.submitted), 2)

    def test_accepted_carry_headers(self) -> None:
        """
        Accepted webhooks carry RateLimit-Policy and RateLimit too, with
        what remains.
        """
        edge = self.edge(global_limit=60, burst=3)
        first, second = edge.post(), edge.post()
        self.assertEqual(first.header("ratelimit-policy"), '"global";q=60;w=60')
        self.assertEqual(first.header("ratelimit"), '"global";r=2;t=1')
        self.assertEqual(second.header("ratelimit"), '"global";r=1;t=2')

    def test_retry_after_rounded_up(self) -> None:
        """
        Retry-After and RateLimit's t are whole seconds rounded up: a
        client that waits as told is let in, never refused again for a
        fraction of a second.
        """
        edge = self.edge(global_limit=7, burst=1)
        edge.accepted(edge.post())
        response = edge.post()
        edge.refused(response, 429, "rate-limited", "rate")
        # One token per 60/7 = 8.57 s.
        self.assertEqual(response.header("retry-after"), "9")
        self.assertEqual(response.header("ratelimit"), '"global";r=0;t=9')
        self.clock.advance(5)
        response = edge.post()
        edge.refused(response, 429, "rate-limited", "rate")
        self.assertEqual(response.header("retry-after"), "4")
        self.clock.advance(4)
        edge.accepted(edge.post())

    def test_refilled(self) -> None:
        """
        The bucket refills with the clock: a fraction of a second before
        the token is back the answer still says 1 s (never t=0), and after
        it the sender is let in.
        """
        edge = self.edge(global_limit=60, burst=1)
        edge.accepted(edge.post())
        self.clock.advance(0.8)
        refused = edge.post()
        edge.refused(refused, 429, "rate-limited", "rate")
        self.assertEqual(refused.header("retry-after"), "1")
        self.assertEqual(refused.header("ratelimit"), '"global";r=0;t=1')
        self.clock.advance(0.2)
        edge.accepted(edge.post())

    def test_reject_status_503(self) -> None:
        """
        An endpoint set to reject_status 503 (Alertmanager drops what it is
        answered with any 4xx) answers 503 rate-limited, still with
        Retry-After and the RateLimit headers.
        """
        limiter = ticking(self.clock, global_limit=60, burst=1, endpoint_limits={})
        edge = Edge(self, _guards(limiter=limiter, reject_status=503), clock=self.clock)
        edge.accepted(edge.post())
        response = edge.post()
        problem = edge.refused(response, 503, "rate-limited", "rate")
        self.assertEqual(problem["title"], "Service Unavailable")
        self.assertEqual(response.header("retry-after"), "1")
        self.assertIsNotNone(response.header("ratelimit"))

    def test_per_client(self) -> None:
        """
        rate_limiting.per_client_limit holds one sender back while others
        go on; the refusal names the client scope and its limit.  A sender
        with credentials is its credential, wherever it posts from: another
        address does not give the same token a new bucket, another token
        has its own.
        """
        limiter = ticking(self.clock, global_limit=1000, burst=10, endpoint_limits={}, per_client_limit=1)
        edge = Edge(
            self, _guards(limiter=limiter, authenticator=BearerAuthenticator([TOKEN, "other"])), clock=self.clock
        )
        edge.accepted(edge.post())
        response = edge.post()
        problem = edge.refused(response, 429, "rate-limited", "rate")
        self.assertEqual(problem["scope"], "client")
        self.assertEqual(response.header("ratelimit-policy"), '"client";q=1;w=60')
        self.assertEqual(response.header("retry-after"), "60")
        edge.refused(
            edge.post(peer=IPv4Address("TCP", "127.0.0.2", 1)), 429, "rate-limited", "rate", client="127.0.0.2"
        )
        edge.accepted(edge.post(headers={"Authorization": "Bearer other"}))
        self.assertEqual(self.rate_limited(edge, "client"), 2.0)

    def test_per_client_address(self) -> None:
        """
        Without credentials (an open endpoint) the client is its address:
        behind a trusted proxy each forwarded client has its own bucket,
        not the proxy's one.
        """
        limiter = ticking(self.clock, global_limit=1000, burst=10, endpoint_limits={}, per_client_limit=1)
        edge = Edge(self, Guards(limiter=limiter, clients=ClientAddress(["10.0.0.0/24"])), clock=self.clock)
        for client in ("203.0.113.1", "203.0.113.2"):
            edge.accepted(edge.post(peer=PROXY, headers={"X-Forwarded-For": client}))
        edge.refused(
            edge.post(peer=PROXY, headers={"X-Forwarded-For": "203.0.113.1"}),
            429,
            "rate-limited",
            "rate",
            client="203.0.113.1",
        )

    def test_unauthenticated_over_limit(self) -> None:
        """
        Credentials are checked before the rate: a request without them gets
        401 and takes no token, so it cannot use up a real sender's budget.
        """
        edge = self.edge(global_limit=60, burst=1)
        for _ in range(3):
            edge.refused(edge.post(headers={}), 401, "unauthorized", "auth")
        edge.accepted(edge.post())
        edge.refused(edge.post(), 429, "rate-limited", "rate")

    def test_endpoint_refusal_keeps_global_budget(self) -> None:
        """
        A request refused by its endpoint's bucket takes nothing from the
        global one: another endpoint still gets the rest of the global
        budget, and only then the global refusal.
        """
        limiter = ticking(self.clock, global_limit=60, burst=2, endpoint_limits={PROMETHEUS: 1})
        edge = Edge(self, _guards(limiter=limiter), clock=self.clock, more={GRAFANA: _guards(limiter=limiter)})
        edge.accepted(edge.post())
        for _ in range(3):
            response = edge.post()
            problem = edge.refused(response, 429, "rate-limited", "rate")
            self.assertEqual(problem["scope"], "endpoint")
            self.assertEqual(response.header("ratelimit-policy"), '"endpoint";q=1;w=60')
            self.assertEqual(response.header("retry-after"), "60")
        edge.accepted(edge.post(path=GRAFANA))
        problem = edge.refused(edge.post(path=GRAFANA), 429, "rate-limited", "rate", path=GRAFANA)
        self.assertEqual(problem["scope"], "global")
        self.assertEqual(self.rate_limited(edge, "endpoint"), 3.0)
        self.assertEqual(self.rate_limited(edge, "global", GRAFANA), 1.0)


class ConcurrencyTests(SynchronousTestCase):
    """
    service.max_concurrent_requests: past it, 503 with Retry-After.
    """

    def setUp(self) -> None:
        self.held: list[Deferred[None]] = []
        self.hold = True

    def submit(self, envelopes: list[Envelope], write: object | None = None) -> Deferred[None]:
        if not self.hold:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self.held.append(d)
        return d

    def test_too_busy(self) -> None:
        """
        With as many requests in flight as allowed, one more is 503
        too-busy with Retry-After, logged with reason concurrency; once one
        finishes, a new one (of another alert: one of the same would wait
        for the decision still being queued) is taken.
        """
        edge = Edge(self, _guards(max_concurrent=2), submit=self.submit)
        connections = [Connection(edge.site) for _ in range(2)]
        for connection, name in zip(connections, "AC", strict=True):
            connection.send(request_bytes("POST", PROMETHEUS, headers=AUTH, body=body(alert(name))))
        self.assertEqual(len(self.held), 2)
        response = edge.post()
        problem = edge.refused(response, 503, "too-busy", "concurrency")
        self.assertIn("service.max_concurrent_requests", problem["detail"])
        self.assertEqual(response.header("retry-after"), "1")
        self.held[0].callback(None)
        self.assertEqual([r.status for r in connections[0].responses()], [202])
        self.hold = False
        edge.accepted(edge.post(raw=body(alert("B"))))

    def test_upload_counts(self) -> None:
        """
        A request whose body is still arriving is in flight: it counts
        against the cap.
        """
        edge = Edge(self, _guards(max_concurrent=1))
        uploading = Connection(edge.site)
        raw = request_bytes("POST", PROMETHEUS, headers=AUTH, body=body(alert("A")))
        uploading.send(raw[:-5])
        edge.refused(edge.post(), 503, "too-busy", "concurrency")
        uploading.feed(raw[-5:])
        self.assertEqual([r.status for r in uploading.responses()], [202])
        edge.accepted(edge.post())


class AuthenticationTests(SynchronousTestCase):
    """
    Credentials per scheme (BR-WH-004, BR-WH-005): 401 with the scheme's
    challenge; signatures over the raw body.
    """

    def test_bearer(self) -> None:
        """
        Bearer: the challenge names the scheme (and the error once a token
        was given); the token is neither echoed nor logged.
        """
        edge = Edge(self)
        response = edge.post(headers={})
        edge.refused(response, 401, "unauthorized", "auth")
        self.assertEqual(response.header("www-authenticate"), 'Bearer realm="alertgateway"')
        response = edge.post(headers={"Authorization": "Bearer leaked-guess-42"})
        edge.refused(response, 401, "unauthorized", "auth")
        self.assertEqual(response.header("www-authenticate"), 'Bearer realm="alertgateway", error="invalid_token"')
        self.assertNotIn(b"leaked-guess-42", response.body)
        self.assertNotIn("leaked-guess-42", repr(edge.security))
        edge.accepted(edge.post())

    def test_basic(self) -> None:
        """
        Basic: a Basic challenge with the UTF-8 charset; the configured
        user and password are accepted, a wrong password is not logged.
        """
        edge = Edge(self, _guards(authenticator=BasicAuthenticator([("alertmanager", "pa55word")])))
        response = edge.post(headers={})
        edge.refused(response, 401, "unauthorized", "auth")
        self.assertEqual(response.header("www-authenticate"), 'Basic realm="alertgateway", charset="UTF-8"')
        wrong = base64.b64encode(b"alertmanager:guessed-pw").decode()
        response = edge.post(headers={"Authorization": f"Basic {wrong}"})
        edge.refused(response, 401, "unauthorized", "auth")
        self.assertNotIn(wrong, repr(edge.security))
        self.assertNotIn("guessed-pw", repr(edge.security))
        good = base64.b64encode(b"alertmanager:pa55word").decode()
        edge.accepted(edge.post(headers={"Authorization": f"Basic {good}"}))

    def test_api_key(self) -> None:
        """
        API key: the challenge names the header to send it in.
        """
        edge = Edge(self, _guards(authenticator=APIKeyAuthenticator(["key-1", "key-2"], header="X-Hook-Key")))
        response = edge.post(headers={"X-API-Key": "key-1"})
        edge.refused(response, 401, "unauthorized", "auth")
        self.assertEqual(response.header("www-authenticate"), 'APIKey realm="alertgateway", header="X-Hook-Key"')
        edge.accepted(edge.post(headers={"X-Hook-Key": "key-2"}))

    def test_grafana_signature(self) -> None:
        """
        Grafana's HMAC with a timestamp: a Signature challenge and reason
        signature when missing, wrong, stale or replayed; accepted when the
        signature covers the timestamp and the raw body.
        """
        clock = _clock()
        edge = Edge(self, _guards(authenticator=grafana_signatures(clock)), clock=clock)
        raw = body(alert("A"))
        response = edge.post(raw, headers={})
        edge.refused(response, 401, "unauthorized", "signature")
        self.assertEqual(response.header("www-authenticate"), 'Signature realm="alertgateway"')
        good = signed_grafana("hook-secret", int(NOW), raw)
        edge.accepted(edge.post(raw, headers=good))
        problem = edge.refused(edge.post(raw, headers=good), 401, "unauthorized", "signature")
        self.assertIn("replay", problem["detail"])
        stale = signed_grafana("hook-secret", int(NOW) - 301, raw)
        edge.refused(edge.post(raw, headers=stale), 401, "unauthorized", "signature")
        forged = signed_grafana("other-secret", int(NOW), raw)
        edge.refused(edge.post(raw, headers=forged), 401, "unauthorized", "signature")
        for event in edge.security:
            self.assertNotIn(good["X-Grafana-Alerting-Signature"], repr(event))

    def test_signature_over_raw_body(self) -> None:
        """
        The signature covers the bytes as sent: the same document with one
        more space is not what was signed.
        """
        clock = _clock()
        edge = Edge(self, _guards(authenticator=grafana_signatures(clock)), clock=clock)
        raw = body(alert("A")).replace(b", ", b",  ")
        edge.accepted(edge.post(raw, headers=signed_grafana("hook-secret", int(NOW), raw)))
        signed = signed_grafana("hook-secret", int(NOW) + 1, raw)
        edge.refused(edge.post(raw + b" ", headers=signed), 401, "unauthorized", "signature")

    def test_standard_webhooks(self) -> None:
        """
        Standard Webhooks: any listed v1 signature made with the secret is
        accepted; a second delivery of the same webhook-id is a replay.
        """
        key = b"0123456789abcdef0123456789abcdef"
        clock = _clock()
        verifier = StandardWebhooksVerifier(
            ["whsec_" + base64.b64encode(key).decode()], clock=clock, replays=ReplayCache(clock, 300)
        )
        edge = Edge(self, _guards(authenticator=SignatureAuthenticator(verifier)), clock=clock)
        raw = body(alert("A"))
        headers = signed_standard(key, "msg_1", int(NOW), raw)
        headers["webhook-signature"] = "v1,bm90IGl0 " + headers["webhook-signature"]
        edge.accepted(edge.post(raw, headers=headers))
        response = edge.post(raw, headers=headers)
        edge.refused(response, 401, "unauthorized", "signature")
        self.assertEqual(response.header("www-authenticate"), 'Signature realm="alertgateway"')
        edge.refused(
            edge.post(raw, headers=signed_standard(b"another key", "msg_2", int(NOW), raw)),
            401,
            "unauthorized",
            "signature",
        )

    def test_oversized_unauthenticated(self) -> None:
        """
        The size is checked before credentials, as the cheaper check: an
        oversized request is 413 with or without them.
        """
        edge = Edge(self, max_body_bytes=100)
        edge.refused(edge.post(b" " * 101, headers={}), 413, "payload-too-large", "size")
        response = edge.post(b" " * 101)
        problem = edge.refused(response, 413, "payload-too-large", "size")
        self.assertEqual(problem["limit"], 100)
        self.assertEqual(response.header("connection"), "close")

    def test_oversized_signed(self) -> None:
        """
        A signature needs the body, so an oversized request to a signed
        endpoint is 413 before its signature is looked at.
        """
        clock = _clock()
        edge = Edge(self, _guards(authenticator=grafana_signatures(clock)), clock=clock, max_body_bytes=100)
        edge.refused(edge.post(b" " * 101, headers={}), 413, "payload-too-large", "size")

    def test_signature_before_content(self) -> None:
        """
        An unsigned body is refused for its signature before its content
        is parsed: nonsense in it gets 401, not 400 or 415.
        """
        clock = _clock()
        edge = Edge(self, _guards(authenticator=grafana_signatures(clock)), clock=clock)
        edge.refused(edge.post(b"<not json", headers={"Content-Type": "text/plain"}), 401, "unauthorized", "signature")

    def test_open_endpoint(self) -> None:
        """
        Without an authenticator (auth_required false, or type none) no
        credentials are asked for.
        """
        edge = Edge(self, Guards())
        edge.accepted(edge.post(headers={}))


class SecurityLogTests(SynchronousTestCase):
    """
    BR-WH-025: each refusal is one warning event in alertgateway.security,
    with reason and client; never a credential or the body.
    """

    def test_message(self) -> None:
        """
        The event's message names method, path, client, reason and status.
        """
        edge = Edge(self)
        edge.post(headers={"X-Request-ID": "sec-1"})
        [event] = edge.security
        self.assertEqual(event["requestId"], "sec-1")
        self.assertEqual(formatEvent(event), "Refused POST /webhook/prometheus from 127.0.0.1: auth (401)")

    def test_v1_alias_same_endpoint(self) -> None:
        """
        A refusal on the /v1 alias is counted under the endpoint and logs
        the path as requested.
        """
        service, _, _ = make_service()
        events = capture_events(self, lambda e: e.get("log_namespace") == "alertgateway.security")
        Connection(service.site).request("POST", "/v1" + PROMETHEUS, body=body(alert("A")))
        [event] = events
        self.assertEqual((event["endpoint"], event["path"]), (PROMETHEUS, "/v1" + PROMETHEUS))
        self.assertEqual(
            service.metrics.registry.get_sample_value(
                "gateway_security_rejections_total", {"endpoint": PROMETHEUS, "reason": "auth"}
            ),
            1.0,
        )

    def test_no_body_in_log(self) -> None:
        """
        Bodies refused for their content leave nothing of themselves in the
        event: neither their text nor a number out of range.
        """
        edge = Edge(self)
        for raw in (b'{"x": "BodySecret"', b'{"x": 1.0e999999}', b'["BodySecret"' + b"]" * 2):
            edge.refused(edge.post(raw), 400, "malformed-body", "content")
        self.assertNotIn("BodySecret", repr(edge.security))
        self.assertNotIn("999999", repr(edge.security))

    def test_json_line(self) -> None:
        """
        Through the service's JSON observer the event is one line at level
        warn with its fields at the top level, and nothing secret.
        """
        service, _, stream = make_service()
        globalLogPublisher.addObserver(service.log_observer)
        self.addCleanup(globalLogPublisher.removeObserver, service.log_observer)
        Connection(service.site).request(
            "POST",
            PROMETHEUS,
            headers={"Authorization": "Bearer wrong-secret", "X-Request-ID": "sec-2"},
            body=body(alert("BodySecret")),
        )
        [record] = [json.loads(line) for line in stream.getvalue().splitlines() if "alertgateway.security" in line]
        self.assertEqual(
            {k: record[k] for k in ("level", "logger", "reason", "client", "requestId", "status", "endpoint")},
            {
                "level": "warn",
                "logger": "alertgateway.security",
                "reason": "auth",
                "client": "127.0.0.1",
                "requestId": "sec-2",
                "status": 401,
                "endpoint": PROMETHEUS,
            },
        )
        self.assertNotIn("wrong-secret", stream.getvalue())
        self.assertNotIn("BodySecret", stream.getvalue())

    def test_long_path_clipped(self) -> None:
        """
        A refused request's path, the client's to choose, is logged as its
        first 256 characters and how many more there were.
        """
        service, _, _ = make_service()
        events = capture_events(self, lambda e: e.get("log_namespace") == "alertgateway.security")
        path = "/v1/alerts/" + "f" * 6000
        assert_problem(self, Connection(service.site).request("GET", path), 401, "unauthorized")
        [event] = events
        self.assertEqual(event["path"], path[:256] + f"...[{len(path) - 256} more]")
        self.assertLess(len(formatEvent(event)), 400)

    def test_reasonless_problem(self) -> None:
        """
        A guard's refusal that does not say what kind of security refusal
        it is is answered as it is, and not logged or counted as one.
        """
        edge = Edge(self, Guards(authenticator=Teapot()))
        assert_problem(self, edge.post(), 418, "teapot")
        self.assertEqual(edge.security, [])
        self.assertEqual(edge.rejections(), {})

    def test_not_security(self) -> None:
        """
        Refusals that are not about who sends what (an invalid payload, a
        full queue, shutdown, an unknown path or method) leave no security
        event and are not counted.
        """
        readiness = Readiness()
        edge = Edge(self, readiness=readiness, submit=_queue_full)
        assert_problem(self, edge.post(body({"labels": {}})), 400, "invalid-payload")
        assert_problem(self, edge.post(), 503, "queue-full")
        assert_problem(self, Connection(edge.site).request("GET", PROMETHEUS, headers=AUTH), 405, "method-not-allowed")
        assert_problem(self, Connection(edge.site).request("POST", "/nope", headers=AUTH), 404, "not-found")
        edge.clock.advance(1)
        readiness.stop(edge.clock.seconds())
        assert_problem(self, edge.post(), 503, "shutting-down")
        self.assertEqual(edge.security, [])
        self.assertEqual(edge.rejections(), {})


class ContentTypeTests(SynchronousTestCase):
    """
    BR-WH-018: JSON, form bodies with a payload field, the XML format;
    everything else 415.
    """

    def setUp(self) -> None:
        self.edge = Edge(self)

    def post(self, raw: bytes, content_type: str, **headers: str) -> HTTPResponse:
        return self.edge.post(raw, headers={**AUTH, "Content-Type": content_type, **headers})

    def test_form(self) -> None:
        """
        application/x-www-form-urlencoded (any charset parameter) carries
        the JSON document in its payload field; other fields are ignored.
        """
        raw = urlencode({"other": "x", "payload": body(alert("FormAlert")).decode()}).encode()
        for content_type in ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=UTF-8"):
            self.edge.accepted(self.post(raw, content_type))
        self.assertEqual([e.body["labels"]["alertname"] for e in self.edge.submitted], ["FormAlert"] * 2)

    def test_form_refused(self) -> None:
        """
        A form without a payload field, with a payload that is not JSON or
        not UTF-8, or with bytes that are not a form, is a malformed body.
        """
        form = "application/x-www-form-urlencoded"
        for raw, words in (
            (b"alerts=%7B%7D", "no 'payload' field"),
            (b"payload=%7Bnot+json", "not valid JSON"),
            (b"payload=%FF%FE", "not valid application/x-www-form-urlencoded"),
            (b"payload=\xff", "not valid application/x-www-form-urlencoded"),
            (b"&".join(b"f%d=1" % i for i in range(101)) + b"&payload=%7B%7D", "form"),
        ):
            problem = self.edge.refused(self.post(raw, form), 400, "malformed-body", "content")
            self.assertIn(words, problem["detail"], raw)

    def test_xml(self) -> None:
        """
        The documented XML format is read as the Alertmanager document it
        mirrors: labels, annotations (entities of XML itself resolved),
        status, times and the generator URL; text/xml too.
        """
        for content_type in ("application/xml", "text/xml; charset=utf-8"):
            answer = self.edge.accepted(self.post(XML_ALERTS, content_type))
            self.assertEqual([a["alertStatus"] for a in answer["alerts"]], ["firing", "resolved"])
        first = self.edge.submitted[0].body
        self.assertEqual(first["labels"], {"alertname": "DiskFull", "severity": "critical"})
        self.assertEqual(first["annotations"], {"summary": "Disk / on db-1 is full & growing"})
        self.assertEqual((first["startsAt"], first["endsAt"]), ("2026-11-26T03:49:49Z", None))
        self.assertEqual(first["generatorURL"], "http://prometheus.test/graph?g0.expr=up")
        second = self.edge.submitted[1].body
        self.assertEqual((second["status"], second["endsAt"]), ("resolved", "2026-11-26T03:40:00Z"))

    def test_xml_grafana(self) -> None:
        """
        A Grafana endpoint reads the XML format with its own parser.
        """
        edge = Edge(self, parser=PARSERS["grafana"])
        edge.post(XML_ALERTS, headers={**AUTH, "Content-Type": "application/xml"})
        self.assertEqual({e.body["source"] for e in edge.submitted}, {"grafana"})

    def test_xml_hostile(self) -> None:
        """
        Entity expansion (the billion laughs), external entities, external
        DTDs, parameter entities and any DTD at all are refused 400 without
        being expanded or fetched.
        """
        for raw in (BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY, INTERNAL_ENTITY):
            problem = self.edge.refused(self.post(raw, "application/xml"), 400, "malformed-body", "content")
            self.assertEqual(problem["detail"], "XML with DTDs, entities or external references is refused.")
        self.assertEqual(self.edge.submitted, [])

    def test_xml_malformed(self) -> None:
        """
        XML that is not well formed, declares an unknown encoding, or is
        not an <alerts> document is a malformed body.
        """
        for raw in (
            b"<alerts><alert></alerts>",
            b"",
            b'<?xml version="1.0" encoding="no-such-codec"?><alerts/>',
            b"<alarms/>",
            b"\xff\xfe<",
        ):
            self.edge.refused(self.post(raw, "application/xml"), 400, "malformed-body", "content")

    def test_xml_invalid_alerts(self) -> None:
        """
        An <alerts> document whose alerts are invalid is an invalid payload
        with pointers, as the JSON document would be.
        """
        raw = b'<alerts><alert status="firing"><labels><label name="bad-name">x</label></labels></alert></alerts>'
        problem = assert_problem(self, self.post(raw, "application/xml"), 400, "invalid-payload")
        self.assertEqual(problem["errors"][0]["pointer"], "/alerts/0/labels/bad-name")

    def test_unsupported(self) -> None:
        """
        Other media types are 415 with reason content and Accept-Post.
        """
        response = self.post(body(alert("A")), "text/plain")
        self.edge.refused(response, 415, "unsupported-media-type", "content")
        self.assertIn("application/xml", response.header("accept-post") or "")


class EncodingTests(SynchronousTestCase):
    """
    Content-Encoding gzip, inflated in bounded steps against the body
    limit.
    """

    def setUp(self) -> None:
        self.edge = Edge(self, max_body_bytes=1024 * 1024)

    def post(self, raw: bytes, encoding: str = "gzip", content_type: str = "application/json") -> HTTPResponse:
        return self.edge.post(raw, headers={**AUTH, "Content-Encoding": encoding, "Content-Type": content_type})

    def test_gzip(self) -> None:
        """
        A gzip body (gzip, x-gzip, any case) is inflated and read; so is a
        form or XML body.
        """
        for encoding in ("gzip", "x-gzip", "GZip"):
            self.edge.accepted(self.post(gzipped(body(alert("A"))), encoding))
        self.edge.accepted(self.post(gzipped(XML_ALERTS), content_type="application/xml"), 202)
        self.assertEqual(len(self.edge.submitted), 5)

    def test_identity(self) -> None:
        """
        identity (or an empty Content-Encoding) is the body as it is.
        """
        for encoding in ("identity", ""):
            self.edge.accepted(self.post(body(alert("A")), encoding))

    def test_multiple_members(self) -> None:
        """
        Several gzip members one after the other are one body.
        """
        raw = body(alert("A"))
        self.edge.accepted(self.post(gzipped(raw[:10]) + gzipped(raw[10:])))

    def test_bomb(self) -> None:
        """
        10 MiB of zeros in 10 kB of gzip is refused 413 with reason size,
        after inflating no more than the limit and one byte.
        """
        produced: list[int] = []
        real = zlib.decompressobj

        class Counting:
            def __init__(self, wbits: int) -> None:
                self._inner = real(wbits)

            def decompress(self, data: bytes, max_length: int = 0) -> bytes:
                out = self._inner.decompress(data, max_length)
                produced.append(len(out))
                return out

            def __getattr__(self, name: str) -> Any:
                return getattr(self._inner, name)

        self.patch(zlib, "decompressobj", Counting)
        bomb = gzipped(b"\0" * (10 * 1024 * 1024))
        self.assertLess(len(bomb), 20_000)
        response = self.post(bomb)
        problem = self.edge.refused(response, 413, "payload-too-large", "size")
        self.assertEqual(problem["limit"], 1024 * 1024)
        self.assertLessEqual(sum(produced), 1024 * 1024 + 1)
        self.assertEqual(response.header("connection"), "close")

    def test_member_bomb(self) -> None:
        """
        A megabyte of 50,000 empty gzip members is 400 malformed-body with
        reason content, naming limits.max_gzip_members; the cap is the
        endpoint's, and up to it members are one body.
        """
        bomb = gzipped(b"") * 50_000
        problem = self.edge.refused(self.post(bomb), 400, "malformed-body", "content")
        self.assertIn("limits.max_gzip_members", problem["detail"])
        edge = Edge(self, _guards(limits=Limits(max_gzip_members=2)))
        raw = body(alert("A"))
        headers = {**AUTH, "Content-Encoding": "gzip"}
        edge.accepted(edge.post(gzipped(raw[:10]) + gzipped(raw[10:]), headers=headers))
        edge.refused(
            edge.post(gzipped(raw[:10]) + gzipped(raw[10:]) + gzipped(b""), headers=headers),
            400,
            "malformed-body",
            "content",
        )

    def test_inflated_limit(self) -> None:
        """
        The limit applies to the inflated size: exactly the limit is read,
        one byte more is 413.
        """
        edge = Edge(self, max_body_bytes=1000)
        raw = body(alert("A"))
        headers = {**AUTH, "Content-Encoding": "gzip"}
        edge.accepted(edge.post(gzipped(raw + b" " * (1000 - len(raw))), headers=headers))
        edge.refused(
            edge.post(gzipped(raw + b" " * (1001 - len(raw))), headers=headers), 413, "payload-too-large", "size"
        )

    def test_invalid_gzip(self) -> None:
        """
        Bytes that are not gzip, a gzip body cut short, one followed by
        garbage, and an empty one are malformed bodies.
        """
        whole = gzipped(body(alert("A")))
        for raw in (body(alert("A")), whole[:-4], whole[:20], whole + b"garbage", b""):
            problem = self.edge.refused(self.post(raw), 400, "malformed-body", "content")
            self.assertIn("gzip", problem["detail"], raw)

    def test_unknown_encoding(self) -> None:
        """
        Other codings (and chains of codings) are 415 unsupported-encoding
        with Accept-Encoding naming gzip, reason content.
        """
        for encoding in ("br", "deflate", "compress", "gzip, gzip", "zstd"):
            response = self.post(body(alert("A")), encoding)
            problem = self.edge.refused(response, 415, "unsupported-encoding", "content")
            self.assertIn(repr(encoding), problem["detail"])
            self.assertEqual(response.header("accept-encoding"), "gzip")


class DepthTests(SynchronousTestCase):
    """
    limits.max_json_depth.
    """

    def test_depth(self) -> None:
        """
        A document nested exactly max_json_depth deep is read; one level
        more is 400 with reason content, whatever branch is deep.
        """
        edge = Edge(self, _guards(limits=Limits(max_json_depth=6)))

        def nested(levels: int) -> object:
            value: object = "leaf"
            for _ in range(levels):
                value = [value]
            return value

        # The top object is level 1, each list one more.
        edge.accepted(edge.post(body(alert("A"), extra=nested(5))))
        problem = edge.refused(edge.post(body(alert("A"), extra=nested(6))), 400, "malformed-body", "content")
        self.assertIn("limits.max_json_depth", problem["detail"])
        deep_label = {"status": "firing", "labels": {"alertname": {"a": {"b": {"c": "x"}}}}}
        edge.refused(edge.post(body(deep_label)), 400, "malformed-body", "content")

    def test_form_and_xml_depth(self) -> None:
        """
        The depth limit applies to the document a form carries as well.
        """
        edge = Edge(self, _guards(limits=Limits(max_json_depth=3)))
        raw = urlencode({"payload": body(alert("A"))}).encode()
        edge.refused(
            edge.post(raw, headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"}),
            400,
            "malformed-body",
            "content",
        )


class CompressionTests(SynchronousTestCase):
    """
    BR-WH-013: answers at least service.gzip_min_bytes long are gzipped for
    clients that accept it.
    """

    def setUp(self) -> None:
        self.edge = Edge(self)
        self.raw = body(*(alert(f"A{i}") for i in range(5)))

    def post(self, accept: str | None, threshold: int) -> HTTPResponse:
        self.edge.site.gzip_min_bytes = threshold
        headers = {**AUTH, "X-Request-ID": "fixed-id"}
        if accept is not None:
            headers["Accept-Encoding"] = accept
        return self.edge.post(self.raw, headers=headers)

    def length(self) -> int:
        return len(self.post(None, 10**9).body)

    def test_threshold(self) -> None:
        """
        An answer as long as the threshold is gzipped, with a Content-Length
        of the compressed body and Vary; one byte shorter than the
        threshold it is sent as is, without Vary.
        """
        size = self.length()
        response = self.post("gzip", size)
        self.assertEqual(response.header("content-encoding"), "gzip")
        self.assertEqual(response.header("vary"), "Accept-Encoding")
        self.assertEqual(int(response.header("content-length") or "0"), len(response.body))
        self.assertLess(len(response.body), size)
        self.assertEqual(inflated(response)["accepted"], 5)
        plain = self.post("gzip", size + 1)
        self.assertIsNone(plain.header("content-encoding"))
        self.assertIsNone(plain.header("vary"))
        self.assertEqual(len(plain.body), size)

    def test_vary_without_gzip(self) -> None:
        """
        Above the threshold Vary is set even when the client takes no gzip,
        since the answer would differ if it did.
        """
        response = self.post(None, 10)
        self.assertIsNone(response.header("content-encoding"))
        self.assertEqual(response.header("vary"), "Accept-Encoding")
        self.assertEqual(response.json()["accepted"], 5)

    def test_accept_encoding(self) -> None:
        """
        gzip is used when Accept-Encoding names it (or x-gzip, or *) with a
        weight above zero; q=0 refuses it, and a coding named outright
        outweighs *.
        """
        cases = {
            "gzip": True,
            "GZIP": True,
            "x-gzip": True,
            "deflate, gzip;q=0.5": True,
            "gzip; q=0.001": True,
            "*": True,
            "*;q=0, gzip": True,
            "br;q=1.0, *;q=0.1": True,
            "gzip;q=0": False,
            "gzip;q=0.000": False,
            "gzip;q=0, *": False,
            "*;q=0": False,
            "gzip;q=x": False,
            "identity": False,
            "br, deflate": False,
            "": False,
        }
        for accept, compressed in cases.items():
            response = self.post(accept, 10)
            self.assertEqual(response.header("content-encoding") == "gzip", compressed, accept)

    def test_accept_encoding_lines(self) -> None:
        """
        Several Accept-Encoding lines are one list.
        """
        self.edge.site.gzip_min_bytes = 10
        response = self.edge.post(
            self.raw, headers=[*AUTH.items(), ("Accept-Encoding", "br"), ("Accept-Encoding", "gzip")]
        )
        self.assertEqual(response.header("content-encoding"), "gzip")

    def test_problems_compressed(self) -> None:
        """
        Problems are answers too: a long one is compressed likewise.
        """
        response = self.edge.post(
            body(*({"labels": {}} for _ in range(20))), headers={**AUTH, "Accept-Encoding": "gzip"}
        )
        self.assertEqual(response.status, 400)
        self.assertEqual(response.header("content-encoding"), "gzip")
        self.assertEqual(inflated(response)["type"], "urn:alertgateway:problem:invalid-payload")


class SecurityHeaderTests(SynchronousTestCase):
    """
    BR-WH-025: security headers on every answer the gateway writes.
    """

    def test_every_answer(self) -> None:
        """
        202, 207, 400, 401, 404, 405, 413, health (200 and 503) and
        metrics answers all carry the security headers and a Server header
        without a version.
        """
        service, _, _ = make_service()
        service.readiness.state = Lifecycle.READY
        answers = [
            ("POST", PROMETHEUS, AUTH, body(alert("A"))),
            ("POST", PROMETHEUS, AUTH, body(alert("A"), {"labels": {}})),
            ("POST", PROMETHEUS, AUTH, b"{"),
            ("POST", PROMETHEUS, {}, body(alert("A"))),
            ("GET", "/nope", {}, None),
            ("GET", PROMETHEUS, {}, None),
            ("DELETE", "/health", {}, None),
            ("POST", PROMETHEUS, AUTH, b" " * (2 * 1024 * 1024)),
            ("GET", "/health", {}, None),
            ("GET", "/health/live", {}, None),
            ("GET", "/health/ready", {}, None),
            ("HEAD", "/health", {}, None),
        ]
        statuses = []
        for method, path, headers, raw in answers:
            response = Connection(service.site).request(method, path, headers=headers, body=raw)
            assert_security_headers(self, response, (method, path))
            statuses.append(response.status)
        self.assertEqual(statuses, [202, 207, 400, 401, 404, 405, 405, 413, 200, 200, 200, 200])
        service.readiness.state = Lifecycle.STOPPING
        response = Connection(service.site).request("GET", "/health/ready")
        self.assertEqual(response.status, 503)
        assert_security_headers(self, response)
        metrics = Connection(service.metrics_site).request("GET", "/metrics")
        self.assertEqual(metrics.status, 200)
        assert_security_headers(self, metrics)

    def test_internal_error(self) -> None:
        """
        A 500 from an unexpected failure carries them too.
        """

        def failing(payload: object, received_at: str, limits: Limits = DEFAULT_LIMITS, /) -> ParseResult:
            raise RuntimeError("boom")

        edge = Edge(self, parser=failing)
        response = edge.post()
        assert_problem(self, response, 500, "internal-error")
        assert_security_headers(self, response)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ForwardedHeaderTests(SynchronousTestCase):
    """
    BR-WH-017: webhook.forward_headers copied and endpoints[].add_headers
    added onto the request that delivers each alert.
    """

    def deliver(self, envelopes: list[Envelope]) -> StubProcessor:
        processor = StubProcessor()
        clock = Clock()
        sink = HTTPSink(cast(PostingClient, StubTreq(processor)), "http://processor.test", clock=clock, timeout=5)
        for envelope in envelopes:
            self.successResultOf(sink.deliver(envelope))
        return processor

    def test_copied_and_added(self) -> None:
        """
        Listed inbound headers (matched in any case) and static ones reach
        the processor; others, credentials included, do not; a listed
        header the sender did not send is not invented.
        """
        edge = Edge(
            self,
            _guards(forward_headers=("X-Scope-OrgID", "traceparent", "X-Absent"), add_headers={"X-Env": "prod"}),
        )
        edge.accepted(
            edge.post(
                headers={
                    **AUTH,
                    "x-scope-orgid": "tenant-7",
                    "Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                    "X-Other": "not forwarded",
                    "X-Request-ID": "req-fw",
                }
            )
        )
        [envelope] = edge.submitted
        self.assertEqual(
            dict(envelope.headers),
            {
                "X-Scope-OrgID": "tenant-7",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "X-Env": "prod",
            },
        )
        [received] = self.deliver(edge.submitted).received
        self.assertEqual(received.headers["x-scope-orgid"], ["tenant-7"])
        self.assertEqual(received.header("traceparent"), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        self.assertEqual(received.headers["x-env"], ["prod"])
        self.assertEqual(received.headers["x-request-id"], ["req-fw"])
        for absent in ("x-absent", "x-other", "authorization"):
            self.assertNotIn(absent, received.headers)

    def test_never_overridden(self) -> None:
        """
        Even when configuration names them (in any case), hop-by-hop
        headers are not forwarded and X-Request-ID, Idempotency-Key,
        Content-Type and Content-Length stay the gateway's own, once each.
        """
        edge = Edge(
            self,
            _guards(
                forward_headers=("X-Request-ID", "Connection", "Idempotency-Key", "Content-Length", "Upgrade", "TE"),
                add_headers={
                    "x-request-id": "forged",
                    "IDEMPOTENCY-KEY": "forged",
                    "Transfer-Encoding": "chunked",
                    "content-type": "text/plain",
                    "Keep-Alive": "timeout=1",
                    "Proxy-Authorization": "Basic eDp5",
                    "Host": "elsewhere.test",
                },
            ),
        )
        edge.post(
            headers={
                **AUTH,
                "X-Request-ID": "req-own",
                "Idempotency-Key": "sender-key",
                "Upgrade": "websocket",
                "TE": "trailers",
            }
        )
        [received] = self.deliver(edge.submitted).received
        [envelope] = edge.submitted
        self.assertEqual(received.headers["x-request-id"], ["req-own"])
        self.assertEqual(received.headers["idempotency-key"], [envelope.idempotency_key])
        self.assertEqual(received.headers["content-type"], ["application/json"])
        self.assertEqual(received.headers["content-length"], [str(len(received.body))])
        self.assertEqual(received.headers["host"], ["processor.test"])
        for hop in ("upgrade", "te", "keep-alive", "proxy-authorization", "transfer-encoding"):
            self.assertNotIn(hop, received.headers)
        self.assertNotEqual(received.headers.get("connection"), ["Upgrade"])

    def test_static_wins(self) -> None:
        """
        A static header outweighs the sender's header of the same name, so
        an operator can pin a tenant.
        """
        edge = Edge(self, _guards(forward_headers=("X-Scope-OrgID",), add_headers={"x-scope-orgid": "pinned"}))
        edge.post(headers={**AUTH, "X-Scope-OrgID": "chosen-by-sender"})
        [received] = self.deliver(edge.submitted).received
        self.assertEqual(received.headers["x-scope-orgid"], ["pinned"])


class ConfiguredTests(SynchronousTestCase):
    """
    The edge as the service builds it from configuration.
    """

    def test_from_config(self) -> None:
        """
        forward_headers, add_headers, an endpoint's auth, allowed_ips,
        trusted_proxies, reject_status and rate limits all take effect on
        the service's site.
        """
        config = parse_config(
            """
webhook:
  auth: {token: main-token}
  forward_headers: [X-Scope-OrgID]
  endpoints:
    - path: /webhook/prometheus
      rate_limit: 1
      reject_status: 503
      add_headers: {X-Env: prod}
    - path: /webhook/grafana
      auth: {type: api_key, tokens: [grafana-key]}
      allowed_ips: [203.0.113.0/24]
security:
  trusted_proxies: [10.0.0.0/24]
rate_limiting:
  global_limit: 600
  burst_size: 10
service:
  max_body_bytes: 5000
alert_processor: {endpoint: "file:unused.jsonl"}
queue: {backend: memory}
""",
            environ={},
        )
        service, _, _ = make_service(config)
        main = {"Authorization": "Bearer main-token", "X-Scope-OrgID": "t1"}
        first = Connection(service.site).request("POST", PROMETHEUS, headers=main, body=body(alert("A")))
        self.assertEqual(first.status, 202)
        queued = self.successResultOf(service.queue.take())
        self.assertEqual(dict(queued.headers), {"X-Scope-OrgID": "t1", "X-Env": "prod"})
        limited = Connection(service.site).request("POST", PROMETHEUS, headers=main, body=body(alert("A")))
        assert_problem(self, limited, 503, "rate-limited")
        self.assertEqual(limited.header("retry-after"), "60")
        key = {"X-API-Key": "grafana-key", "X-Forwarded-For": "203.0.113.4"}
        self.assertEqual(
            Connection(service.site, PROXY).request("POST", GRAFANA, headers=key, body=body(alert("G"))).status, 202
        )
        outside = Connection(service.site).request("POST", GRAFANA, headers=key, body=body(alert("G")))
        assert_problem(self, outside, 403, "forbidden")
        wrong = Connection(service.site, PROXY).request(
            "POST", GRAFANA, headers={**key, "X-API-Key": "main-token"}, body=body(alert("G"))
        )
        self.assertEqual(wrong.header("www-authenticate"), 'APIKey realm="alertgateway", header="X-API-Key"')

    def test_forwarded_header_from_config(self) -> None:
        """
        security.forwarded_header picks the one header the trusted proxies'
        client address is read from: with forwarded, Forwarded names the
        client and X-Forwarded-For is ignored; by default the reverse.
        """
        for header, allowed, forbidden in (
            ("forwarded", {"Forwarded": "for=203.0.113.4"}, {"X-Forwarded-For": "203.0.113.4"}),
            ("x-forwarded-for", {"X-Forwarded-For": "203.0.113.4"}, {"Forwarded": "for=203.0.113.4"}),
        ):
            with self.subTest(header=header):
                config = make_config(
                    "security:\n  trusted_proxies: [10.0.0.0/24]\n  allowed_ips: [203.0.113.0/24]\n"
                    f"  forwarded_header: {header}\n"
                )
                service, _, _ = make_service(config)
                posted = Connection(service.site, PROXY).request(
                    "POST", PROMETHEUS, headers={**AUTH, **allowed}, body=body(alert("A"))
                )
                self.assertEqual(posted.status, 202, posted.body)
                refused = Connection(service.site, PROXY).request(
                    "POST", PROMETHEUS, headers={**AUTH, **forbidden}, body=body(alert("B"))
                )
                problem = assert_problem(self, refused, 403, "forbidden")
                self.assertIn("10.0.0.1", problem["detail"])
