"""
Tests for L{alertgateway.guards.ratelimit}: token buckets global, per
endpoint and per client, taken by requests and refilled (and the idle
client buckets forgotten) by a tick on a L{Clock}, as the service runs it.
"""

from __future__ import annotations

from twisted.internet.task import Clock, LoopingCall
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.guards.ratelimit import RateCheck, RateLimiter, TokenBucket


def limiter(
    clock: Clock,
    *,
    global_limit: int = 6000,
    burst: int = 100,
    endpoints: dict[str, int] | None = None,
    per_client: int | None = None,
    max_clients: int = 100_000,
    ticking: bool = True,
) -> RateLimiter:
    """
    A limiter whose tick runs every C{interval} on C{clock}, as the
    service's TimerService runs it (unless C{ticking} is false).
    """
    limits = RateLimiter(
        clock,
        global_limit=global_limit,
        burst=burst,
        endpoint_limits=endpoints or {},
        per_client_limit=per_client,
        max_clients=max_clients,
    )
    if ticking:
        ticks = LoopingCall(limits.tick)
        ticks.clock = clock
        ticks.start(limits.interval, now=False)
    return limits


class TokenBucketTests(SynchronousTestCase):
    """
    One L{TokenBucket}: full at first, refilled with time up to its
    capacity.
    """

    def test_refill(self) -> None:
        """
        Tokens come back at the per-minute rate for the time elapsed, never
        beyond the capacity, and time going backwards adds none.
        """
        bucket = TokenBucket(60, 5)
        self.assertEqual(bucket.tokens, 5)
        self.assertTrue(bucket.full)
        bucket.tokens = 0
        bucket.refill(2.5)
        self.assertEqual(bucket.tokens, 2.5)
        self.assertFalse(bucket.full)
        bucket.refill(-1.0)
        self.assertEqual(bucket.tokens, 2.5)
        bucket.refill(100.0)
        self.assertEqual(bucket.tokens, 5)
        self.assertTrue(bucket.full)

    def test_times(self) -> None:
        """
        The wait is until one whole token, the reset until the bucket is
        full.
        """
        bucket = TokenBucket(120, 4)
        self.assertEqual((bucket.wait_time(), bucket.reset_time()), (0.0, 0.0))
        bucket.tokens = 0.5
        self.assertEqual(bucket.wait_time(), 0.25)
        self.assertEqual(bucket.reset_time(), 1.75)
        bucket.tokens = 1.0
        self.assertEqual(bucket.wait_time(), 0.0)


class GlobalLimitTests(SynchronousTestCase):
    """
    The global bucket: C{burst} requests at once, then the per-minute rate.
    """

    def test_burst_then_refused(self) -> None:
        """
        A burst is allowed at once, counting down; the next request is
        refused with the time until a token is back, and allowed once it
        is.
        """
        clock = Clock()
        limits = limiter(clock, global_limit=60, burst=3)
        decisions = [limits.check("/a", "192.0.2.1") for _ in range(3)]
        self.assertEqual(
            decisions,
            [
                RateCheck(True, "global", 60, 60, 2, 0.0, 1.0),
                RateCheck(True, "global", 60, 60, 1, 0.0, 2.0),
                RateCheck(True, "global", 60, 60, 0, 0.0, 3.0),
            ],
        )
        self.assertEqual(limits.check("/a", "192.0.2.1"), RateCheck(False, "global", 60, 60, 0, 1.0, 3.0))
        clock.advance(0.5)
        refused = limits.check("/b", "192.0.2.2")
        self.assertFalse(refused.allowed)
        self.assertEqual(refused.retry_after, 0.5)
        clock.advance(0.5)
        self.assertTrue(limits.check("/a", "192.0.2.1").allowed)
        self.assertFalse(limits.check("/a", "192.0.2.1").allowed)

    def test_refill_capped_by_burst(self) -> None:
        """
        However long the gateway was idle, no more than the burst is
        allowed at once.
        """
        clock = Clock()
        limits = limiter(clock, global_limit=60, burst=3)
        clock.advance(3600)
        self.assertEqual([limits.check("/a", "c").allowed for _ in range(4)], [True, True, True, False])

    def test_rate(self) -> None:
        """
        Once the burst is used, requests are allowed at the per-minute
        rate: 120 a minute is one each half second.
        """
        clock = Clock()
        limits = limiter(clock, global_limit=120, burst=1)
        allowed = 0
        # Quarter seconds add up exactly in binary floating point.
        for _ in range(240):
            allowed += limits.check("/a", "c").allowed
            clock.advance(0.25)
        self.assertEqual(allowed, 120)


