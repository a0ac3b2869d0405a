"""
Who may send webhooks: one authenticator per endpoint (BR-WH-004).

Types: C{bearer} (C{Authorization: Bearer <token>}), C{basic} (users and
passwords), C{api_key} (a header, C{X-API-Key} by default), C{hmac} (a body
signature, Grafana's or Standard Webhooks', see L{signatures}) and C{none}.
Each accepts several credentials at once so they can be rotated.  Every
comparison is constant-time and covers all configured credentials, so
timing tells neither the credential nor which one matched.

An authenticator raises a 401 L{alertgateway.web.problems.Problem} whose
challenge names its scheme; it never logs or echoes a credential.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Protocol

from twisted.internet.interfaces import IReactorTime

from alertgateway.config import AuthConfig
from alertgateway.guards.signatures import GrafanaVerifier, ReplayCache, SignatureError, StandardWebhooksVerifier
from alertgateway.web import problems

__all__ = [
    "APIKeyAuthenticator",
    "Authenticator",
    "BasicAuthenticator",
    "BearerAuthenticator",
    "SignatureAuthenticator",
    "make_authenticator",
]


class Authenticator(Protocol):
    """
    Checks one request's credentials.

    @ivar needs_body: Whether L{check} needs the raw body (signatures); the
        others are checked before the body is even looked at.
    """

    needs_body: bool

    def check(self, headers: Mapping[str, str], body: bytes | None) -> str | None:
        """
        @param headers: Request headers, names lower-cased.
        @return: For signatures, the replay key now remembered, to be
            forgotten if the request is not accepted after all.
        @raise alertgateway.web.problems.Problem: 401 if not authenticated.
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


class BearerAuthenticator:
    needs_body = False

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = _digests(tokens)

    def check(self, headers: Mapping[str, str], body: bytes | None) -> str | None:
        authorization = headers.get("authorization")
        if authorization is None:
            raise problems.unauthorized("This endpoint requires a bearer token in the Authorization header.")
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise problems.unauthorized("The Authorization header must be 'Bearer <token>'.", error="invalid_request")
        if not _matches(credential.strip().encode("utf-8"), self._tokens):
            raise problems.unauthorized("The bearer token is not valid.", error="invalid_token")
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
            raise problems.unauthorized("This endpoint requires HTTP Basic authentication.", challenge=self.challenge)
        try:
            pair = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise problems.unauthorized(
                "The Basic credentials are not valid base64.", challenge=self.challenge
            ) from None
        if not _matches(pair, self._pairs):
            raise problems.unauthorized("The user name or password is not valid.", challenge=self.challenge)
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
            raise problems.unauthorized(
                f"This endpoint requires an API key in {self.header}.", challenge=self.challenge
            )
        if not _matches(given.strip().encode("utf-8"), self._keys):
            raise problems.unauthorized("The API key is not valid.", challenge=self.challenge)
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
            raise problems.unauthorized(f"Signature verification failed: {e}.", challenge=self.challenge) from None


def make_authenticator(auth: AuthConfig, *, clock: IReactorTime, replays: ReplayCache) -> Authenticator | None:
    """
    The authenticator for an endpoint's (resolved) auth configuration, or
    C{None} for C{type: none}.
    """
    if auth.type == "bearer":
        return BearerAuthenticator(auth.credentials)
    if auth.type == "api_key":
        return APIKeyAuthenticator(auth.credentials, auth.header)
    if auth.type == "basic":
        return BasicAuthenticator(auth.basic_users)
    if auth.type == "hmac":
        verifier: GrafanaVerifier | StandardWebhooksVerifier
        if auth.scheme == "standard":
            verifier = StandardWebhooksVerifier(
                auth.signing_secrets, clock=clock, replays=replays, tolerance=auth.tolerance
            )
        else:
            verifier = GrafanaVerifier(
                auth.signing_secrets,
                clock=clock,
                replays=replays,
                header=auth.signature_header,
                timestamp_header=auth.timestamp_header,
                tolerance=auth.tolerance,
            )
        return SignatureAuthenticator(verifier)
    if auth.type == "none":
        return None
    # The configuration only offers the types above; anything else must not
    # quietly become "no authentication".
    raise ValueError(f"unknown authentication type {auth.type!r}")
