"""
The Redis Streams delivery queue against a real C{redis-server}: the round
trip and its shared counter, the bound, per-key order, partitions shared
between replicas, takeover after a crash, dead letters, and what happens
while Redis is unreachable or restarts.

The I/O is real, on the real reactor; leases are short (C{claim_idle} of
half a second) so takeovers happen within the tests' budget, and every wait
is a bounded poll.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from typing import Any

import attrs
from twisted.internet import reactor as _reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import FailTest, TestCase

from alertgateway.delivery.durable import DurableQueue
from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.journal import SQLiteJournal
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.redis.client import RedisClient, RedisSettings, RedisUnavailable
from alertgateway.redis.failover import Failover
from alertgateway.redis.queue import GROUP, RedisQueue, RedisQueueSettings
from alertgateway.redis.queue.outage import Outage
from alertgateway.state.errors import QueueFull
from tests.redis_server import RedisServer
from tests.unit._http import InlineExecutor, capture_events

reactor: Any = _reactor

PREFIX = "alertgateway:"

# Sums what the group has pending over the streams given, those without a
# group counting nothing.
_PENDING = """
local total = 0
for i = 1, #KEYS do
  local reply = redis.pcall('XPENDING', KEYS[i], ARGV[1])
  if type(reply) == 'table' and not reply.err then
    total = total + reply[1]
  end