class EndpointLimitTests(SynchronousTestCase):
    def test_endpoint(self) -> None:
        """
        An endpoint with C{rate_limit} is refused on its own bucket (scope
        endpoint, its own limit) while other endpoints carry on.
        """
        clock = Clock()
        limits = limiter(clock, endpoints={"/a": 2})
        self.assertTrue(limits.check("/a", "c").allowed)
        self.assertTrue(limits.check("/a", "c").allowed)
        refused = limits.check("/a", "c")
        self.assertEqual((refused.allowed, refused.scope, refused.limit), (False, "endpoint", 2))
        self.assertAlmostEqual(refused.retry_after, 30.0)
        self.assertAlmostEqual(refused.reset, 60.0)
        self.assertTrue(limits.check("/b", "c").allowed)

    def test_burst_capped(self) -> None:
        """
        An endpoint's burst is its minute's worth, but never more than the
        global burst.
        """
        clock = Clock()
        limits = limiter(clock, burst=3, endpoints={"/a": 10})
        self.assertEqual([limits.check("/a", "c").allowed for _ in range(4)], [True, True, True, False])
        self.assertEqual(limits.check("/a", "c").scope, "endpoint")

    def test_tightest_reported(self) -> None:
        """
        An allowed request reports the bucket with the fewest tokens left,
        for the RateLimit headers.
        """
        clock = Clock()
        limits = limiter(clock, endpoints={"/a": 10})
        decision = limits.check("/a", "c")
        self.assertEqual((decision.scope, decision.limit, decision.remaining), ("endpoint", 10, 9))
        self.assertAlmostEqual(decision.reset, 6.0)
        decision = limits.check("/b", "c")
        self.assertEqual((decision.scope, decision.limit, decision.remaining), ("global", 6000, 98))

    def test_longest_wait(self) -> None:
        """
        When several buckets are empty, the answer is the one with the
        longest wait: retrying sooner would be refused again.
        """
        clock = Clock()
        limits = limiter(clock, global_limit=60, burst=1, endpoints={"/a": 1})
        limits.check("/a", "c")
        refused = limits.check("/a", "c")
        self.assertEqual((refused.scope, refused.retry_after), ("endpoint", 60.0))


class IndependenceTests(SynchronousTestCase):
    """
    A request takes a token from every bucket that applies only when all
    of them have one.
    """

    def test_endpoint_refusal_spares_global(self) -> None:
        """
        Requests refused by their endpoint's bucket do not use up the
        global budget: another endpoint still gets all of what is left.
        """
        clock = Clock()
        limits = limiter(clock, global_limit=60, burst=3, endpoints={"/a": 1})
        self.assertTrue(limits.check("/a", "c").allowed)
        for _ in range(5):
            self.assertEqual(limits.check("/a", "c").scope, "endpoint")
        self.assertEqual([limits.check("/b", "c").allowed for _ in range(3)], [True, True, False])

    def test_global_refusal_spares_endpoint(self) -> None:
        """
        Requests refused by the global bucket do not use up their
        endpoint's or client's budget.
        """
        clock = Clock()
        limits = limiter(clock, global_limit=60, burst=2, endpoints={"/a": 2}, per_client=2)
        self.assertTrue(limits.check("/b", "other").allowed)
        self.assertTrue(limits.check("/b", "other").allowed)
        for _ in range(5):
            self.assertEqual(limits.check("/a", "c").scope, "global")
        for _ in range(2):
            clock.advance(1)
            self.assertTrue(limits.check("/a", "c").allowed)

    def test_client_refusal_spares_others(self) -> None:
        """
        A client over its own limit uses up neither the global nor its
        endpoint's budget.
        """
        clock = Clock()
        limits = limiter(clock, global_limit=60, burst=3, endpoints={"/a": 3}, per_client=1)
        self.assertTrue(limits.check("/a", "noisy").allowed)
        for _ in range(5):
            self.assertEqual(limits.check("/a", "noisy").scope, "client")
        self.assertTrue(limits.check("/a", "quiet-1").allowed)
        self.assertTrue(limits.check("/a", "quiet-2").allowed)


