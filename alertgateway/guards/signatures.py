# -*- test-case-name: tests.unit.test_signatures -*-
"""
Webhook signature verification: Grafana's HMAC header and the
Standard Webhooks scheme, with timestamp tolerance and replay protection.

Grafana: header C{X-Grafana-Alerting-Signature} (name configurable) carries
the hex HMAC-SHA256 of the body, or of C{"<timestamp>:<body>"} when a
timestamp header is configured.

Standard Webhooks (standardwebhooks.com): C{webhook-id},
C{webhook-timestamp} and C{webhook-signature}, the latter a space-separated
list of C{v1,<base64 HMAC-SHA256>} over C{"<id>.<timestamp>.<body>"}, keyed
with the base64 secret after its C{whsec_} prefix.  Several signatures and
several secrets may be in use at once while a secret is rotated.

Every comparison is constant-time.  A message id (or a Grafana signature)
seen before within the tolerance is a replay.

What the headers alone tell (missing, malformed, a stale timestamp) is
checked by C{screen}, which needs no body: the web layer runs it before it
inflates a body to verify.

L{sign_grafana} and L{sign_standard} sign as the senders do, from the same
layout of the signed message as the verifiers (C{alertgateway send-test}
signs its sample with them).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence

import attrs
from twisted.internet.interfaces import IReactorTime

from alertgateway.guards.replays import ReplayCache

__all__ = [
    "GrafanaVerifier",
    "SignatureError",
    "StandardWebhooksVerifier",
    "Verified",
    "decode_standard_secret",
    "sign_grafana",
    "sign_standard",
    "which_equal",
]


class SignatureError(Exception):
    """
    The signature is missing, malformed, wrong, stale or replayed; the
    message says which, for the 401 problem's detail.
    """


@attrs.frozen
class Verified:
    """
    A signature that verified.

    @ivar secret: The index of the configured secret it was made with.
    @ivar replay_key: The key now remembered against replays.
    """

    secret: int
    replay_key: str


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def which_equal(given: bytes, candidates: Sequence[bytes]) -> int | None:
    """
    The index of the first candidate equal to C{given}, if any.
    """
    # Compare against every candidate so the time taken does not tell
    # which one matched.
    found = None
    for index, candidate in enumerate(candidates):
        if hmac.compare_digest(given, candidate) and found is None:
            found = index
    return found


def _grafana_message(body: bytes, timestamp: str | None) -> bytes:
    # The body, or "<timestamp>:<body>" when a timestamp header is used.
    return body if timestamp is None else f"{timestamp}:".encode() + body


def _standard_message(message_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{message_id}.{timestamp}.".encode() + body


def sign_grafana(secret: str, body: bytes, timestamp: str | None = None) -> str:
    """
    The value of Grafana's signature header for C{body}: the hex HMAC-SHA256
    with C{secret}, of C{"<timestamp>:<body>"} when a timestamp is sent.
    """
    return _hmac(secret.encode("utf-8"), _grafana_message(body, timestamp)).hex()


def sign_standard(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    """
    One C{v1,<base64>} signature of the C{webhook-signature} header.

    @raise ValueError: If C{secret} is not a Standard Webhooks secret.
    """
    digest = _hmac(decode_standard_secret(secret), _standard_message(message_id, timestamp, body))
    return "v1," + base64.b64encode(digest).decode("ascii")


# Unix seconds in ASCII digits; int() alone would also take signs,
# underscores and other scripts' digits, which no sender means.
_TIMESTAMP = re.compile(r"[0-9]{1,15}")


def _check_timestamp(raw: str | None, clock: IReactorTime, tolerance: float) -> tuple[str, int]:
    """
    @return: The timestamp as sent (it is part of the signed message) and
        its value.
    """
    if raw is None:
        raise SignatureError("the timestamp header is missing")
    text = raw.strip()
    if not _TIMESTAMP.fullmatch(text):
        raise SignatureError("the timestamp header is not an integer number of seconds")
    timestamp = int(text)
    if abs(clock.seconds() - timestamp) > tolerance:
        raise SignatureError("the timestamp is outside the allowed tolerance")
    return text, timestamp


class _Verifier:
    """
    What both schemes share: the checks of the headers alone.
    """

    def _signed(self, headers: dict[str, str]) -> object:
        """
        What the headers say is signed, refusing them if they cannot be.
        """
        raise NotImplementedError()

    def screen(self, headers: dict[str, str]) -> None:
        """
        @raise SignatureError: If the headers are missing, malformed or
            stale.
        """
        self._signed(headers)


class GrafanaVerifier(_Verifier):
    """
    Verify Grafana's C{X-Grafana-Alerting-Signature}.
    """

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        clock: IReactorTime,
        replays: ReplayCache,
        header: str = "X-Grafana-Alerting-Signature",
        timestamp_header: str | None = None,
        tolerance: float = 300.0,
    ) -> None:
        self._secrets = [s.encode("utf-8") for s in secrets]
        self._clock = clock
        self._replays = replays
        self.header = header
        self.timestamp_header = timestamp_header
        self._tolerance = tolerance

    def _signed(self, headers: dict[str, str]) -> tuple[bytes, bytes, int | None]:
        """
        The signature, what precedes the body in the signed message, and
        the timestamp (if one is configured).
        """
        given = headers.get(self.header.lower())
        if not given:
            raise SignatureError(f"the {self.header} header is missing")
        try:
            signature = bytes.fromhex(given.strip())
        except ValueError:
            raise SignatureError(f"the {self.header} header is not hex") from None
        if self.timestamp_header is None:
            return signature, b"", None
        text, timestamp = _check_timestamp(headers.get(self.timestamp_header.lower()), self._clock, self._tolerance)
        return signature, f"{text}:".encode(), timestamp

    def verify(self, headers: dict[str, str], body: bytes) -> Verified:
        """
        @param headers: Request headers with lower-cased names.
        @raise SignatureError: If the body is not signed by a configured secret.
        """
        signature, prefix, timestamp = self._signed(headers)
        message = prefix + body
        secret = which_equal(signature, [_hmac(secret, message) for secret in self._secrets])
        if secret is None:
            raise SignatureError("the signature does not match")
        # Keyed on the bytes: fromhex takes either case and spaces between
        # bytes, so the header's spelling could otherwise dodge the cache.
        key = "grafana:" + signature.hex()
        until = None if timestamp is None else timestamp + self._tolerance
        if not self._replays.check_and_remember(key, until):
            raise SignatureError("this signature was already used (replay)")
        return Verified(secret, key)


def decode_standard_secret(secret: str) -> bytes:
    """
    Decode a Standard Webhooks secret (C{whsec_<base64>}).

    @raise ValueError: If it is not one, or holds an empty key (an HMAC
        anyone can compute).
    """
    message = "a Standard Webhooks secret is 'whsec_' followed by base64"
    if not secret.startswith("whsec_"):
        raise ValueError(message)
    try:
        key = base64.b64decode(secret[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(message) from None
    if not key:
        raise ValueError(message)
    return key


class StandardWebhooksVerifier(_Verifier):
    """
    Verify the Standard Webhooks C{webhook-signature} header.
    """

    def __init__(
        self, secrets: Sequence[str], *, clock: IReactorTime, replays: ReplayCache, tolerance: float = 300.0
    ) -> None:
        self._keys = [decode_standard_secret(s) for s in secrets]
        self._clock = clock
        self._replays = replays
        self._tolerance = tolerance

    def _signed(self, headers: dict[str, str]) -> tuple[str, str, int, list[bytes]]:
        """
        The message id, the timestamp as sent and its value, and the v1
        signatures listed.
        """
        message_id = headers.get("webhook-id")
        raw_signatures = headers.get("webhook-signature")
        if not message_id or not raw_signatures:
            raise SignatureError("the webhook-id and webhook-signature headers are required")
        text, timestamp = _check_timestamp(headers.get("webhook-timestamp"), self._clock, self._tolerance)
        signatures = []
        for item in raw_signatures.split():
            version, _, value = item.partition(",")
            if version != "v1":
                continue
            try:
                signatures.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                continue
        if not signatures:
            raise SignatureError("no valid v1 signature for a configured secret")
        return message_id, text, timestamp, signatures

    def verify(self, headers: dict[str, str], body: bytes) -> Verified:
        """
        @param headers: Request headers with lower-cased names.
        @raise SignatureError: If no listed signature is valid for a
            configured secret, or the message is stale or replayed.
        """
        message_id, text, timestamp, signatures = self._signed(headers)
        signed = f"{message_id}.{text}.".encode() + body
        expected = [_hmac(key, signed) for key in self._keys]
        matches = [which_equal(given, expected) for given in signatures]
        found = [index for index in matches if index is not None]
        if not found:
            raise SignatureError("no valid v1 signature for a configured secret")
        key = "std:" + message_id
        if not self._replays.check_and_remember(key, timestamp + self._tolerance):
            raise SignatureError("this webhook-id was already delivered (replay)")
        return Verified(min(found), key)
