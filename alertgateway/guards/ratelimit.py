"""
Rate limiting with token buckets: global, per endpoint and per client
address (BR-WH-023).

Buckets refill continuously from the injected clock's time, so a decision
never waits for a timer; a LoopingCall on the same clock prunes client
buckets that have refilled completely (idle clients), which bounds memory
by the number of recently active clients, itself capped at C{max_clients}.

A request is allowed only if every bucket that applies to it has a token,
and then takes one from each: a request refused by its endpoint's bucket
does not use up the global budget.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

__all__ = ["Decision", "Limiter", "RateLimiter", "TokenBucket"]


class TokenBucket:
    """
    C{capacity} tokens at most, refilled at C{per_minute} tokens a minute.
    """

    def __init__(self, per_minute: float, capacity: float, now: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now

    def wait_time(self) -> float:
        """
        Seconds until one token is available (0 if one is now).
        """
        if self.tokens >= 1:
            return 0.0
        return (1 - self.tokens) / self.rate

    def reset_time(self) -> float:
        """
        Seconds until the bucket is full again.
        """
        return (self.capacity - self.tokens) / self.rate

    @property
    def full(self) -> bool:
        return self.tokens >= self.capacity


@attrs.frozen
class Decision:
    """
    The outcome of a rate-limit check.

    @ivar scope: The bucket that decided: C{global}, C{endpoint} or
        C{client} (the tightest one when allowed).
    @ivar retry_after: Seconds until the request would be allowed (0 when
        allowed).
    """

    allowed: bool
    scope: str
    limit: int
    window: int
    remaining: int
    retry_after: float
    reset: float


class Limiter(Protocol):
    """
    What the webhook needs of a rate limiter (this process's or shared).
    """

    def decide(self, endpoint: str, client: str) -> Deferred[Decision]: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class RateLimiter:
    """
    Token buckets for the whole gateway.

    @param global_limit: Requests per minute over all endpoints.
    @param burst: Capacity of the global and client buckets.
    @param endpoint_limits: Requests per minute by endpoint path.
    @param per_client_limit: Requests per minute per client address, or
        C{None} for no per-client limit.
    """

    WINDOW = 60

    def __init__(
        self,
        clock: IReactorTime,
        *,
        global_limit: int,
        burst: int,
        endpoint_limits: dict[str, int],
        per_client_limit: int | None = None,
        max_clients: int = 100_000,
        prune_interval: float = 60.0,
    ) -> None:
        self._clock = clock
        now = clock.seconds()
        self._global = TokenBucket(global_limit, max(burst, 1), now)
        self._global_limit = global_limit
        # An endpoint's burst is its per-minute limit, capped by the global
        # burst: a quiet endpoint may use a minute's worth at once.
        self._endpoints = {
            path: (limit, TokenBucket(limit, min(limit, max(burst, 1)), now)) for path, limit in endpoint_limits.items()
        }
        self._per_client_limit = per_client_limit
        self._client_burst = max(1, min(burst, per_client_limit or burst))
        self._clients: OrderedDict[str, TokenBucket] = OrderedDict()
        self._max_clients = max_clients
        self._prune_interval = prune_interval
        self._pruner = LoopingCall(self.prune)
        self._pruner.clock = clock

    def start(self) -> None:
        self._pruner.start(self._prune_interval, now=False)

    def stop(self) -> None:
        if self._pruner.running:
            self._pruner.stop()

    @property
    def tracked_clients(self) -> int:
        return len(self._clients)

    def _client_bucket(self, client: str, now: float) -> TokenBucket | None:
        if self._per_client_limit is None:
            return None
        bucket = self._clients.get(client)
        if bucket is None:
            if len(self._clients) >= self._max_clients:
                # Forgetting the least recently seen client gives it a fresh
                # bucket later: a loss of precision, never of availability.
                self._clients.popitem(last=False)
            bucket = TokenBucket(self._per_client_limit, self._client_burst, now)
            self._clients[client] = bucket
        else:
            self._clients.move_to_end(client)
        return bucket

    def check(self, endpoint: str, client: str) -> Decision:
        """
        Decide on one request to C{endpoint} from C{client}, taking a token
        from every bucket that applies if it is allowed.
        """
        now = self._clock.seconds()
        buckets: list[tuple[str, int, TokenBucket]] = [("global", self._global_limit, self._global)]
        limited = self._endpoints.get(endpoint)
        if limited is not None:
            buckets.append(("endpoint", limited[0], limited[1]))
        client_bucket = self._client_bucket(client, now)
        if client_bucket is not None and self._per_client_limit is not None:
            buckets.append(("client", self._per_client_limit, client_bucket))
        for _, _, bucket in buckets:
            bucket.refill(now)
        blocked = [(bucket.wait_time(), scope, limit, bucket) for scope, limit, bucket in buckets if bucket.tokens < 1]
        if blocked:
            wait, scope, limit, bucket = max(blocked, key=lambda b: b[0])
            return Decision(False, scope, limit, self.WINDOW, 0, wait, bucket.reset_time())
        for _, _, bucket in buckets:
            bucket.tokens -= 1
        scope, limit, tightest = min(buckets, key=lambda b: b[2].tokens)
        return Decision(True, scope, limit, self.WINDOW, int(tightest.tokens), 0.0, tightest.reset_time())

    def decide(self, endpoint: str, client: str) -> Deferred[Decision]:
        """
        L{check}, answered through a Deferred as the shared limiter's is.
        """
        return succeed(self.check(endpoint, client))

    def prune(self) -> None:
        """
        Forget client buckets that have refilled completely.
        """
        now = self._clock.seconds()
        for client in list(self._clients):
            bucket = self._clients[client]
            bucket.refill(now)
            if bucket.full:
                del self._clients[client]
