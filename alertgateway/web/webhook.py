"""
The webhook endpoint: from an HTTP POST to alerts queued for delivery.

Checks run cheapest first and nothing is parsed that will be refused:
shutdown, requests in flight, source address, body size, credentials, rate
limits, content encoding, signature, content type, then each alert on its
own.  Valid alerts of a batch are accepted even when others are not (207);
the answer lists one result per alert in body order.

Every security refusal (address, rate, concurrency, auth, signature, size,
content) is one structured warning event with its reason and the client
address, and is counted in C{gateway_security_rejections_total}.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from twisted.internet.defer import FirstError
from twisted.internet.interfaces import IReactorTime

from alertgateway.config import EndpointConfig, LimitsConfig
from alertgateway.core.decider import Verdict
from alertgateway.core.model import Alert
from alertgateway.core.timefmt import Stamper
from alertgateway.guards.addresses import AddressFilter, ClientAddress
from alertgateway.guards.auth import Authenticator
from alertgateway.guards.ratelimit import Decision, Limiter
from alertgateway.guards.signatures import ReplayCache
from alertgateway.intake.admission import Intake
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.redis.client import RedisUnavailable
from alertgateway.redis.failover import SharedReplays
from alertgateway.sources import Parser, PayloadError, Rejection
from alertgateway.state.errors import QueueFull, StateContended, StateUnavailable
from alertgateway.web import problems
from alertgateway.web.bodies import check_depth, decode_body, inflate, is_json
from alertgateway.web.health import Readiness
from alertgateway.web.resource import HandlerResource, Response
from alertgateway.web.security_log import record_refusal
from alertgateway.web.site import GatewayRequest

__all__ = ["Guards", "WebhookResource"]

_QUEUE_FULL_RETRY_AFTER = 5


# Every webhook stamps its alerts.
_timestamp = Stamper("Z")


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """
    The IETF draft (httpapi-ratelimit-headers) fields for a decision.
    """
    return {
        "RateLimit-Policy": f'"{decision.scope}";q={decision.limit};w={decision.window}',
        # Rounded up: a client told t=0 with r=0 would retry at once.
        "RateLimit": f'"{decision.scope}";r={decision.remaining};t={max(0, math.ceil(decision.reset))}',
    }


@attrs.frozen
class Guards:
    """
    What a request to one endpoint must pass before its body is parsed.

    @ivar addresses: C{security.allowed_ips}.
    @ivar endpoint_addresses: The endpoint's own C{allowed_ips}.
    @ivar forward_headers: Inbound headers copied onto forwarded alerts.
    @ivar add_headers: Static headers added to forwarded alerts.
    """

    addresses: AddressFilter = attrs.field(factory=lambda: AddressFilter(()))
    endpoint_addresses: AddressFilter = attrs.field(factory=lambda: AddressFilter(()))
    clients: ClientAddress = attrs.field(factory=lambda: ClientAddress(()))
    limiter: Limiter | None = None
    reject_status: int = 429
    authenticator: Authenticator | None = None
    max_concurrent: int = 1000
    limits: LimitsConfig = attrs.field(factory=LimitsConfig)
    forward_headers: tuple[str, ...] = ()
    add_headers: Mapping[str, str] = attrs.field(factory=dict)
    # Where signature replay keys are remembered, so that a request refused
    # after its signature was checked can be retried by its sender.
    replays: ReplayCache | None = None
    # The replicas' shared replay memory (state.backend: redis).
    shared_replays: SharedReplays | None = None

    def forget(self, replay_key: str | None) -> None:
        if replay_key is None:
            return
        if self.shared_replays is not None:
            self.shared_replays.forget(replay_key)
        elif self.replays is not None:
            self.replays.forget(replay_key)


class WebhookResource(HandlerResource):
    """
    Accept one sender's webhooks on one configured path.
    """

    def __init__(
        self,
        endpoint: EndpointConfig,
        *,
        parser: Parser,
        guards: Guards,
        intake: Intake,
        readiness: Readiness,
        metrics: GatewayMetrics,
        clock: IReactorTime,
    ) -> None:
        super().__init__()
        self.endpoint = endpoint.path
        self.source = endpoint.source or ""
        self.sync = endpoint.delivery == "sync"
        self._parser = parser
        self._guards = guards
        self._intake = intake
        self._readiness = readiness
        self._metrics = metrics
        self._clock = clock

    async def handle_POST(self, request: GatewayRequest) -> Response:
        if not self._readiness.accepts(request.started):
            raise problems.shutting_down()
        headers = request.header_map()
        peer = str(getattr(request.getClientAddress(), "host", ""))
        client = self._guards.clients.of(peer, headers)
        replay_key: str | None = None
        try:
            rate_headers = await self._admit(request, client, headers)
            payload, replay_key = self._read(request, headers)
            await self._claim(replay_key)
        except problems.Problem as problem:
            if problem.reason is not None:
                self._refused(request, client, problem)
            raise
        except (StateUnavailable, StateContended):
            # Refused for now: the sender's retry is no replay.
            self._guards.forget(replay_key)
            raise problems.state_unavailable(_QUEUE_FULL_RETRY_AFTER) from None
        try:
            answer = await self._accept(request, payload, headers)
        except BaseException:
            # Not accepted: the sender will retry with the same signature.
            self._guards.forget(replay_key)
            raise
        if not rate_headers:
            return answer
        return attrs.evolve(answer, headers={**answer.headers, **rate_headers})

    async def _accept(self, request: GatewayRequest, payload: object, headers: Mapping[str, str]) -> Response:
        """
        Parse the payload, each alert on its own, and queue the valid ones.
        """
        received_at = _timestamp(self._clock.seconds())
        try:
            result = self._parser(payload, received_at, self._guards.limits)
        except PayloadError as e:
            self._metrics.alerts_received.labels(source=self.source, status="invalid").inc()
            raise problems.invalid_payload(
                "The body is not a valid webhook payload for this endpoint.", [err.to_json() for err in e.errors]
            ) from None
        accepted = result.accepted
        for outcome in result.outcomes:
            status = outcome.status if isinstance(outcome, Alert) else "invalid"
            self._metrics.child(self._metrics.alerts_received, self.source, status).inc()
        if not accepted:
            raise problems.invalid_payload(
                "No alert in the body is valid.",
                [err.to_json() for o in result.outcomes if isinstance(o, Rejection) for err in o.errors],
            )
        forwarded = self._forwarded_headers(headers)
        try:
            verdicts = await self._intake.accept(accepted, request.request_id, forwarded)
        except QueueFull:
            raise problems.queue_full(_QUEUE_FULL_RETRY_AFTER) from None
        except (StateUnavailable, StateContended):
            raise problems.state_unavailable(_QUEUE_FULL_RETRY_AFTER) from None
        if self.sync:
            # Answer only once the processor took every alert; past
            # service.request_timeout the base resource answers 503, and
            # the alerts stay queued for delivery all the same.
            try:
                outcomes = await self._intake.outcomes(verdicts)
            except FirstError as e:
                # Reading the shared state failed while waiting.
                if e.subFailure.check(StateUnavailable, StateContended, RedisUnavailable):
                    raise problems.state_unavailable(_QUEUE_FULL_RETRY_AFTER) from None
                e.subFailure.raiseException()
            if any(outcome != "delivered" for outcome in outcomes):
                raise problems.processor_rejected()
        return self._answer(request.request_id, result.outcomes, verdicts)

    async def _admit(self, request: GatewayRequest, client: str, headers: Mapping[str, str]) -> dict[str, str]:
        """
        The checks that need no parsing, cheapest first: concurrency,
        address, size, credentials, rate.  Credentials come before the rate
        buckets so that requests without them cannot use up a real sender's
        budget (Alertmanager drops a notification refused with 429).

        @return: Rate-limit headers for the answer.
        """
        guards = self._guards
        # This request is one of those in flight.
        if request.gateway_site.in_flight > guards.max_concurrent:
            raise problems.too_busy(guards.max_concurrent)
        if not guards.addresses.allows(client):
            raise problems.forbidden(f"Address {client} is not in security.allowed_ips.")
        if not guards.endpoint_addresses.allows(client):
            raise problems.forbidden(f"Address {client} may not post to {self.endpoint}.")
        if request.body_too_large:
            raise problems.payload_too_large(request.max_body_bytes)
        if guards.authenticator is not None and not guards.authenticator.needs_body:
            guards.authenticator.check(headers, None)
        rate_headers: dict[str, str] = {}
        if guards.limiter is not None:
            decision = await guards.limiter.decide(self.endpoint, client)
            rate_headers = rate_limit_headers(decision)
            if not decision.allowed:
                self._metrics.rate_limited.labels(endpoint=self.endpoint, scope=decision.scope).inc()
                raise problems.rate_limited(guards.reject_status, decision.retry_after, decision.scope, rate_headers)
        return rate_headers

    async def _claim(self, replay_key: str | None) -> None:
        """
        Refuse a signed message another replica has already accepted.
        """
        shared = self._guards.shared_replays
        if replay_key is None or shared is None:
            return
        if not await shared.claim(replay_key):
            challenge = getattr(self._guards.authenticator, "challenge", None)
            raise problems.unauthorized(
                "Signature verification failed: this message was already accepted (replay).", challenge=challenge
            )

    def _read(self, request: GatewayRequest, headers: Mapping[str, str]) -> tuple[object, str | None]:
        """
        The checks on the body: encoding, signature, type, depth.

        @return: The decoded document, and the signature's replay key.
        """
        guards = self._guards
        raw = inflate(request.body.read(), headers.get("content-encoding"), request.max_body_bytes)
        replay_key = None
        if guards.authenticator is not None and guards.authenticator.needs_body:
            replay_key = guards.authenticator.check(headers, raw)
        try:
            payload = decode_body(headers.get("content-type"), raw)
            content_type = headers.get("content-type")
            check_depth(payload, guards.limits.max_json_depth, raw if is_json(content_type) else None)
        except problems.Problem:
            guards.forget(replay_key)
            raise
        return payload, replay_key

    def _refused(self, request: GatewayRequest, client: str, problem: problems.Problem) -> None:
        record_refusal(self._metrics, self.endpoint, request, client, problem)

    def _forwarded_headers(self, headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        copied = [(name, headers[name.lower()]) for name in self._guards.forward_headers if name.lower() in headers]
        return tuple(copied) + tuple(self._guards.add_headers.items())

    @staticmethod
    def _answer(request_id: str, outcomes: tuple[Alert | Rejection, ...], verdicts: Sequence[Verdict]) -> Response:
        results: list[dict[str, Any]] = []
        decided = iter(verdicts)
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Alert):
                results.append({"index": index, **next(decided).to_json()})
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
