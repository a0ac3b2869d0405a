# -*- test-case-name: tests.unit.test_web_webhook -*-
"""
The webhook endpoint: from an HTTP POST to alerts committed for delivery.

L{WebhookResource.handle_POST} is the request as one Deferred chain, each
step a small method that returns the exchange (or a Deferred of it) or
raises: address → size → credentials (a signature's over the inflated
body, and its replay) → rate → room in the queue → body (encoding, type,
depth; a valid JSON body is parsed here in one pass by the source's
decoder) → parse → decide and enqueue → answer.  Cheapest first, nothing is parsed that will
be refused, and no request takes a token of a rate bucket before its
credentials pass.  Valid alerts of a batch are accepted even when others
are not (207); the answer lists one result per alert in body order.

Every security refusal (address, rate, concurrency, auth, signature, size,
content) is one structured warning event with its reason and the client
address, and is counted in C{gateway_security_rejections_total}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, FirstError, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from alertgateway.core.decision import Ruling
from alertgateway.core.episodes import Delivery
from alertgateway.core.model import Alert
from alertgateway.core.timefmt import Stamper
from alertgateway.guards.errors import Refused
from alertgateway.guards.ratelimit import RateCheck
from alertgateway.intake.admission import Admission
from alertgateway.intake.outcomes import Outcomes
from alertgateway.observability.metrics import WebhookMetrics
from alertgateway.sources import Decoder, Parser, ParseResult, PayloadError, Rejection
from alertgateway.state.errors import QueueFull, StateUnavailable, StorageError
from alertgateway.state.ports import Replay
from alertgateway.web import problems
from alertgateway.web._exchange import Exchange
from alertgateway.web.bodies import check_depth, decode_body, inflate, is_json
from alertgateway.web.endpoints import Guards, WebhookEndpoint, rate_limit_headers
from alertgateway.web.health import Readiness
from alertgateway.web.resource import HandlerResource, Response
from alertgateway.web.security_log import record_refusal
from alertgateway.web.senders import certificate_identity
from alertgateway.web.site import GatewayRequest

__all__ = ["WebhookResource"]

_RETRY_AFTER = 5

T = TypeVar("T")


# Every webhook stamps its alerts.
_timestamp = Stamper("Z")


class WebhookResource(HandlerResource):
    """
    Accept one sender's webhooks on one configured path.
    """

    def __init__(
        self,
        endpoint: WebhookEndpoint,
        *,
        parser: Parser,
        decoder: Decoder | None = None,
        guards: Guards,
        admission: Admission,
        outcomes: Outcomes,
        readiness: Readiness,
        metrics: WebhookMetrics,
        clock: IReactorTime,
    ) -> None:
        super().__init__()
        self.endpoint = endpoint.path
        self.source = endpoint.source
        self.sync = endpoint.sync
        self._parser = parser
        self._decoder = decoder
        self._guards = guards
        self._admission = admission
        self._outcomes = outcomes
        self._readiness = readiness
        self._metrics = metrics
        self._clock = clock

    def handle_POST(self, request: GatewayRequest) -> Deferred[Response]:
        if not self._readiness.accepts(request.started):
            raise problems.shutting_down()
        headers = request.header_map()
        peer = str(getattr(request.getClientAddress(), "host", ""))
        exchange = Exchange(request, headers, self._guards.clients.of(peer, headers))
        return (
            succeed(exchange)
            .addCallback(self._address)
            .addCallback(self._size)
            .addCallback(self._credentials)
            .addCallback(self._rate)
            .addCallback(self._room)
            .addCallback(self._body)
            .addCallback(self._parse)
            .addCallback(self._decide)
            .addCallback(self._answer)
            .addErrback(self._refused, exchange)
        )

    # The steps.

    def _address(self, x: Exchange) -> Exchange:
        """
        Concurrency, then the source address.
        """
        guards = self._guards
        # Refused when its headers came: too many requests, or body bytes,
        # in progress (its body was not kept).
        if x.request.refusal is not None:
            raise x.request.refusal
        # This request is one of those in flight.
        if x.request.gateway_site.in_flight > guards.max_concurrent:
            raise problems.too_busy(guards.max_concurrent)
        if not guards.addresses.allows(x.client):
            raise problems.forbidden(f"Address {x.client} is not in security.allowed_ips.")
        if not guards.endpoint_addresses.allows(x.client):
            raise problems.forbidden(f"Address {x.client} may not post to {self.endpoint}.")
        return x

    def _size(self, x: Exchange) -> Exchange:
        if x.request.body_too_large:
            raise problems.payload_too_large(x.request.max_body_bytes)
        return x

    def _credentials(self, x: Exchange) -> Deferred[Exchange]:
        """
        Credentials, signatures included, before any rate bucket: requests
        without valid ones must not use up a real sender's budget
        (Alertmanager drops a notification refused with 429).  A signature
        covers the inflated body, which is inflated only once the
        signature's headers are in order.
        """
        guards = self._guards
        x.identity = certificate_identity(x.request)
        authenticator = guards.authenticator
        if authenticator is None:
            return succeed(x)
        if not authenticator.needs_body:
            x.identity = authenticator.check(x.headers, None).identity
            return succeed(x)
        authenticator.screen(x.headers)
        x.raw = self._inflate(x)
        credential = authenticator.check(x.headers, x.raw)
        x.identity, x.replay_key = credential.identity, credential.replay_key
        if x.replay_key is None or guards.shared_replays is None:
            return succeed(x)
        return guards.shared_replays.claim(x.replay_key).addCallback(self._claimed, x)

    def _claimed(self, fresh: bool, x: Exchange) -> Exchange:
        """
        Refuse a signed message another replica has already accepted.
        """
        if fresh:
            return x
        # Not ours to forget: the replica that accepted it holds it.
        x.replay_key = None
        authenticator = self._guards.authenticator
        challenge = authenticator.challenge if authenticator is not None else None
        raise problems.unauthorized(
            "Signature verification failed: this message was already accepted (replay).", challenge=challenge
        )

    def _rate(self, x: Exchange) -> Deferred[Exchange]:
        guards = self._guards
        if guards.limiter is None:
            return succeed(x)

        def _checked(check: RateCheck) -> Exchange:
            x.rate_headers = rate_limit_headers(check)
            if not check.allowed:
                self._metrics.limited(self.endpoint, check.scope)
                raise problems.rate_limited(guards.reject_status, check.retry_after, check.scope, x.rate_headers)
            return x

        return guards.limiter.admit(self.endpoint, x.client, x.identity).addCallback(_checked)

    def _room(self, x: Exchange) -> Exchange:
        """
        Refuse at once when the queue has no room for a single alert: the
        answer would be the same after parsing, and a flood of webhooks
        while the processor is behind must not take the CPU its delivery
        needs to catch up.
        """
        if not self._admission.has_room():
            raise QueueFull("no room for any alert")
        return x

    def _body(self, x: Exchange) -> Exchange:
        """
        The checks on the body: encoding (unless a signature had it
        inflated already), type, depth.  A valid JSON body is parsed here
        already, by the source's decoder in one pass; any other is decoded
        and checked for the parser.
        """
        raw = x.raw if x.raw is not None else self._inflate(x)
        content_type = x.headers.get("content-type")
        if self._decoder is not None and is_json(content_type):
            x.parsed = self._decoder(raw, _timestamp(self._clock.seconds()), self._guards.limits)
            if x.parsed is not None:
                return x
        x.payload = decode_body(content_type, raw)
        check_depth(x.payload, self._guards.limits.max_json_depth, raw if is_json(content_type) else None)
        return x

    def _inflate(self, x: Exchange) -> bytes:
        request = x.request
        return inflate(
            request.body.read(),
            x.headers.get("content-encoding"),
            request.max_body_bytes,
            self._guards.limits.max_gzip_members,
        )

    def _parse(self, x: Exchange) -> Exchange:
        """
        Each alert on its own: the valid ones go on.
        """
        metrics = self._metrics
        parsed = x.parsed
        if parsed is None:
            parsed = self._parse_payload(x.payload)
        # Counted here, recorded once per status: a batch is one call.
        statuses: dict[str, int] = {}
        for outcome in parsed.outcomes:
            status = outcome.status if isinstance(outcome, Alert) else "invalid"
            statuses[status] = statuses.get(status, 0) + 1
        for status, count in statuses.items():
            metrics.received(self.source, status, count)
        if not parsed.accepted:
            raise problems.invalid_payload(
                "No alert in the body is valid.",
                [err.to_json() for o in parsed.outcomes if isinstance(o, Rejection) for err in o.errors],
            )
        x.parsed = parsed
        return x

    def _parse_payload(self, payload: object) -> ParseResult:
        try:
            return self._parser(payload, _timestamp(self._clock.seconds()), self._guards.limits)
        except PayloadError as e:
            self._metrics.received(self.source, "invalid")
            raise problems.invalid_payload(
                "The body is not a valid webhook payload for this endpoint.", [err.to_json() for err in e.errors]
            ) from None

    def _decide(self, x: Exchange) -> Deferred[Exchange]:
        """
        Decide on the valid alerts and commit them with what they forward;
        on a sync endpoint, wait until the processor has taken them.
        """
        assert x.parsed is not None
        # A sender that goes away now does not take the commit with it:
        # half-written, it could neither be kept nor taken back.  Its retry
        # finds the alerts decided (duplicates, not forwarded twice).
        x.committing = True

        def _settled(result: list[Ruling] | Failure) -> list[Ruling] | Failure:
            x.committing = False
            if isinstance(result, Failure) and x.forget_if_refused:
                self._guards.forget(x.replay_key)
            return result

        d = _shielded(
            self._admission.accept(
                x.parsed.accepted, x.request.request_id, self._forwarded_headers(x.headers), self._replay(x)
            ).addBoth(_settled)
        )

        def _decided(rulings: list[Ruling]) -> Deferred[Exchange]:
            x.rulings = rulings
            if not self.sync:
                return succeed(x)
            # Past service.request_timeout the base resource answers 503,
            # and the alerts stay queued for delivery all the same.
            return self._outcomes.wait(rulings).addCallbacks(self._delivered, _unwrap_first, callbackArgs=(x,))

        return d.addCallback(_decided)

    def _replay(self, x: Exchange) -> Replay | None:
        """
        The request's signature, remembered with its decision where the
        state is kept across restarts (a replay after one is refused too).
        """
        replays = self._guards.replays
        if x.replay_key is None or replays is None:
            return None
        until = replays.until(x.replay_key)
        return (x.replay_key, until) if until is not None else None

    @staticmethod
    def _delivered(outcomes: list[Delivery], x: Exchange) -> Exchange:
        if any(outcome is not Delivery.DELIVERED for outcome in outcomes):
            raise problems.processor_rejected()
        return x

    def _answer(self, x: Exchange) -> Response:
        assert x.parsed is not None
        results: list[dict[str, Any]] = []
        rulings = iter(x.rulings)
        outcomes = x.parsed.outcomes
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Alert):
                results.append({"index": index, **next(rulings).to_json()})
            else:
                results.append(
                    {"index": index, "status": "rejected", "errors": [err.to_json() for err in outcome.errors]}
                )
        partial = any(isinstance(o, Rejection) for o in outcomes)
        body = {
            "status": "partial" if partial else "accepted",
            "requestId": x.request.request_id,
            "accepted": sum(1 for o in outcomes if isinstance(o, Alert)),
            "rejected": sum(1 for o in outcomes if isinstance(o, Rejection)),
            "alerts": results,
        }
        return Response(207 if partial else 202, body, headers=x.rate_headers)

    # What a refusal does.

    def _refused(self, failure: Failure, x: Exchange) -> Failure:
        """
        Map a refusal to its problem, log and count it if it is a security
        refusal, and forget the signature's replay key: the sender's retry
        of a request that was not accepted is no replay.
        """
        self._forget_replay(x)
        error = failure.value
        if isinstance(error, Refused):
            problem = problems.refused(error)
        elif isinstance(error, QueueFull):
            problem = problems.queue_full(_RETRY_AFTER)
        elif isinstance(error, StateUnavailable):
            problem = problems.state_unavailable(_RETRY_AFTER)
        elif isinstance(error, problems.Problem):
            problem = error
        else:
            return failure
        if problem.reason is not None:
            record_refusal(self._metrics, self.endpoint, x.request, x.client, problem)
        return Failure(problem)

    def _forget_replay(self, x: Exchange) -> None:
        if x.committing:
            # The sender went away while its alerts were being committed:
            # the message is a replay if they are, and the sender's retry
            # is not if they are refused.
            x.forget_if_refused = True
            return
        self._guards.forget(x.replay_key)

    def _forwarded_headers(self, headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        guards = self._guards
        copied = [(name, headers[name.lower()]) for name in guards.forward_headers if name.lower() in headers]
        return tuple(copied) + tuple(guards.add_headers.items())


def _shielded(d: Deferred[T]) -> Deferred[T]:
    """
    A Deferred with C{d}'s result whose cancellation does not reach C{d}.
    """
    shield: Deferred[T] = Deferred()

    def _result(result: T | Failure) -> None:
        if not shield.called:
            if isinstance(result, Failure):
                shield.errback(result)
            else:
                shield.callback(result)

    d.addBoth(_result)
    return shield


def _unwrap_first(failure: Failure) -> Failure:
    """
    The reason one of several waits failed (reading the shared state).
    """
    failure.trap(FirstError)
    assert isinstance(failure.value, FirstError)
    reason: Failure = failure.value.subFailure
    if reason.check(StorageError):
        return Failure(StateUnavailable(str(reason.value)))
    return reason
