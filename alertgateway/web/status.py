"""
What the gateway knows of an alert (BR-WH-015): C{GET /v1/alerts/{fingerprint}}
and C{GET /v1/alerts?status=firing&limit=100&cursor=…}.

Both are authenticated like the webhooks.  The list is ordered by dedup key;
its cursor is the last key of the previous page, so a page never repeats or
skips an alert that stays tracked between requests.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from twisted.web.resource import Resource

from alertgateway.decide.engine import rfc3339
from alertgateway.decide.episodes import Episode, EpisodeStore
from alertgateway.guards.auth import Authenticator
from alertgateway.web import problems
from alertgateway.web._render import HandlerResource, Response
from alertgateway.web.site import GatewayRequest

__all__ = ["AlertResource", "AlertsResource", "episode_json"]

_MAX_LIMIT = 1000
_STATUSES = ("firing", "resolved")


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
        "delivery": episode.delivery,
        "source": episode.source,
    }


def _headers(request: GatewayRequest) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): values[0].decode("latin-1")
        for name, values in request.requestHeaders.getAllRawHeaders()
    }


class _Authenticated(HandlerResource):
    def __init__(self, episodes: EpisodeStore, authenticator: Authenticator | None) -> None:
        super().__init__()
        self._episodes = episodes
        self._authenticator = authenticator

    def _authenticate(self, request: GatewayRequest) -> None:
        if self._authenticator is not None:
            # Signature schemes sign a body; a GET has an empty one.
            self._authenticator.check(_headers(request), b"")


class AlertResource(_Authenticated):
    endpoint = "/v1/alerts/{fingerprint}"
    isLeaf = True

    def __init__(self, episodes: EpisodeStore, authenticator: Authenticator | None, fingerprint: str) -> None:
        super().__init__(episodes, authenticator)
        self._fingerprint = fingerprint

    async def handle_GET(self, request: GatewayRequest) -> Response:
        self._authenticate(request)
        episode = self._episodes.by_fingerprint(self._fingerprint)
        if episode is None:
            raise problems.not_found(request.path.decode("latin-1"))
        return Response(200, episode_json(episode))


def _encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        raise problems.invalid_query("cursor", "is not a cursor this service returned") from None


class AlertsResource(_Authenticated):
    endpoint = "/v1/alerts"

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self
        return AlertResource(self._episodes, self._authenticator, path.decode("latin-1"))

    async def handle_GET(self, request: GatewayRequest) -> Response:
        self._authenticate(request)
        status = _arg(request, "status")
        if status is not None and status not in _STATUSES:
            raise problems.invalid_query("status", "must be firing or resolved")
        raw_limit = _arg(request, "limit") or "100"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= _MAX_LIMIT:
            raise problems.invalid_query("limit", f"must be an integer from 1 to {_MAX_LIMIT}")
        limit = int(raw_limit)
        cursor = _arg(request, "cursor")
        after = _decode_cursor(cursor) if cursor else None
        chosen = sorted(
            (e for e in self._episodes if (status is None or e.status == status) and (after is None or e.key > after)),
            key=lambda e: e.key,
        )
        page = chosen[:limit]
        body: dict[str, Any] = {"alerts": [episode_json(e) for e in page], "count": len(page)}
        body["nextCursor"] = _encode_cursor(page[-1].key) if len(chosen) > limit else None
        return Response(200, body)


def _arg(request: GatewayRequest, name: str) -> str | None:
    values = request.args.get(name.encode("ascii"))
    return values[0].decode("utf-8", "replace") if values else None
