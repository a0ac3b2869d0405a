"""
One suite of behaviour tests for both state backends: the same tests run
against this process's memory and against a real C{redis-server}.

Each test asks its backend for "replicas": two handles on the state that
decide independently.  In memory they are one handle (a process shares with
itself); on Redis they are two clients, as two gateway processes would be.
What a replica decides, the other must see.

On Redis the suite runs twice: with the Redis queue, each replica's
decisions are written with their queue entries in one script; with a queue
elsewhere (here, one that takes everything at once), they are committed
first and taken back if the queue refuses them.

Time is a task.Clock for both: the Redis backend is given the gateway's
time, so windows and buckets move only when the test moves them.  The
Redis I/O itself is real, on the real reactor.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import TestCase

from alertgateway.core.decider import DeciderSettings
from alertgateway.core.decision import Decision, Outgoing, Verdict
from alertgateway.core.episodes import Delivery
from alertgateway.core.model import Alert, fingerprint
from alertgateway.core.storms import StormSettings
from alertgateway.guards.ratelimit import Limiter, RateLimiter
from alertgateway.guards.replays import ReplayCache
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.redis.client import RedisClient, RedisSettings
from alertgateway.redis.decisions import RedisState
from alertgateway.redis.failover import Failover, FailoverState, SharedReplays
from alertgateway.redis.limits import RedisRateLimiter
from alertgateway.redis.replays import RedisReplays
from alertgateway.state.errors import QueueFull, StateUnavailable
from alertgateway.state.memory import MemoryState
from alertgateway.state.ports import Enqueue, StateStore, StateWrite
from tests.redis_server import RedisServer, until
from tests.unit._http import capture_events
from tests.unit._support import inline, queueing, redis_queue, storm_settings

reactor: Any = _reactor

NEW, DUPLICATE, RESOLVED, ESCALATED, AGGREGATED = (
    Verdict.NEW,
    Verdict.DUPLICATE,
    Verdict.RESOLVED,
    Verdict.ESCALATED,
    Verdict.AGGREGATED,
)


def make_alert(status: str = "firing", **labels: str) -> Alert:
    """
    A PodCrash alert of pod p-1 in payments, C{labels} added or replaced.
    """
    merged = {"alertname": "PodCrash", "namespace": "payments", "pod": "p-1", **labels}
    return Alert(
        fingerprint(merged), "alertmanager", status, merged, {}, "2026-11-26T03:49:49Z", None, "", "2026-11-26T03:50Z"
    )


def started_clock() -> Clock:
    clock = Clock()
    clock.advance(1_800_000_000)
    return clock


def at_once(decision: Decision, write: StateWrite | None) -> Deferred[None]:
    return succeed(None)


def refuse(decision: Decision, write: StateWrite | None) -> Deferred[None]:
    raise QueueFull("the queue refused the write")


class Replica:
    """
    One gateway's handle on a state store, deciding at the test clock's
    time and queueing with C{enqueue} (at once, by default).
    """

    def __init__(self, store: StateStore, clock: Clock, enqueue: Enqueue = at_once) -> None:
        self.store = store
        self.clock = clock
        self.enqueue = enqueue

    def decide(self, alerts: list[Alert], enqueue: Enqueue | None = None) -> Deferred[Decision]:
        return self.store.decide(alerts, self.clock.seconds(), enqueue or self.enqueue)

    async def tick(self) -> tuple[Outgoing, ...]:
        return (await self.store.tick(self.clock.seconds(), self.enqueue)).outgoing


async def results(replica: Replica, *alerts: Alert) -> list[Verdict]:
    decided = await replica.decide(list(alerts))
    return [r.verdict for r in decided.rulings]


class _Behaviour:
    """
    The tests; subclasses say how to make the backend's replicas.
    """

    clock: Clock
    # Whether the replicas are one process sharing its memory.
    one_process = False
    # Whether a decision is written with its queue entries, in one step.
    one_commit = False

    def replicas(
        self, storms: StormSettings | None = None, max_tracked: int = 1000, **settings: Any
    ) -> tuple[Replica, Replica]:
        raise NotImplementedError()

    def limiters(self, **limits: Any) -> tuple[Limiter, Limiter]:
        """
        Two replicas' limiters with C{limits} (global_limit, burst, and
        endpoint_limits or per_client_limit if given).
        """
        raise NotImplementedError()

    def replays(self) -> tuple[SharedReplays | ReplayCache, SharedReplays | ReplayCache]:
        raise NotImplementedError()

    @inline
    async def test_duplicate_across_replicas(self) -> None:
        """
        An alert decided by one replica is a duplicate on the other, within
        the window, and new again once the window has lapsed.
        """
        a, b = self.replicas(window=300.0)
        assert isinstance(self, TestCase)
        self.assertEqual(await results(a, make_alert()), [NEW])
        self.clock.advance(10)
        self.assertEqual(await results(b, make_alert()), [DUPLICATE])
        self.clock.advance(301)
        self.assertEqual(await results(b, make_alert()), [NEW])

    @inline
    async def test_concurrent_first_sightings(self) -> None:
        """
        Two replicas deciding the same new alert at the same moment: one
        forwards it as new, the other sees a duplicate.
        """
        a, b = self.replicas()
        assert isinstance(self, TestCase)
        decided = await gatherResults([a.decide([make_alert()]), b.decide([make_alert()])])
        self.assertEqual(sorted(r.verdict.value for d in decided for r in d.rulings), ["duplicate", "new"])
        self.assertEqual(sum(len(d.outgoing) for d in decided), 1)

    @inline
    async def test_resolution_closes_episode(self) -> None:
        """
        A resolved alert is forwarded once and closes the episode on every
        replica; a repeat of it is a duplicate, and the next firing is new.
        """
        a, b = self.replicas()
        assert isinstance(self, TestCase)
        self.assertEqual(await results(a, make_alert()), [NEW])
        self.assertEqual(await results(b, make_alert("resolved")), [RESOLVED])
        self.assertEqual(await results(a, make_alert("resolved")), [DUPLICATE])
        self.assertEqual(await results(b, make_alert()), [NEW])

    @inline
    async def test_unknown_resolution_forwarded(self) -> None:
        """
        A resolved alert nobody saw fire is forwarded: the processor may
        know it.
        """
        a, _ = self.replicas()
        assert isinstance(self, TestCase)
        decided = await a.decide([make_alert("resolved", pod="p-9")])
        self.assertEqual([r.verdict for r in decided.rulings], [RESOLVED])
        self.assertEqual(len(decided.outgoing), 1)

    @inline
    async def test_escalation_counts_every_replica(self) -> None:
        """
        Duplicates seen by either replica count toward escalation: the
        production rule (3 within 5 minutes) escalates once, on the third.
        """
        a, b = self.replicas()
        assert isinstance(self, TestCase)
        self.assertEqual(await results(a, make_alert()), [NEW])
        seen = []
        for replica in (b, a, b, a):
            # Past min_spacing: each sighting counts.
            self.clock.advance(31)
            seen += await results(replica, make_alert())
        self.assertEqual(seen, [DUPLICATE, DUPLICATE, ESCALATED, DUPLICATE])

    @inline
    async def test_storm_folded_across_replicas(self) -> None:
        """
        New members of one group count toward its storm whichever replica
        sees them; the storm's start is forwarded once and later members
        are folded, then listed by the tick that closes it.
        """
        a, b = self.replicas(storms=storm_settings(threshold=3, max_members_listed=10))
        assert isinstance(self, TestCase)
        first = await a.decide([make_alert(pod="p-1"), make_alert(pod="p-2")])
        second = await b.decide([make_alert(pod="p-3"), make_alert(pod="p-4")])
        self.assertEqual([r.verdict for r in first.rulings], [NEW, NEW])
        self.assertEqual([r.verdict for r in second.rulings], [NEW, AGGREGATED])
        started = [o.body for o in second.outgoing if o.body.get("type") == "storm"]
        self.assertEqual([e["state"] for e in started], ["started"])
        self.assertEqual(started[0]["memberCount"], 4)
        third = await a.decide([make_alert(pod="p-5")])
        self.assertEqual([r.verdict for r in third.rulings], [AGGREGATED])
        self.assertEqual(third.outgoing, ())
        self.clock.advance(31)
        events = [o.body for o in await a.tick()] + [o.body for o in await b.tick()]
        self.assertEqual([e["state"] for e in events], ["closed"])
        self.assertEqual([m["fingerprint"] for m in events[0]["members"]], [make_alert(pod="p-5").fingerprint])

    @inline
    async def test_not_queued_not_kept(self) -> None:
        """
        A decision whose forwards the queue refused leaves no trace: the
        retry is new, on any replica.
        """
        a, b = self.replicas()
        assert isinstance(self, TestCase)
        with self.assertRaises(QueueFull):
            await a.decide([make_alert()], refuse)
        self.assertEqual(await results(b, make_alert()), [NEW])

    @inline
    async def test_refused_after_a_duplicate_elsewhere(self) -> None:
        """
        A forward the queue refuses is never kept, whatever another replica
        decided on the same alert meanwhile (an HA copy): the alert is
        forwarded exactly once in the end.  Committed before it is queued,
        the refused decision is seen as a duplicate elsewhere and then taken
        back, so the retry is new; committed with its queue entries, it was
        never there to be seen: the other replica forwards the alert, and
        the retry is its duplicate.  In one process, the copy waits for the
        refused decision, then forwards the alert.
        """
        a, b = self.replicas()
        assert isinstance(self, TestCase)
        writing: Deferred[None] = Deferred()
        asked: list[Decision] = []

        def slow(decision: Decision, write: StateWrite | None) -> Deferred[None]:
            asked.append(decision)
            return writing

        first = a.decide([make_alert()], slow)
        await until(lambda: bool(asked))
        second = b.decide([make_alert()])
        forwards = 0
        if not self.one_process:
            decided = await second
            forwards += len(decided.outgoing)
            self.assertEqual([r.verdict for r in decided.rulings], [NEW if self.one_commit else DUPLICATE])
        writing.errback(QueueFull("disk full"))
        with self.assertRaises(QueueFull):
            await first
        if self.one_process:
            # It waited for the refused decision, then found nothing.
            decided = await second
            forwards += len(decided.outgoing)
            self.assertEqual([r.verdict for r in decided.rulings], [NEW])
        retry = await a.decide([make_alert()])
        forwards += len(retry.outgoing)
        self.assertEqual(
            [r.verdict for r in retry.rulings], [DUPLICATE if self.one_commit or self.one_process else NEW]
        )
        self.assertEqual(forwards, 1)

    @inline
    async def test_status_reads(self) -> None:
        """
        What the status API reads: an episode by fingerprint, with how its
        delivery went, and pages ordered by dedup key, filtered by status.
        """
        a, b = self.replicas()
        assert isinstance(self, TestCase)
        alerts = [make_alert(pod=f"p-{i}") for i in range(5)]
        decided = await a.decide(alerts)
        await a.decide([make_alert("resolved", pod="p-0")])
        first = decided.outgoing[1]
        await a.store.delivered(first.key, first.idempotency_key, Delivery.DELIVERED)
        episode = await b.store.by_fingerprint(alerts[1].fingerprint)
        assert episode is not None
        self.assertEqual((episode.fingerprint, episode.delivery), (alerts[1].fingerprint, Delivery.DELIVERED))
        self.assertIsNone(await b.store.by_fingerprint("0000000000000000"))
        firing = await b.store.page("firing", None, 2)
        keys = sorted(r.dedup_key for r in decided.rulings[1:])
        self.assertEqual([e.key for e in firing], keys[:2])
        rest = await b.store.page("firing", keys[1], 10)
        self.assertEqual([e.key for e in rest], keys[2:])
        resolved = await b.store.page("resolved", None, 10)
        self.assertEqual([e.fingerprint for e in resolved], [alerts[0].fingerprint])
        tracked = await b.store.tracked()
        self.assertEqual(tracked.episodes, 5)

    @inline
    async def test_bounded(self) -> None:
        """
        Past max_tracked episodes, the least recently seen are forgotten
        (and counted), so a flood of distinct alerts cannot grow the state
        without bound.
        """
        a, _ = self.replicas(max_tracked=3)
        assert isinstance(self, TestCase)
        for i in range(5):
            self.clock.advance(1)
            await a.decide([make_alert(pod=f"p-{i}")])
        tracked = await a.store.tracked()
        self.assertEqual((tracked.episodes, tracked.evictions), (3, 2))
        self.assertEqual(await results(a, make_alert(pod="p-0")), [NEW])

    @inline
    async def test_rate_limit_shared(self) -> None:
        """
        The global bucket is one for every replica: a burst of 4 is spent
        by requests to either, then both refuse until it refills.
        """
        a, b = self.limiters(global_limit=60, burst=4)
        assert isinstance(self, TestCase)
        allowed = []
        for limiter in (a, b, a, b, a, b):
            decision = await limiter.admit("/webhook/prometheus", "192.0.2.1")
            allowed.append(decision.allowed)
        self.assertEqual(allowed, [True, True, True, True, False, False])
        refused = await b.admit("/webhook/prometheus", "192.0.2.1")
        self.assertEqual((refused.scope, refused.remaining), ("global", 0))
        self.assertAlmostEqual(refused.retry_after, 1.0, places=3)
        self.clock.advance(1)
        if isinstance(a, RateLimiter):
            a.tick()
        self.assertTrue((await a.admit("/webhook/prometheus", "192.0.2.1")).allowed)

    @inline
    async def test_rate_limit_credentials_apart(self) -> None:
        """
        Requests without credentials have global and endpoint buckets of
        their own: spending those, from any number of addresses, leaves a
        sender with credentials its whole budget, on every replica.
        """
        a, b = self.limiters(global_limit=60, burst=3, endpoint_limits={"/webhook/open": 60})
        assert isinstance(self, TestCase)
        for index in range(4):
            limiter = a if index % 2 else b
            await limiter.admit("/webhook/open", f"198.51.100.{index}")
        refused = await a.admit("/webhook/prometheus", "198.51.100.9")
        self.assertEqual((refused.allowed, refused.scope), (False, "global"))
        for limiter in (a, b, a):
            self.assertTrue((await limiter.admit("/webhook/prometheus", "192.0.2.1", "token:0")).allowed)
        self.assertFalse((await b.admit("/webhook/prometheus", "192.0.2.1", "token:0")).allowed)

    @inline
    async def test_rate_limit_client_is_identity(self) -> None:
        """
        A client bucket is kept under the sender's identity when it has
        one, whatever its address, and under the address when not: the
        same address without credentials is another client.
        """
        a, b = self.limiters(global_limit=6000, burst=100, per_client_limit=2)
        assert isinstance(self, TestCase)
        self.assertTrue((await a.admit("/webhook/prometheus", "192.0.2.1", "user:am")).allowed)
        self.assertTrue((await b.admit("/webhook/prometheus", "192.0.2.2", "user:am")).allowed)
        refused = await a.admit("/webhook/prometheus", "192.0.2.3", "user:am")
        self.assertEqual((refused.allowed, refused.scope), (False, "client"))
        self.assertTrue((await b.admit("/webhook/prometheus", "192.0.2.1", "user:gf")).allowed)
        self.assertTrue((await a.admit("/webhook/prometheus", "192.0.2.1")).allowed)
        self.assertTrue((await b.admit("/webhook/prometheus", "192.0.2.1")).allowed)
        self.assertFalse((await a.admit("/webhook/prometheus", "192.0.2.1")).allowed)

    @inline
    async def test_replay_shared(self) -> None:
        """
        A signed message accepted by one replica is a replay on the other,
        until it is forgotten (its request was not accepted).
        """
        a, b = self.replays()
        assert isinstance(self, TestCase)
        until = self.clock.seconds() + 300
        self.assertTrue(await _claim(a, "std:msg-1", until))
        self.assertFalse(await _claim(b, "std:msg-1", until))
        await _forget(a, "std:msg-1")
        self.assertTrue(await _claim(b, "std:msg-1", until))


async def _claim(replays: SharedReplays | ReplayCache, key: str, until: float) -> bool:
    if isinstance(replays, ReplayCache):
        return replays.check_and_remember(key, until)
    # As the webhook does: the process's own memory first, then the shared.
    if not replays.local.check_and_remember(key, until):
        return False
    return await replays.claim(key)


async def _forget(replays: SharedReplays | ReplayCache, key: str) -> None:
    if isinstance(replays, ReplayCache):
        replays.forget(key)
    else:
        await replays.forget(key)


class MemoryBackendTests(_Behaviour, TestCase):
    """
    The behaviour suite on state.backend: memory.
    """

    one_process = True

    def setUp(self) -> None:
        self.clock = started_clock()

    def replicas(
        self, storms: StormSettings | None = None, max_tracked: int = 1000, **settings: Any
    ) -> tuple[Replica, Replica]:
        state = MemoryState(DeciderSettings(storms=storms, **settings), max_tracked=max_tracked)
        return Replica(state, self.clock), Replica(state, self.clock)

    def limiters(self, **limits: Any) -> tuple[Limiter, Limiter]:
        limiter = RateLimiter(self.clock, **{"endpoint_limits": {}, **limits})
        return limiter, limiter

    def replays(self) -> tuple[SharedReplays | ReplayCache, SharedReplays | ReplayCache]:
        cache = ReplayCache(self.clock, ttl=300)
        return cache, cache


class _OnRedis(TestCase):
    """
    Replicas on a real redis-server, each with its own connection, and a
    queue elsewhere.
    """

    clock: Clock
    one_commit = False

    def setUp(self) -> Deferred[None]:  # type: ignore[override]  # trial waits for it
        # One server per test: it starts in milliseconds, and no test sees
        # another's keys.
        self.server = RedisServer().start()
        self.addCleanup(self.server.stop)
        self.clock = started_clock()
        self.metrics = GatewayMetrics()
        # A fresh prefix per test: tests never see each other's state.
        self.settings = RedisSettings(url=self.server.url, key_prefix=f"test-{uuid.uuid4().hex[:8]}:")
        return Deferred.fromCoroutine(self._connect())

    async def _connect(self) -> None:
        self.clients = [self.client(), self.client()]
        while not all(c.up for c in self.clients):
            await deferLater(reactor, 0.01)

    def client(self) -> RedisClient:
        client = RedisClient(self.settings, reactor, self.metrics.redis)
        client.start()
        self.addCleanup(client.stop)
        return client

    def replicas(
        self, storms: StormSettings | None = None, max_tracked: int = 1000, **settings: Any
    ) -> tuple[Replica, Replica]:
        made = []
        for index, c in enumerate(self.clients):
            state = RedisState(
                c,
                self.clock,
                DeciderSettings(storms=storms, **settings),
                max_tracked=max_tracked,
                queue_in_redis=self.one_commit,
            )
            made.append(Replica(state, self.clock, self.enqueue(c, index)))
        return made[0], made[1]

    def enqueue(self, client: RedisClient, index: int) -> Enqueue:
        """
        How a replica queues: at once, elsewhere.
        """
        return at_once


class RedisBackendTests(_OnRedis, _Behaviour):
    """
    The behaviour suite on state.backend: redis with a queue elsewhere,
    each replica with its own connection.
    """

    def limiters(self, **limits: Any) -> tuple[Limiter, Limiter]:
        made = [RedisRateLimiter(c, self.clock, **{"endpoint_limits": {}, **limits}) for c in self.clients]
        return made[0], made[1]

    def replays(self) -> tuple[SharedReplays | ReplayCache, SharedReplays | ReplayCache]:
        made = [
            SharedReplays(
                RedisReplays(c, self.clock),
                ReplayCache(self.clock, ttl=300),
                Failover(c, "fail_open", self.metrics.redis),
            )
            for c in self.clients
        ]
        return made[0], made[1]


class RedisQueueBackendTests(RedisBackendTests):
    """
    The behaviour suite on state.backend: redis with queue.backend: redis:
    each decision is written with its queue entries, in one script.
    """

    one_commit = True

    def enqueue(self, client: RedisClient, index: int) -> Enqueue:
        """
        How a replica queues: into the Redis queue, with its state write.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        failover = Failover(client, "fail_closed", self.metrics.redis)
        return queueing(redis_queue(client, failover, os.path.join(directory, f"fallback-{index}.db")))


