"""
One commit per webhook on Redis (state.backend and queue.backend: redis),
against a real C{redis-server}: a decision and its queue entries are
written by one script, together or not at all; the members waiting in a
storm are a list of their own, so the group's document stays small; group
documents of the previous version (members inline) are read and moved;
and a webhook costs one load and one commit.

With a queue outside Redis the decision is committed first and taken back
when the queue refuses it: the storm's waiting list is restored with it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase

from alertgateway.core.decider import DeciderSettings
from alertgateway.core.decision import Decision, Verdict
from alertgateway.core.keys import group_id
from alertgateway.core.model import Alert, fingerprint
from alertgateway.core.storms import StormSettings
from alertgateway.delivery.envelope import Envelope
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.redis import decisions
from alertgateway.redis.client import RedisClient, RedisSettings
from alertgateway.redis.decisions import RedisState
from alertgateway.redis.failover import Failover, FailoverState
from alertgateway.redis.queue import RedisQueue
from alertgateway.redis.queue.codec import decode
from alertgateway.state.errors import QueueFull, StateUnavailable
from alertgateway.state.memory import MemoryState
from alertgateway.state.ports import Enqueue, StateStore, StateWrite
from tests.redis_server import RedisServer, until
from tests.unit._support import inline, queueing, redis_queue, storm_settings

reactor: Any = _reactor

PARTITIONS = 2
GROUP_BY = ("alertname", "namespace")


def make_alert(pod: str = "p-1", status: str = "firing") -> Alert:
    labels = {"alertname": "PodCrash", "namespace": "payments", "pod": pod}
    return Alert(
        fingerprint(labels), "alertmanager", status, labels, {}, "2026-11-26T03:49:49Z", None, "", "2026-11-26T03:50Z"
    )


GROUP = group_id(make_alert(), GROUP_BY, False)


def storms(**overrides: float) -> StormSettings:
    """
    Quick storms listing three members an event.
    """
    return storm_settings(**{"max_members_listed": 3, **overrides})


class Replica:
    """
    One gateway on the shared Redis: its state, its queue, deciding at the
    test clock's time.
    """

    def __init__(self, state: StateStore, queue: RedisQueue, clock: Clock) -> None:
        self.state = state
        self.queue = queue
        self.clock = clock
        self.enqueue = queueing(queue)

    def decide(self, alerts: list[Alert], enqueue: Enqueue | None = None) -> Deferred[Decision]:
        return self.state.decide(alerts, self.clock.seconds(), enqueue or self.enqueue)

    def tick(self, enqueue: Enqueue | None = None) -> Deferred[Decision]:
        return self.state.tick(self.clock.seconds(), enqueue or self.enqueue)


class _RedisCase(TestCase):
    """
    A Redis server, two connected clients under a prefix of the test's own,
    and a clock.
    """

    def setUp(self) -> Deferred[None]:  # type: ignore[override]  # trial waits for it
        self.server = RedisServer().start()
        self.addCleanup(self.server.stop)
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.metrics = GatewayMetrics()
        self.prefix = f"test-{uuid.uuid4().hex[:8]}:"
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        settings = RedisSettings(url=self.server.url, key_prefix=self.prefix, timeout=0.5)
        self.clients = []
        for _ in range(2):
            client = RedisClient(settings, reactor, self.metrics.redis)
            client.start()
            self.addCleanup(client.stop)
            self.clients.append(client)
        return Deferred.fromCoroutine(until(lambda: all(c.up for c in self.clients)))

    def replica(
        self,
        index: int = 0,
        *,
        storm: StormSettings | None = None,
        max_items: int = 1000,
        one_commit: bool = True,
        mode: str = "fail_closed",
    ) -> Replica:
        client = self.clients[index]
        failover = Failover(client, mode, self.metrics.redis)
        path = os.path.join(self.directory, f"fallback-{index}-{uuid.uuid4().hex[:6]}.db")
        queue = redis_queue(client, failover, path, max_items=max_items, partitions=PARTITIONS)
        settings = DeciderSettings(storms=storm, group_by=GROUP_BY)
        state = RedisState(client, self.clock, settings, max_tracked=1000, queue_in_redis=one_commit)
        return Replica(state, queue, self.clock)

    async def redis(self, *command: Any) -> Any:
        return await self.clients[0].command("test", *command)

    async def keys(self) -> set[str]:
        """
        Every key under the test's prefix, without it.
        """
        return {k[len(self.prefix) :] for k in await self.redis("KEYS", self.prefix + "*")}

    async def queued(self) -> list[Envelope]:
        """
        What the queue's streams hold, oldest first per partition.
        """
        found = []
        for p in range(PARTITIONS):
            for entry, fields in await self.redis("XRANGE", f"{self.prefix}q:{p}", "-", "+"):
                found.append(decode(p, entry, fields))
        return found

    async def document(self, name: str) -> dict[str, Any]:
        return dict(json.loads(await self.redis("HGET", f"{self.prefix}{name}", "d")))

    async def waiting(self) -> list[str]:
        """
        The fingerprints of the members waiting in the group's list.
        """
        members = await self.redis("LRANGE", f"{self.prefix}grp:{GROUP}:w", 0, -1)
        return [json.loads(m)["fingerprint"] for m in members]


def _verdicts(decision: Decision) -> list[Verdict]:
    return [r.verdict for r in decision.rulings]


class OneCommitTests(_RedisCase):
    """
    A decision and its queue entries, in one script call.
    """

    @inline
    async def test_commit_leaves_both(self) -> None:
        """
        An accepted decision leaves its episode and its queue entry: the
        entry is the forward the episode records, counted in the shared
        length.
        """
        a = self.replica()
        decided = await a.decide([make_alert()])
        self.assertEqual(_verdicts(decided), [Verdict.NEW])
        key = decided.rulings[0].dedup_key
        episode = await self.document(f"ep:{key}")
        queued = await self.queued()
        self.assertEqual([e.idempotency_key for e in queued], [episode["forwarded"]])
        self.assertEqual(await self.redis("GET", f"{self.prefix}q:length"), "1")
        self.assertEqual(await self.redis("GET", f"{self.prefix}fp:{make_alert().fingerprint}"), key)

    @inline
    async def test_queue_full_leaves_nothing(self) -> None:
        """
        A decision whose queue entries do not fit (max_items reached) is not
        written either: nothing of it in the state or the streams; once
        there is room, the sender's retry is decided afresh, as new.
        """
        a = self.replica(max_items=1)
        await a.queue.put([Envelope("other", {"n": 1}, "other-1", "r")])
        before = await self.keys()
        with self.assertRaises(QueueFull):
            await a.decide([make_alert()])
        self.assertEqual(await self.keys(), before)
        self.assertEqual([e.key for e in await self.queued()], ["other"])
        await self.redis("SET", f"{self.prefix}q:length", 0)
        retried = await a.decide([make_alert()])
        self.assertEqual(_verdicts(retried), [Verdict.NEW])
        self.assertEqual(len(await self.queued()), 2)

    @inline
    async def test_conflict_writes_nothing_and_decides_again(self) -> None:
        """
        Another replica writing first, between a decision and its commit,
        makes the commit write nothing (its queue entry included); the
        decision is taken again on what the other wrote: a duplicate, and
        the alert is queued once.
        """
        a, b = self.replica(0), self.replica(1)
        attempts: list[Decision] = []

        async def _raced(decision: Decision, write: StateWrite | None) -> None:
            attempts.append(decision)
            if len(attempts) == 1:
                # B decides and commits the same alert first.
                self.assertEqual(_verdicts(await b.decide([make_alert()])), [Verdict.NEW])
            await a.enqueue(decision, write)

        decided = await a.decide([make_alert()], lambda d, w: Deferred.fromCoroutine(_raced(d, w)))
        self.assertEqual([len(d.outgoing) for d in attempts], [1, 0])
        self.assertEqual(_verdicts(decided), [Verdict.DUPLICATE])
        self.assertEqual(len(await self.queued()), 1)
        episode = await self.document(f"ep:{decided.rulings[0].dedup_key}")
        self.assertEqual(episode["duplicates"], 1)

    @inline
    async def test_duplicate_needs_no_room(self) -> None:
        """
        A decision that queues nothing (a duplicate counted) is written even
        while the queue is full: it takes no room.
        """
        a = self.replica(max_items=1)
        await a.decide([make_alert()])
        self.clock.advance(31)
        decided = await a.decide([make_alert()])
        self.assertEqual(_verdicts(decided), [Verdict.DUPLICATE])
        episode = await self.document(f"ep:{decided.rulings[0].dedup_key}")
        self.assertEqual(episode["duplicates"], 1)
        self.assertEqual(len(await self.queued()), 1)

    @inline
    async def test_same_alert_at_once(self) -> None:
        """
        Two replicas deciding the same new alert at the same moment: one
        forward, one queue entry.
        """
        a, b = self.replica(0), self.replica(1)
        decided = await gatherResults([a.decide([make_alert()]), b.decide([make_alert()])])
        self.assertEqual(sorted(v.value for d in decided for v in _verdicts(d)), ["duplicate", "new"])
        self.assertEqual(len(await self.queued()), 1)

    @inline
    async def test_one_load_one_commit(self) -> None:
        """
        A webhook costs one load and one commit, whatever it decides (new,
        duplicate, storm start, member folded into a storm): no separate
        queue write.
        """
        a = self.replica(storm=storms())
        calls: list[dict[str, float]] = []
        for pod in ("p-1", "p-1", "p-2", "p-3", "p-4", "p-5"):
            before = self.calls()
            await a.decide([make_alert(pod)])
            after = self.calls()
            calls.append({op: after[op] - before.get(op, 0) for op in after if after[op] != before.get(op, 0)})
        self.assertEqual(calls, [{"state_load": 1, "state_commit": 1}] * 6)

    def calls(self) -> dict[str, float]:
        """
        Redis calls so far, by operation.
        """
        found: dict[str, float] = {}
        for family in self.metrics.registry.collect():
            if family.name == "gateway_redis_latency_seconds":
                for sample in family.samples:
                    if sample.name.endswith("_count"):
                        found[sample.labels["operation"]] = sample.value
        return found


class StormListTests(_RedisCase):
    """
    Storm members waiting in a list of their own.
    """

    @inline
    async def test_members_in_the_list_document_small(self) -> None:
        """
        Members folded into a storm by either replica go to the group's
        list, in order; the group's document does not grow with them; the
        ticks of both replicas list every member once, in that order, and
        the closing takes the list away.
        """
        a, b = self.replica(0, storm=storms()), self.replica(1, storm=storms())
        await a.decide([make_alert(f"p-{i}") for i in range(4)])
        sizes = [int(await self.redis("HSTRLEN", f"{self.prefix}grp:{GROUP}", "d"))]
        for i in range(4, 20):
            await (a, b)[i % 2].decide([make_alert(f"p-{i}")])
            sizes.append(int(await self.redis("HSTRLEN", f"{self.prefix}grp:{GROUP}", "d")))
        expected = [make_alert(f"p-{i}").fingerprint for i in range(3, 20)]
        self.assertEqual(await self.waiting(), expected)
        self.assertEqual((await self.document(f"grp:{GROUP}"))["storm"]["waiting"], 17)
        # A few digits of counts, not a member's hundred bytes each.
        self.assertLess(max(sizes) - min(sizes), 10)
        listed: list[str] = []
        states: list[str] = []
        for turn in range(20):
            self.clock.advance(10)
            for event in (await (a, b)[turn % 2].tick()).outgoing:
                listed += [m["fingerprint"] for m in event.body["members"]]
                states.append(event.body["state"])
            if "closed" in states:
                break
        self.assertEqual(listed, expected)
        self.assertEqual(states[-1], "closed")
        self.assertNotIn(f"grp:{GROUP}:w", await self.keys())
        self.assertNotIn(f"grp:{GROUP}", await self.keys())

    @inline
    async def test_replicas_tick_at_once(self) -> None:
        """
        Both replicas ticking at the same moment emit each storm event
        once: the second finds it done when it decides again, and the queue
        holds the update once.
        """
        a, b = self.replica(0, storm=storms()), self.replica(1, storm=storms())
        await a.decide([make_alert(f"p-{i}") for i in range(8)])
        before = len(await self.queued())
        self.clock.advance(10)
        ticked = await gatherResults([a.tick(), b.tick()])
        events = [o.body for d in ticked for o in d.outgoing]
        self.assertEqual([(e["state"], e["sequence"]) for e in events], [("update", 2)])
        self.assertEqual(len(await self.queued()), before + 1)
        self.assertEqual(len(await self.waiting()), 2)

    @inline
    async def test_more_waiting_than_a_document_held(self) -> None:
        """
        The bound on waiting members is the configured one (10,000), not
        what a shared document could carry: six hundred members of one
        webhook all wait, in the list.
        """
        a = self.replica(storm=storms(max_members_listed=100))
        await a.decide([make_alert(f"p-{i}") for i in range(600)])
        self.assertEqual(int(await self.redis("LLEN", f"{self.prefix}grp:{GROUP}:w")), 596)
        storm = (await self.document(f"grp:{GROUP}"))["storm"]
        self.assertEqual((storm["members"], storm["listed"], storm["waiting"]), (600, 4, 596))

    @inline
    async def test_old_document_read_by_the_tick(self) -> None:
        """
        A group document of the previous version, its waiting members
        inline, is read as it is: the tick lists those members.
        """
        await self.old_document(["p-7", "p-8"])
        a = self.replica(storm=storms())
        self.clock.advance(10)
        events = (await a.tick()).outgoing
        self.assertEqual(
            [[m["fingerprint"] for m in e.body["members"]] for e in events],
            [[make_alert("p-7").fingerprint, make_alert("p-8").fingerprint]],
        )
        self.assertEqual((await self.document(f"grp:{GROUP}"))["storm"]["waiting"], 0)

    @inline
    async def test_old_document_moved_to_the_list(self) -> None:
        """
        The next write of an old group document moves its inline members to
        the list, ahead of the new one, and leaves the document without
        them; the next update lists all three in order.
        """
        await self.old_document(["p-7", "p-8"])
        a, b = self.replica(0, storm=storms()), self.replica(1, storm=storms())
        decided = await a.decide([make_alert("p-9")])
        self.assertEqual(_verdicts(decided), [Verdict.AGGREGATED])
        expected = [make_alert(p).fingerprint for p in ("p-7", "p-8", "p-9")]
        self.assertEqual(await self.waiting(), expected)
        storm = (await self.document(f"grp:{GROUP}"))["storm"]
        self.assertNotIn("pending", storm)
        self.assertEqual(storm["waiting"], 3)
        self.clock.advance(10)
        events = (await b.tick()).outgoing
        self.assertEqual([[m["fingerprint"] for m in e.body["members"]] for e in events], [expected])

    async def old_document(self, pods: list[str]) -> None:
        """
        A storm's group as the previous version wrote it: waiting members
        inline under C{storm.pending}.
        """
        now = self.clock.seconds()
        pending = [
            {"fingerprint": make_alert(p).fingerprint, "labels": {"pod": p}, "status": "firing", "seenAt": now}
            for p in pods
        ]
        storm = {
            "id": "0123456789abcdef",
            "group_id": GROUP,
            "group_labels": {"alertname": "PodCrash", "namespace": "payments"},
            "first_seen": now,
            "last_seen": now,
            "last_flush": now,
            "members": 4 + len(pods),
            "listed": 4,
            "pending": pending,
            "sequence": 1,
        }
        version = await self.redis("INCR", f"{self.prefix}version")
        document = json.dumps({"recent": [], "storm": storm})
        await self.redis("HSET", f"{self.prefix}grp:{GROUP}", "v", version, "d", document, "f", "")
        await self.redis("SADD", f"{self.prefix}storms", GROUP)


def _refuse(decision: Decision, write: StateWrite | None) -> Deferred[None]:
    raise QueueFull("the queue refused the write")


class SeparateQueueTests(_RedisCase):
    """
    Redis state with a queue elsewhere: committed first, taken back when
    the queue refuses.
    """

    @inline
    async def test_refused_storm_start_taken_back(self) -> None:
        """
        A storm's start the queue refused is taken back: the group is as
        before (no storm, no waiting list), so the retry starts the storm.
        """
        a = self.replica(storm=storms(), one_commit=False)
        await a.decide([make_alert(f"p-{i}") for i in range(3)])
        with self.assertRaises(QueueFull):
            await a.decide([make_alert(f"p-{i}") for i in range(3, 5)], _refuse)
        self.assertIsNone((await self.document(f"grp:{GROUP}"))["storm"])
        self.assertEqual(await self.waiting(), [])
        self.assertEqual(await self.redis("SMEMBERS", f"{self.prefix}storms"), [])
        retried = await a.decide([make_alert(f"p-{i}") for i in range(3, 5)], _at_once)
        self.assertEqual([o.body.get("state") for o in retried.outgoing], ["started"])

    @inline
    async def test_refused_update_queued_next_tick(self) -> None:
        """
        A storm update the queue refused stays committed (taking it back
        would be undone by any replica folding a member meanwhile) and is
        queued first by the next tick: its members are listed once, in
        their order, and the storm's sequence has no gap.
        """
        a = self.replica(storm=storms(), one_commit=False)
        await a.decide([make_alert(f"p-{i}") for i in range(9)], _at_once)
        waiting = await self.waiting()
        self.assertEqual(len(waiting), 6)
        self.clock.advance(10)
        with self.assertRaises(QueueFull):
            await a.tick(_refuse)
        self.assertEqual(await self.waiting(), waiting[3:])
        events = (await a.tick(_at_once)).outgoing
        self.assertEqual([m["fingerprint"] for e in events for m in e.body["members"]], waiting[:3])
        self.assertEqual([e.body["sequence"] for e in events], [2])


def _at_once(decision: Decision, write: StateWrite | None) -> Deferred[None]:
    return succeed(None)


class OutageTests(_RedisCase):
    """
    Redis gone, with the Redis queue: fail_closed writes nothing anywhere,
    fail_open decides locally into the fallback queue.
    """

    def failing_over(self, mode: str) -> tuple[Replica, Callable[[], int]]:
        shared = self.replica(mode=mode)
        assert isinstance(shared.state, RedisState)
        local = MemoryState(shared.state.settings, max_tracked=100)
        failover = Failover(self.clients[0], mode, self.metrics.redis)
        state = FailoverState(shared.state, local, failover)
        self.addCleanup(shared.queue.fallback.journal.close)
        return Replica(state, shared.queue, self.clock), lambda: len(shared.queue.fallback)

    async def outage(self) -> None:
        self.server.kill()
        await until(lambda: not any(c.up for c in self.clients))

    @inline
    async def test_fail_closed_leaves_no_trace(self) -> None:
        """
        fail_closed: refused with StateUnavailable (503), and nothing of it
        in Redis or the fallback queue once Redis is back.
        """
        replica, fallback = self.failing_over("fail_closed")
        await replica.queue.fallback.load()
        await self.outage()
        with self.assertRaises(StateUnavailable):
            await replica.decide([make_alert()])
        self.assertEqual(fallback(), 0)
        self.server.start()
        await until(lambda: all(c.up for c in self.clients))
        self.assertEqual(await self.keys(), set())

    @inline
    async def test_fail_open_decides_locally(self) -> None:
        """
        fail_open: decided from local memory, its forward queued in the
        fallback queue (this replica delivers it).
        """
        replica, fallback = self.failing_over("fail_open")
        await replica.queue.fallback.load()
        await self.outage()
        decided = await replica.decide([make_alert()])
        self.assertEqual(_verdicts(decided), [Verdict.NEW])
        self.assertEqual(fallback(), 1)


class StormExpiryTests(_RedisCase):
    @inline
    async def test_held_back_storm_does_not_expire(self) -> None:
        """
        A storm's group and waiting list live for max(storm.window,
        quiet_period, flush_interval) + 60 s from their last write.  While
        the queue is full (the processor down: when storms happen) the tick
        holds the storm's events back without writing the group, and once
        that time passes Redis drops the storm with its waiting members:
        the next tick finds nothing to close ("expired while every replica
        was away"), so those members never reach the processor.  The same
        happens when every replica is down that long.  (The 60 s margin is
        shortened here so that the test takes a second.)  Pins: the members
        of an open storm are listed once the queue has room again.
        """
        self.patch(decisions, "_TTL_MARGIN", 0.3)
        quick = storms(window=0.1, quiet_period=0.2, flush_interval=0.1)
        a = self.replica(storm=quick)
        await a.decide([make_alert(f"p-{i}") for i in range(9)])
        waiting = await self.waiting()
        self.assertEqual(len(waiting), 6)
        self.clock.advance(0.15)
        held = await a.state.tick(self.clock.seconds(), a.enqueue, 0)
        self.assertGreater(held.held_back, 0)
        # The queue stays full a little longer than the storm's time to live.
        await deferLater(reactor, 1.0)
        listed: list[str] = []
        for _ in range(10):
            self.clock.advance(0.2)
            for event in (await a.tick()).outgoing:
                listed += [m["fingerprint"] for m in event.body["members"]]
        self.assertEqual(listed, waiting)
