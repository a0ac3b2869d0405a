# -*- test-case-name: tests.unit.test_ratelimit -*-
"""
Rate limiting with token buckets: global, per endpoint and per client.

Requests with credentials and requests without (to an endpoint that asks
for none, with no client certificate either) never share a bucket: each
kind has its own global and endpoint buckets, and a client bucket is kept
under the authenticated identity (C{token:0}, C{user:…}, C{cert:…}) of a
request with credentials, under the client address of one without.  So
nothing an unauthenticated client does uses up a real sender's budget,
whatever addresses it rotates through.  (Requests whose credentials fail
are refused before the rate check and take nothing at all.)

A bucket is refilled when a request takes from it, by the time elapsed on
the injected clock since its last refill: exact, whatever the burst, and a
request never waits for a timer.  L{RateLimiter.tick}, which the service
runs every L{RateLimiter.interval} seconds (a C{TimerService}), forgets the
client buckets that are full again (the client is idle), which bounds
memory by the number of recently active clients, itself capped at
C{max_clients}.

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

__all__ = ["Limiter", "RateCheck", "RateLimiter", "TokenBucket"]


class TokenBucket:
    """
    C{capacity} tokens at most, refilled at C{per_minute} tokens a minute.
    """

    __slots__ = ("capacity", "rate", "refilled", "tokens")

    def __init__(self, per_minute: float, capacity: float, now: float = 0.0) -> None:
        self.rate = per_minute / 60.0
        self.capacity = capacity
        self.tokens = capacity
        self.refilled = now

    def refill(self, now: float) -> None:
        """
        Add what the time since the last refill brings, up to the capacity.
        """
        elapsed = now - self.refilled
        if elapsed > 0:
            self.refilled = now
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)

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
class RateCheck:
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

    @property
    def interval(self) -> float:
        """
        How often L{tick} should run.
        """

    def admit(self, endpoint: str, client: str, identity: str | None = None) -> Deferred[RateCheck]:
        """
        Decide on one request to C{endpoint} from C{client} (its address),
        authenticated as C{identity} (or not at all), taking a token from
        every bucket that applies if it is allowed.
        """

    def tick(self) -> None:
        """
        Forget what this process keeps of idle clients.
        """


class _Pool:
    """
    The global and endpoint buckets of one kind of request: with
    credentials, or without.
    """

    __slots__ = ("endpoints", "everything")

    def __init__(self, global_limit: int, burst: int, endpoint_limits: dict[str, int], now: float) -> None:
        self.everything = TokenBucket(global_limit, max(burst, 1), now)
        # An endpoint's burst is its per-minute limit, capped by the global
        # burst: a quiet endpoint may use a minute's worth at once.
        self.endpoints = {
            path: (limit, TokenBucket(limit, min(limit, max(burst, 1)), now)) for path, limit in endpoint_limits.items()
        }


class RateLimiter:
    """
    Token buckets for the whole gateway.

    @param global_limit: Requests per minute over all endpoints (for
        requests with credentials, and again for those without).
    @param burst: Capacity of the global and client buckets.
    @param endpoint_limits: Requests per minute by endpoint path.
    @param per_client_limit: Requests per minute per client (identity or
        address), or C{None} for no per-client limit.
    @param interval: How often the service should call L{tick}: idle
        clients are forgotten that long after their bucket is full again.
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
        interval: float = 1.0,
    ) -> None:
        self._clock = clock
        self.interval = interval
        now = clock.seconds()
        self._authenticated = _Pool(global_limit, burst, endpoint_limits, now)
        self._anonymous = _Pool(global_limit, burst, endpoint_limits, now)
        self._global_limit = global_limit
        self._per_client_limit = per_client_limit
        self._client_burst = max(1, min(burst, per_client_limit or burst))
        self._clients: OrderedDict[str, TokenBucket] = OrderedDict()
        self._max_clients = max_clients

    @property
    def tracked_clients(self) -> int:
        return len(self._clients)

    def tick(self) -> None:
        """
        Forget the client buckets that are full again.
        """
        now = self._clock.seconds()
        full = []
        for client, bucket in self._clients.items():
            bucket.refill(now)
            if bucket.full:
                full.append(client)
        for client in full:
            del self._clients[client]

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

    def check(self, endpoint: str, client: str, identity: str | None = None) -> RateCheck:
        """
        Decide on one request to C{endpoint} from C{client} (its address),
        authenticated as C{identity} (or not at all), taking a token from
        every bucket that applies if it is allowed.
        """
        now = self._clock.seconds()
        pool = self._anonymous if identity is None else self._authenticated
        buckets: list[tuple[str, int, TokenBucket]] = [("global", self._global_limit, pool.everything)]
        limited = pool.endpoints.get(endpoint)
        if limited is not None:
            buckets.append(("endpoint", limited[0], limited[1]))
        # An identity never looks like an address: the two kinds of client
        # bucket cannot be confused.
        client_bucket = self._client_bucket(client if identity is None else identity, now)
        if client_bucket is not None and self._per_client_limit is not None:
            buckets.append(("client", self._per_client_limit, client_bucket))
        for _, _, bucket in buckets:
            bucket.refill(now)
        blocked = [(bucket.wait_time(), scope, limit, bucket) for scope, limit, bucket in buckets if bucket.tokens < 1]
        if blocked:
            wait, scope, limit, bucket = max(blocked, key=lambda b: b[0])
            return RateCheck(False, scope, limit, self.WINDOW, 0, wait, bucket.reset_time())
        for _, _, bucket in buckets:
            bucket.tokens -= 1
        scope, limit, tightest = min(buckets, key=lambda b: b[2].tokens)
        return RateCheck(True, scope, limit, self.WINDOW, int(tightest.tokens), 0.0, tightest.reset_time())

    def admit(self, endpoint: str, client: str, identity: str | None = None) -> Deferred[RateCheck]:
        """
        L{check}, answered through a Deferred as the shared limiter's is.
        """
        return succeed(self.check(endpoint, client, identity))