end
return total
"""

# What a replica whose read raced with the loss of its lease leaves behind:
# an entry pending under a consumer that no longer reads.
_GHOST = """
redis.call('XADD', KEYS[1], '*', 'e', ARGV[2])
redis.call('INCR', KEYS[2])
return redis.call('XREADGROUP', 'GROUP', ARGV[1], 'ghost', 'COUNT', 1, 'STREAMS', KEYS[1], '>')
"""


def inline(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., Deferred[None]]:
    """
    Run an async test method as trial expects: through a Deferred.
    """

    def run(self: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(test(self))

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


def envelope(key: str, n: int = 0) -> Envelope:
    return Envelope(
        key,
        {"labels": {"alertname": key}, "n": n},
        f"{key}-{n}",
        f"req-{key}-{n}",
        (("X-Scope", "test"),),
        accepted_at=1000.0 + n,
    )


def plain(e: Envelope) -> Envelope:
    """
    The envelope as it was put, without where Redis keeps it.
    """
    return attrs.evolve(e, entry=None, partition=None)


async def until(condition: Callable[[], bool], what: str, timeout: float = 3.0) -> None:
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            raise FailTest(f"timed out waiting until {what}")
        await deferLater(reactor, 0.01)


async def take(queue: RedisQueue, timeout: float = 2.0) -> Envelope:
    d = queue.take()
    d.addTimeout(timeout, reactor)
    return await d


class Consumer:
    """
    A forwarder in miniature: takes envelopes and delivers them at once.
    """

    def __init__(self, queue: RedisQueue) -> None:
        self.queue = queue
        self.delivered: list[Envelope] = []
        self._worker = Deferred.fromCoroutine(self._work())
        self._worker.addErrback(lambda f: f.trap(CancelledError))

    async def _work(self) -> None:
        while True:
            e = await self.queue.take()
            self.delivered.append(e)
            self.queue.done(e)

    def stop(self) -> None:
        self._worker.cancel()

    def ids(self) -> list[str]:
        return [e.idempotency_key for e in self.delivered]


class RedisQueueTests(TestCase):
    """
    RedisQueue replicas on one real Redis.
    """

    timeout = 20

    def setUp(self) -> None:
        # One server per test: it starts in milliseconds, and no test sees
        # another's keys.
        self.server = RedisServer().start()
        self.addCleanup(self.server.stop)
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.failovers: dict[RedisClient, Failover] = {}

    async def client(self, on_failure: str = "fail_open") -> RedisClient:
        """
        A connected client; the queues made with it fail open or closed as
        C{on_failure} says.
        """
        # One connection, so that once it is up no handshake is left that
        # killing Redis could interrupt (txredisapi then stops reconnecting).
        settings = RedisSettings(url=self.server.url, timeout=0.5, connect_timeout=0.5, pool_size=1)
        client = RedisClient(settings, reactor, GatewayMetrics().redis)
        self.failovers[client] = Failover(client, on_failure, GatewayMetrics().redis)
        client.start()
        self.addCleanup(client.stop)
        await until(lambda: client.up, "connected to Redis")
        return client

    async def queue(
        self,
        client: RedisClient,
        replica: str,
        *,
        max_items: int = 100,
        partitions: int = 4,
        claim_idle: float = 0.5,
        read_batch: int = 10,
    ) -> RedisQueue:
        path = os.path.join(self.directory, f"{replica}.db")
        journal = SQLiteJournal(path, InlineExecutor(), clock_seconds=reactor.seconds)
        fallback = DurableQueue(journal, max_items=max_items, max_bytes=10**6)
        settings = RedisQueueSettings(
            max_items=max_items, partitions=partitions, claim_idle=claim_idle, read_batch=read_batch, block=0.1
        )
        failover = self.failovers[client]
        queue = RedisQueue(client, fallback, failover, reactor=reactor, settings=settings, replica=replica)
        await queue.start()
        self.addCleanup(queue.stop)
        return queue

    async def pending(self, client: RedisClient, partitions: int = 4) -> int:
        streams = [f"{PREFIX}q:{p}" for p in range(partitions)]
        return int(await client.command("test", "EVAL", _PENDING, len(streams), *streams, GROUP))

    async def queued(self, client: RedisClient, partitions: int = 4) -> int:
        lengths = [await client.command("test", "XLEN", f"{PREFIX}q:{p}") for p in range(partitions)]
        return sum(int(n) for n in lengths)

    async def length(self, client: RedisClient) -> int:
        return int(await client.command("test", "GET", f"{PREFIX}q:length") or 0)

    async def wait_for(self, condition: Callable[[], Coroutine[Any, Any, bool]], what: str) -> None:
        """
        Poll an asynchronous condition (one that asks Redis).
        """
        deadline = reactor.seconds() + 3.0
        while not await condition():
            if reactor.seconds() > deadline:
                raise FailTest(f"timed out waiting until {what}")
            await deferLater(reactor, 0.02)

    def keys_in(self, queue: RedisQueue, partitions: frozenset[int], count: int) -> list[str]:
        keys = [f"alert-{i}" for i in range(1000) if queue.partition_of(f"alert-{i}") in partitions]
        return keys[:count]

    async def reading(self, queue: RedisQueue) -> None:
        """
        Wait until the queue reads from Redis (its reading connection is
        up): a probe goes through it.
        """
        await queue.put([envelope("probe")])
        queue.done(await take(queue))
        await until(lambda: len(queue) == 0, "the probe is delivered")

    async def kill_redis(self, *clients: RedisClient) -> None:
        self.server.kill()
        await until(lambda: not any(c.up for c in clients), "the clients saw Redis go")

    @inline
    async def test_round_trip(self) -> None:
        """
        put appends to Redis and counts in the shared length; take hands the
        envelopes back as they were put; done acknowledges and deletes them
        and counts them out.
        """
        client = await self.client()
        queue = await self.queue(client, "r1")
        await until(lambda: len(queue.held) == 4, "it holds every partition")
        sent = [envelope("a"), envelope("b"), envelope("c")]
        await queue.put(sent)
        self.assertEqual(len(queue), 3)
        self.assertEqual(await self.length(client), 3)
        self.assertEqual(await self.queued(client), 3)
        got = [await take(queue) for _ in sent]
        self.assertEqual(sorted(map(plain, got), key=lambda e: e.key), sent)
        for e in got:
            self.assertEqual(e.partition, queue.partition_of(e.key))
            self.assertIsNotNone(e.entry)
        self.assertEqual(await self.pending(client), 3)
        for e in got:
            queue.done(e)
        await until(lambda: len(queue) == 0, "the length is counted down")
        self.assertEqual(await self.length(client), 0)
        self.assertEqual(await self.queued(client), 0)
        self.assertEqual(await self.pending(client), 0)

    @inline
    async def test_full_is_all_or_nothing(self) -> None:
        """
        A batch that would take the shared length past max_items is refused
        whole with QueueFull; one that fits still goes in.
        """
        client = await self.client()
        queue = await self.queue(client, "r1", max_items=3)
        await queue.put([envelope("a"), envelope("b")])
        with self.assertRaises(QueueFull):
            await queue.put([envelope("c"), envelope("d")])
        self.assertEqual(await self.length(client), 2)
        self.assertEqual(await self.queued(client), 2)
        await queue.put([envelope("c")])
        self.assertEqual(await self.length(client), 3)
        self.assertEqual(len(queue), 3)

    @inline
    async def test_per_key_order(self) -> None:
        """
        Envelopes of one key are handed out in the order they were put and
        never two at a time; another key goes meanwhile.
        """
        client = await self.client()
        queue = await self.queue(client, "r1", read_batch=100)
        await until(lambda: len(queue.held) == 4, "it holds every partition")
        await queue.put([envelope("a", 1), envelope("a", 2), envelope("a", 3), envelope("b", 1)])
        first = await take(queue)
        other = await take(queue)
        self.assertEqual({first.idempotency_key, other.idempotency_key}, {"a-1", "b-1"})
        a1 = first if first.key == "a" else other
        third = queue.take()
        self.assertFalse(third.called, "a-2 was handed out while a-1 was in delivery")
        queue.done(a1)
        a2 = await third.addTimeout(2, reactor)
        self.assertEqual(a2.idempotency_key, "a-2")
        queue.done(a2)
        a3 = await take(queue)
        self.assertEqual(a3.idempotency_key, "a-3")

    @inline
    async def test_two_replicas_share_partitions(self) -> None:
        """
        Two replicas on one Redis split the partitions between them, each
        held by one; together they deliver every envelope exactly once,
        each key by one replica, in order.
        """
        q1 = await self.queue(await self.client(), "r1")
        q2 = await self.queue(await self.client(), "r2")
        await until(lambda: len(q1.held) == 2 and len(q2.held) == 2, "the partitions are shared")
        self.assertFalse(q1.held & q2.held)
        sent = [envelope(f"alert-{k}", n) for n in range(2) for k in range(20)]
        await q1.put(sent[:20])
        await q2.put(sent[20:])
        consumers = [Consumer(q1), Consumer(q2)]
        for consumer in consumers:
            self.addCleanup(consumer.stop)
        await until(lambda: sum(len(c.delivered) for c in consumers) >= 40, "everything is delivered")
        delivered = consumers[0].ids() + consumers[1].ids()
        self.assertEqual(sorted(delivered), sorted(e.idempotency_key for e in sent))
        for consumer in consumers:
            for key in {e.key for e in consumer.delivered}:
                self.assertEqual(
                    [e.idempotency_key for e in consumer.delivered if e.key == key], [f"{key}-0", f"{key}-1"]
                )
        self.assertFalse({e.key for e in consumers[0].delivered} & {e.key for e in consumers[1].delivered})
        await until(lambda: len(q1) == 0, "the length is counted down")

    @inline
    async def test_crashed_replica_is_taken_over(self) -> None:
        """
        A replica that stops renewing its leases (a crash) loses its
        partitions after claim_idle; the other replica takes them over,
        claims what the first had read but not delivered, even what it was
        delivering, and delivers it, each key in order.
        """
        q1 = await self.queue(await self.client(), "r1")
        client = await self.client()
        q2 = await self.queue(client, "r2")
        await until(lambda: len(q1.held) == 2 and len(q2.held) == 2, "the partitions are shared")
        keys = self.keys_in(q1, q1.held, 3)
        sent = [envelope(k, n) for n in range(2) for k in keys]
        await q1.put(sent)
        await self.wait_for(lambda: self._pending_is(client, 6), "the first replica has read everything")
        in_delivery = await take(q1)
        await q1.stop(release=False)
        consumer = Consumer(q2)
        self.addCleanup(consumer.stop)
        await until(lambda: len(consumer.delivered) >= 6, "the second replica delivered it all", timeout=4.0)
        self.assertEqual(q2.held, frozenset(range(4)))
        self.assertIn(in_delivery.idempotency_key, consumer.ids())
        self.assertEqual(sorted(consumer.ids()), sorted(e.idempotency_key for e in sent))
        for key in keys:
            self.assertEqual([e.idempotency_key for e in consumer.delivered if e.key == key], [f"{key}-0", f"{key}-1"])

    async def _pending_is(self, client: RedisClient, count: int) -> bool:
        return await self.pending(client) == count

    @inline
    async def test_stop_gives_leases_back(self) -> None:
        """
        A replica that stops gives its leases back and leaves the
        heartbeats: another replica takes every partition over at once
        (well before the leases would expire) and delivers what the first
        had read but not delivered.
        """
        client = await self.client()
        q1 = await self.queue(client, "r1", claim_idle=3.0)
        await until(lambda: len(q1.held) == 4, "the first replica holds every partition")
        q2 = await self.queue(await self.client(), "r2", claim_idle=3.0)
        await q1.put([envelope("a"), envelope("b")])
        await self.wait_for(lambda: self._pending_is(client, 2), "the first replica has read both")
        await q1.stop()
        leases = [await client.command("test", "EXISTS", f"{PREFIX}lease:{p}") for p in range(4)]
        self.assertEqual(leases, [0, 0, 0, 0])
        consumer = Consumer(q2)
        self.addCleanup(consumer.stop)
        await until(lambda: len(consumer.delivered) == 2, "the second replica delivered both", timeout=2.0)
        self.assertEqual(q2.held, frozenset(range(4)))

    @inline
    async def test_outage_logged(self) -> None:
        """
        An outage of the queue's Redis is one warning when it begins and one
        info line when it ends; what fails before the client's first
        connection (every start) is logged at info.
        """
        events = capture_events(self, lambda e: e.get("log_namespace") == "alertgateway.redis.queue.outage")
        self.server.kill()
        fresh = RedisClient(RedisSettings(url=self.server.url, timeout=0.5), reactor, GatewayMetrics().redis)
        fresh.start()
        self.addCleanup(fresh.stop)
        outage = Outage(Failover(fresh, "fail_open", GatewayMetrics().redis))
        outage.failed(RedisUnavailable("not connected to Redis"))
        outage.recovered()
        self.server.start()
        await until(lambda: fresh.up, "connected")
        for _ in range(2):
            outage.failed(RedisUnavailable("gone"))
        outage.recovered()
        self.assertEqual(
            [(e["log_level"], formatEvent(e)) for e in events],
            [
                (
                    LogLevel.info,
                    "Redis queue unavailable (not connected to Redis); alerts go to the local fallback queue until"
                    " it is back",
                ),
                (LogLevel.info, "Redis queue available again"),
                (
                    LogLevel.warn,
                    "Redis queue unavailable (gone); alerts go to the local fallback queue until it is back",
                ),
                (LogLevel.info, "Redis queue available again"),
            ],
        )

    @inline
    async def test_bury_makes_a_dead_letter(self) -> None:
        """
        bury moves the entry to the dead-letter stream with the reason and
        the attempts, and out of its partition and the length.
        """
        client = await self.client()
        queue = await self.queue(client, "r1")
        await queue.put([envelope("a")])
        e = await take(queue)
        queue.bury(e, "400 Bad Request", 3)
        await until(lambda: len(queue) == 0, "the length is counted down")
        dead = await client.command("test", "XRANGE", f"{PREFIX}dead", "-", "+")
        self.assertEqual(len(dead), 1)
        fields = dict(zip(dead[0][1][::2], dead[0][1][1::2], strict=True))
        self.assertEqual(fields["reason"], "400 Bad Request")
        self.assertEqual(fields["attempts"], "3")
        self.assertEqual(fields["entry"], e.entry)
        self.assertIn('"idempotency_key":"a-0"', fields["e"])
        self.assertEqual(await self.queued(client), 0)
        self.assertEqual(await self.pending(client), 0)

    @inline
    async def test_unreadable_entry_is_buried(self) -> None:
        """
        An entry that is not an envelope (written by something else) goes to
        the dead letters instead of blocking its partition; what follows it
        is delivered.
        """
        client = await self.client()
        queue = await self.queue(client, "r1", partitions=1)
        await client.command("test", "XADD", f"{PREFIX}q:0", "*", "junk", "1")
        await queue.put([envelope("a")])
        self.assertEqual((await take(queue)).idempotency_key, "a-0")
        await self.wait_for(lambda: self._dead_letters(client, 1), "the junk is a dead letter")
        dead = await client.command("test", "XRANGE", f"{PREFIX}dead", "-", "+")
        self.assertTrue(dict(zip(dead[0][1][::2], dead[0][1][1::2], strict=True))["reason"].startswith("unreadable"))

    async def _dead_letters(self, client: RedisClient, count: int) -> bool:
        return int(await client.command("test", "XLEN", f"{PREFIX}dead")) == count

    @inline
    async def test_fail_open_uses_the_fallback(self) -> None:
        """
        With fail_open, a batch put while Redis is unreachable goes to the
        local SQLite queue and is delivered through the same take; done
        removes it there.
        """
        client = await self.client("fail_open")
        queue = await self.queue(client, "r1")
        await self.reading(queue)
        await self.kill_redis(client)
        await queue.put([envelope("a", 1), envelope("a", 2)])
        self.assertEqual(len(queue.fallback), 2)
        self.assertEqual(len(queue), 2)
        first = await take(queue)
        self.assertEqual((first.idempotency_key, first.entry), ("a-1", None))
        self.assertIsNotNone(first.id)
        queue.done(first)
        second = await take(queue)
        self.assertEqual(second.idempotency_key, "a-2")
        queue.done(second)
        self.assertEqual(len(queue), 0)
        await queue.when_empty()

    @inline
    async def test_fallback_leftovers_delivered_on_start(self) -> None:
        """
        What the fallback queue still holds when a replica stops is loaded
        and delivered, in order, when it starts again.
        """
        client = await self.client("fail_open")
        queue = await self.queue(client, "r1")
        await self.reading(queue)
        await self.kill_redis(client)
        await queue.put([envelope("a", 1), envelope("a", 2)])
        await queue.stop()
        again = await self.queue(client, "r1")
        self.assertEqual(len(again.fallback), 2)
        first = await take(again)
        again.done(first)
        second = await take(again)
        self.assertEqual([first.idempotency_key, second.idempotency_key], ["a-1", "a-2"])

    @inline
    async def test_fail_closed_refuses(self) -> None:
        """
        With fail_closed, a batch put while Redis is unreachable is refused
        with QueueFull (the webhook answers 503), and nothing is kept
        locally.
        """
        client = await self.client("fail_closed")
        queue = await self.queue(client, "r1")
        await self.reading(queue)
        await self.kill_redis(client)
        with self.assertRaises(QueueFull):
            await queue.put([envelope("a")])
        self.assertEqual(len(queue.fallback), 0)

    @inline
    async def test_redis_restart_keeps_pending(self) -> None:
        """
        Redis killed and restarted (its append-only file kept): what was
        queued, read or in delivery is still delivered, the acknowledgement
        of the one in delivery lands once Redis is back, and the length ends
        at zero.
        """
        client = await self.client()
        queue = await self.queue(client, "r1")
        await queue.put([envelope("a", 1), envelope("a", 2), envelope("b", 1)])
        await self.wait_for(lambda: self._pending_is(client, 3), "everything is read")
        in_delivery = await take(queue)
        await self.kill_redis(client)
        queue.done(in_delivery)
        consumer = Consumer(queue)
        self.addCleanup(consumer.stop)
        self.server.start()
        await until(lambda: client.up, "reconnected")
        await until(lambda: len(consumer.delivered) >= 2, "the rest is delivered", timeout=4.0)
        self.assertEqual(
            sorted([in_delivery.idempotency_key, *consumer.ids()]), sorted(["a-1", "a-2", "b-1"]), "lost or repeated"
        )
        await self.wait_for(lambda: self._pending_is(client, 0), "everything is acknowledged")
        self.assertEqual(await self.queued(client), 0)
        await self.wait_for(lambda: self._length_is(client, 0), "the length is zero")

    async def _length_is(self, client: RedisClient, count: int) -> bool:
        return await self.length(client) == count

    @inline
    async def test_lost_lease_stops_delivery(self) -> None:
        """
        A replica whose lease was taken stops handing out what it buffered
        of that partition; once it holds the lease again it claims those
        entries back and delivers each once, in order.
        """
        client = await self.client()
        queue = await self.queue(client, "r1", partitions=1)
        await queue.put([envelope("a", 1), envelope("a", 2), envelope("a", 3)])
        await self.wait_for(lambda: self._pending_is(client, 3), "everything is read")
        await client.command("test", "SET", f"{PREFIX}lease:0", "intruder", "PX", 60000)
        await until(lambda: not queue.held, "the lease is seen lost")
        consumer = Consumer(queue)
        self.addCleanup(consumer.stop)
        await deferLater(reactor, 0.3)
        self.assertEqual(consumer.delivered, [])
        await client.command("test", "DEL", f"{PREFIX}lease:0")
        await until(lambda: len(consumer.delivered) >= 3, "delivered after the lease is back")
        await deferLater(reactor, 0.1)
        self.assertEqual(consumer.ids(), ["a-1", "a-2", "a-3"])

    @inline
    async def test_orphans_are_swept(self) -> None:
        """
        An entry left pending for claim_idle under a consumer that no longer
        reads (a read that raced with a lost lease) is claimed by the holder
        and delivered; that consumer is then forgotten.
        """
        client = await self.client()
        queue = await self.queue(client, "r1", partitions=1)
        await queue.put([envelope("probe")])
        queue.done(await take(queue))
        stream, length = f"{PREFIX}q:0", f"{PREFIX}q:length"
        document = '{"key":"a","body":{},"idempotency_key":"a-0","request_id":"r","headers":[],"accepted_at":1}'
        read = await client.command("test", "EVAL", _GHOST, 2, stream, length, GROUP, document)
        self.assertEqual(len(read[0][1]), 1)
        e = await take(queue, timeout=3.0)
        self.assertEqual(e.idempotency_key, "a-0")
        queue.done(e)
        await self.wait_for(lambda: self._consumers_are(client, ["r1"]), "the ghost is forgotten")

    async def _consumers_are(self, client: RedisClient, names: list[str]) -> bool:
        consumers = await client.command("test", "XINFO", "CONSUMERS", f"{PREFIX}q:0", GROUP)
        return sorted(dict(zip(c[::2], c[1::2], strict=True))["name"] for c in consumers) == names

    @inline
    async def test_drain_gives_idle_partitions_back(self) -> None:
        """
        when_empty (a shutdown beginning) stops reading and gives back each
        partition as soon as nothing of it is in delivery here; it fires
        once the last delivery is done.
        """
        client = await self.client()
        queue = await self.queue(client, "r1", claim_idle=3.0)
        await until(lambda: len(queue.held) == 4, "it holds every partition")
        await queue.put([envelope("a")])
        e = await take(queue)
        empty = queue.when_empty()
        await until(lambda: queue.held == {e.partition}, "the idle partitions are given back")
        self.assertFalse(empty.called)
        queue.done(e)
        await empty
        # Once the acknowledgement is answered: the length it answered is
        # the queue's, and a shutdown does not report the delivered alert.
        self.assertEqual(len(queue), 0)
        await until(lambda: not queue.held, "the last partition is given back")
        await self.wait_for(lambda: self._lease_gone(client, e.partition), "its lease is deleted")

    async def _lease_gone(self, client: RedisClient, partition: int | None) -> bool:
        return int(await client.command("test", "EXISTS", f"{PREFIX}lease:{partition}")) == 0

    @inline
    async def test_retrying_key_does_not_hold_a_leaving_partition(self) -> None:
        """
        A partition this replica must give up (a replica joined) is given
        back after claim_idle even while one of its alerts keeps waiting for
        a retry here: the other alerts of that partition are delivered by
        the new holder instead of waiting behind one failing key.
        """
        a = await self.queue(await self.client(), "A", partitions=2, claim_idle=0.5)
        await until(lambda: len(a.held) == 2, "A holds both")
        await self.reading(a)
        keys = [f"k{i}" for i in range(100)]
        poison, other = [k for k in keys if a.partition_of(k) == 0][:2]
        busy = next(k for k in keys if a.partition_of(k) == 1)
        await a.put([envelope(poison), envelope(busy)])
        first, second = await take(a), await take(a)
        postponed = first if first.key == poison else second
        a.postpone(postponed, 3600, reactor)
        # Both partitions are busy here when B joins: one alert retrying,
        # one in delivery.
        b = await self.queue(await self.client(), "B", partitions=2, claim_idle=0.5)
        await a.put([envelope(other)])
        await until(lambda: len(b.held) == 1, "B holds the partition A gave up", timeout=5.0)
        if 0 in b.held:
            self.assertEqual({(await take(b)).key, (await take(b)).key}, {poison, other})
        else:
            self.assertEqual((await take(b)).key, busy)
        a.stop_timers()
