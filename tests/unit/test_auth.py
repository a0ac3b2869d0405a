"""
Tests for L{alertgateway.guards.auth}: bearer, basic, API key and signature
authentication, and choosing one from an endpoint's configuration.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import cast

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.app.guards import authenticator_for
from alertgateway.config import AuthConfig, AuthType, BasicUser, SignatureScheme, parse_config
from alertgateway.guards.auth import (
    APIKeyAuthenticator,
    Authenticator,
    BasicAuthenticator,
    BearerAuthenticator,
    Credential,
    SignatureAuthenticator,
)
from alertgateway.guards.errors import Refused
from alertgateway.guards.replays import ReplayCache
from alertgateway.web import problems
from alertgateway.web.problems import Problem

BASIC_CHALLENGE = 'Basic realm="alertgateway", charset="UTF-8"'
SIGNATURE_CHALLENGE = 'Signature realm="alertgateway"'
# The Standard Webhooks specification's example.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_HEADERS = {
    "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "webhook-timestamp": "1614265330",
    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}
SPEC_BODY = b'{"test": 2432232314}'


def refusal(
    test: SynchronousTestCase, auth: Authenticator, headers: Mapping[str, str], body: bytes | None = None
) -> Problem:
    """
    The 401 problem the web layer answers with when C{auth} refuses
    C{headers}.
    """
    with test.assertRaises(Refused) as caught:
        auth.check(headers, body)
    problem = problems.refused(caught.exception)
    test.assertEqual(problem.status, 401)
    test.assertEqual(problem.slug, "unauthorized")
    return problem


def basic(credentials: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


class BearerAuthenticatorTests(SynchronousTestCase):
    """
    L{BearerAuthenticator.check} passes a configured token and raises a 401
    problem with a Bearer challenge for everything else.
    """

    def setUp(self) -> None:
        self.auth = BearerAuthenticator(["current", "next-t\u00f6ken", "third"])

    def test_each_configured_token(self) -> None:
        """
        Every configured token passes, whatever its place in the list
        (rotation), non-ASCII ones compared as UTF-8, the scheme in any
        case, surrounding spaces ignored.
        """
        for value in ("Bearer current", "Bearer next-t\u00f6ken", "Bearer third", "bearer current", "  BEARER  third "):
            with self.subTest(value=value):
                self.auth.check({"authorization": value}, None)

    def test_checked_before_body(self) -> None:
        """
        A bearer token needs no body, so it is checked before the body is
        read.
        """
        self.assertFalse(self.auth.needs_body)

    def test_missing(self) -> None:
        """
        No header: a challenge without an error code (RFC 6750 section 3.1).
        """
        problem = refusal(self, self.auth, {})
        self.assertEqual(problem.headers, {"WWW-Authenticate": 'Bearer realm="alertgateway"'})
        self.assertEqual(problem.reason, "auth")

    def test_malformed(self) -> None:
        """
        Another scheme, or Bearer without a token, is invalid_request.
        """
        for value in ("Basic Y3VycmVudDo=", "Bearer", "Bearer   ", "current", ""):
            with self.subTest(value=value):
                problem = refusal(self, self.auth, {"authorization": value})
                self.assertEqual(
                    problem.headers["WWW-Authenticate"], 'Bearer realm="alertgateway", error="invalid_request"'
                )

    def test_wrong_token(self) -> None:
        """
        An unknown token, a prefix or an extension of a real one is
        invalid_token, and the problem does not repeat it.
        """
        for token in ("guess", "curren", "currentX", "CURRENT", "current third"):
            with self.subTest(token=token):
                problem = refusal(self, self.auth, {"authorization": f"Bearer {token}"})
                self.assertEqual(
                    problem.headers["WWW-Authenticate"], 'Bearer realm="alertgateway", error="invalid_token"'
                )
                self.assertNotIn(token, problem.detail)

    def test_other_header(self) -> None:
        """
        Only the Authorization header counts, looked up by its lower-cased
        name as the web layer passes it.
        """
        refusal(self, self.auth, {"x-api-key": "current", "Authorization": "Bearer current"})

    def test_no_tokens(self) -> None:
        """
        With no token configured nothing passes, not even an empty one.
        """
        for tokens in ([], [""]):
            with self.subTest(tokens=tokens):
                refusal(self, BearerAuthenticator(tokens), {"authorization": "Bearer anything"})


class BasicAuthenticatorTests(SynchronousTestCase):
    """
    L{BasicAuthenticator.check} passes any configured user with its own
    password and challenges with Basic otherwise.
    """

    def setUp(self) -> None:
        self.auth = BasicAuthenticator([("alertmanager", "pa:ss"), ("grafana", "gr\u00e4f"), ("third", "x")])

    def test_each_user(self) -> None:
        """
        Every configured user passes with its password, whatever its place
        in the list; a password may hold a colon and non-ASCII text (UTF-8,
        as the challenge's charset says).
        """
        for credentials in ("alertmanager:pa:ss", "grafana:gr\u00e4f", "third:x"):
            with self.subTest(credentials=credentials):
                self.auth.check(basic(credentials), None)
        self.auth.check({"authorization": "basic " + base64.b64encode(b"third:x").decode()}, None)
        self.assertFalse(self.auth.needs_body)

    def test_wrong(self) -> None:
        """
        A wrong password, another user's password or an unknown user is
        refused with the Basic challenge, the credentials not repeated.
        """
        for credentials in ("alertmanager:pass", "alertmanager:x", "grafana:pa:ss", "nobody:x", "third:", ":x"):
            with self.subTest(credentials=credentials):
                problem = refusal(self, self.auth, basic(credentials))
                self.assertEqual(problem.headers, {"WWW-Authenticate": BASIC_CHALLENGE})
                self.assertEqual(problem.detail, "The user name or password is not valid.")
                self.assertEqual(problem.reason, "auth")

    def test_missing_or_other_scheme(self) -> None:
        """
        No Authorization header, another scheme or Basic without
        credentials gets the Basic challenge.
        """
        for headers in ({}, {"authorization": "Bearer x"}, {"authorization": "Basic "}):
            with self.subTest(headers=headers):
                problem = refusal(self, self.auth, headers)
                self.assertEqual(problem.headers, {"WWW-Authenticate": BASIC_CHALLENGE})
                self.assertEqual(problem.detail, "This endpoint requires HTTP Basic authentication.")

    def test_bad_base64(self) -> None:
        """
        Credentials that are not base64 (or not ASCII) are refused as such.
        """
        for value in ("Basic !!!", "Basic dGhpcmQ6eA", "Basic d\u00e9j\u00e0"):
            with self.subTest(value=value):
                problem = refusal(self, self.auth, {"authorization": value})
                self.assertEqual(problem.detail, "The Basic credentials are not valid base64.")
                self.assertEqual(problem.headers, {"WWW-Authenticate": BASIC_CHALLENGE})

    def test_no_users(self) -> None:
        """
        With no user configured nothing passes.
        """
        refusal(self, BasicAuthenticator([]), basic("a:b"))


class APIKeyAuthenticatorTests(SynchronousTestCase):
    """
    L{APIKeyAuthenticator.check} reads the key from its header.
    """

    def test_default_header(self) -> None:
        """
        By default the key is in X-API-Key; each configured key passes.
        """
        auth = APIKeyAuthenticator(["k1", "k2"])
        self.assertEqual(auth.header, "X-API-Key")
        for key in ("k1", "k2", " k2 "):
            with self.subTest(key=key):
                auth.check({"x-api-key": key}, None)
        self.assertFalse(auth.needs_body)

    def test_configured_header(self) -> None:
        """
        A configured header name is used instead, matched through its
        lower-cased form; the key in X-API-Key or Authorization then does
        not count.
        """
        auth = APIKeyAuthenticator(["k1"], header="X-Gateway-Key")
        auth.check({"x-gateway-key": "k1"}, None)
        problem = refusal(self, auth, {"x-api-key": "k1", "authorization": "Bearer k1"})
        self.assertEqual(problem.detail, "This endpoint requires an API key in X-Gateway-Key.")
        self.assertEqual(problem.headers, {"WWW-Authenticate": 'APIKey realm="alertgateway", header="X-Gateway-Key"'})

    def test_wrong_key(self) -> None:
        """
        A wrong or empty key is refused without repeating it.
        """
        auth = APIKeyAuthenticator(["k1", "k2"])
        problem = refusal(self, auth, {"x-api-key": "k3-guess"})
        self.assertEqual(problem.detail, "The API key is not valid.")
        self.assertNotIn("k3-guess", str(problem.to_json("r", "/i")))
        self.assertEqual(
            refusal(self, auth, {"x-api-key": ""}).detail, "This endpoint requires an API key in X-API-Key."
        )


class SignatureAuthenticatorTests(SynchronousTestCase):
    def test_refusal(self) -> None:
        """
        A signature that does not verify is a 401 with the Signature
        challenge and reason, saying why without quoting the signature.
        """
        clock = Clock()
        clock.advance(1614265330)
        config = AuthConfig(type=AuthType.HMAC, scheme=SignatureScheme.STANDARD, secrets=(SPEC_SECRET,))
        auth = authenticator_for(config, clock=clock, replays=ReplayCache(clock, ttl=300))
        assert auth is not None
        self.assertTrue(auth.needs_body)
        problem = refusal(self, auth, {**SPEC_HEADERS, "webhook-signature": "v1,Zm9yZ2Vk"}, SPEC_BODY)
        self.assertEqual(problem.headers, {"WWW-Authenticate": SIGNATURE_CHALLENGE})
        self.assertEqual(problem.reason, "signature")
        self.assertEqual(
            problem.detail, "Signature verification failed: no valid v1 signature for a configured secret."
        )

    def test_no_body(self) -> None:
        """
        Asked without a body, the signature is checked against an empty
        one rather than crashing.
        """
        clock = Clock()
        clock.advance(1614265330)
        config = AuthConfig(type=AuthType.HMAC, scheme=SignatureScheme.STANDARD, secrets=(SPEC_SECRET,))
        auth = authenticator_for(config, clock=clock, replays=ReplayCache(clock, ttl=300))
        assert auth is not None
        refusal(self, auth, SPEC_HEADERS, None)


class CredentialTests(SynchronousTestCase):
    """
    What an authenticator names a request it passes: the identity its rate
    buckets are kept under, which holds nothing of the credential.
    """

    def test_identities(self) -> None:
        """
        A token or API key is named by its place in the configured list, a
        Basic sender by its user name, a signature by the place of its
        secret (with its replay key); none carries the secret.
        """
        clock = Clock()
        clock.advance(1614265330)
        standard = authenticator_for(
            AuthConfig(type=AuthType.HMAC, scheme=SignatureScheme.STANDARD, secrets=("whsec_b3RoZXI=", SPEC_SECRET)),
            clock=clock,
            replays=ReplayCache(clock, ttl=300),
        )
        assert standard is not None
        bearer = BearerAuthenticator(["t-a", "t-b"])
        basic_users = BasicAuthenticator([("am", "p:1"), ("gf", "p2")], scope="/webhook/basic")
        cases: list[tuple[Authenticator, Mapping[str, str], bytes | None, Credential]] = [
            (bearer, {"authorization": "Bearer t-b"}, None, Credential("token:webhook.auth#1")),
            (APIKeyAuthenticator(["k-a", "k-b"], scope="/w"), {"x-api-key": "k-a"}, None, Credential("key:/w#0")),
            (basic_users, basic("am:p:1"), None, Credential("user:/webhook/basic#am")),
            (standard, SPEC_HEADERS, SPEC_BODY, Credential("hmac:webhook.auth#1", "std:" + SPEC_HEADERS["webhook-id"])),
        ]
        for auth, headers, body, expected in cases:
            with self.subTest(expected=expected):
                auth.screen(headers)
                self.assertEqual(auth.check(headers, body), expected)

    def test_header_credentials_screen_nothing(self) -> None:
        """
        Header credentials are all checked by check: screen lets anything
        through, so no request is refused twice.
        """
        for auth in (BearerAuthenticator(["t"]), BasicAuthenticator([("u", "p")]), APIKeyAuthenticator(["k"])):
            self.assertFalse(auth.needs_body)
            auth.screen({})

    def test_signature_screened(self) -> None:
        """
        A signature authenticator refuses, from the headers alone, what
        cannot verify: a 401 with the Signature challenge and reason.
        """
        clock = Clock()
        clock.advance(1614265330)
        auth = authenticator_for(
            AuthConfig(type=AuthType.HMAC, scheme=SignatureScheme.STANDARD, secrets=(SPEC_SECRET,)),
            clock=clock,
            replays=ReplayCache(clock, ttl=300),
        )
        assert auth is not None
        with self.assertRaises(Refused) as caught:
            auth.screen({"webhook-id": "msg_1"})
        problem = problems.refused(caught.exception)
        self.assertEqual((problem.status, problem.reason), (401, "signature"))
        self.assertEqual(problem.headers, {"WWW-Authenticate": SIGNATURE_CHALLENGE})


class MakeAuthenticatorTests(SynchronousTestCase):
    """
    L{authenticator_for} builds the authenticator an endpoint's resolved
    auth configuration asks for.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1614265330)
        self.replays = ReplayCache(self.clock, ttl=300)

    def make(self, config: AuthConfig) -> Authenticator:
        auth = authenticator_for(config, clock=self.clock, replays=self.replays)
        assert auth is not None
        return auth

    def test_bearer(self) -> None:
        """
        C{bearer} takes C{token} and C{tokens}.
        """
        auth = self.make(AuthConfig(type=AuthType.BEARER, token="a", tokens=("b",)))
        self.assertIsInstance(auth, BearerAuthenticator)
        for token in ("a", "b"):
            auth.check({"authorization": f"Bearer {token}"}, None)

    def test_basic(self) -> None:
        """
        C{basic} takes C{username}/C{password} and every entry of C{users}.
        """
        config = AuthConfig(
            type=AuthType.BASIC, username="am", password="p1", users=(BasicUser("gf", "p2"), BasicUser("x", None))
        )
        auth = self.make(config)
        self.assertIsInstance(auth, BasicAuthenticator)
        auth.check(basic("am:p1"), None)
        auth.check(basic("gf:p2"), None)
        refusal(self, auth, basic("x:"))

    def test_api_key(self) -> None:
        """
        C{api_key} takes the tokens as keys and the configured header.
        """
        auth = self.make(AuthConfig(type=AuthType.API_KEY, tokens=("k",), header="X-Key"))
        self.assertIsInstance(auth, APIKeyAuthenticator)
        auth.check({"x-key": "k"}, None)
        default = self.make(AuthConfig(type=AuthType.API_KEY, tokens=("k",)))
        assert isinstance(default, APIKeyAuthenticator)
        self.assertEqual(default.header, "X-API-Key")

    def test_hmac_grafana(self) -> None:
        """
        C{hmac} with the Grafana scheme verifies the configured signature
        header, and the timestamp header and tolerance when given.
        """
        config = AuthConfig(
            type=AuthType.HMAC,
            secrets=("s1", "s2"),
            signature_header="X-Sig",
            timestamp_header="X-Time",
            tolerance=10.0,
        )
        auth = self.make(config)
        self.assertIsInstance(auth, SignatureAuthenticator)
        now = int(self.clock.seconds())
        body = b'{"alerts":[]}'
        signature = hmac.new(b"s2", f"{now}:".encode() + body, hashlib.sha256).hexdigest()
        auth.check({"x-sig": signature, "x-time": str(now)}, body)
        stale = hmac.new(b"s2", f"{now - 11}:".encode() + body, hashlib.sha256).hexdigest()
        problem = refusal(self, auth, {"x-sig": stale, "x-time": str(now - 11)}, body)
        self.assertEqual(
            problem.detail, "Signature verification failed: the timestamp is outside the allowed tolerance."
        )

    def test_hmac_standard(self) -> None:
        """
        C{hmac} with the Standard Webhooks scheme accepts the
        specification's example, and a replay of it is refused.
        """
        auth = self.make(AuthConfig(type=AuthType.HMAC, scheme=SignatureScheme.STANDARD, secret=SPEC_SECRET))
        auth.check(SPEC_HEADERS, SPEC_BODY)
        problem = refusal(self, auth, SPEC_HEADERS, SPEC_BODY)
        self.assertEqual(
            problem.detail, "Signature verification failed: this webhook-id was already delivered (replay)."
        )

    def test_none(self) -> None:
        """
        C{none} means no authenticator at all.
        """
        self.assertIsNone(authenticator_for(AuthConfig(type=AuthType.NONE), clock=self.clock, replays=self.replays))

    def test_unknown_type(self) -> None:
        """
        A type the configuration does not offer is an error, never a
        silent "no authentication".
        """
        # Only a configuration built in code can carry one.
        unknown = AuthConfig(type=cast(AuthType, "digest"))
        self.assertRaises(ValueError, authenticator_for, unknown, clock=self.clock, replays=self.replays)

    def test_from_configuration(self) -> None:
        """
        An endpoint's own auth replaces webhook.auth: built from a parsed
        configuration, each endpoint gets the authenticator of its kind.
        """
        config = parse_config(
            """
webhook:
  auth: {tokens: [t1]}
  endpoints:
    - path: /webhook/prometheus
      auth: {type: basic, username: am, password: pw}
    - path: /webhook/grafana
""",
            {},
        )
        prometheus, grafana = config.webhook.endpoints
        self.make(config.webhook.auth_for(prometheus)).check(basic("am:pw"), None)
        self.make(config.webhook.auth_for(grafana)).check({"authorization": "Bearer t1"}, None)

    def test_scope(self) -> None:
        """
        The scope given names the senders: the first token of two
        configured lists is two identities.
        """
        config = AuthConfig(type=AuthType.BEARER, tokens=("t",))
        shared = authenticator_for(config, clock=self.clock, replays=self.replays)
        own = authenticator_for(config, clock=self.clock, replays=self.replays, scope="/webhook/own")
        assert shared is not None and own is not None
        headers = {"authorization": "Bearer t"}
        self.assertEqual(shared.check(headers, None).identity, "token:webhook.auth#0")
        self.assertEqual(own.check(headers, None).identity, "token:/webhook/own#0")