class CredentialsApartTests(SynchronousTestCase):
    """
    Requests with credentials (an identity) and without never share a
    bucket.
    """

    def test_global_apart(self) -> None:
        """
        Spending the global burst without credentials, from ever new
        addresses, leaves the whole burst to senders with credentials, and
        the other way round.
        """
        limits = limiter(Clock(), burst=2)
        self.assertEqual([limits.check("/a", f"192.0.2.{i}").allowed for i in range(3)], [True, True, False])
        self.assertEqual([limits.check("/a", "192.0.2.9", "token:0").allowed for _ in range(3)], [True, True, False])
        self.assertEqual(limits.check("/a", "192.0.2.9", "key:1").scope, "global")

    def test_endpoint_apart(self) -> None:
        """
        An endpoint's bucket is two as well: one for each kind of request.
        """
        limits = limiter(Clock(), endpoints={"/a": 1})
        self.assertTrue(limits.check("/a", "192.0.2.1").allowed)
        self.assertEqual(limits.check("/a", "192.0.2.2").scope, "endpoint")
        self.assertTrue(limits.check("/a", "192.0.2.1", "cert:am.example").allowed)
        self.assertFalse(limits.check("/a", "192.0.2.1", "user:gf").allowed)

    def test_client_is_identity(self) -> None:
        """
        The client bucket of a request with credentials is its identity's,
        from any address; without, its address's.
        """
        limits = limiter(Clock(), per_client=1)
        self.assertTrue(limits.check("/a", "192.0.2.1", "token:0").allowed)
        refused = limits.check("/a", "192.0.2.2", "token:0")
        self.assertEqual((refused.allowed, refused.scope), (False, "client"))
        self.assertTrue(limits.check("/a", "192.0.2.1").allowed)
        self.assertTrue(limits.check("/a", "192.0.2.1", "token:1").allowed)
        self.assertEqual(limits.tracked_clients, 3)


class ClientLimitTests(SynchronousTestCase):
    def test_per_client(self) -> None:
        """
        With C{per_client_limit} each client address has its own bucket:
        one client over it is refused (scope client) while another is not.
        """
        clock = Clock()
        limits = limiter(clock, per_client=2)
        self.assertTrue(limits.check("/a", "192.0.2.1").allowed)
        self.assertTrue(limits.check("/b", "192.0.2.1").allowed)
        refused = limits.check("/a", "192.0.2.1")
        self.assertEqual((refused.allowed, refused.scope, refused.limit), (False, "client", 2))
        self.assertAlmostEqual(refused.retry_after, 30.0)
        self.assertTrue(limits.check("/a", "192.0.2.2").allowed)
        self.assertEqual(limits.tracked_clients, 2)

    def test_no_client_limit(self) -> None:
        """
        Without C{per_client_limit} no client is tracked.
        """
        limits = limiter(Clock())
        for client in ("a", "b", "c"):
            limits.check("/a", client)
        self.assertEqual(limits.tracked_clients, 0)

    def test_pruned(self) -> None:
        """
        The tick forgets the buckets of clients that have refilled
        completely (idle ones) and keeps the others; without ticks nothing
        is forgotten.
        """
        clock = Clock()
        limits = limiter(clock, per_client=60)
        limits.check("/a", "light")
        for _ in range(20):
            limits.check("/a", "heavy")
        self.assertEqual(limits.tracked_clients, 2)
        clock.advance(5)
        self.assertEqual(limits.tracked_clients, 1)
        clock.advance(15)
        self.assertEqual(limits.tracked_clients, 0)
        still = limiter(clock, per_client=60, ticking=False)
        still.check("/a", "light")
        clock.advance(60)
        self.assertEqual(still.tracked_clients, 1)

    def test_pruned_client_starts_full(self) -> None:
        """
        A pruned client had a full bucket, and gets a full one back: pruning
        changes no decision.
        """
        clock = Clock()
        limits = limiter(clock, burst=2, per_client=60)
        limits.check("/a", "c")
        clock.advance(60)
        self.assertEqual(limits.tracked_clients, 0)
        self.assertEqual([limits.check("/a", "c").allowed for _ in range(3)], [True, True, False])

    def test_max_clients(self) -> None:
        """
        Past C{max_clients} the least recently seen client is forgotten
        (and starts again with a full bucket); the others keep theirs.
        """
        clock = Clock()
        limits = limiter(clock, per_client=1, max_clients=2)
        self.assertTrue(limits.check("/a", "a").allowed)
        self.assertTrue(limits.check("/a", "b").allowed)
        self.assertFalse(limits.check("/a", "a").allowed)
        self.assertTrue(limits.check("/a", "c").allowed)
        self.assertEqual(limits.tracked_clients, 2)
        self.assertFalse(limits.check("/a", "a").allowed)
        self.assertTrue(limits.check("/a", "b").allowed)
        self.assertEqual(limits.tracked_clients, 2)


