# -*- test-case-name: tests.unit.test_web_status -*-
"""
What the gateway knows of an alert: C{GET /v1/alerts/{fingerprint}}
and C{GET /v1/alerts?status=firing&limit=100&cursor=…}.

Both are guarded like the webhooks: C{security.allowed_ips} (through the
trusted proxies) and the webhooks' authentication, each refusal logged and
counted as the webhooks' are.  The list is ordered by dedup key; its cursor
is the last key of the previous page, so a page never repeats or skips an
alert that stays tracked between requests.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.web.resource import Resource

from alertgateway.core.episodes import Episode
from alertgateway.core.timefmt import rfc3339
from alertgateway.guards.addresses import AddressFilter, ClientAddress
from alertgateway.guards.auth import Authenticator
from alertgateway.guards.errors import Refused
from alertgateway.observability.metrics import WebhookMetrics
from alertgateway.state.errors import StateUnavailable
from alertgateway.state.ports import StateStore
from alertgateway.web import problems
from alertgateway.web.resource import HandlerResource, Response
from alertgateway.web.security_log import record_refusal
from alertgateway.web.site import GatewayRequest

__all__ = ["AlertResource", "AlertsResource", "episode_json"]

T = TypeVar("T")

_MAX_LIMIT = 1000
_DEFAULT_LIMIT = 100
_STATUSES = ("firing", "resolved")
# ASCII digits only, and few: str.isdigit() admits "²" and int() refuses
# it, and int() refuses thousands of digits; both would be a 500.
_LIMIT = re.compile(r"[0-9]{1,4}")


def episode_json(episode: Episode) -> dict[str, Any]:
    return {
        "fingerprint": episode.fingerprint,
        "dedupKey": episode.key,
        "status": episode.status,
        "firstSeen": rfc3339(episode.first_seen),
        "lastSeen": rfc3339(episode.last_seen),
        "duplicateCount": episode.duplicates,
        "environment": episode.environment,
        "escalation": episode.escalation,
        "groupId": episode.group_id,
        "storm": episode.storm_id,
        "delivery": episode.delivery.value,
        "source": episode.source,
    }


class _Guarded(HandlerResource):
    endpoint = "/v1/alerts"

    def __init__(
        self,
        state: StateStore,
        authenticator: Authenticator | None,
        *,
        addresses: AddressFilter | None = None,
        clients: ClientAddress | None = None,
        metrics: WebhookMetrics | None = None,
    ) -> None:
        super().__init__()
        self._state = state
        self._authenticator = authenticator
        self._addresses = addresses if addresses is not None else AddressFilter(())
        self._clients = clients if clients is not None else ClientAddress(())
        self._metrics = metrics

    def _admit(self, request: GatewayRequest) -> None:
        headers = request.header_map()
        client = self._clients.of(str(getattr(request.getClientAddress(), "host", "")), headers)
        try:
            if not self._addresses.allows(client):
                raise problems.forbidden(f"Address {client} is not in security.allowed_ips.")
            if self._authenticator is not None:
                # Signature schemes sign a body; a GET has an empty one.
                self._authenticator.check(headers, b"")
        except Refused as refusal:
            problem = problems.refused(refusal)
            self._refused(request, client, problem)
            raise problem from None
        except problems.Problem as problem:
            self._refused(request, client, problem)
            raise

    def _refused(self, request: GatewayRequest, client: str, problem: problems.Problem) -> None:
        record_refusal(self._metrics, self.endpoint, request, client, problem)


class AlertResource(_Guarded):
    endpoint = "/v1/alerts/{fingerprint}"

    def __init__(
        self,
        state: StateStore,
        authenticator: Authenticator | None,
        fingerprint: str,
        *,
        addresses: AddressFilter | None = None,
        clients: ClientAddress | None = None,
        metrics: WebhookMetrics | None = None,
    ) -> None:
        super().__init__(state, authenticator, addresses=addresses, clients=clients, metrics=metrics)
        self._fingerprint = fingerprint

    async def handle_GET(self, request: GatewayRequest) -> Response:
        self._admit(request)
        episode = await _read(self._state.by_fingerprint(self._fingerprint))
        if episode is None:
            raise problems.not_found(request.path.decode("latin-1"))
        return Response(200, episode_json(episode))


def _encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> str:
    invalid = problems.invalid_query("cursor", "is not a cursor this service returned")
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        key = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        raise invalid from None
    # Only what encoding a key gives back: lenient base64 would read any
    # string as some cursor and silently start a listing elsewhere.
    if _encode_cursor(key) != cursor:
        raise invalid
    return key


class AlertsResource(_Guarded):
    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self
        return AlertResource(
            self._state,
            self._authenticator,
            path.decode("utf-8", "replace"),
            addresses=self._addresses,
            clients=self._clients,
            metrics=self._metrics,
        )

    async def handle_GET(self, request: GatewayRequest) -> Response:
        self._admit(request)
        status = _arg(request, "status")
        if status is not None and status not in _STATUSES:
            raise problems.invalid_query("status", "must be firing or resolved")
        raw_limit = _arg(request, "limit")
        limit = _DEFAULT_LIMIT
        if raw_limit is not None:
            if not _LIMIT.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= _MAX_LIMIT:
                raise problems.invalid_query("limit", f"must be an integer from 1 to {_MAX_LIMIT}")
            limit = int(raw_limit)
        cursor = _arg(request, "cursor")
        after = _decode_cursor(cursor) if cursor else None
        # One more than asked says whether there is a next page.
        chosen = await _read(self._state.page(status, after, limit + 1))
        page = chosen[:limit]
        body: dict[str, Any] = {"alerts": [episode_json(e) for e in page], "count": len(page)}
        body["nextCursor"] = _encode_cursor(page[-1].key) if len(chosen) > limit else None
        return Response(200, body)


async def _read(d: Deferred[T]) -> T:
    try:
        return await d
    except StateUnavailable:
        raise problems.state_unavailable(5) from None


def _arg(request: GatewayRequest, name: str) -> str | None:
    values = request.args.get(name.encode("ascii"))
    return values[0].decode("utf-8", "replace") if values else None
