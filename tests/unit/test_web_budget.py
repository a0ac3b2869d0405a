"""
The rate budget of real senders over a real site: nothing a request
without valid credentials does takes a token of a bucket that senders
with credentials use, on every authentication type (signatures included),
and a sender's client bucket is its identity (credential or client
certificate) rather than its address.
"""

from __future__ import annotations

import base64
import gzip
import zlib
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.config import parse_config
from alertgateway.guards.auth import BearerAuthenticator, SignatureAuthenticator
from alertgateway.guards.ratelimit import RateLimiter
from alertgateway.guards.replays import ReplayCache
from alertgateway.guards.signatures import StandardWebhooksVerifier
from alertgateway.web.endpoints import Guards
from tests.integration._certs import Authority
from tests.unit._http import (
    NOW,
    PROMETHEUS,
    TOKEN,
    Connection,
    Edge,
    HTTPResponse,
    alert,
    body,
    make_service,
    presenting,
    signed_standard,
    ticking,
)

RELAY = "/webhook/relay"
OPEN = "/webhook/open"
KEY = b"0123456789abcdef0123456789abcdef"


def _clock() -> Clock:
    clock = Clock()
    clock.advance(NOW)
    return clock


def _signed(clock: Clock, limiter: RateLimiter) -> Guards:
    """
    A Standard Webhooks endpoint's guards on C{limiter}.
    """
    verifier = StandardWebhooksVerifier(
        ["whsec_" + base64.b64encode(KEY).decode()], clock=clock, replays=ReplayCache(clock, 300)
    )
    return Guards(authenticator=SignatureAuthenticator(verifier), limiter=limiter)


class SignatureBeforeRateTests(SynchronousTestCase):
    """
    A signature is verified before the rate buckets are asked.
    """

    def setUp(self) -> None:
        self.clock = _clock()

    def edge(self, **limits: Any) -> Edge:
        limiter = ticking(self.clock, endpoint_limits={}, **limits)
        guards = Guards(authenticator=BearerAuthenticator([TOKEN]), limiter=limiter)
        return Edge(
            self, guards, clock=self.clock, more={RELAY: _signed(self.clock, limiter)}, max_body_bytes=1024 * 1024
        )

    def test_unsigned_take_no_token(self) -> None:
        """
        40 unsigned requests to a Standard Webhooks endpoint (global_limit
        600, burst_size 20) are each 401 signature, and the next real
        bearer webhook on another endpoint is 202 with the whole burst
        left but its own token.
        """
        edge = self.edge(global_limit=600, burst=20)
        for _ in range(40):
            edge.refused(edge.post(path=RELAY, headers={}), 401, "unauthorized", "signature", path=RELAY)
        response = edge.post()
        edge.accepted(response)
        self.assertEqual(response.header("ratelimit"), '"global";r=19;t=1')

    def test_forged_and_replayed_take_no_token(self) -> None:
        """
        Well-formed but forged signatures, and replays of a real one, are
        refused for their signature, never for the rate: they take
        nothing of the two tokens the real senders then get.
        """
        edge = self.edge(global_limit=60, burst=3)
        raw = body(alert("A"))
        good = signed_standard(KEY, "msg_1", int(NOW), raw)
        edge.accepted(edge.post(raw, path=RELAY, headers=good))
        forged = signed_standard(b"not the key", "msg_2", int(NOW), raw)
        for headers in [forged] * 5 + [good] * 5:
            edge.refused(edge.post(raw, path=RELAY, headers=headers), 401, "unauthorized", "signature", path=RELAY)
        edge.accepted(edge.post(raw, path=RELAY, headers=signed_standard(KEY, "msg_3", int(NOW), raw)))
        edge.accepted(edge.post())
        problem = edge.refused(edge.post(), 429, "rate-limited", "rate")
        self.assertEqual(problem["scope"], "global")

    def test_unsigned_gzip_not_inflated(self) -> None:
        """
        A gzip body without the signature's headers is refused before it
        is inflated (no inflater is made for it); a signed one is inflated
        and its signature checked over the inflated body.
        """
        edge = self.edge(global_limit=600, burst=20)
        made: list[int] = []
        real = zlib.decompressobj

        def counting(*args: Any) -> Any:
            made.append(1)
            return real(*args)

        self.patch(zlib, "decompressobj", counting)
        bomb = gzip.compress(b"", mtime=0) * 50_000
        encoded = {"Content-Encoding": "gzip"}
        edge.refused(edge.post(bomb, path=RELAY, headers=encoded), 401, "unauthorized", "signature", path=RELAY)
        self.assertEqual(made, [])
        raw = body(alert("A"))
        signed = {**signed_standard(KEY, "msg_1", int(NOW), raw), **encoded}
        edge.accepted(edge.post(gzip.compress(raw), path=RELAY, headers=signed))
        self.assertEqual(len(made), 1)


