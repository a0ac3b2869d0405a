# -*- test-case-name: tests.unit.test_web_webhook -*-
"""
What the webhook's chain of steps learns about one request as it goes.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from alertgateway.core.decision import Ruling
from alertgateway.sources import ParseResult
from alertgateway.web.site import GatewayRequest

__all__ = ["Exchange"]


@attrs.define
class Exchange:
    """
    One webhook on its way through the chain: what each step learnt.
    """

    request: GatewayRequest
    headers: dict[str, str]
    client: str
    rate_headers: dict[str, str] = attrs.field(factory=dict)
    # Who the credentials (or the client certificate) say sent it: its
    # rate buckets.  None: a request without any, counted apart.
    identity: str | None = None
    # The body inflated, once a signature has needed it.
    raw: bytes | None = None
    replay_key: str | None = None
    # While the alerts are being committed: whether the replay key is to
    # be forgotten if the commit fails (the sender went away meanwhile).
    committing: bool = False
    forget_if_refused: bool = False
    payload: object = None
    parsed: ParseResult | None = None
    rulings: Sequence[Ruling] = ()
