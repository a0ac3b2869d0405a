# -*- test-case-name: tests.unit.test_state_behaviour -*-
"""
What the gateway does when Redis cannot answer (C{state.redis.on_failure}).

C{fail_open}: each facility decides from this process's memory for the
time being (deduplication, storms, rate limits, replays), logs once per
outage and counts each such decision in C{gateway_redis_fallbacks_total};
pages keep flowing, and at worst an alert seen by two replicas during the
outage is forwarded twice.  C{fail_closed}: the request is refused with 503
and C{Retry-After}, so the sender (Alertmanager) retries until Redis is
back; nothing is decided without the shared state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from alertgateway.core.decision import Changes, Decision
from alertgateway.core.episodes import Delivery, Episode
from alertgateway.core.model import Alert
from alertgateway.guards.ratelimit import RateCheck, RateLimiter
from alertgateway.guards.replays import ReplayCache
from alertgateway.observability.metrics import RedisMetrics
from alertgateway.redis.client import RedisClient, RedisError, RedisUnavailable
from alertgateway.redis.decisions import RedisState
from alertgateway.redis.limits import RedisRateLimiter
from alertgateway.redis.replays import RedisReplays
from alertgateway.state.errors import StateUnavailable
from alertgateway.state.memory import MemoryState
from alertgateway.state.ports import Enqueue, Replay, Tracked

__all__ = ["Failover", "FailoverLimiter", "FailoverState", "SharedReplays", "StateUnavailable"]

_log = Logger()

T = TypeVar("T")


class Failover:
    """
    Run an operation on Redis, or on local memory when Redis cannot answer
    and the mode allows it.
    """

    def __init__(self, client: RedisClient, mode: str, metrics: RedisMetrics) -> None:
        self.client = client
        self.mode = mode
        self._metrics = metrics
        self._warned = False
        self._was_up = False
        client.on_state(self._changed)

    @property
    def fail_open(self) -> bool:
        """
        Whether to go on without Redis while it cannot answer: decide from
        local memory, queue to the local fallback queue.
        """
        return self.mode == "fail_open"

    def _changed(self, up: bool) -> None:
        if up and self._warned:
            what = "Redis is back" if self._was_up else "Connected to Redis"
            _log.info("{what}: decisions use the shared state again", what=what)
            self._warned = False
        self._was_up = self._was_up or up

    async def run(self, facility: str, shared: Callable[[], Deferred[T]], local: Callable[[], Deferred[T]]) -> T:
        try:
            return await shared()
        except RedisError as e:
            # An error reply we do not know is no reason to stop paging
            # either: it is counted (gateway_redis_errors_total) and logged.
            if not self.fail_open:
                raise StateUnavailable(str(e)) from None
            self._metrics.fallbacks.labels(facility=facility).inc()
            if not self._warned:
                self._warned = True
                if self.client.ever_up:
                    _log.warn(
                        "Redis unavailable ({reason}): deciding from local memory until it is back (fail_open)",
                        reason=str(e),
                    )
                else:
                    # Still connecting, as every start begins (the client
                    # warns if that takes longer than its connect_timeout).
                    _log.info("Not connected to Redis yet: deciding from local memory until it is (fail_open)")
            return await local()

    def call(self, facility: str, shared: Callable[[], Deferred[T]], local: Callable[[], Deferred[T]]) -> Deferred[T]:
        return Deferred.fromCoroutine(self.run(facility, shared, local))


class FailoverState:
    """
    Decisions on the shared state, or on local memory during an outage.
    """

    def __init__(self, shared: RedisState, local: MemoryState, failover: Failover) -> None:
        self.shared = shared
        self.local = local
        self._failover = failover

    def decide(
        self, alerts: Sequence[Alert], now: float, enqueue: Enqueue, replay: Replay | None = None
    ) -> Deferred[Decision]:
        return self._failover.call(
            "dedup",
            lambda: self.shared.decide(alerts, now, enqueue, replay),
            lambda: self.local.decide(alerts, now, enqueue, replay),
        )

    def tick(self, now: float, enqueue: Enqueue, max_events: int | None = None) -> Deferred[Decision]:
        return Deferred.fromCoroutine(self._tick(now, enqueue, max_events))

    async def _tick(self, now: float, enqueue: Enqueue, max_events: int | None) -> Decision:
        # Both: storms folded locally during an outage still get their
        # updates and closing summaries.
        local = await self.local.tick(now, enqueue, max_events)
        left = None if max_events is None else max(0, max_events - len(local.outgoing))
        try:
            shared = await self._failover.run(
                "storms", lambda: self.shared.tick(now, enqueue, left), lambda: _nothing_due()
            )
        except StateUnavailable:
            # The local events are committed already.
            return local
        return Decision(Changes(), (), local.outgoing + shared.outgoing, local.held_back + shared.held_back)

    def delivered(self, key: str, idempotency_key: str, outcome: Delivery) -> Deferred[None]:
        self.local.delivered(key, idempotency_key, outcome)
        return self._failover.call(
            "status", lambda: self.shared.delivered(key, idempotency_key, outcome), lambda: _nothing()
        )

    def episode(self, key: str) -> Deferred[Episode | None]:
        return self._failover.call("status", lambda: self.shared.episode(key), lambda: self.local.episode(key))

    def by_fingerprint(self, fingerprint: str) -> Deferred[Episode | None]:
        return self._failover.call(
            "status", lambda: self.shared.by_fingerprint(fingerprint), lambda: self.local.by_fingerprint(fingerprint)
        )

    def page(self, status: str | None, after: str | None, limit: int) -> Deferred[list[Episode]]:
        return self._failover.call(
            "status", lambda: self.shared.page(status, after, limit), lambda: self.local.page(status, after, limit)
        )

    def tracked(self) -> Deferred[Tracked]:
        return self._failover.call("status", self.shared.tracked, self.local.tracked)


class FailoverLimiter:
    """
    Shared token buckets, or this process's during an outage.
    """

    def __init__(self, shared: RedisRateLimiter, local: RateLimiter, failover: Failover) -> None:
        self.shared = shared
        self.local = local
        self._failover = failover

    @property
    def interval(self) -> float:
        return self.local.interval

    def tick(self) -> None:
        self.local.tick()

    def admit(self, endpoint: str, client: str, identity: str | None = None) -> Deferred[RateCheck]:
        return self._failover.call(
            "rate_limit",
            lambda: self.shared.admit(endpoint, client, identity),
            lambda: self.local.admit(endpoint, client, identity),
        )


class SharedReplays:
    """
    Replay memory across replicas, behind each process's own (which has
    already accepted the key when this is asked).
    """

    def __init__(self, shared: RedisReplays, local: ReplayCache, failover: Failover) -> None:
        self.shared = shared
        self.local = local
        self._failover = failover

    def claim(self, key: str) -> Deferred[bool]:
        """
        Whether no other replica has accepted C{key}; in C{fail_open}
        during an outage, the local check (already passed) decides.
        """
        until = self.local.until(key)
        if until is None:
            return _true()

        def _claimed(fresh: bool) -> bool:
            if not fresh:
                # The shared memory decides: should the replica that has
                # the key forget it (its request failed), the sender's
                # retry must pass here too.
                self.local.forget(key)
            return fresh

        return self._failover.call("replay", lambda: self.shared.claim(key, until).addCallback(_claimed), _true)

    def forget(self, key: str) -> Deferred[None]:
        self.local.forget(key)
        d = self.shared.forget(key)
        # Best effort: the key expires by itself with the message.
        return d.addErrback(lambda f: f.trap(RedisUnavailable))


def _nothing_due() -> Deferred[Decision]:
    return succeed(Decision(Changes()))


def _true() -> Deferred[bool]:
    return succeed(True)


def _nothing() -> Deferred[None]:
    return succeed(None)
