# -*- test-case-name: tests.unit.test_redis_queue -*-
"""
L{Leases}: which partitions of the Redis queue this replica reads, and for
how long that is surely so.

A partition is read by one replica at a time: the one holding its lease, a
key set with C{SET NX PX claim_idle} and renewed every third of
C{claim_idle}, only while it still holds that replica's name.  Replicas
announce themselves in a heartbeat sorted set (scored by Redis's clock),
and each holds at most its share, C{ceil(partitions / live replicas)}:
above it, a replica stops reading its surplus partitions and gives each
back once nothing of it is buffered or in delivery here.  A replica that
stops renewing has its leases expire after C{claim_idle}, and the others
acquire them; a replica that drains counts itself out, so that the others'
shares grow and they take over what it gives back.

A lease is held here until the time its last renewal was sent plus
C{claim_idle}, on the local clock: past that, another replica may hold it,
so what is buffered of the partition is dropped (it is pending under this
replica's name, and the next holder claims it).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from alertgateway.redis.client import RedisClient
from alertgateway.redis.queue.buffer import Buffer
from alertgateway.redis.queue.keys import QueueKeys
from alertgateway.redis.queue.settings import RedisQueueSettings
from alertgateway.redis.scripts import load

__all__ = ["Leases"]

_log = Logger()

_HEARTBEAT = load("queue_heartbeat")
_ACQUIRE = load("queue_acquire")
_RELEASE = load("queue_release")


class Leases:
    """
    The leases this replica holds, renewed, balanced and given back.

    A partition acquired is I{unready} until the reader has set up its
    consumer group and claimed what is pending in it; one above this
    replica's share is I{leaving} until it is given back.  Neither is read.

    @param buffer: What is here of each partition: a partition lost drops
        its waiting entries; one leaving is given back once it has none.
    @param on_acquired: Called when partitions were acquired (the reader
        sets them up at once).
    @ivar draining: Whether this replica is stopping: it counts itself out
        of the live replicas and acquires nothing more.
    """

    def __init__(
        self,
        client: RedisClient,
        keys: QueueKeys,
        buffer: Buffer,
        *,
        clock: IReactorTime,
        settings: RedisQueueSettings,
        replica: str,
        on_acquired: Callable[[], None],
    ) -> None:
        self._client = client
        self._keys = keys
        self._buffer = buffer
        self._clock = clock
        self._settings = settings
        self._replica = replica
        self._on_acquired = on_acquired
        # Each replica tries partitions from its own starting point, so that
        # replicas starting together do not all race for the same ones.
        partitions = settings.partitions
        first = zlib.crc32(replica.encode("utf-8")) % partitions
        self._rotation = [(first + i) % partitions for i in range(partitions)]
        # Partition -> until when its lease is surely ours (local clock,
        # from when the renewal was sent).
        self._held: dict[int, float] = {}
        self._unready: set[int] = set()
        self._leaving: set[int] = set()
        # When each leaving partition was told to leave.
        self._leaving_since: dict[int, float] = {}
        self._live = 1
        self.draining = False

    @property
    def held(self) -> frozenset[int]:
        return frozenset(self._held)

    def holds(self, partition: int) -> bool:
        return partition in self._held

    def readable(self) -> list[int]:
        """
        The partitions to read: held, set up, and not leaving.
        """
        return [p for p in sorted(self._held) if p not in self._unready and p not in self._leaving]

    def unready(self) -> list[int]:
        """
        The partitions held but not set up yet, in order.
        """
        return sorted(self._unready)

    def is_ready(self, partition: int) -> bool:
        return partition not in self._unready

    def ready(self, partition: int) -> bool:
        """
        The partition is set up: read it from now on, if still held.
        """
        if partition not in self._held:
            return False
        self._unready.discard(partition)
        return True

    def set_up_again(self) -> None:
        """
        Every partition held must be set up again (its consumer group is
        gone).
        """
        self._unready.update(self._held)

    def drain(self) -> None:
        """
        Count this replica out and give every partition back as it becomes
        idle here.
        """
        self.draining = True
        self._leaving = set(self._held)

    def clear(self) -> list[int]:
        """
        Stop holding anything here (the queue stops); the partitions that
        were held, to L{leave}.
        """
        held = sorted(self._held)
        self._held.clear()
        self._unready.clear()
        self._leaving.clear()
        return held

    async def renew(self) -> None:
        """
        Beat the heart (counted out while draining) and renew every lease
        held; lose those another replica holds now.
        """
        held = sorted(self._held)
        sent = self._clock.seconds()
        keys = [self._keys.replicas, *(self._keys.leases[p] for p in held)]
        # A draining replica no longer counts: the others' shares grow, so
        # they take over the partitions it gives back.
        counted = "0" if self.draining else "1"
        reply = await self._client.script(_HEARTBEAT, keys, [self._replica, self._settings.lease_ms, counted])
        self._live = max(1, int(reply[0]))
        lost = []
        for partition, renewed in zip(held, reply[1:], strict=True):
            if partition not in self._held:
                continue
            if int(renewed):
                self._held[partition] = sent + self._settings.claim_idle
            else:
                lost.append(partition)
                self.lose(partition)
        if lost:
            _log.warn(
                "Redis queue partitions {partitions} were taken over by another replica; what is buffered of them"
                " is left to it",
                partitions=lost,
            )

    async def balance(self) -> None:
        """
        Hold this replica's share: mark the surplus as leaving, or acquire
        what is missing.
        """
        if self.draining:
            self._leaving = set(self._held)
            return
        share = -(-self._settings.partitions // self._live)
        excess = len(self._held) - share
        if excess > 0:
            # The least busy here go first; those already going keep going.
            ranked = sorted(self._held, key=lambda p: (p not in self._leaving, self._buffer.busy(p), p))
            self._leaving = set(ranked[:excess])
            return
        self._leaving.clear()
        if excess < 0:
            await self._acquire(-excess)

    async def _acquire(self, wanted: int) -> None:
        candidates = [p for p in self._rotation if p not in self._held]
        if not candidates:
            return
        sent = self._clock.seconds()
        keys = [self._keys.leases[p] for p in candidates]
        got = await self._client.script(_ACQUIRE, keys, [self._replica, self._settings.lease_ms, wanted])
        for index in got:
            partition = candidates[int(index) - 1]
            self._held[partition] = sent + self._settings.claim_idle
            self._unready.add(partition)
        if got:
            self._on_acquired()

    def expire(self) -> None:
        """
        Lose the leases not renewed in time: another replica may hold them
        by now.
        """
        now = self._clock.seconds()
        expired = [p for p, until in self._held.items() if until <= now]
        for partition in expired:
            self.lose(partition)
        if expired:
            _log.warn(
                "Redis queue leases of partitions {partitions} not renewed for {seconds}s; their buffered entries"
                " are left to their next holder",
                partitions=expired,
                seconds=self._settings.claim_idle,
            )

    def lose(self, partition: int) -> None:
        """
        The partition is no longer held here: drop what waits of it.
        """
        self._held.pop(partition, None)
        self._unready.discard(partition)
        self._leaving.discard(partition)
        self._buffer.lose(partition)

    async def give_back(self) -> None:
        """
        Release the leaving partitions that are idle here, and those busy
        for longer than C{claim_idle}.
        """
        now = self._clock.seconds()
        for partition in list(self._leaving_since):
            if partition not in self._leaving:
                del self._leaving_since[partition]
        for partition in self._leaving:
            self._leaving_since.setdefault(partition, now)
        # A partition still busy here after claim_idle (an alert of it
        # failing again and again) is given back all the same: what is
        # buffered of it stays pending for the next holder, and the rest
        # of the partition must not wait behind one key.
        claim_idle = self._settings.claim_idle
        overdue = [p for p in self._leaving if self._buffer.busy(p) and now - self._leaving_since[p] >= claim_idle]
        for partition in overdue:
            self.lose(partition)
        idle = sorted({p for p in self._leaving if not self._buffer.busy(p)} | set(overdue))
        if not idle:
            return
        for partition in idle:
            self._held.pop(partition, None)
            self._leaving.discard(partition)
            self._leaving_since.pop(partition, None)
            self._unready.discard(partition)
        await self._client.script(_RELEASE, [self._keys.leases[p] for p in idle], [self._replica])
        _log.info("Redis queue partitions {partitions} given back", partitions=idle)

    async def leave(self, held: list[int]) -> None:
        """
        Stop counting as a live replica and release the leases of C{held}
        (from L{clear}), so that other replicas take over at once.
        """
        await self._client.command("queue_leave", "ZREM", self._keys.replicas, self._replica)
        if held:
            await self._client.script(_RELEASE, [self._keys.leases[p] for p in held], [self._replica])
