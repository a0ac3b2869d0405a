# -*- test-case-name: tests.unit.test_web_webhook -*-
"""
What configures one webhook endpoint: its path and source, and the guards
a request to it must pass before its body is parsed; and the rate-limit
headers its answers carry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from alertgateway.guards.addresses import AddressFilter, ClientAddress
from alertgateway.guards.auth import Authenticator
from alertgateway.guards.ratelimit import Limiter, RateCheck
from alertgateway.guards.replays import ReplayCache
from alertgateway.sources import Limits

if TYPE_CHECKING:
    from alertgateway.redis.failover import SharedReplays

__all__ = ["Guards", "WebhookEndpoint", "rate_limit_headers"]


def rate_limit_headers(check: RateCheck) -> dict[str, str]:
    """
    The IETF draft (httpapi-ratelimit-headers) fields for a rate check.
    """
    return {
        "RateLimit-Policy": f'"{check.scope}";q={check.limit};w={check.window}',
        # Rounded up: a client told t=0 with r=0 would retry at once.
        "RateLimit": f'"{check.scope}";r={check.remaining};t={max(0, math.ceil(check.reset))}',
    }


@attrs.frozen
class WebhookEndpoint:
    """
    One configured webhook path.

    @ivar sync: Answer only once the processor has taken every alert.
    """

    path: str
    source: str
    sync: bool = False


@attrs.frozen
class Guards:
    """
    What a request to one endpoint must pass before its body is parsed.

    @ivar addresses: C{security.allowed_ips}.
    @ivar endpoint_addresses: The endpoint's own C{allowed_ips}.
    @ivar forward_headers: Inbound headers copied onto forwarded alerts.
    @ivar add_headers: Static headers added to forwarded alerts.
    @ivar replays: Where signature replay keys are remembered, so that a
        request refused after its signature was checked can be retried.
    @ivar shared_replays: The replicas' shared replay memory, if any.
    """

    addresses: AddressFilter = attrs.field(factory=lambda: AddressFilter(()))
    endpoint_addresses: AddressFilter = attrs.field(factory=lambda: AddressFilter(()))
    clients: ClientAddress = attrs.field(factory=lambda: ClientAddress(()))
    limiter: Limiter | None = None
    reject_status: int = 429
    authenticator: Authenticator | None = None
    max_concurrent: int = 1000
    limits: Limits = attrs.field(factory=Limits)
    forward_headers: tuple[str, ...] = ()
    add_headers: Mapping[str, str] = attrs.field(factory=dict)
    replays: ReplayCache | None = None
    shared_replays: SharedReplays | None = None

    def forget(self, replay_key: str | None) -> None:
        if replay_key is None:
            return
        if self.shared_replays is not None:
            self.shared_replays.forget(replay_key)
        elif self.replays is not None:
            self.replays.forget(replay_key)
