# -*- test-case-name: tests.unit.test_cli_send -*-
"""
How C{alertgateway send-test} proves who it is: the headers of each scheme
the gateway accepts (bearer token, Basic, API key, Grafana's HMAC
signature, Standard Webhooks), made from the command line's options or from
an endpoint's authentication in the gateway's own configuration.

From the configuration, the first credential of each list is used (C{token}
before C{tokens}, C{secret} before C{secrets}): the one a sender configured
from the same file would send.  Secrets kept in files or the environment
are read by L{alertgateway.config.load_config} as the gateway reads them.
Signatures are made by L{alertgateway.guards.signatures}, from the layout
the gateway verifies.
"""

from __future__ import annotations

import base64
import uuid
from typing import Protocol

import attrs

from alertgateway.cli._common import CommandError
from alertgateway.config import AuthConfig, AuthType, SignatureScheme
from alertgateway.guards.signatures import decode_standard_secret, sign_grafana, sign_standard

__all__ = [
    "GRAFANA_SIGNATURE_HEADER",
    "APIKey",
    "Basic",
    "Bearer",
    "Credentials",
    "CredentialsError",
    "GrafanaSignature",
    "StandardSignature",
    "from_auth",
    "from_options",
]

GRAFANA_SIGNATURE_HEADER = "X-Grafana-Alerting-Signature"


class CredentialsError(CommandError):
    """
    The credentials asked for cannot be made; the message says why.
    """


class Credentials(Protocol):
    """
    What a request carries to prove who sent it.
    """

    @property
    def scheme(self) -> str:
        """
        The scheme, as C{send-test} reports it (never the secret).
        """

    def headers(self, body: bytes, now: float) -> dict[str, str]:
        """
        The headers to send with C{body} at time C{now}.
        """


@attrs.frozen
class Bearer:
    token: str = attrs.field(repr=False)
    scheme = "bearer token"

    def headers(self, body: bytes, now: float) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@attrs.frozen
class Basic:
    username: str
    password: str = attrs.field(repr=False)

    @property
    def scheme(self) -> str:
        return f"Basic ({self.username})"

    def headers(self, body: bytes, now: float) -> dict[str, str]:
        pair = f"{self.username}:{self.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


@attrs.frozen
class APIKey:
    header: str
    key: str = attrs.field(repr=False)

    @property
    def scheme(self) -> str:
        return f"API key in {self.header}"

    def headers(self, body: bytes, now: float) -> dict[str, str]:
        return {self.header: self.key}


@attrs.frozen
class GrafanaSignature:
    """
    Grafana's HMAC: the signature header, and the timestamp header if the
    gateway expects one (the timestamp is then signed too).
    """

    secret: str = attrs.field(repr=False)
    header: str = GRAFANA_SIGNATURE_HEADER
    timestamp_header: str | None = None

    @property
    def scheme(self) -> str:
        stamped = f" and {self.timestamp_header}" if self.timestamp_header else ""
        return f"Grafana HMAC signature in {self.header}{stamped}"

    def headers(self, body: bytes, now: float) -> dict[str, str]:
        if self.timestamp_header is None:
            return {self.header: sign_grafana(self.secret, body)}
        timestamp = str(int(now))
        return {self.header: sign_grafana(self.secret, body, timestamp), self.timestamp_header: timestamp}


@attrs.frozen
class StandardSignature:
    """
    Standard Webhooks: a new message id each time (the gateway refuses an id
    it has seen as a replay), the timestamp, the signature.
    """

    secret: str = attrs.field(repr=False)
    scheme = "Standard Webhooks signature"

    def headers(self, body: bytes, now: float) -> dict[str, str]:
        message_id = f"msg_{uuid.uuid4().hex}"
        timestamp = str(int(now))
        return {
            "webhook-id": message_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": sign_standard(self.secret, message_id, timestamp, body),
        }


def _pair(value: str, option: str, what: str) -> tuple[str, str]:
    first, colon, second = value.partition(":")
    if not colon or not first or not second:
        raise CredentialsError(f"{option} takes {what}")
    return first, second


def from_options(
    *,
    token: str | None = None,
    basic: str | None = None,
    api_key: str | None = None,
    grafana_secret: str | None = None,
    standard_secret: str | None = None,
    signature_header: str = GRAFANA_SIGNATURE_HEADER,
    timestamp_header: str | None = None,
) -> Credentials | None:
    """
    The credentials the command line names (at most one scheme), or
    C{None} for none.

    @raise CredentialsError: If one is malformed.
    """
    if token is not None:
        return Bearer(token)
    if basic is not None:
        # A user name has no colon (RFC 7617); a password may.
        return Basic(*_pair(basic, "--basic", "USER:PASSWORD"))
    if api_key is not None:
        # Nor has a header name.
        return APIKey(*_pair(api_key, "--api-key", "HEADER:KEY"))
    if grafana_secret is not None:
        return GrafanaSignature(grafana_secret, signature_header, timestamp_header)
    if standard_secret is not None:
        try:
            decode_standard_secret(standard_secret)
        except ValueError as e:
            raise CredentialsError(f"--standard-secret: {e}") from None
        return StandardSignature(standard_secret)
    return None


def from_auth(auth: AuthConfig, where: str) -> Credentials | None:
    """
    The credentials a sender configured from C{auth} sends, or C{None} for
    C{type: none}.

    @param where: The key path of C{auth}, for the message of an error.
    @raise CredentialsError: If C{auth} holds no credential of its type
        (the gateway then refuses every request).
    """
    missing = CredentialsError(f"{where} has no credential for type {auth.type}: the gateway refuses every request")
    if auth.type in (AuthType.BEARER, AuthType.API_KEY):
        if not auth.credentials:
            raise missing
        token = auth.credentials[0]
        return Bearer(token) if auth.type == AuthType.BEARER else APIKey(auth.header, token)
    if auth.type == AuthType.BASIC:
        if not auth.basic_users:
            raise missing
        return Basic(*auth.basic_users[0])
    if auth.type == AuthType.HMAC:
        if not auth.signing_secrets:
            raise missing
        secret = auth.signing_secrets[0]
        if auth.scheme == SignatureScheme.STANDARD:
            return StandardSignature(secret)
        return GrafanaSignature(secret, auth.signature_header, auth.timestamp_header)
    return None
