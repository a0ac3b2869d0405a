# -*- test-case-name: tests.unit.test_auth -*-
"""
The guards of each endpoint, built from the configuration: who may send
(its authenticator), from where, how fast, and what is forwarded with it.
"""

from __future__ import annotations

import attrs
from twisted.internet.interfaces import IReactorTime

from alertgateway.app.build import Gateway
from alertgateway.config import AuthConfig, AuthType, EndpointConfig, GatewayConfig, SignatureScheme
from alertgateway.guards.addresses import AddressFilter, ClientAddress
from alertgateway.guards.auth import (
    APIKeyAuthenticator,
    Authenticator,
    BasicAuthenticator,
    BearerAuthenticator,
    SignatureAuthenticator,
)
from alertgateway.guards.replays import ReplayCache
from alertgateway.guards.signatures import GrafanaVerifier, StandardWebhooksVerifier
from alertgateway.sources import Limits
from alertgateway.web.endpoints import Guards

__all__ = ["authenticator_for", "guards_for", "status_authenticator"]


def authenticator_for(
    auth: AuthConfig, *, clock: IReactorTime, replays: ReplayCache, scope: str = "webhook.auth"
) -> Authenticator | None:
    """
    The authenticator for an endpoint's (resolved) auth configuration, or
    C{None} for C{type: none}.

    @param scope: Where C{auth} is configured: C{webhook.auth}, or the path
        of the endpoint whose own it is (its senders' identities).
    """
    if auth.type == AuthType.BEARER:
        return BearerAuthenticator(auth.credentials, scope=scope)
    if auth.type == AuthType.API_KEY:
        return APIKeyAuthenticator(auth.credentials, auth.header, scope=scope)
    if auth.type == AuthType.BASIC:
        return BasicAuthenticator(auth.basic_users, scope=scope)
    if auth.type == AuthType.HMAC:
        verifier: GrafanaVerifier | StandardWebhooksVerifier
        if auth.scheme == SignatureScheme.STANDARD:
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
        return SignatureAuthenticator(verifier, scope=scope)
    if auth.type == AuthType.NONE:
        return None
    # The configuration only offers the types above; anything else must not
    # quietly become "no authentication".
    raise ValueError(f"unknown authentication type {auth.type!r}")


def status_authenticator(gateway: Gateway) -> Authenticator | None:
    """
    Who may read the alert status API: while any webhook endpoint requires
    credentials, the holders of C{webhook.auth}'s (nobody, if it checks
    none: the configuration refuses that, and the API must not fall open
    if it did not); anyone allowed in otherwise.
    """
    webhook = gateway.config.webhook
    if not any(e.auth_required and webhook.auth_for(e).type != AuthType.NONE for e in webhook.endpoints):
        return None
    authenticator = authenticator_for(webhook.auth, clock=gateway.reactor, replays=gateway.replays)
    # A bearer authenticator without tokens refuses every request.
    return authenticator if authenticator is not None else BearerAuthenticator(())


def _reject_status(endpoint: EndpointConfig, config: GatewayConfig) -> int:
    """
    The status of an endpoint's rate-limit refusals: as configured, else
    503 for Alertmanager (which drops a notification answered with any 4xx
    and retries a 5xx), 429 for the others.
    """
    configured = endpoint.reject_status or config.rate_limiting.reject_status
    if configured is not None:
        return configured
    return 503 if endpoint.source == "alertmanager" else 429


def guards_for(
    gateway: Gateway, endpoint: EndpointConfig, addresses: AddressFilter, clients: ClientAddress
) -> tuple[Guards, AddressFilter]:
    """
    The guards of one endpoint, and its own address filter (whose host
    names are to be resolved with the others').
    """
    config = gateway.config
    authenticator = (
        authenticator_for(
            config.webhook.auth_for(endpoint),
            clock=gateway.reactor,
            replays=gateway.replays,
            scope="webhook.auth" if endpoint.auth is None else endpoint.path,
        )
        if endpoint.auth_required
        else None
    )
    endpoint_addresses = AddressFilter(endpoint.allowed_ips)
    guards = Guards(
        addresses=addresses,
        endpoint_addresses=endpoint_addresses,
        clients=clients,
        limiter=gateway.limiter,
        reject_status=_reject_status(endpoint, config),
        authenticator=authenticator,
        max_concurrent=config.service.max_concurrent_requests,
        limits=Limits(**attrs.asdict(config.limits)),
        forward_headers=config.webhook.forward_headers,
        add_headers=endpoint.add_headers,
        replays=gateway.replays,
        shared_replays=gateway.shared_replays,
    )
    return guards, endpoint_addresses
