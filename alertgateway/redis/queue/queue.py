# -*- test-case-name: tests.unit.test_redis_queue -*-
"""
L{RedisQueue}: the delivery queue in Redis Streams as the intake and the
forwarder see it (put, take, done, bury, release, postpone), with the local
fallback queue it turns to while Redis cannot be reached; it starts and
stops the parts described in L{alertgateway.redis.queue}.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from alertgateway.delivery.durable import DurableQueue
from alertgateway.delivery.envelope import Envelope
from alertgateway.interfaces import IClientReactor
from alertgateway.redis._loop import Loop
from alertgateway.redis.client import RedisClient, RedisError, RedisUnavailable
from alertgateway.redis.commit import RedisCommit
from alertgateway.redis.failover import Failover
from alertgateway.redis.queue.acks import Acks
from alertgateway.redis.queue.appender import Appender
from alertgateway.redis.queue.buffer import Buffer
from alertgateway.redis.queue.codec import ident_of
from alertgateway.redis.queue.keys import QueueKeys, partition_of
from alertgateway.redis.queue.leases import Leases
from alertgateway.redis.queue.outage import Outage
from alertgateway.redis.queue.reader import Reader
from alertgateway.redis.queue.settings import RedisQueueSettings
from alertgateway.redis.scripts import load

__all__ = ["RedisQueue"]

_log = Logger()

_RECOUNT = load("queue_recount")


def _replica_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class RedisQueue:
    """
    A bounded, per-key ordered queue in Redis Streams, shared by replicas.

    @param client: The shared Redis connection (started and stopped by its
        owner).
    @param fallback: Where batches go while Redis is unreachable with
        C{fail_open}; loaded by L{start}, its journal closed by L{stop}.
    @param failover: Says whether to fail open (to C{fallback}) or closed
        (L{QueueFull}) while Redis cannot be reached.
    @param reactor: Provides IReactorTime and IReactorTCP (the reading
        connection).
    @param replica: This replica's consumer name, unique among replicas
        (hostname, pid and a random part by default).
    """

    def __init__(
        self,
        client: RedisClient,
        fallback: DurableQueue,
        failover: Failover,
        *,
        reactor: IClientReactor,
        settings: RedisQueueSettings,
        replica: str | None = None,
    ) -> None:
        self.client = client
        self.fallback = fallback
        self.max_items = settings.max_items
        self.partitions = settings.partitions
        self.replica = replica or _replica_name()
        self.failover = failover
        self.settings = settings
        self._reactor = reactor
        self._keys = QueueKeys.of(client, settings.partitions)
        self._buffer = Buffer()
        self._outage = Outage(failover)
        self._acks = Acks(client, self._keys, self._outage, self._seen_length)
        self._appender = Appender(
            client,
            self._keys,
            fallback,
            failover,
            self._outage,
            clock=reactor,
            max_items=settings.max_items,
            seen_length=self._seen_length,
        )
        self._leases = Leases(
            client,
            self._keys,
            self._buffer,
            clock=reactor,
            settings=settings,
            replica=self.replica,
            on_acquired=self._poke_reader,
        )
        self._reader = Reader(
            client,
            self._keys,
            self._buffer,
            self._leases,
            self._outage,
            reactor=reactor,
            settings=settings,
            replica=self.replica,
            on_state=self._redis_changed,
            on_unreadable=lambda ident, reason: self._acks.bury(ident, reason, 0),
        )
        self._length = 0
        self._running = False
        self._durability_checked = False
        self._leasing: Loop | None = None
        self._pumping: Deferred[None] | None = None
        client.on_state(self._redis_changed)

    @property
    def held(self) -> frozenset[int]:
        """
        The partitions whose leases this replica holds.
        """
        return self._leases.held

    def partition_of(self, key: str) -> int:
        """
        The partition of a key: stable across processes and replicas.
        """
        return partition_of(key, self.partitions)

    def __len__(self) -> int:
        # The shared length as last seen, and what waits locally.
        return self._length + len(self.fallback)

    # Lifecycle.

    def start(self) -> Deferred[None]:
        """
        Load what the fallback queue holds from before, then start holding
        partitions and reading them.  Call it before the forwarder starts
        taking.

        @return: Fires once the fallback queue is loaded; Redis need not be
            reachable.
        """
        self._buffer.clear()
        self._running = True
        self._leases.draining = False
        return self.fallback.load().addCallback(self._loaded)

    def _loaded(self, count: int) -> None:
        if count:
            path = self.fallback.journal.path
            _log.info("{count} alerts from the fallback queue {path} to deliver", count=count, path=path)
        if not self._running:
            return
        self._pump()
        self._reader.start()
        self._leasing = Loop("Redis queue leases", self._reactor, self._lease_step)
        self._leasing.start()

    def stop(self, *, release: bool = True) -> Deferred[None]:
        """
        Stop reading and renewing, give the leases back so other replicas
        take over at once, and close the fallback queue.  Call it after the
        forwarder has stopped.  What is buffered here stays pending in
        Redis: the next holder of its partition delivers it.

        @param release: C{False} leaves the leases and the heartbeat to
            expire, as a crash would.
        """
        if not self._running:
            return succeed(None)
        self._running = False
        self._leases.draining = True
        return Deferred.fromCoroutine(self._shut_down(release))

    async def _shut_down(self, release: bool) -> None:
        if self._pumping is not None:
            self._pumping.cancel()
        leasing, self._leasing = self._leasing, None
        leased = leasing.stop() if leasing is not None else None
        await self._reader.stop()
        if leased is not None:
            await leased
        held = self._leases.clear()
        if release:
            await self._leave(held)
        await self.fallback.journal.close()

    async def _leave(self, held: list[int]) -> None:
        try:
            await self._acks.retry()
            await self._leases.leave(held)
        except RedisError as e:
            _log.warn(
                "Cannot leave the Redis queue cleanly ({reason}); partitions {partitions} are taken over in {seconds}s",
                reason=str(e),
                partitions=held,
                seconds=self.settings.claim_idle,
            )

    def _redis_changed(self, up: bool) -> None:
        if up:
            self._poke_loops()

    def _poke_loops(self) -> None:
        # Go on at once: the loops may be waiting for Redis, or to drain.
        if self._leasing is not None:
            self._leasing.poke()
        self._reader.poke()

    def _poke_reader(self) -> None:
        self._reader.poke()

    def _seen_length(self, length: int) -> None:
        self._length = length

    # Accepting.

    def put(self, envelopes: Sequence[Envelope], write: object | None = None) -> Deferred[None]:
        """
        Append a batch to the partitions' streams, all or nothing, with the
        decision's state write if any, in the same script call.

        @param write: A L{RedisCommit} of the Redis state: written only if
            none of its entries moved since they were loaded, and only with
            the batch.

        @return: Fires once Redis (or, Redis unreachable, C{fail_open} and
            no C{write}, the fallback queue) has the batch; fails with
            L{QueueFull} when it does not fit or cannot be kept (nothing of
            C{write} written then either), with
            L{alertgateway.redis.commit.CommitConflict} when the write's
            entries moved, and with the L{RedisError} when a C{write} cannot
            reach Redis (the state decides locally, or refuses, as
            C{fail_open} says).
        """
        if write is not None and not isinstance(write, RedisCommit):
            raise TypeError(f"the Redis queue cannot commit {write!r}")
        if not envelopes and write is None:
            return succeed(None)
        return Deferred.fromCoroutine(self._appender.put(envelopes, write))

    # Delivering.

    def take(self) -> Deferred[Envelope]:
        """
        Wait for the next envelope whose key is not being delivered.  The
        caller must call L{done} (or L{bury}, L{release}, L{postpone}) with
        it.
        """
        return Deferred.fromCoroutine(self._take())

    async def _take(self) -> Envelope:
        while True:
            envelope = await self._buffer.take()
            if self._deliverable(envelope):
                return envelope
            # Its partition was lost meanwhile: the next holder delivers it.
            self._buffer.skip(envelope)

    def take_now(self, limit: int) -> list[Envelope]:
        """
        Take up to C{limit} deliverable envelopes that are ready now,
        without waiting (see L{take}).
        """
        taken: list[Envelope] = []
        while len(taken) < limit:
            ready = self._buffer.take_now(1)
            if not ready:
                break
            if self._deliverable(ready[0]):
                taken.append(ready[0])
            else:
                self._buffer.skip(ready[0])
        return taken

    def _deliverable(self, envelope: Envelope) -> bool:
        ident = ident_of(envelope)
        if ident is None:
            return True
        # A lease that lapsed while the envelope waited: another replica
        # may be delivering it by now.
        self._leases.expire()
        return self._buffer.claim(ident)

    def done(self, envelope: Envelope) -> None:
        """
        The envelope is delivered: acknowledge and delete it.
        """
        ident = ident_of(envelope)
        if ident is None:
            # The fallback hands out the next of this key (into the buffer,
            # behind this one) before this one leaves the buffer.
            self.fallback.done(envelope)
            self._buffer.done(envelope)
            return
        # Acknowledged first, so that a shutdown waiting for the buffer waits for the answer too.
        self._acks.done(ident)
        self._forget(envelope)

    def bury(self, envelope: Envelope, reason: str, attempts: int) -> None:
        """
        The receiver refused the envelope for good: move it to the
        dead-letter stream.
        """
        ident = ident_of(envelope)
        if ident is None:
            self.fallback.bury(envelope, reason, attempts)
            self._buffer.done(envelope)
            return
        self._acks.bury(ident, reason, attempts)
        self._forget(envelope)

    def release(self, envelope: Envelope) -> None:
        """
        Put a taken envelope back, first of its key; in Redis it stays
        pending under this replica.
        """
        self._buffer.release(envelope, held=self._held(envelope))

    def postpone(self, envelope: Envelope, delay: float, clock: IReactorTime) -> None:
        """
        Put a taken envelope back, first of its key, whose key waits
        C{delay} seconds.
        """
        self._buffer.postpone(envelope, delay, clock, held=self._held(envelope))

    def _held(self, envelope: Envelope) -> bool:
        return envelope.partition is not None and self._leases.holds(envelope.partition)

    def _forget(self, envelope: Envelope) -> None:
        self._buffer.done(envelope)
        # Room to read again, or a partition idle enough to give back.
        self._reader.poke()

    def oldest(self) -> float | None:
        """
        When the oldest envelope waiting here was accepted (this replica's
        view: the other replicas' buffers are theirs).
        """
        heads = [t for t in (self._buffer.oldest(), self.fallback.oldest()) if t is not None]
        return min(heads) if heads else None

    def stop_timers(self) -> None:
        self._buffer.stop_timers()

    def when_empty(self) -> Deferred[None]:
        """
        Stop reading new entries and give partitions back as they become
        idle here (this is how a shutdown begins); fires once nothing is
        buffered or in delivery here.
        """
        self._leases.drain()
        self._poke_loops()
        return Deferred.fromCoroutine(self._emptied())

    async def _emptied(self) -> None:
        await self._buffer.when_empty()
        await self.fallback.when_empty()
        await self._acks.answered()

    # The fallback queue feeds the buffer: it hands out one envelope of a
    # key at a time, and the next once that one is done.

    def _pump(self) -> None:
        while self._running:
            taken: list[Envelope] = []
            d = self.fallback.take().addCallback(taken.append)
            if not taken:
                self._pumping = d
                d.addCallbacks(self._pumped, lambda f: f.trap(CancelledError), callbackArgs=(taken,))
                return
            self._buffer.put(taken)

    def _pumped(self, _: None, taken: list[Envelope]) -> None:
        self._pumping = None
        self._buffer.put(taken)
        self._pump()

    # The lease loop: every third of claim_idle, renew and balance the
    # leases, and keep the shared state of the queue in order.

    async def _lease_step(self) -> float:
        try:
            await self._leases.renew()
            await self._leases.balance()
            await self._recount()
            await self._acks.retry()
            await self._check_durability()
            self._outage.recovered()
        except RedisError as e:
            self._outage.failed(e)
        self._leases.expire()
        return self.settings.claim_idle / 3

    async def _recount(self) -> None:
        self._length = int(await self.client.script(_RECOUNT, [self._keys.length, *self._keys.streams], []))

    async def _check_durability(self) -> None:
        if self._durability_checked:
            return
        try:
            reply = await self.client.command("queue_config", "CONFIG", "GET", "appendonly")
        except RedisUnavailable:
            raise
        except RedisError:
            # CONFIG is often disabled on managed Redis: cannot tell.
            reply = None
        self._durability_checked = True
        if reply and reply[1] == "no":
            _log.warn("Redis runs without appendonly: alerts accepted into the Redis queue are lost if Redis restarts")