class SecretsNotShownTests(SynchronousTestCase):
    """
    Credentials never appear in a configuration's repr (which may be
    logged) nor in any refusal.
    """

    SECRETS = ("tok-SECRET-1", "tok-SECRET-2", "pw-SECRET-3", "pw-SECRET-4", "hm-SECRET-5", "hm-SECRET-6")

    def test_repr(self) -> None:
        """
        No secret of any kind is in the repr of AuthConfig, of the whole
        configuration, or its str.
        """
        config = parse_config(
            """
webhook:
  auth:
    type: basic
    token: tok-SECRET-1
    tokens: [tok-SECRET-2]
    username: am
    password: pw-SECRET-3
    users: [{username: gf, password: pw-SECRET-4}]
    secret: hm-SECRET-5
    secrets: [hm-SECRET-6]
""",
            {},
        )
        for text in (repr(config.webhook.auth), repr(config), str(config)):
            for secret in self.SECRETS:
                self.assertNotIn(secret, text)
        self.assertIn("basic", repr(config.webhook.auth))
        self.assertIn("gf", repr(config.webhook.auth))

    def test_problems(self) -> None:
        """
        Refusals by every kind of authenticator, for wrong and for
        correct-but-misplaced credentials, never quote a credential.
        """
        clock = Clock()
        replays = ReplayCache(clock, ttl=300)
        cases: list[tuple[AuthConfig, dict[str, str]]] = [
            (AuthConfig(tokens=("tok-SECRET-1",)), {"authorization": "Bearer tok-SECRET-2"}),
            (AuthConfig(type=AuthType.API_KEY, tokens=("tok-SECRET-1",)), {"x-api-key": "tok-SECRET-2"}),
            (AuthConfig(type=AuthType.BASIC, username="am", password="pw-SECRET-3"), basic("am:pw-SECRET-4")),
            (AuthConfig(type=AuthType.HMAC, secrets=("hm-SECRET-5",)), {"x-grafana-alerting-signature": "ab" * 32}),
        ]
        for config, headers in cases:
            with self.subTest(type=config.type):
                auth = authenticator_for(config, clock=clock, replays=replays)
                assert auth is not None
                problem = refusal(self, auth, headers, b"{}")
                text = str(problem.to_json("req", "/webhook")) + str(problem.headers)
                for secret in (*self.SECRETS, "ab" * 32):
                    self.assertNotIn(secret, text)