class RedisTickRefusedTests(_OnRedis):
    """
    On Redis a tick commits its storm updates before they are queued (the
    other replicas must see them at once); when the queue then refuses
    them they are kept and queued first by the next tick, as taking back a
    closed storm or a listed member cannot be done safely.
    """

    def storm_replicas(self, listed: int = 10) -> tuple[Replica, Replica]:
        return self.replicas(storms=storm_settings(max_members_listed=listed))

    async def refused_tick(self, replica: Replica, before: Enqueue | None = None) -> None:
        """
        A tick whose events the queue refuses (after C{before} ran).
        """

        def enqueue(decision: Decision, write: StateWrite | None = None) -> Deferred[None]:
            d = before(decision, write) if before is not None else succeed(None)
            return d.addCallback(lambda _: refuse(decision, write))

        with self.assertRaises(QueueFull):
            await replica.store.tick(self.clock.seconds(), enqueue)

    async def states_until_quiet(self, replica: Replica, period: float) -> list[Mapping[str, Any]]:
        events: list[Mapping[str, Any]] = []
        for _ in range(6):
            self.clock.advance(period)
            events += [o.body for o in await replica.tick()]
        return events

    @inline
    async def test_closing_not_lost(self) -> None:
        """
        A storm's closing refused by the queue goes out at the next tick.
        """
        a, _ = self.storm_replicas()
        await a.decide([make_alert(pod=f"p{i}") for i in range(4)])
        await a.decide([make_alert(pod="p4")])
        self.clock.advance(31)
        await self.refused_tick(a)
        events = await self.states_until_quiet(a, 31)
        self.assertEqual([e.get("state") for e in events], ["closed"])

    @inline
    async def test_closing_not_lost_to_a_new_member(self) -> None:
        """
        A closing refused by the queue while another replica decides on the
        group still goes out: the storm's events are never taken back.
        """
        a, b = self.storm_replicas()
        await a.decide([make_alert(pod=f"p{i}") for i in range(4)])
        await a.decide([make_alert(pod="p4")])
        self.clock.advance(31)
        await self.refused_tick(a, lambda _d, _w: b.decide([make_alert(pod="p9")]).addCallback(lambda _: None))
        events = await self.states_until_quiet(a, 31)
        self.assertIn("closed", [e.get("state") for e in events])

    @inline
    async def test_listed_members_not_lost(self) -> None:
        """
        An update refused by the queue while another replica folds a member
        still goes out: every member is listed in some event.
        """
        a, b = self.storm_replicas(listed=2)
        started = await a.decide([make_alert(pod=f"p{i}") for i in range(4)])
        listed = [m["fingerprint"] for o in started.outgoing for m in o.body.get("members", [])]
        self.clock.advance(11)
        await self.refused_tick(a, lambda _d, _w: b.decide([make_alert(pod="p9")]).addCallback(lambda _: None))
        listed += [m["fingerprint"] for e in await self.states_until_quiet(a, 11) for m in e.get("members", [])]
        self.assertEqual(sorted(listed), sorted(make_alert(pod=p).fingerprint for p in ["p0", "p1", "p2", "p3", "p9"]))


