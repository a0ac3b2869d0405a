"""
Tests for L{alertgateway.guards.signatures}: Grafana's HMAC header, the
Standard Webhooks scheme, timestamp tolerance and replay protection, with
time driven by a L{Clock}.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from twisted.internet.task import Clock, LoopingCall
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.guards.replays import ReplayCache
from alertgateway.guards.signatures import (
    GrafanaVerifier,
    SignatureError,
    StandardWebhooksVerifier,
    Verified,
    decode_standard_secret,
    sign_grafana,
    sign_standard,
    which_equal,
)

# The example of the Standard Webhooks specification
# (github.com/standard-webhooks/standard-webhooks, spec/standard-webhooks.md).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

OTHER_SECRET = "whsec_" + base64.b64encode(b"another key of thirty-two bytes!").decode()
TOLERANCE = 300.0


def clock_at(seconds: float) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock


def standard_signature(secret: str, message_id: str, timestamp: int | str, body: bytes) -> str:
    """
    Sign as the specification says, written apart from the code under test.
    """
    key = base64.b64decode(secret[len("whsec_") :])
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def grafana_signature(secret: str, body: bytes, timestamp: int | None = None) -> str:
    message = body if timestamp is None else f"{timestamp}:".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def standard_headers(
    message_id: str = SPEC_ID, timestamp: int | str = SPEC_TIMESTAMP, signature: str = SPEC_SIGNATURE
) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


class StandardWebhooksTests(SynchronousTestCase):
    """
    L{StandardWebhooksVerifier.verify} against the specification's example
    and variations of it.
    """

    def setUp(self) -> None:
        self.clock = clock_at(SPEC_TIMESTAMP)
        self.replays = ReplayCache(self.clock, ttl=TOLERANCE)

    def verifier(self, secrets: list[str] | None = None, tolerance: float = TOLERANCE) -> StandardWebhooksVerifier:
        return StandardWebhooksVerifier(
            [SPEC_SECRET] if secrets is None else secrets, clock=self.clock, replays=self.replays, tolerance=tolerance
        )

    def refusal(self, verifier: StandardWebhooksVerifier, headers: dict[str, str], body: bytes = SPEC_BODY) -> str:
        error = self.assertRaises(SignatureError, verifier.verify, headers, body)
        return str(error)

    def test_published_vector(self) -> None:
        """
        The specification's example message is accepted at its own time:
        the signed content, the secret's decoding and the header format are
        the specification's.
        """
        self.verifier().verify(standard_headers(), SPEC_BODY)

    def test_body_changed(self) -> None:
        """
        The example with one byte of the body changed is refused.
        """
        message = self.refusal(self.verifier(), standard_headers(), b'{"test": 2432232315}')
        self.assertEqual(message, "no valid v1 signature for a configured secret")

    def test_id_and_timestamp_signed(self) -> None:
        """
        The message id and the timestamp are part of what is signed: the
        example's signature does not cover another id or time.
        """
        verifier = self.verifier()
        self.refusal(verifier, standard_headers(message_id="msg_other"))
        self.refusal(verifier, standard_headers(timestamp=SPEC_TIMESTAMP + 1))

    def test_several_signatures(self) -> None:
        """
        Any one valid v1 signature among several is enough: senders list the
        signatures of the old and the new secret during a rotation; other
        versions and malformed entries are skipped, not fatal.
        """
        stranger = standard_signature(OTHER_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
        header = f"v1,bm90IHRoaXM= {stranger} v1a,xyz v1,!!notbase64!! {SPEC_SIGNATURE}"
        self.verifier().verify(standard_headers(signature=header), SPEC_BODY)

    def test_other_versions_ignored(self) -> None:
        """
        A correct digest under another version tag is not a v1 signature.
        """
        digest = SPEC_SIGNATURE.split(",", 1)[1]
        self.refusal(self.verifier(), standard_headers(signature=f"v2,{digest} {digest}"))

    def test_several_secrets(self) -> None:
        """
        A message signed with any configured secret is accepted, whatever
        its place in the list (rotation on the receiving side), and names
        that place (the sender's rate bucket) and its replay key.
        """
        for position in range(2):
            with self.subTest(position=position):
                secrets = [OTHER_SECRET, OTHER_SECRET]
                secrets[position] = SPEC_SECRET
                message_id = f"msg_{position}"
                signature = standard_signature(SPEC_SECRET, message_id, SPEC_TIMESTAMP, SPEC_BODY)
                verified = self.verifier(secrets).verify(standard_headers(message_id, signature=signature), SPEC_BODY)
                self.assertEqual(verified, Verified(position, f"std:{message_id}"))

    def test_screen(self) -> None:
        """
        screen refuses, without a body, what the headers alone show cannot
        verify (missing, stale, no well-formed v1 signature), with
        verify's reasons, and lets a forged but well-formed one through to
        verify.
        """
        verifier = self.verifier()
        cases = {
            "the webhook-id and webhook-signature headers are required": {"webhook-timestamp": str(SPEC_TIMESTAMP)},
            "the timestamp is outside the allowed tolerance": standard_headers(timestamp=SPEC_TIMESTAMP - 301),
            "no valid v1 signature for a configured secret": standard_headers(signature="v2,abc v1,!!"),
        }
        for reason, headers in cases.items():
            with self.subTest(reason=reason):
                self.assertEqual(str(self.assertRaises(SignatureError, verifier.screen, headers)), reason)
                self.assertEqual(self.refusal(verifier, headers), reason)
        verifier.screen(standard_headers(signature="v1,Zm9yZ2Vk"))
        self.assertEqual(len(self.replays), 0)

    def test_no_secret(self) -> None:
        """
        Without a configured secret nothing is accepted.
        """
        self.refusal(self.verifier([]), standard_headers())

    def test_tolerance(self) -> None:
        """
        A timestamp up to the tolerance away, in either direction, is
        accepted; a second more is refused as stale or from the future.
        """
        cases = [(TOLERANCE, True), (TOLERANCE + 1, False), (-TOLERANCE, True), (-TOLERANCE - 1, False)]
        for index, (offset, accepted) in enumerate(cases):
            with self.subTest(offset=offset):
                clock = clock_at(SPEC_TIMESTAMP + offset)
                verifier = StandardWebhooksVerifier(
                    [SPEC_SECRET], clock=clock, replays=ReplayCache(clock, ttl=TOLERANCE)
                )
                message_id = f"msg_{index}"
                signature = standard_signature(SPEC_SECRET, message_id, SPEC_TIMESTAMP, SPEC_BODY)
                headers = standard_headers(message_id, signature=signature)
                if accepted:
                    verifier.verify(headers, SPEC_BODY)
                else:
                    error = self.assertRaises(SignatureError, verifier.verify, headers, SPEC_BODY)
                    self.assertEqual(str(error), "the timestamp is outside the allowed tolerance")

    def test_tolerance_configurable(self) -> None:
        """
        The tolerance is the verifier's: 60 seconds refuses a message 61
        seconds old that the default would take.
        """
        self.clock.advance(61)
        message = self.refusal(self.verifier(tolerance=60.0), standard_headers())
        self.assertEqual(message, "the timestamp is outside the allowed tolerance")

    def test_missing_headers(self) -> None:
        """
        Each of the three headers is required.
        """
        verifier = self.verifier()
        for name in ("webhook-id", "webhook-signature"):
            with self.subTest(name=name):
                headers = standard_headers()
                del headers[name]
                self.assertEqual(
                    self.refusal(verifier, headers), "the webhook-id and webhook-signature headers are required"
                )
        headers = standard_headers()
        del headers["webhook-timestamp"]
        self.assertEqual(self.refusal(verifier, headers), "the timestamp header is missing")

    def test_bad_timestamps(self) -> None:
        """
        A timestamp must be plain ASCII digits: signs, fractions,
        underscores, other scripts' digits and dates are refused, even
        where Python's int() would read them.
        """
        for value in ("", "abc", "+1614265330", "1614265330.0", "1_614_265_330", "\u0661\u0662", "2021-02-25", "-1"):
            with self.subTest(value=value):
                self.assertEqual(
                    self.refusal(self.verifier(), standard_headers(timestamp=value)),
                    "the timestamp header is not an integer number of seconds",
                )

    def test_timestamp_as_sent(self) -> None:
        """
        Blanks around the timestamp are tolerated; the signed content has
        the digits as sent.
        """
        self.verifier().verify(standard_headers(timestamp=f" {SPEC_TIMESTAMP} "), SPEC_BODY)

    def test_replay(self) -> None:
        """
        The same webhook-id is refused a second time, even with a correct
        signature; another id with the same body is not a replay.
        """
        verifier = self.verifier()
        verifier.verify(standard_headers(), SPEC_BODY)
        self.assertEqual(self.refusal(verifier, standard_headers()), "this webhook-id was already delivered (replay)")
        signature = standard_signature(SPEC_SECRET, "msg_next", SPEC_TIMESTAMP, SPEC_BODY)
        verifier.verify(standard_headers("msg_next", signature=signature), SPEC_BODY)

    def test_replay_refused_while_acceptable(self) -> None:
        """
        A message first delivered early in its window (the sender's clock
        ahead by the whole tolerance) is still remembered at the last moment
        its timestamp is acceptable, though that is twice the tolerance
        later; past it, the timestamp refuses it.
        """
        early = clock_at(SPEC_TIMESTAMP - TOLERANCE)
        replays = ReplayCache(early, ttl=TOLERANCE)
        pruning = pruned(replays, early)
        verifier = StandardWebhooksVerifier([SPEC_SECRET], clock=early, replays=replays)
        verifier.verify(standard_headers(), SPEC_BODY)
        for _ in range(20):
            early.advance(2 * TOLERANCE / 20)
            error = self.assertRaises(SignatureError, verifier.verify, standard_headers(), SPEC_BODY)
            self.assertEqual(str(error), "this webhook-id was already delivered (replay)", early.seconds())
        early.advance(1)
        error = self.assertRaises(SignatureError, verifier.verify, standard_headers(), SPEC_BODY)
        self.assertEqual(str(error), "the timestamp is outside the allowed tolerance")
        early.advance(30)
        self.assertEqual(len(replays), 0)
        pruning.stop()

    def test_refused_messages_not_remembered(self) -> None:
        """
        Only verified messages are remembered: a forged signature does not
        burn the id of the genuine message that follows.
        """
        verifier = self.verifier()
        self.refusal(verifier, standard_headers(signature="v1,Zm9yZ2Vk"))
        self.assertEqual(len(self.replays), 0)
        verifier.verify(standard_headers(), SPEC_BODY)

    def test_errors_hold_no_secret(self) -> None:
        """
        No refusal message quotes the secret or a signature.
        """
        verifier = self.verifier()
        for headers in (standard_headers(), standard_headers(signature="v1,Zm9yZ2Vk")):
            message = self.refusal(verifier, headers, b"{}")
            for secret in (SPEC_SECRET, SPEC_SECRET[len("whsec_") :], "Zm9yZ2Vk", SPEC_SIGNATURE[3:]):
                self.assertNotIn(secret, message)


class DecodeSecretTests(SynchronousTestCase):
    def test_decoded(self) -> None:
        """
        The key is the base64 after the C{whsec_} prefix.
        """
        self.assertEqual(decode_standard_secret("whsec_" + base64.b64encode(b"k3y").decode()), b"k3y")

    def test_refused(self) -> None:
        """
        A secret without the prefix, with invalid base64, or with an empty
        key (an HMAC anyone can compute) is refused without quoting it.
        """
        for secret in ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_abc", "whsec_", "whsec"):
            with self.subTest(secret=secret):
                error = self.assertRaises(ValueError, decode_standard_secret, secret)
                self.assertEqual(str(error), "a Standard Webhooks secret is 'whsec_' followed by base64")

    def test_verifier_refuses_bad_secret(self) -> None:
        """
        A verifier cannot be made with a secret that is not one.
        """
        clock = Clock()
        self.assertRaises(
            ValueError, StandardWebhooksVerifier, ["whsec_"], clock=clock, replays=ReplayCache(clock, ttl=1)
        )


class GrafanaTests(SynchronousTestCase):
    """
    L{GrafanaVerifier.verify}: a hex HMAC-SHA256 of the body, or of
    C{"<timestamp>:<body>"} with a timestamp header.
    """

    BODY = b'{"receiver":"gw","status":"firing","alerts":[]}'
    SECRET = "grafana-s3cret"
    NOW = 1795664989

    def setUp(self) -> None:
        self.clock = clock_at(self.NOW)
        self.replays = ReplayCache(self.clock, ttl=TOLERANCE)

    def verifier(
        self,
        secrets: list[str] | None = None,
        header: str = "X-Grafana-Alerting-Signature",
        timestamp: str | None = None,
    ) -> GrafanaVerifier:
        return GrafanaVerifier(
            [self.SECRET] if secrets is None else secrets,
            clock=self.clock,
            replays=self.replays,
            header=header,
            timestamp_header=timestamp,
        )

    def refusal(self, verifier: GrafanaVerifier, headers: dict[str, str], body: bytes = BODY) -> str:
        return str(self.assertRaises(SignatureError, verifier.verify, headers, body))

    def test_body(self) -> None:
        """
        The hex HMAC of the body under the secret is accepted, in either
        case of hex digits.
        """
        signature = grafana_signature(self.SECRET, self.BODY)
        self.verifier().verify({"x-grafana-alerting-signature": signature}, self.BODY)
        other = b'{"status":"resolved"}'
        self.verifier().verify({"x-grafana-alerting-signature": grafana_signature(self.SECRET, other).upper()}, other)

    def test_wrong(self) -> None:
        """
        A signature of another body or under another secret is refused.
        """
        verifier = self.verifier()
        for signature in (grafana_signature(self.SECRET, b"{}"), grafana_signature("other", self.BODY)):
            with self.subTest(signature=signature):
                self.assertEqual(
                    self.refusal(verifier, {"x-grafana-alerting-signature": signature}),
                    "the signature does not match",
                )

    def test_malformed(self) -> None:
        """
        A missing, empty or non-hex header is refused, naming the header.
        """
        verifier = self.verifier()
        self.assertEqual(self.refusal(verifier, {}), "the X-Grafana-Alerting-Signature header is missing")
        self.assertEqual(
            self.refusal(verifier, {"x-grafana-alerting-signature": ""}),
            "the X-Grafana-Alerting-Signature header is missing",
        )
        for value in ("zz", "abc", "sha256=00"):
            with self.subTest(value=value):
                self.assertEqual(
                    self.refusal(verifier, {"x-grafana-alerting-signature": value}),
                    "the X-Grafana-Alerting-Signature header is not hex",
                )
        self.assertEqual(
            self.refusal(verifier, {"x-grafana-alerting-signature": "00" * 32}), "the signature does not match"
        )

    def test_header_name(self) -> None:
        """
        The header name is configurable (and matched without regard to
        case); the default header is then not looked at.
        """
        signature = grafana_signature(self.SECRET, self.BODY)
        verifier = self.verifier(header="X-Hub-Signature")
        verifier.verify({"x-hub-signature": signature}, self.BODY)
        self.assertEqual(
            self.refusal(verifier, {"x-grafana-alerting-signature": signature}),
            "the X-Hub-Signature header is missing",
        )

    def test_rotation(self) -> None:
        """
        A body signed with any configured secret is accepted, whatever its
        place in the list, and names that place.
        """
        for position in range(3):
            with self.subTest(position=position):
                secrets = ["old-1", "old-2", "old-3"]
                secrets[position] = self.SECRET
                body = b'{"n":%d}' % position
                verified = self.verifier(secrets).verify(
                    {"x-grafana-alerting-signature": grafana_signature(self.SECRET, body)}, body
                )
                self.assertEqual(verified.secret, position)

    def test_screen(self) -> None:
        """
        screen refuses, without a body, a missing or non-hex signature and
        a missing or stale timestamp, and remembers nothing.
        """
        now = int(self.clock.seconds())
        verifier = self.verifier(timestamp="X-Time")
        cases = {
            "the X-Grafana-Alerting-Signature header is missing": {"x-time": str(now)},
            "the X-Grafana-Alerting-Signature header is not hex": {"x-grafana-alerting-signature": "zz"},
            "the timestamp header is missing": {"x-grafana-alerting-signature": "ab"},
            "the timestamp is outside the allowed tolerance": {
                "x-grafana-alerting-signature": "ab",
                "x-time": str(now - 301),
            },
        }
        for reason, headers in cases.items():
            with self.subTest(reason=reason):
                self.assertEqual(str(self.assertRaises(SignatureError, verifier.screen, headers)), reason)
        verifier.screen({"x-grafana-alerting-signature": "ab", "x-time": str(now)})
        self.assertEqual(len(self.replays), 0)

    def test_timestamp(self) -> None:
        """
        With a timestamp header the signature covers C{"<timestamp>:<body>"};
        a signature of the body alone is then refused.
        """
        verifier = self.verifier(timestamp="X-Grafana-Alerting-Timestamp")
        headers = {
            "x-grafana-alerting-timestamp": str(self.NOW),
            "x-grafana-alerting-signature": grafana_signature(self.SECRET, self.BODY, self.NOW),
        }
        verifier.verify(headers, self.BODY)
        headers["x-grafana-alerting-signature"] = grafana_signature(self.SECRET, self.BODY)
        self.assertEqual(self.refusal(verifier, headers), "the signature does not match")

    def test_timestamp_checked(self) -> None:
        """
        With a timestamp header configured, a missing, malformed, stale or
        future timestamp is refused, even when correctly signed.
        """
        verifier = self.verifier(timestamp="X-Grafana-Alerting-Timestamp")
        cases: list[tuple[str | None, str]] = [
            (None, "the timestamp header is missing"),
            ("soon", "the timestamp header is not an integer number of seconds"),
            (str(self.NOW - 301), "the timestamp is outside the allowed tolerance"),
            (str(self.NOW + 301), "the timestamp is outside the allowed tolerance"),
        ]
        for timestamp, message in cases:
            with self.subTest(timestamp=timestamp):
                headers = {"x-grafana-alerting-signature": grafana_signature(self.SECRET, self.BODY, 0)}
                if timestamp is not None:
                    headers["x-grafana-alerting-timestamp"] = timestamp
                    if timestamp.isdigit():
                        headers["x-grafana-alerting-signature"] = grafana_signature(
                            self.SECRET, self.BODY, int(timestamp)
                        )
                self.assertEqual(self.refusal(verifier, headers), message)

    def test_replay(self) -> None:
        """
        A signature seen before is refused, however its hex is spelt
        (upper case, blanks between bytes).
        """
        verifier = self.verifier()
        signature = grafana_signature(self.SECRET, self.BODY)
        verifier.verify({"x-grafana-alerting-signature": signature}, self.BODY)
        spaced = " ".join(signature[i : i + 2] for i in range(0, len(signature), 2))
        for spelling in (signature, signature.upper(), spaced):
            with self.subTest(spelling=spelling):
                self.assertEqual(
                    self.refusal(verifier, {"x-grafana-alerting-signature": spelling}),
                    "this signature was already used (replay)",
                )

    def test_replay_forgotten(self) -> None:
        """
        Without a timestamp, a signature is remembered for the cache's time
        to live; once the periodic pruning has forgotten it, the same body
        is accepted again (Grafana may legitimately send it again later).
        """
        pruning = pruned(self.replays, self.clock)
        verifier = self.verifier()
        headers = {"x-grafana-alerting-signature": grafana_signature(self.SECRET, self.BODY)}
        verifier.verify(headers, self.BODY)
        self.clock.advance(TOLERANCE)
        self.assertEqual(self.refusal(verifier, headers), "this signature was already used (replay)")
        self.clock.advance(30)
        self.assertEqual(len(self.replays), 0)
        verifier.verify(headers, self.BODY)
        pruning.stop()

    def test_replay_with_timestamp(self) -> None:
        """
        With a timestamp, a signature is remembered until its timestamp
        leaves the tolerance, after which the timestamp refuses it.
        """
        verifier = self.verifier(timestamp="X-Grafana-Alerting-Timestamp")
        headers = {
            "x-grafana-alerting-timestamp": str(self.NOW),
            "x-grafana-alerting-signature": grafana_signature(self.SECRET, self.BODY, self.NOW),
        }
        verifier.verify(headers, self.BODY)
        self.clock.advance(TOLERANCE)
        self.assertEqual(self.refusal(verifier, headers), "this signature was already used (replay)")
        self.clock.advance(1)
        self.assertEqual(self.refusal(verifier, headers), "the timestamp is outside the allowed tolerance")


def pruned(cache: ReplayCache, clock: Clock, interval: float = 30.0) -> LoopingCall:
    """
    Prune C{cache} every C{interval} on C{clock}, as the service does.
    """
    pruning = LoopingCall(cache.prune)
    pruning.clock = clock
    pruning.start(interval, now=False)
    return pruning


class WhichEqualTests(SynchronousTestCase):
    def test_first_equal(self) -> None:
        """
        which_equal names the first candidate equal to the value, or none.
        """
        self.assertEqual(which_equal(b"b", [b"a", b"b", b"b"]), 1)
        self.assertIsNone(which_equal(b"c", [b"a", b"b"]))
        self.assertIsNone(which_equal(b"a", []))


class ReplayCacheTests(SynchronousTestCase):
    """
    L{ReplayCache}: remembering keys, pruning them on a L{Clock}, and its
    bound.
    """

    def test_remember(self) -> None:
        """
        A key is new once, then remembered up to and including its time to
        live, and new again after it.
        """
        clock = Clock()
        cache = ReplayCache(clock, ttl=10.0)
        self.assertTrue(cache.check_and_remember("a"))
        clock.advance(10)
        self.assertFalse(cache.check_and_remember("a"))
        clock.advance(0.5)
        self.assertTrue(cache.check_and_remember("a"))
        self.assertFalse(cache.check_and_remember("a"))

    def test_until(self) -> None:
        """
        A caller may say until when a key is to be remembered, overriding
        the time to live.
        """
        clock = Clock()
        cache = ReplayCache(clock, ttl=10.0)
        self.assertTrue(cache.check_and_remember("a", until=100.0))
        clock.advance(100)
        self.assertFalse(cache.check_and_remember("a"))
        clock.advance(1)
        self.assertTrue(cache.check_and_remember("a"))

    def test_pruned(self) -> None:
        """
        Pruning forgets expired keys, each by its own expiry (not by the
        order they came in); until it runs, expired keys stay (but do not
        refuse their message).
        """
        clock = Clock()
        cache = ReplayCache(clock, ttl=10.0)
        cache.check_and_remember("long", until=100.0)
        cache.check_and_remember("short")
        clock.advance(15)
        self.assertEqual(len(cache), 2)
        cache.prune()
        self.assertEqual(len(cache), 1)
        self.assertFalse(cache.check_and_remember("long"))
        clock.advance(200)
        self.assertEqual(len(cache), 1)
        cache.prune()
        self.assertEqual(len(cache), 0)

    def test_bounded(self) -> None:
        """
        Past C{max_entries} the least recently remembered key is forgotten
        first, so memory stays bounded under a flood of valid messages.
        """
        clock = Clock()
        cache = ReplayCache(clock, ttl=60.0, max_entries=2)
        for key in ("a", "b", "c"):
            self.assertTrue(cache.check_and_remember(key))
        self.assertEqual(len(cache), 2)
        self.assertFalse(cache.check_and_remember("c"))
        self.assertFalse(cache.check_and_remember("b"))
        self.assertTrue(cache.check_and_remember("a"))
        self.assertEqual(len(cache), 2)


class SigningTests(SynchronousTestCase):
    """
    L{sign_grafana} and L{sign_standard}: signing as the senders do.
    """

    def test_standard_published_vector(self) -> None:
        """
        The specification's example is signed as the specification says.
        """
        self.assertEqual(sign_standard(SPEC_SECRET, SPEC_ID, str(SPEC_TIMESTAMP), SPEC_BODY), SPEC_SIGNATURE)

    def test_standard_refuses_bad_secret(self) -> None:
        """
        A secret that is not whsec_ and base64 cannot sign.
        """
        self.assertRaises(ValueError, sign_standard, "not-a-secret", SPEC_ID, "1", SPEC_BODY)

    def test_grafana(self) -> None:
        """
        Grafana's signature is the hex HMAC of the body, or of
        "<timestamp>:<body>" with a timestamp; each is accepted by a
        verifier configured the same way and by no other.
        """
        body = b'{"alerts":[]}'
        self.assertEqual(sign_grafana("s3cret", body), grafana_signature("s3cret", body))
        self.assertEqual(sign_grafana("s3cret", body, "1700000000"), grafana_signature("s3cret", body, 1700000000))
        clock = clock_at(1700000000)
        plain = GrafanaVerifier(["s3cret"], clock=clock, replays=ReplayCache(clock, ttl=TOLERANCE))
        stamped = GrafanaVerifier(
            ["s3cret"],
            clock=clock,
            replays=ReplayCache(clock, ttl=TOLERANCE),
            timestamp_header="X-Grafana-Alerting-Timestamp",
        )
        plain.verify({"x-grafana-alerting-signature": sign_grafana("s3cret", body)}, body)
        headers = {
            "x-grafana-alerting-signature": sign_grafana("s3cret", body, "1700000000"),
            "x-grafana-alerting-timestamp": "1700000000",
        }
        stamped.verify(headers, body)
        self.assertRaises(SignatureError, plain.verify, headers, body)
