# -*- test-case-name: tests.unit.test_redis_queue -*-
"""
L{Reader}: the loop that brings the entries of the partitions this replica
holds from Redis into its L{Buffer}.

A partition just acquired is set up first: its consumer group created if
missing, then everything still pending in the group for it claimed
(C{XAUTOCLAIM} from C{0-0}, whichever consumer it was delivered to: the
lease proves that consumer no longer reads it), in ID order.  Only then are
new entries read (C{XREADGROUP >}), blocking about a second at a time over
every partition held, on a connection of its own.  The reader stops reading
while the buffer holds four read batches.

Every C{claim_idle}, it also claims what other consumers have left pending
for that long in the partitions it reads (a read that raced with the loss
of a lease), and forgets consumers with nothing pending.

The loop gives partitions back too (see L{Leases.give_back}): a partition
becomes idle here as its entries are delivered, which is what pokes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.logger import Logger

from alertgateway.interfaces import IClientReactor
from alertgateway.observability.metrics import RedisMetrics
from alertgateway.redis._loop import Loop
from alertgateway.redis.client import RedisClient, RedisError
from alertgateway.redis.queue.buffer import Buffer
from alertgateway.redis.queue.codec import Ident, decode
from alertgateway.redis.queue.keys import GROUP, QueueKeys
from alertgateway.redis.queue.leases import Leases
from alertgateway.redis.queue.outage import Outage
from alertgateway.redis.queue.settings import RedisQueueSettings
from alertgateway.redis.scripts import load

__all__ = ["Reader"]

_log = Logger()

_ENSURE_GROUP = load("queue_group")
_FORGET_CONSUMER = load("queue_forget")

# Entries read from Redis that may wait in the buffer, in read batches.
_BUFFERED_BATCHES = 4


class Reader:
    """
    Read the partitions held into the buffer, from L{start} to L{stop}.

    @param client: The shared connection, for everything but the blocking
        reads.
    @param on_state: Told when the reading connection comes and goes.
    @param on_unreadable: Called with an entry that is not an envelope and
        why, to keep it as a dead letter.
    """

    def __init__(
        self,
        client: RedisClient,
        keys: QueueKeys,
        buffer: Buffer,
        leases: Leases,
        outage: Outage,
        *,
        reactor: IClientReactor,
        settings: RedisQueueSettings,
        replica: str,
        on_state: Callable[[bool], None],
        on_unreadable: Callable[[Ident, str], None],
    ) -> None:
        self._client = client
        self._keys = keys
        self._buffer = buffer
        self._leases = leases
        self._outage = outage
        self._reactor = reactor
        self._settings = settings
        self._replica = replica
        self._on_state = on_state
        self._on_unreadable = on_unreadable
        self._running = False
        self._next_sweep = 0.0
        self._connection: RedisClient | None = None
        self._loop: Loop | None = None

    def start(self) -> None:
        """
        Open the reading connection and start reading.
        """
        self._running = True
        settings = self._client.settings
        # Its reads block for up to `block`, on top of the usual answer time.
        # Metered apart: its blocking reads would skew the latencies, and its
        # connection coming and going is not Redis's.
        self._connection = RedisClient(
            attrs.evolve(settings, timeout=settings.timeout + self._settings.block, pool_size=1),
            self._reactor,
            RedisMetrics.unregistered(),
            name="queue",
        )
        self._connection.on_state(self._on_state)
        self._connection.start()
        self._loop = Loop("Redis queue reads", self._reactor, self._step)
        self._loop.start()

    def poke(self) -> None:
        """
        Go on at once if waiting: a partition was acquired, room was made in
        the buffer, or Redis is back.
        """
        if self._loop is not None:
            self._loop.poke()

    async def stop(self) -> None:
        """
        Stop reading: closing the connection ends a blocked read at once.
        """
        self._running = False
        loop, self._loop = self._loop, None
        stopped = loop.stop() if loop is not None else None
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.stop()
        if stopped is not None:
            await stopped

    async def _step(self) -> float:
        connection = self._connection
        pause = self._settings.claim_idle / 3
        if connection is None:
            return pause
        try:
            await self._leases.give_back()
            if self._leases.draining:
                return pause
            await self._ready_partitions()
            await self._sweep()
            partitions = self._leases.readable()
            if not partitions or len(self._buffer) >= self._settings.read_batch * _BUFFERED_BATCHES:
                # Until poked: a partition taken, room made, Redis back.
                return pause
            await self._read(connection, partitions)
        except RedisError as e:
            self._failed(e)
            return min(1.0, pause)
        self._outage.recovered()
        return 0.0

    def _failed(self, error: RedisError) -> None:
        if not self._running:
            # Stopping closed the reading connection.
            return
        if str(error).startswith("NOGROUP"):
            # The group is gone (Redis lost its data, or someone deleted
            # it): set the partitions up again, from what the streams hold.
            _log.warn("Redis queue: consumer group missing ({reason}); creating it again", reason=str(error))
            self._leases.set_up_again()
            return
        self._outage.failed(error)

    async def _ready_partitions(self) -> None:
        readied = []
        for partition in self._leases.unready():
            await self._client.script(_ENSURE_GROUP, [self._keys.streams[partition]], [GROUP])
            await self._claim_pending(partition)
            if self._leases.ready(partition):
                readied.append(partition)
        if readied:
            _log.info("Redis queue partitions {partitions} are now read here", partitions=readied)

    async def _claim_pending(self, partition: int) -> None:
        stream = self._keys.streams[partition]
        cursor = "0-0"
        while self._leases.holds(partition):
            reply = await self._client.command(
                "queue_claim", "XAUTOCLAIM", stream, GROUP, self._replica, 0, cursor, "COUNT", self._settings.read_batch
            )
            cursor = reply[0]
            self._admit(partition, reply[1])
            if cursor == "0-0":
                return

    async def _sweep(self) -> None:
        now = self._reactor.seconds()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._settings.claim_idle
        for partition in self._leases.readable():
            await self._sweep_partition(partition)

    async def _sweep_partition(self, partition: int) -> None:
        stream = self._keys.streams[partition]
        consumers = await self._client.command("queue_sweep", "XINFO", "CONSUMERS", stream, GROUP)
        for info in consumers:
            fields = dict(zip(info[::2], info[1::2], strict=True))
            name = str(fields["name"])
            if name == self._replica:
                continue
            if int(fields["pending"]):
                await self._claim_orphans(partition, name)
            elif int(fields["idle"]) >= self._settings.lease_ms:
                await self._client.script(_FORGET_CONSUMER, [stream], [GROUP, name])

    async def _claim_orphans(self, partition: int, consumer: str) -> None:
        stream = self._keys.streams[partition]
        idle = self._settings.lease_ms
        pending = await self._client.command(
            "queue_sweep", "XPENDING", stream, GROUP, "IDLE", idle, "-", "+", self._settings.read_batch, consumer
        )
        ids = [row[0] for row in pending]
        if not ids:
            return
        entries = await self._client.command("queue_sweep", "XCLAIM", stream, GROUP, self._replica, idle, *ids)
        _log.warn(
            "Redis queue: claimed {count} entries of partition {partition} left pending by {consumer}",
            count=len(entries),
            partition=partition,
            consumer=consumer,
        )
        self._admit(partition, entries)

    async def _read(self, connection: RedisClient, partitions: list[int]) -> None:
        streams = [self._keys.streams[p] for p in partitions]
        count = -(-self._settings.read_batch // len(partitions))
        reply = await connection.command(
            "queue_read",
            "XREADGROUP",
            "GROUP",
            GROUP,
            self._replica,
            "COUNT",
            count,
            "BLOCK",
            self._settings.block_ms,
            "STREAMS",
            *streams,
            *([">"] * len(streams)),
        )
        for stream, entries in reply or ():
            partition = self._keys.partition_of_stream(stream)
            # One taken again meanwhile claims what was read of it, in order.
            if self._leases.is_ready(partition):
                self._admit(partition, entries)

    def _admit(self, partition: int, entries: Sequence[Any]) -> None:
        """
        Buffer entries read or claimed, unless the partition is no longer
        held (its next holder claims them) or they are here already.
        """
        if not self._leases.holds(partition):
            return
        fresh = []
        admitted: set[Ident] = set()
        for item in entries:
            # An entry deleted after it was read comes back without fields.
            if not item or item[1] is None:
                continue
            entry, fields = str(item[0]), item[1]
            ident = (partition, entry)
            if ident in self._buffer or ident in admitted:
                continue
            try:
                envelope = decode(partition, entry, fields)
            except ValueError as e:
                _log.error(
                    "Redis queue entry {entry} of partition {partition} is not an alert ({error}); kept as a dead"
                    " letter",
                    entry=entry,
                    partition=partition,
                    error=str(e),
                )
                self._on_unreadable(ident, f"unreadable: {e}")
                continue
            admitted.add(ident)
            fresh.append(envelope)
        self._buffer.put(fresh)