class FailoverTests(TestCase):
    """
    What happens to decisions when Redis goes away and comes back
    (state.redis.on_failure).
    """

    def setUp(self) -> Deferred[None]:  # type: ignore[override]  # trial waits for it
        self.server = RedisServer().start()
        self.addCleanup(self.server.stop)
        self.clock = started_clock()
        self.metrics = GatewayMetrics()
        self.client = RedisClient(RedisSettings(url=self.server.url, timeout=0.5), reactor, self.metrics.redis)
        self.client.start()
        self.addCleanup(self.client.stop)
        return Deferred.fromCoroutine(until(lambda: self.client.up))

    def decisions(self, mode: str, client: RedisClient | None = None) -> Replica:
        client = client or self.client
        settings = DeciderSettings(storms=None)
        local = MemoryState(settings, max_tracked=100)
        shared = RedisState(client, self.clock, settings, max_tracked=100)
        return Replica(FailoverState(shared, local, Failover(client, mode, self.metrics.redis)), self.clock)

    @inline
    async def test_logged(self) -> None:
        """
        Decisions taken from local memory before the client ever connected
        (every start begins so) are logged at info, and so is the
        connection; an outage after that is one warning, and its end is
        logged at info.
        """
        events = capture_events(self, lambda e: e.get("log_namespace") == "alertgateway.redis.failover")
        self.server.kill()
        fresh = RedisClient(RedisSettings(url=self.server.url, timeout=0.5), reactor, self.metrics.redis)
        fresh.start()
        self.addCleanup(fresh.stop)
        decisions = self.decisions("fail_open", fresh)
        for pod in ("p1", "p2"):
            await results(decisions, make_alert(pod=pod))
        self.server.start()
        await until(lambda: fresh.up)
        await results(decisions, make_alert(pod="p3"))
        self.server.kill()
        await until(lambda: not fresh.up)
        for pod in ("p4", "p5"):
            await results(decisions, make_alert(pod=pod))
        self.server.start()
        await until(lambda: fresh.up)
        logged = [(e["log_level"], formatEvent(e)) for e in events]
        self.assertEqual(
            logged[:2],
            [
                (LogLevel.info, "Not connected to Redis yet: deciding from local memory until it is (fail_open)"),
                (LogLevel.info, "Connected to Redis: decisions use the shared state again"),
            ],
        )
        self.assertEqual(logged[2][0], LogLevel.warn)
        self.assertTrue(logged[2][1].startswith("Redis unavailable ("), logged[2][1])
        self.assertEqual(logged[3:], [(LogLevel.info, "Redis is back: decisions use the shared state again")])

    @inline
    async def test_fail_open(self) -> None:
        """
        With Redis gone, fail_open decides from local memory (and counts
        it); once Redis is back, decisions use the shared state again,
        which still holds what was decided before the outage (AOF).
        """
        decisions = self.decisions("fail_open")
        self.assertEqual(await results(decisions, make_alert()), [NEW])
        self.server.kill()
        await until(lambda: not self.client.up)
        self.assertEqual(self.metrics.redis.up._value.get(), 0)
        self.assertEqual(await results(decisions, make_alert(pod="p-2")), [NEW])
        self.assertEqual(await results(decisions, make_alert(pod="p-2")), [DUPLICATE])
        fallbacks = self.metrics.redis.fallbacks.labels(facility="dedup")._value.get()
        self.assertEqual(fallbacks, 2)
        self.server.start()
        await until(lambda: self.client.up)
        self.assertEqual(await results(decisions, make_alert()), [DUPLICATE])

    @inline
    async def test_undo_waits_for_redis(self) -> None:
        """
        A decision the queue refused, that cannot be taken back because
        Redis went away meanwhile, is taken back as soon as Redis answers
        again, before the next decision: the sender's retry is new, not a
        duplicate of a forward never sent.
        """
        store = self.decisions("fail_closed").store
        assert isinstance(store, FailoverState)
        shared = store.shared

        def refuse_after_outage(decision: Decision, write: StateWrite | None) -> Deferred[None]:
            self.server.kill()
            return Deferred.fromCoroutine(_refused_once_down(self.client))

        with self.assertRaises(QueueFull):
            await shared.decide([make_alert()], self.clock.seconds(), refuse_after_outage)
        self.assertEqual(shared.pending_undos(), 1)
        self.server.start()
        await until(lambda: self.client.up)
        self.assertEqual(await results(Replica(shared, self.clock), make_alert()), [NEW])
        self.assertEqual(shared.pending_undos(), 0)

    @inline
    async def test_fail_closed(self) -> None:
        """
        With Redis gone, fail_closed decides nothing: StateUnavailable,
        which the webhook answers with 503 and Retry-After.
        """
        decisions = self.decisions("fail_closed")
        self.server.kill()
        await until(lambda: not self.client.up)
        with self.assertRaises(StateUnavailable):
            await decisions.decide([make_alert()])
        self.server.start()
        await until(lambda: self.client.up)
        self.assertEqual(await results(decisions, make_alert()), [NEW])