class AnonymousApartTests(SynchronousTestCase):
    """
    Requests to an endpoint without authentication have buckets of their
    own.
    """

    def test_open_endpoint_apart(self) -> None:
        """
        Requests to an open endpoint, from ever new addresses, spend the
        burst of requests without credentials and are then 429; a real
        sender's webhooks to another endpoint still get its whole burst.
        """
        clock = _clock()
        limiter = ticking(clock, global_limit=60, burst=2, endpoint_limits={})
        edge = Edge(
            self,
            Guards(authenticator=BearerAuthenticator([TOKEN]), limiter=limiter),
            clock=clock,
            more={OPEN: Guards(limiter=limiter)},
        )
        for index in range(5):
            peer = IPv4Address("TCP", f"198.51.100.{index}", 1)
            response = edge.post(path=OPEN, headers={}, peer=peer)
            if index < 2:
                edge.accepted(response)
            else:
                edge.refused(response, 429, "rate-limited", "rate", path=OPEN, client=f"198.51.100.{index}")
        edge.accepted(edge.post())
        edge.accepted(edge.post())

    def test_client_certificate_is_identity(self) -> None:
        """
        On an endpoint without credentials, a connection that presented a
        client certificate is that certificate's sender: its client
        bucket follows the certificate's name from any address, and takes
        nothing of the address's bucket of requests without one.
        """
        clock = _clock()
        limiter = ticking(clock, global_limit=600, burst=20, endpoint_limits={}, per_client_limit=1)
        edge = Edge(self, Guards(limiter=limiter), clock=clock)
        certificate = Authority("budget root").issue("am", dns=("am.example",), client=True).x509()
        here, there = IPv4Address("TCP", "192.0.2.1", 1), IPv4Address("TCP", "192.0.2.2", 1)

        def post(peer: IPv4Address, presented: bool) -> HTTPResponse:
            connection = Connection(edge.site, peer, presenting(certificate if presented else None))
            return edge.post(headers={}, connection=connection)

        edge.accepted(post(here, True))
        problem = edge.refused(post(there, True), 429, "rate-limited", "rate", client="192.0.2.2")
        self.assertEqual(problem["scope"], "client")
        edge.accepted(post(here, False))
        edge.refused(post(here, False), 429, "rate-limited", "rate", client="192.0.2.1")


class ConfiguredIdentityTests(SynchronousTestCase):
    def test_endpoint_credentials_are_their_own(self) -> None:
        """
        As the service builds it, an endpoint's own credentials are other
        senders than webhook.auth's, though each is the first of its list:
        with per_client_limit 1, a webhook with each is 202, and only a
        second with the same token is 429.
        """
        config = parse_config(
            """
webhook:
  auth: {token: shared-token}
  endpoints:
    - {path: /webhook/prometheus, source: alertmanager}
    - {path: /webhook/open, source: alertmanager, auth: {type: bearer, tokens: [own-token]}}
rate_limiting: {per_client_limit: 1, reject_status: 429}
alert_processor: {endpoint: "file:unused.jsonl"}
queue: {backend: memory}
""",
            environ={},
        )
        service, _, _ = make_service(config)

        def post(path: str, token: str) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            return Connection(service.site).request("POST", path, headers=headers, body=body(alert("A"))).status

        self.assertEqual(post(PROMETHEUS, "shared-token"), 202)
        self.assertEqual(post(OPEN, "own-token"), 202)
        self.assertEqual(post(OPEN, "own-token"), 429)
