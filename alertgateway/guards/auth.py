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
web layer answers 401 with it); it never logs or echoes a credential.  What
it passes it names by a L{Credential}: the identity its rate buckets are
kept under (the place of the token, key or signing secret in the
configured list, or the user name, within the C{scope} the credentials
were configured in), never anything of the credential.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs

from alertgateway.guards.errors import Reason, Refused
from alertgateway.guards.signatures import GrafanaVerifier, SignatureError, StandardWebhooksVerifier, which_equal

__all__ = [
    "APIKeyAuthenticator",
    "Authenticator",
    "BasicAuthenticator",
    "BearerAuthenticator",
    "Credential",
    "SignatureAuthenticator",
]


@attrs.frozen
class Credential:
    """
    Who a request was authenticated as.

    @ivar identity: The sender, for its own rate bucket: C{token:},
        C{key:} or C{hmac:}, the authenticator's scope and the index of the
        credential that matched in the configured list (C{token:
        webhook.auth#1}), or C{user:}, the scope and the Basic user name.
    @ivar replay_key: For signatures, the replay key now remembered, to be
        forgotten if the request is not accepted after all.
    """

    identity: str
    replay_key: str | None = None


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

    def screen(self, headers: Mapping[str, str]) -> None:
        """
        Refuse what the headers alone show cannot pass L{check}, before a
        body is inflated for it (a signature's missing headers, a stale
        timestamp).

        @raise Refused: If not.
        """

    def check(self, headers: Mapping[str, str], body: bytes | None) -> Credential:
        """
        @param headers: Request headers, names lower-cased.
        @param body: The raw (inflated) body if L{needs_body}.
        @raise Refused: If not authenticated.
        """


def _matching(given: bytes, accepted: Sequence[bytes]) -> int | None:
    """
    Where C{given} is among the C{accepted} digests, if it is.
    """
    # Hash first so that compare_digest sees equal lengths whatever was sent.
    return which_equal(hashlib.sha256(given).digest(), accepted)


def _digests(values: Sequence[str]) -> list[bytes]:
    return [hashlib.sha256(v.encode("utf-8")).digest() for v in values if v]


class _Scoped:
    """
    An authenticator's credentials are one list of a configuration, named
    by C{scope} (C{webhook.auth}, or an endpoint's path for its own): two
    lists' first tokens are two senders.
    """

    def __init__(self, scope: str) -> None:
        self._scope = scope

    def _identity(self, kind: str, which: int | str) -> str:
        return f"{kind}:{self._scope}#{which}"


class _HeaderCredentials(_Scoped):
    """
    What the authenticators of header credentials share: all is checked
    by C{check}, nothing needs a body.
    """

    needs_body = False

    def screen(self, headers: Mapping[str, str]) -> None:
        pass


def _bearer(detail: str, error: str | None = None) -> Refused:
    challenge = BearerAuthenticator.challenge
    if error is not None:
        challenge += f', error="{error}"'
    return Refused(Reason.AUTH, detail, challenge=challenge)


def _refused(detail: str, challenge: str) -> Refused:
    return Refused(Reason.AUTH, detail, challenge=challenge)


class BearerAuthenticator(_HeaderCredentials):
    challenge = 'Bearer realm="alertgateway"'

    def __init__(self, tokens: Sequence[str], *, scope: str = "webhook.auth") -> None:
        super().__init__(scope)
        self._tokens = _digests(tokens)

    def check(self, headers: Mapping[str, str], body: bytes | None) -> Credential:
        authorization = headers.get("authorization")
        if authorization is None:
            raise _bearer("This endpoint requires a bearer token in the Authorization header.")
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise _bearer("The Authorization header must be 'Bearer <token>'.", "invalid_request")
        matched = _matching(credential.strip().encode("utf-8"), self._tokens)
        if matched is None:
            raise _bearer("The bearer token is not valid.", "invalid_token")
        return Credential(self._identity("token", matched))


class BasicAuthenticator(_HeaderCredentials):
    challenge = 'Basic realm="alertgateway", charset="UTF-8"'

    def __init__(self, users: Sequence[tuple[str, str]], *, scope: str = "webhook.auth") -> None:
        super().__init__(scope)
        self._pairs = _digests([f"{user}:{password}" for user, password in users])

    def check(self, headers: Mapping[str, str], body: bytes | None) -> Credential:
        authorization = headers.get("authorization")
        scheme, _, encoded = (authorization or "").strip().partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise _refused("This endpoint requires HTTP Basic authentication.", self.challenge)
        try:
            pair = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise _refused("The Basic credentials are not valid base64.", self.challenge) from None
        if _matching(pair, self._pairs) is None:
            raise _refused("The user name or password is not valid.", self.challenge)
        # A configured user's name (it matched), which is no secret.
        return Credential(self._identity("user", pair.partition(b":")[0].decode("utf-8", "replace")))


class APIKeyAuthenticator(_HeaderCredentials):
    def __init__(self, keys: Sequence[str], header: str = "X-API-Key", *, scope: str = "webhook.auth") -> None:
        super().__init__(scope)
        self._keys = _digests(keys)
        self.header = header

    @property
    def challenge(self) -> str:
        return f'APIKey realm="alertgateway", header="{self.header}"'

    def check(self, headers: Mapping[str, str], body: bytes | None) -> Credential:
        given = headers.get(self.header.lower())
        if not given:
            raise _refused(f"This endpoint requires an API key in {self.header}.", self.challenge)
        matched = _matching(given.strip().encode("utf-8"), self._keys)
        if matched is None:
            raise _refused("The API key is not valid.", self.challenge)
        return Credential(self._identity("key", matched))


class SignatureAuthenticator(_Scoped):
    needs_body = True
    challenge = 'Signature realm="alertgateway"'

    def __init__(self, verifier: GrafanaVerifier | StandardWebhooksVerifier, *, scope: str = "webhook.auth") -> None:
        super().__init__(scope)
        self._verifier = verifier

    def _refused(self, error: SignatureError) -> Refused:
        return Refused(Reason.SIGNATURE, f"Signature verification failed: {error}.", challenge=self.challenge)

    def screen(self, headers: Mapping[str, str]) -> None:
        try:
            self._verifier.screen(dict(headers))
        except SignatureError as e:
            raise self._refused(e) from None

    def check(self, headers: Mapping[str, str], body: bytes | None) -> Credential:
        try:
            verified = self._verifier.verify(dict(headers), body or b"")
        except SignatureError as e:
            raise self._refused(e) from None
        return Credential(self._identity("hmac", verified.secret), verified.replay_key)
