# -*- test-case-name: tests.unit.test_auth -*-
"""
Who may send webhooks: one authenticator per endpoint.

Types: C{bearer} (C{Authorization: Bearer <token>}), C{basic} (users and
passwords), C{api_key} (a header, C{X-API-Key} by default), C{hmac} (a body
signature, Grafana's or Standard Webhooks', see L{signatures}) and C{none}.
Each accepts several credentials at once so they can be rotated.  Every
comparison is constant-time and covers all configured credentials, so
timing tells neither the credential nor which one matched.

An authenticator raises L{Refused} with the challenge of its scheme (the
web layer answers 401 with it); it never logs or echoes a credential.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Protocol

from alertgateway.guards.errors import Reason, Refused
from alertgateway.guards.signatures import GrafanaVerifier, SignatureError, StandardWebhooksVerifier

__all__ = [
    "APIKeyAuthenticator",
    "Authenticator",
    "BasicAuthenticator",
    "BearerAuthenticator",
    "SignatureAuthenticator",
]


class Authenticator(Protocol):
    """
    Checks one request's credentials.

    @ivar needs_body: Whether L{check} needs the raw body (signatures); the
        others are checked before the body is even looked at.
    """

    needs_body: bool

    @property
    def challenge(self) -> str:
        """
        The C{WWW-Authenticate} challenge of its scheme.
        """

    def check(self, headers: Mapping[str, str], body: bytes | None) -> str | None:
        """
        @param headers: Request headers, names lower-cased.
        @return: For signatures, the replay key now remembered, to be
            forgotten if the request is not accepted after all.
        @raise Refused: If not authenticated.
        """


def _matches(given: bytes, accepted: Sequence[bytes]) -> bool:
    # Hash first so that compare_digest sees equal lengths whatever was sent.
    digest = hashlib.sha256(given).digest()
    matched = False
    for candidate in accepted:
        matched |= hmac.compare_digest(digest, candidate)
    return matched


def _digests(values: Sequence[str]) -> list[bytes]:
    return [hashlib.sha256(v.encode("utf-8")).digest() for v in values if v]


def _bearer(detail: str, error: str | None = None) -> Refused:
    challenge = BearerAuthenticator.challenge
    if error is not None:
        challenge += f', error="{error}"'
    return Refused(Reason.AUTH, detail, challenge=challenge)


def _refused(detail: str, challenge: str) -> Refused:
    return Refused(Reason.AUTH, detail, challenge=challenge)


class BearerAuthenticator:
    needs_body = False
    challenge = 'Bearer realm="alertgateway"'

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = _digests(tokens)

    def check(self, headers: Mapping[str, str], body: bytes | None) -> str | None:
        authorization = headers.get("authorization")
        if authorization is None:
            raise _bearer("This endpoint requires a bearer token in the Authorization header.")
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise _bearer("The Authorization header must be 'Bearer <token>'.", "invalid_request")
        if not _matches(credential.strip().encode("utf-8"), self._tokens):
            raise _bearer("The bearer token is not valid.", "invalid_token")
        return None


class BasicAuthenticator:
    needs_body = False
    challenge = 'Basic realm="alertgateway", charset="UTF-8"'

    def __init__(self, users: Sequence[tuple[str, str]]) -> None:
        self._pairs = _digests([f"{user}:{password}" for user, password in users])

    def check(self, headers: Mapping[str, str], body: bytes | None) -> str | None:
        authorization = headers.get("authorization")
        scheme, _, encoded = (authorization or "").strip().partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise _refused("This endpoint requires HTTP Basic authentication.", self.challenge)
        try:
            pair = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise _refused("The Basic credentials are not valid base64.", self.challenge) from None
        if not _matches(pair, self._pairs):
            raise _refused("The user name or password is not valid.", self.challenge)
        return None


class APIKeyAuthenticator:
    needs_body = False

    def __init__(self, keys: Sequence[str], header: str = "X-API-Key") -> None:
        self._keys = _digests(keys)
        self.header = header

    @property
    def challenge(self) -> str:
        return f'APIKey realm="alertgateway", header="{self.header}"'

    def check(self, headers: Mapping[str, str], body: bytes | None) -> str | None:
        given = headers.get(self.header.lower())
        if not given:
            raise _refused(f"This endpoint requires an API key in {self.header}.", self.challenge)
        if not _matches(given.strip().encode("utf-8"), self._keys):
            raise _refused("The API key is not valid.", self.challenge)
        return None


class SignatureAuthenticator:
    needs_body = True
    challenge = 'Signature realm="alertgateway"'

    def __init__(self, verifier: GrafanaVerifier | StandardWebhooksVerifier) -> None:
        self._verifier = verifier

    def check(self, headers: Mapping[str, str], body: bytes | None) -> str | None:
        try:
            return self._verifier.verify(dict(headers), body or b"")
        except SignatureError as e:
            raise Refused(Reason.SIGNATURE, f"Signature verification failed: {e}.", challenge=self.challenge) from None
