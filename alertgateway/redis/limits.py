# -*- test-case-name: tests.unit.test_state_behaviour -*-
"""
Rate limits shared by every replica: the same token buckets as
L{alertgateway.guards.ratelimit.RateLimiter} (global, per endpoint, per
client), kept in Redis and decided by one script call per request, so three
replicas hold a global limit of N requests a minute together, not 3N.  As
there, requests without credentials have global and endpoint buckets of
their own (C{rate:anonymous:…}), and a client bucket is kept under the
authenticated identity (C{rate:identity:…}) or else the address
(C{rate:client:…}).

Time is the gateway's clock, passed to the script: replicas' clocks must
agree (NTP) to within a fraction of a token's refill time.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from alertgateway.guards.ratelimit import RateCheck
from alertgateway.redis import scripts as _lua
from alertgateway.redis.client import RedisClient

__all__ = ["RedisRateLimiter"]


class RedisRateLimiter:
    """
    Token buckets in Redis; the parameters are L{RateLimiter}'s.
    """

    WINDOW = 60

    def __init__(
        self,
        client: RedisClient,
        clock: IReactorTime,
        *,
        global_limit: int,
        burst: int,
        endpoint_limits: dict[str, int],
        per_client_limit: int | None = None,
    ) -> None:
        self._client = client
        self._clock = clock
        self._global = (global_limit, max(burst, 1))
        # As in memory: an endpoint's burst is its minute's worth, capped
        # by the global burst.
        self._endpoints = {path: (limit, min(limit, max(burst, 1))) for path, limit in endpoint_limits.items()}
        self._per_client = per_client_limit
        self._client_burst = max(1, min(burst, per_client_limit or burst))

    # The buckets refill inside the script, from the time each request
    # passes; an idle bucket expires in Redis by itself.
    interval = 60.0

    def tick(self) -> None:
        pass

    def admit(self, endpoint: str, client: str, identity: str | None = None) -> Deferred[RateCheck]:
        """
        Decide on one request to C{endpoint} from C{client} (its address),
        authenticated as C{identity} (or not at all), taking a token from
        every bucket that applies if it is allowed.
        """
        named = self._client.key
        pool: tuple[str, ...] = ("rate",) if identity is not None else ("rate", "anonymous")
        buckets: list[tuple[str, str, int, int]] = [("global", named(*pool, "global"), *self._global)]
        limited = self._endpoints.get(endpoint)
        if limited is not None:
            buckets.append(("endpoint", named(*pool, "endpoint", endpoint), *limited))
        if self._per_client is not None:
            name = named("rate", "client", client) if identity is None else named("rate", "identity", identity)
            buckets.append(("client", name, self._per_client, self._client_burst))
        args: list[object] = [repr(self._clock.seconds())]
        for _, _, limit, capacity in buckets:
            args.extend((repr(limit / 60.0), capacity))
        d = self._client.script(_lua.BUCKETS, [key for _, key, _, _ in buckets], args)

        def _decision(reply: list[object]) -> RateCheck:
            allowed, index, remaining, wait, reset = reply
            scope, _, limit, _ = buckets[int(str(index)) - 1]
            return RateCheck(
                bool(int(str(allowed))),
                scope,
                limit,
                self.WINDOW,
                int(str(remaining)),
                float(str(wait)),
                float(str(reset)),
            )

        return d.addCallback(_decision)