class TickTests(SynchronousTestCase):
    """
    Buckets refill from the clock; the tick only forgets idle clients.
    """

    def test_refilled_without_a_tick(self) -> None:
        """
        A bucket refills by the time elapsed when a request takes from it,
        with no tick at all.
        """
        clock = Clock()
        limits = limiter(clock, global_limit=60, burst=1, ticking=False)
        self.assertTrue(limits.check("/a", "c").allowed)
        clock.advance(0.5)
        self.assertFalse(limits.check("/a", "c").allowed)
        clock.advance(0.5)
        self.assertTrue(limits.check("/a", "c").allowed)

    def test_idle_clients_forgotten(self) -> None:
        """
        The tick forgets a client whose bucket is full again, and only
        such clients.
        """
        clock = Clock()
        limits = limiter(clock, global_limit=6000, burst=3, per_client=60, ticking=False)
        limits.check("/a", "idle")
        limits.check("/a", "busy")
        limits.check("/a", "busy")
        clock.advance(0.5)
        limits.tick()
        self.assertEqual(limits.tracked_clients, 2)
        clock.advance(0.5)
        limits.tick()
        self.assertEqual(limits.tracked_clients, 1)
        clock.advance(1)
        limits.tick()
        self.assertEqual(limits.tracked_clients, 0)


def sent(limits: RateLimiter, clock: Clock, *, per_second: int, seconds: int) -> int:
    """
    Send C{per_second} requests a second, evenly, for C{seconds}, with the
    limiter's tick running as the service runs it; how many are refused.
    """
    refused = 0
    for _ in range(per_second * seconds):
        clock.advance(1.0 / per_second)
        if not limits.check("/webhook/prometheus", "c").allowed:
            refused += 1
    return refused


class UnderTheLimitTests(SynchronousTestCase):
    """
    A sender that keeps under its configured rate is never refused, however
    small the burst.
    """

    def test_client_under_its_limit(self) -> None:
        """
        per_client_limit 1200/min (20/s) with burst 10: 15 a second pass.
        """
        clock = Clock()
        limits = limiter(clock, global_limit=100_000, burst=10, per_client=1200)
        self.assertEqual(sent(limits, clock, per_second=15, seconds=10), 0)

    def test_global_under_its_limit(self) -> None:
        """
        global_limit 600/min (10/s) with burst 1: 8 a second pass.
        """
        clock = Clock()
        limits = limiter(clock, global_limit=600, burst=1)
        self.assertEqual(sent(limits, clock, per_second=8, seconds=10), 0)

    def test_over_the_limit_held_to_it(self) -> None:
        """
        global_limit 600/min with burst 1: of 30 a second for 10 s, no
        more than the limit's worth passes, and most of it does (a token
        that comes just after a request waits for the next one).
        """
        clock = Clock()
        limits = limiter(clock, global_limit=600, burst=1)
        passed = 300 - sent(limits, clock, per_second=30, seconds=10)
        self.assertTrue(70 <= passed <= 101, passed)
