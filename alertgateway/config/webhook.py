# -*- test-case-name: tests.unit.test_config -*-
"""
The C{webhook} section: the paths senders post to, the format each path
accepts, how a sender proves who it is, and which headers travel on with
its alerts.
"""

from __future__ import annotations

import enum

import attrs

from alertgateway.config._fields import (
    addresses_or_hosts,
    header_name,
    header_token,
    plain_path,
    positive,
    rejection_status,
)
from alertgateway.config._schema import duration

__all__ = [
    "SOURCES",
    "WELL_KNOWN_PATHS",
    "AuthConfig",
    "AuthType",
    "BasicUser",
    "DeliveryMode",
    "EndpointConfig",
    "SignatureScheme",
    "WebhookConfig",
    "served_paths",
]

# The sender formats a path can accept.
SOURCES = ("alertmanager", "grafana")

# Paths whose sender is known without being told; every other path needs an
# explicit source.
WELL_KNOWN_PATHS = {
    "/webhook/prometheus": "alertmanager",
    "/webhook/alertmanager": "alertmanager",
    "/webhook/grafana": "grafana",
}


class AuthType(enum.StrEnum):
    """
    How a sender proves who it is.
    """

    BEARER = "bearer"
    BASIC = "basic"
    API_KEY = "api_key"
    HMAC = "hmac"
    NONE = "none"


class SignatureScheme(enum.StrEnum):
    """
    How an C{hmac} signature is laid out: Grafana's own header, or the
    Standard Webhooks one (C{webhook-id}, C{webhook-timestamp},
    C{webhook-signature}).
    """

    GRAFANA = "grafana"
    STANDARD = "standard"


class DeliveryMode(enum.StrEnum):
    """
    When a webhook is answered: C{async} once its alerts are queued (on
    disk), C{sync} once the processor has accepted every one of them.
    """

    ASYNC = "async"
    SYNC = "sync"


# Credentials of the sender, which must not travel further.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "x-api-key"})


def _header_names(values: dict[str, str]) -> str | None:
    for name, value in values.items():
        message = header_name(name)
        if message is not None:
            return message
        if "\r" in value or "\n" in value:
            return f"the value of {name} must be one line"
    return None


def _forwardable(values: tuple[str, ...]) -> str | None:
    for name in values:
        message = header_name(name)
        if message is not None:
            return message
        if name.lower() in _CREDENTIAL_HEADERS:
            return f"{name} carries the sender's credentials and is never forwarded"
    return None


@attrs.frozen
class BasicUser:
    """
    One user for C{basic} authentication.
    """

    username: str
    password: str | None = attrs.field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None


@attrs.frozen
class AuthConfig:
    """
    How a webhook proves who sent it.  Secrets are kept out of C{repr}.

    Secrets given as C{*_file} (one per line, so a file can hold the old and
    the new one during a rotation) or C{*_env} are read once at load time
    and merged into the lists.
    """

    type: AuthType = AuthType.BEARER
    # bearer and api_key
    token: str | None = attrs.field(default=None, repr=False)
    tokens: tuple[str, ...] = attrs.field(default=(), repr=False)
    token_file: str | None = None
    token_env: str | None = None
    header: str = attrs.field(default="X-API-Key", metadata={"check": header_token})
    # basic
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None
    users: tuple[BasicUser, ...] = ()
    # hmac
    scheme: SignatureScheme = SignatureScheme.GRAFANA
    secret: str | None = attrs.field(default=None, repr=False)
    secrets: tuple[str, ...] = attrs.field(default=(), repr=False)
    secret_file: str | None = None
    secret_env: str | None = None
    signature_header: str = attrs.field(default="X-Grafana-Alerting-Signature", metadata={"check": header_token})
    timestamp_header: str | None = attrs.field(default=None, metadata={"check": header_token})
    tolerance: float = duration(300.0, positive)

    @property
    def credentials(self) -> tuple[str, ...]:
        """
        Every accepted token: C{token} first, then C{tokens} (for rotation).
        """
        found = ((self.token,) if self.token else ()) + self.tokens
        return tuple(t for t in found if t)

    @property
    def basic_users(self) -> tuple[tuple[str, str], ...]:
        """
        Every accepted user and password pair.
        """
        pairs = [(self.username, self.password)] if self.username and self.password else []
        pairs += [(u.username, u.password) for u in self.users if u.password]
        return tuple((user, password) for user, password in pairs if user is not None and password is not None)

    @property
    def signing_secrets(self) -> tuple[str, ...]:
        """
        Every accepted signing secret: C{secret} first, then C{secrets}
        (for rotation).
        """
        found = ((self.secret,) if self.secret else ()) + self.secrets
        return tuple(s for s in found if s)


def served_paths(path: str) -> tuple[str, ...]:
    """
    The paths an endpoint at C{path} answers on: C{path} and its C{/v1}
    alias (a path already under C{/v1} has none).
    """
    return (path,) if path == "/v1" or path.startswith("/v1/") else (path, "/v1" + path)


@attrs.frozen
class EndpointConfig:
    """
    One webhook path and the sender format it accepts.
    """

    path: str = attrs.field(metadata={"check": plain_path})
    source: str | None = attrs.field(default=None, metadata={"choices": SOURCES})
    auth_required: bool = True
    # Requests per minute; enforced by the rate limiter.
    rate_limit: int | None = attrs.field(default=None, metadata={"check": positive})
    # Overrides webhook.auth for this endpoint.
    auth: AuthConfig | None = None
    # Addresses allowed on this endpoint, on top of security.allowed_ips.
    allowed_ips: tuple[str, ...] = attrs.field(default=(), metadata={"check": addresses_or_hosts})
    # Status for requests over a rate limit here; defaults to
    # rate_limiting.reject_status.
    reject_status: int | None = attrs.field(default=None, metadata={"check": rejection_status})
    # Static headers added to every alert forwarded from this endpoint.
    # Left out of the hash: a dict has none, and the configuration classes
    # are otherwise hashable.
    add_headers: dict[str, str] = attrs.field(factory=dict, hash=False, metadata={"check": _header_names})
    # async: answer once the alerts are queued (on disk); sync: answer once
    # the processor has accepted every alert of the request, for senders
    # that must know the alert went through.
    delivery: DeliveryMode = DeliveryMode.ASYNC

    def served_paths(self) -> tuple[str, ...]:
        """
        The path and its C{/v1} alias (a path already under C{/v1} has none).
        """
        return served_paths(self.path)


def _default_endpoints() -> tuple[EndpointConfig, ...]:
    return (
        EndpointConfig(path="/webhook/prometheus", source="alertmanager"),
        EndpointConfig(path="/webhook/grafana", source="grafana"),
    )


@attrs.frozen
class WebhookConfig:
    """
    The webhook endpoints, the authentication they share, and the inbound
    headers forwarded with their alerts.
    """

    endpoints: tuple[EndpointConfig, ...] = attrs.field(factory=_default_endpoints)
    auth: AuthConfig = attrs.field(factory=AuthConfig)
    # Inbound headers copied onto each forwarded alert (e.g. X-Scope-OrgID,
    # traceparent).
    forward_headers: tuple[str, ...] = attrs.field(default=(), metadata={"check": _forwardable})

    def auth_for(self, endpoint: EndpointConfig) -> AuthConfig:
        """
        The authentication C{endpoint} asks for: its own, or else
        C{webhook.auth}.
        """
        return endpoint.auth if endpoint.auth is not None else self.auth