class ContentionTests(TestCase):
    """
    Replicas contending for one storm group's shared document.
    """

    def setUp(self) -> Deferred[None]:  # type: ignore[override]  # trial waits for it
        self.server = RedisServer().start()
        self.addCleanup(self.server.stop)
        self.clock = started_clock()
        self.metrics = GatewayMetrics()
        settings = RedisSettings(url=self.server.url)
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.clients = []
        for _ in range(3):
            client = RedisClient(settings, reactor, self.metrics.redis)
            client.start()
            self.addCleanup(client.stop)
            self.clients.append(client)
        return Deferred.fromCoroutine(until(lambda: all(c.up for c in self.clients)))

    @inline
    async def test_storm_members_at_once(self) -> None:
        """
        Sixty new members of one storm arriving at once on three replicas,
        each written with its queue entries, are all decided (retries pause
        with jitter instead of colliding until they give up), the storm
        starts once, every member is counted in it, and the queue holds
        exactly what was forwarded.
        """
        settings = DeciderSettings(storms=storm_settings(threshold=3, max_members_listed=10))
        replicas = []
        for index, c in enumerate(self.clients):
            state = RedisState(
                c, self.clock, settings, max_tracked=1000, queue_in_redis=True, pause=lambda s: deferLater(reactor, s)
            )
            path = os.path.join(self.directory, f"fallback-{index}.db")
            queue = redis_queue(c, Failover(c, "fail_closed", self.metrics.redis), path, partitions=2)
            replicas.append(Replica(state, self.clock, queueing(queue)))
        decided = await gatherResults(
            [replicas[i % 3].decide([make_alert(pod=f"p-{i}")]) for i in range(60)], consumeErrors=True
        )
        events = [o.body for d in decided for o in d.outgoing if o.body.get("type") == "storm"]
        self.assertEqual([e["state"] for e in events], ["started"])
        results = [r.verdict for d in decided for r in d.rulings]
        self.assertEqual((results.count(NEW), results.count(AGGREGATED)), (3, 57))
        client = self.clients[0]
        queued = [int(await client.command("test", "XLEN", client.key("q", str(p)))) for p in range(2)]
        self.assertEqual(sum(queued), sum(len(d.outgoing) for d in decided))
        self.assertEqual(sum(queued), 4)


async def _refused_once_down(client: RedisClient) -> None:
    await until(lambda: not client.up)
    raise QueueFull("disk full")
