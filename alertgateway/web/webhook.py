"""
The webhook endpoint: from an HTTP POST to alerts queued for delivery.

Checks run cheapest first and nothing is parsed that will be refused:
shutdown, source address, authentication, body size, content type, JSON,
then each alert on its own.  Valid alerts of a batch are accepted even when
others are not (207); the answer lists one result per alert in body order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from alertgateway.config import EndpointConfig
from alertgateway.delivery.queue import Envelope, QueueFull
from alertgateway.guards.addresses import AddressFilter
from alertgateway.guards.auth import BearerAuthenticator
from alertgateway.metrics import GatewayMetrics
from alertgateway.model import Alert
from alertgateway.sources import Parser, PayloadError, Rejection
from alertgateway.web import problems
from alertgateway.web._render import HandlerResource, Response
from alertgateway.web.health import Readiness
from alertgateway.web.site import GatewayRequest

__all__ = ["WebhookResource"]

_JSON_TYPES = ("application/json",)
_QUEUE_FULL_RETRY_AFTER = 5


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # 1e999 is valid JSON but becomes infinity, which json.dumps would
    # forward as the non-JSON token Infinity.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in _JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WebhookResource(HandlerResource):
    """
    Accept one sender's webhooks on one configured path.
    """

    def __init__(
        self,
        endpoint: EndpointConfig,
        *,
        parser: Parser,
        authenticator: BearerAuthenticator | None,
        addresses: AddressFilter,
        submit: Callable[[list[Envelope]], Deferred[None]],
        readiness: Readiness,
        metrics: GatewayMetrics,
        clock: IReactorTime,
    ) -> None:
        super().__init__()
        self.endpoint = endpoint.path
        self.source = endpoint.source or ""
        self._parser = parser
        self._authenticator = authenticator
        self._addresses = addresses
        self._submit = submit
        self._readiness = readiness
        self._metrics = metrics
        self._clock = clock

    async def handle_POST(self, request: GatewayRequest) -> Response:
        if not self._readiness.accepts(request.started):
            raise problems.shutting_down()
        peer = request.getClientAddress()
        host = str(getattr(peer, "host", ""))
        if not self._addresses.allows(host):
            raise problems.forbidden(f"Address {host} is not in security.allowed_ips.")
        if self._authenticator is not None:
            self._authenticator.check(request.getHeader(b"authorization"))
        if request.body_too_large:
            raise problems.payload_too_large(request.max_body_bytes)
        content_type = request.getHeader(b"content-type")
        if content_type is not None and not _is_json(content_type.decode("latin-1")):
            raise problems.unsupported_media_type(content_type.decode("latin-1"))
        payload = self._decode(request.body.read())
        received_at = _timestamp(self._clock.seconds())
        try:
            result = self._parser(payload, received_at)
        except PayloadError as e:
            self._metrics.alerts_received.labels(source=self.source, status="invalid").inc()
            raise problems.invalid_payload(
                "The body is not a valid webhook payload for this endpoint.", [err.to_json() for err in e.errors]
            ) from None
        accepted = result.accepted
        for outcome in result.outcomes:
            status = outcome.status if isinstance(outcome, Alert) else "invalid"
            self._metrics.alerts_received.labels(source=self.source, status=status).inc()
        if not accepted:
            raise problems.invalid_payload(
                "No alert in the body is valid.",
                [err.to_json() for o in result.outcomes if isinstance(o, Rejection) for err in o.errors],
            )
        try:
            await self._submit([Envelope(alert, request.request_id) for alert in accepted])
        except QueueFull:
            raise problems.queue_full(_QUEUE_FULL_RETRY_AFTER) from None
        return self._answer(request.request_id, result.outcomes)

    @staticmethod
    def _decode(raw: bytes) -> object:
        if not raw.strip():
            raise problems.malformed_body("The request body is empty; expected a JSON object.")
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float)
        except UnicodeDecodeError:
            raise problems.malformed_body("The request body is not valid UTF-8.") from None
        except RecursionError:
            raise problems.malformed_body("The request body is nested too deeply.") from None
        except ValueError as e:
            raise problems.malformed_body(f"The request body is not valid JSON: {e}") from None

    @staticmethod
    def _answer(request_id: str, outcomes: tuple[Alert | Rejection, ...]) -> Response:
        results: list[dict[str, Any]] = []
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Alert):
                results.append(
                    {
                        "index": index,
                        "fingerprint": outcome.fingerprint,
                        "status": "accepted",
                        "alertStatus": outcome.status,
                    }
                )
            else:
                results.append(
                    {"index": index, "status": "rejected", "errors": [err.to_json() for err in outcome.errors]}
                )
        partial = any(isinstance(o, Rejection) for o in outcomes)
        return Response(
            207 if partial else 202,
            {
                "status": "partial" if partial else "accepted",
                "requestId": request_id,
                "accepted": sum(1 for o in outcomes if isinstance(o, Alert)),
                "rejected": sum(1 for o in outcomes if isinstance(o, Rejection)),
                "alerts": results,
            },
        )
