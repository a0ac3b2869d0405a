"""
The Redis Streams delivery queue (C{queue.backend: redis}): every replica
accepts alerts into it, and every replica's forwarder delivers from it.

Partitions.  An envelope goes to one of C{queue.redis.partitions} streams,
chosen by the CRC32 of its key (the fingerprint): every envelope of a key
lands in the same stream, in the order Redis appended them.  One consumer
group, L{GROUP}, reads every stream; each replica is a consumer of its own
name.

Leases.  A partition is read by one replica at a time: the one holding its
lease, a key set with C{SET NX PX claim_idle} and renewed every third of
C{claim_idle}, only while it still holds that replica's name.  Replicas
announce themselves in a heartbeat sorted set, and each holds at most its
share, C{ceil(partitions / live replicas)}: a replica above its share stops
reading its surplus partitions and gives each back once nothing of it is
buffered or in delivery here.  A replica that stops renewing (killed,
stalled, cut off) has its leases expire after C{claim_idle}, and the others
take them over; a replica that stops cleanly gives them back at once.

Claim.  A replica that acquires a partition first claims everything still
pending in the group for it (C{XAUTOCLAIM} from C{0-0}, whichever consumer
it was delivered to: the lease proves that consumer no longer reads it), in
ID order, and only then reads new entries (C{XREADGROUP >}), blocking about
a second at a time over every partition it holds, on a connection of its
own.  What is read goes into a local L{MemoryQueue}, which hands out one
envelope of a key at a time, in order, different keys in parallel; the
replica stops reading while that buffer holds four read batches.  While
holding a partition, a replica also claims what other consumers have left
pending there for C{claim_idle} (a read that raced with the loss of a
lease), and forgets consumers with nothing pending.

Order.  The envelopes of a key are in one stream, read in ID order by one
replica at a time, and delivered by it one after the other; the next holder
starts with the previous holder's pending entries, oldest first.  So order
holds across replicas, except when a replica stalls for longer than
C{claim_idle}: its lease is taken over while it may still be delivering, and
entries of one key may then be delivered by both.  A replica that finds its
lease taken, or that could not renew it within C{claim_idle}, stops
delivering the entries of that partition it has buffered (they are pending
under its name, and the next holder claims them).

At least once.  An entry is acknowledged and deleted (C{XACK}, C{XDEL}) only
after a 2xx, or once copied to the dead-letter stream C{dead}; an entry
whose delivery was interrupted is delivered again by whoever claims it, and
the Alert Processor dedupes by C{Idempotency-Key}.  A shared counter bounds
the queue to C{queue.max_items} across replicas: C{put} appends a whole
batch or nothing, in one script.  An acknowledgement that fails is retried.

Durability.  C{put} answers once Redis has the batch.  That is a promise not
to lose it only if Redis persists every write: run it with C{appendonly yes}
and C{appendfsync always} (C{everysec} may lose the last second on a power
loss).  A warning is logged when C{appendonly} is off.

Redis unreachable.  With C{state.redis.on_failure: fail_open}, batches go to
the local SQLite fallback queue (C{queue.path}) and are delivered by this
replica through the same C{take}; what it still holds is delivered on the
next start.  Their order relative to envelopes of the same key accepted
through Redis is best effort.  With C{fail_closed}, C{put} fails with
L{QueueFull}, so the webhook answers 503 with C{Retry-After} and the sender
retries.  The lease and read loops keep trying, logging once per outage.

Dead letters stay in the C{dead} stream (each with its reason, attempts,
partition and original entry) until an operator removes them (C{XRANGE},
C{XDEL}).

Redis 6.2 or later (C{XAUTOCLAIM}, C{XPENDING IDLE}).  The scripts use
several keys at once: this needs one Redis, or a key prefix with a hash tag
(C{{alertgateway}:}) on a Redis Cluster.  Changing C{partitions} moves keys
to other streams: drain the queue first.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import zlib
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from alertgateway.delivery.durable import DurableQueue
from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.queue import MemoryQueue
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.redis.client import RedisClient, RedisError, RedisUnavailable, Script
from alertgateway.redis.failover import Failover
from alertgateway.redis.scripts import load
from alertgateway.state.errors import QueueFull

__all__ = ["GROUP", "RedisQueue", "RedisQueueSettings"]

# The consumer group every replica reads through.
GROUP = "gateway"

# The buffer's bound is on reading: what is read must all be queued.
_UNBOUNDED = 2**62

# Entries read from Redis that may wait here, in read batches.
_BUFFERED_BATCHES = 4

# How long a loop waits after an unexpected error (a bug) before going on.
_AFTER_BUG = 1.0

_PUT = load("queue_put")
_DONE = load("queue_done")
_BURY = load("queue_bury")
_HEARTBEAT = load("queue_heartbeat")
_ACQUIRE = load("queue_acquire")
_RELEASE = load("queue_release")
_ENSURE_GROUP = load("queue_group")
_RECOUNT = load("queue_recount")
_FORGET_CONSUMER = load("queue_forget")


def _replica_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _ident(envelope: Envelope) -> tuple[int, str] | None:
    if envelope.entry is None or envelope.partition is None:
        return None
    return (envelope.partition, envelope.entry)


def _encode(envelope: Envelope, now: float) -> str:
    document = {
        "key": envelope.key,
        "body": envelope.body,
        "idempotency_key": envelope.idempotency_key,
        "request_id": envelope.request_id,
        "headers": [list(header) for header in envelope.headers],
        "accepted_at": envelope.accepted_at or now,
    }
    return json.dumps(document, separators=(",", ":"))


def _decode(partition: int, entry: str, fields: Sequence[str]) -> Envelope:
    """
    @raise ValueError: If the entry is not an envelope of ours.
    """
    try:
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        document = json.loads(values["e"])
        return Envelope(
            str(document["key"]),
            document["body"],
            str(document["idempotency_key"]),
            str(document["request_id"]),
            tuple((str(name), str(value)) for name, value in document["headers"]),
            accepted_at=float(document["accepted_at"]),
            entry=entry,
            partition=partition,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{type(e).__name__}: {e}") from e


@attrs.frozen
class RedisQueueSettings:
    """
    How big the Redis queue is, how it is spread, and how long it waits.

    @ivar max_items: Envelopes queued at most, across every replica.
    @ivar partitions: Streams the envelopes are spread over; a key always
        goes to the same one.  Changing it moves keys to other streams.
    @ivar claim_idle: Seconds a lease lasts unless renewed: a replica that
        has not renewed for this long is taken for dead, and what it left
        pending for this long is claimed by others.
    @ivar read_batch: Entries read from Redis at once.
    @ivar block: Seconds a read waits on Redis for new entries; new
        partitions and giving partitions back wait for it too.
    """

    max_items: int = 10000
    partitions: int = 16
    claim_idle: float = 30.0
    read_batch: int = 100
    block: float = 1.0

    @property
    def lease_ms(self) -> int:
        """
        C{claim_idle} in milliseconds, as Redis takes it.
        """
        return max(1, int(self.claim_idle * 1000))

    @property
    def block_ms(self) -> int:
        """
        C{block} in milliseconds, as Redis takes it.
        """
        return max(1, int(self.block * 1000))


@attrs.frozen
class _Settle:
    """
    An acknowledgement (done or dead letter) to send, again if need be.
    """

    script: Script
    keys: tuple[str, ...]
    args: tuple[Any, ...]


class _Loop:
    """
    Run C{step} again and again until stopped.  Each run says how long to
    wait before the next; L{poke} cuts that wait short (or skips the next
    one), for when something the step waits for has changed.
    """

    log = Logger()

    def __init__(self, name: str, clock: IReactorTime, step: Callable[[], Coroutine[Any, Any, float]]) -> None:
        self._name = name
        self._clock = clock
        self._step = step
        self._running = False
        self._poked = False
        self._wake: Deferred[None] | None = None
        self._call: IDelayedCall | None = None
        self._done: Deferred[None] = succeed(None)

    def start(self) -> None:
        self._running = True
        self._done = Deferred.fromCoroutine(self._run())

    async def _run(self) -> None:
        while self._running:
            try:
                delay = await self._step()
            except Exception:
                self.log.failure("{name} failed; going on", name=self._name)
                delay = _AFTER_BUG
            if self._running:
                await self._sleep(delay)

    def _sleep(self, delay: float) -> Deferred[None]:
        if self._poked or delay <= 0:
            self._poked = False
            return succeed(None)
        self._wake = Deferred()
        self._call = self._clock.callLater(delay, self._woken)
        return self._wake

    def _woken(self) -> None:
        wake, self._wake = self._wake, None
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        if wake is not None:
            wake.callback(None)

    def poke(self) -> None:
        if self._wake is not None:
            self._woken()
        else:
            self._poked = True

    def stop(self) -> Deferred[None]:
        """
        Stop after the run in progress, if any; fires once it is over.
        """
        self._running = False
        self.poke()
        return self._done


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

    log = Logger()

    def __init__(
        self,
        client: RedisClient,
        fallback: DurableQueue,
        failover: Failover,
        *,
        reactor: Any,
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
        self._claim_idle = settings.claim_idle
        self._lease_ms = settings.lease_ms
        self._read_batch = settings.read_batch
        self._block_ms = settings.block_ms
        self._block = settings.block
        self._streams = [client.key("q", str(p)) for p in range(self.partitions)]
        self._partition_of_stream = {stream: p for p, stream in enumerate(self._streams)}
        self._leases = [client.key("lease", str(p)) for p in range(self.partitions)]
        self._length_key = client.key("q", "length")
        self._replicas_key = client.key("replicas")
        self._dead_key = client.key("dead")
        # Each replica tries partitions from its own starting point, so that
        # replicas starting together do not all race for the same ones.
        first = zlib.crc32(self.replica.encode("utf-8")) % self.partitions
        self._rotation = [(first + i) % self.partitions for i in range(self.partitions)]
        self._reset_local()
        # Partition -> until when its lease is surely ours (local clock,
        # from when the renewal was sent).
        self._held: dict[int, float] = {}
        # Held, but the group and what is pending are not yet set up.
        self._unready: set[int] = set()
        # Held above our share: not read, given back once idle here.
        self._leaving: set[int] = set()
        # When each leaving partition was told to leave.
        self._leaving_since: dict[int, float] = {}
        self._unsettled: deque[_Settle] = deque()
        self._length = 0
        self._live = 1
        self._down = False
        self._running = False
        self._draining = False
        self._durability_checked = False
        self._next_sweep = 0.0
        self._reader: RedisClient | None = None
        self._leasing: _Loop | None = None
        self._reading: _Loop | None = None
        self._pumping: Deferred[None] | None = None
        client.on_state(self._redis_changed)

    def _reset_local(self) -> None:
        self._local = MemoryQueue(max_items=_UNBOUNDED)
        # The current copy of each entry buffered or in delivery here:
        # True while taken.
        self._entries: dict[tuple[int, str], bool] = {}
        self._per_partition: Counter[int] = Counter()
        # Copies still in the buffer of entries whose partition was lost:
        # skipped when their turn comes.  A key's copies leave the buffer in
        # order, so a stale copy always comes before a fresh one of the
        # same entry.
        self._stale: Counter[tuple[int, str]] = Counter()

    @property
    def held(self) -> frozenset[int]:
        """
        The partitions whose leases this replica holds.
        """
        return frozenset(self._held)

    def partition_of(self, key: str) -> int:
        """
        The partition of a key: stable across processes and replicas.
        """
        return zlib.crc32(key.encode("utf-8")) % self.partitions

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
        self._reset_local()
        self._running = True
        self._draining = False
        return self.fallback.load().addCallback(self._loaded)

    def _loaded(self, count: int) -> None:
        if count:
            self.log.info(
                "{count} alerts from the fallback queue {path} to deliver", count=count, path=self.fallback.journal.path
            )
        if not self._running:
            return
        self._pump()
        settings = self.client.settings
        # Its reads block for up to `block`, on top of the usual answer time.
        # Metered apart: its blocking reads would skew the latencies, and its
        # connection coming and going is not Redis's.
        self._reader = RedisClient(
            attrs.evolve(settings, timeout=settings.timeout + self._block, pool_size=1),
            self._reactor,
            GatewayMetrics(),
            name="queue",
        )
        self._reader.on_state(self._redis_changed)
        self._reader.start()
        self._leasing = _Loop("Redis queue leases", self._reactor, self._lease_step)
        self._reading = _Loop("Redis queue reads", self._reactor, self._read_step)
        self._leasing.start()
        self._reading.start()

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
        self._draining = True
        return Deferred.fromCoroutine(self._shut_down(release))

    async def _shut_down(self, release: bool) -> None:
        if self._pumping is not None:
            self._pumping.cancel()
        loops = [loop.stop() for loop in (self._leasing, self._reading) if loop is not None]
        self._leasing = self._reading = None
        reader, self._reader = self._reader, None
        if reader is not None:
            # Closing its connection ends a blocked read at once.
            await reader.stop()
        for loop in loops:
            await loop
        held = sorted(self._held)
        self._held.clear()
        self._unready.clear()
        self._leaving.clear()
        if release:
            await self._leave(held)
        await self.fallback.journal.close()

    async def _leave(self, held: list[int]) -> None:
        try:
            await self._settle_all()
            await self.client.command("queue_leave", "ZREM", self._replicas_key, self.replica)
            if held:
                await self.client.script(_RELEASE, [self._leases[p] for p in held], [self.replica])
        except RedisError as e:
            self.log.warn(
                "Cannot leave the Redis queue cleanly ({reason}); partitions {partitions} are taken over in {seconds}s",
                reason=str(e),
                partitions=held,
                seconds=self._claim_idle,
            )

    def _redis_changed(self, up: bool) -> None:
        if up:
            for loop in (self._leasing, self._reading):
                if loop is not None:
                    loop.poke()

    # Accepting.

    def put(self, envelopes: Sequence[Envelope]) -> Deferred[None]:
        """
        Append a batch to the partitions' streams, all or nothing.

        @return: Fires once Redis (or, Redis unreachable and C{fail_open},
            the fallback queue) has the batch; fails with L{QueueFull} when
            it does not fit or cannot be kept.
        """
        if not envelopes:
            return succeed(None)
        return Deferred.fromCoroutine(self._put(envelopes))

    async def _put(self, envelopes: Sequence[Envelope]) -> None:
        now = self._reactor.seconds()
        keys = [self._length_key, *(self._streams[self.partition_of(e.key)] for e in envelopes)]
        try:
            documents = [_encode(e, now) for e in envelopes]
            added, length = await self.client.script(_PUT, keys, [self.max_items, *documents])
        except RedisError as e:
            self._outage(e)
            if not self.failover.fail_open:
                raise QueueFull(f"the Redis queue is unavailable: {e}") from e
            # Perhaps Redis had the batch after all (an answer that came too
            # late): then it is delivered twice, which the processor dedupes.
            await self.fallback.put(envelopes)
            return
        self._length = int(length)
        if not int(added):
            raise QueueFull(f"{self._length} queued, room for {self.max_items - self._length}")

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
            envelope = await self._local.take()
            if self._deliverable(envelope):
                return envelope
            # Its partition was lost meanwhile: the next holder delivers it.
            self._local.done(envelope)

    def take_now(self, limit: int) -> list[Envelope]:
        """
        Take up to C{limit} deliverable envelopes that are ready now,
        without waiting (see L{take}).
        """
        taken: list[Envelope] = []
        while len(taken) < limit:
            ready = self._local.take_now(1)
            if not ready:
                break
            if self._deliverable(ready[0]):
                taken.append(ready[0])
            else:
                self._local.done(ready[0])
        return taken

    def _deliverable(self, envelope: Envelope) -> bool:
        ident = _ident(envelope)
        if ident is None:
            return True
        self._expire_leases()
        if self._stale[ident]:
            self._stale[ident] -= 1
            if not self._stale[ident]:
                del self._stale[ident]
            return False
        self._entries[ident] = True
        return True

    def done(self, envelope: Envelope) -> None:
        """
        The envelope is delivered: acknowledge and delete it.
        """
        ident = _ident(envelope)
        if ident is None:
            # The fallback hands out the next of this key (into the buffer,
            # behind this one) before this one leaves the buffer.
            self.fallback.done(envelope)
            self._local.done(envelope)
            return
        self._forget(envelope, ident)
        stream = self._streams[ident[0]]
        self._settle(_Settle(_DONE, (stream, self._length_key), (GROUP, ident[1])))

    def bury(self, envelope: Envelope, reason: str, attempts: int) -> None:
        """
        The receiver refused the envelope for good: move it to the
        dead-letter stream.
        """
        ident = _ident(envelope)
        if ident is None:
            self.fallback.bury(envelope, reason, attempts)
            self._local.done(envelope)
            return
        self._forget(envelope, ident)
        self._bury_entry(ident, reason, attempts)

    def _bury_entry(self, ident: tuple[int, str], reason: str, attempts: int) -> None:
        partition, entry = ident
        keys = (self._streams[partition], self._length_key, self._dead_key)
        self._settle(_Settle(_BURY, keys, (GROUP, entry, reason, attempts, partition)))

    def release(self, envelope: Envelope) -> None:
        """
        Put a taken envelope back, first of its key; in Redis it stays
        pending under this replica.
        """
        self._untake(envelope)
        self._local.release(envelope)

    def postpone(self, envelope: Envelope, delay: float, clock: IReactorTime) -> None:
        """
        Put a taken envelope back, first of its key, whose key waits
        C{delay} seconds.
        """
        self._untake(envelope)
        self._local.postpone(envelope, delay, clock)

    def _untake(self, envelope: Envelope) -> None:
        ident = _ident(envelope)
        if ident is None or ident not in self._entries:
            return
        if ident[0] in self._held:
            self._entries[ident] = False
        else:
            self._drop(ident)

    def _forget(self, envelope: Envelope, ident: tuple[int, str]) -> None:
        self._local.done(envelope)
        if self._entries.pop(ident, None) is not None:
            self._per_partition[ident[0]] -= 1
        if self._reading is not None:
            # Room to read again, or a partition idle enough to give back.
            self._reading.poke()

    def _drop(self, ident: tuple[int, str]) -> None:
        del self._entries[ident]
        self._per_partition[ident[0]] -= 1
        self._stale[ident] += 1

    def _settle(self, settle: _Settle) -> None:
        d = self.client.script(settle.script, settle.keys, settle.args)
        d.addCallbacks(self._settled, self._unsettled_now, errbackArgs=(settle,))

    def _settled(self, length: object) -> None:
        self._length = int(str(length))

    def _unsettled_now(self, failure: Failure, settle: _Settle) -> None:
        # Pending in Redis still: sent again with the next renewal.
        self._outage(failure.value)
        self._unsettled.append(settle)

    async def _settle_all(self) -> None:
        while self._unsettled:
            settle = self._unsettled[0]
            self._settled(await self.client.script(settle.script, settle.keys, settle.args))
            self._unsettled.popleft()

    def oldest(self) -> float | None:
        """
        When the oldest envelope waiting here was accepted (this replica's
        view: the other replicas' buffers are theirs).
        """
        heads = [t for t in (self._local.oldest(), self.fallback.oldest()) if t is not None]
        return min(heads) if heads else None

    def stop_timers(self) -> None:
        self._local.stop_timers()

    def when_empty(self) -> Deferred[None]:
        """
        Stop reading new entries and give partitions back as they become
        idle here (this is how a shutdown begins); fires once nothing is
        buffered or in delivery here.
        """
        self._draining = True
        self._leaving = set(self._held)
        for loop in (self._leasing, self._reading):
            if loop is not None:
                loop.poke()
        return Deferred.fromCoroutine(self._emptied())

    async def _emptied(self) -> None:
        await self._local.when_empty()
        await self.fallback.when_empty()

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
            self._local.put(taken)

    def _pumped(self, _: None, taken: list[Envelope]) -> None:
        self._pumping = None
        self._local.put(taken)
        self._pump()

    # Leases.

    async def _lease_step(self) -> float:
        try:
            await self._renew()
            await self._balance()
            await self._recount()
            await self._settle_all()
            await self._check_durability()
            self._recovered()
        except RedisError as e:
            self._outage(e)
        self._expire_leases()
        return self._claim_idle / 3

    async def _renew(self) -> None:
        held = sorted(self._held)
        sent = self._reactor.seconds()
        keys = [self._replicas_key, *(self._leases[p] for p in held)]
        # A draining replica no longer counts: the others' shares grow, so
        # they take over the partitions it gives back.
        counted = "0" if self._draining else "1"
        reply = await self.client.script(_HEARTBEAT, keys, [self.replica, self._lease_ms, counted])
        self._live = max(1, int(reply[0]))
        lost = []
        for partition, renewed in zip(held, reply[1:], strict=True):
            if partition not in self._held:
                continue
            if int(renewed):
                self._held[partition] = sent + self._claim_idle
            else:
                lost.append(partition)
                self._lose(partition)
        if lost:
            self.log.warn(
                "Redis queue partitions {partitions} were taken over by another replica; what is buffered of them"
                " is left to it",
                partitions=lost,
            )

    async def _balance(self) -> None:
        if self._draining:
            self._leaving = set(self._held)
            return
        share = -(-self.partitions // self._live)
        excess = len(self._held) - share
        if excess > 0:
            # The least busy here go first; those already going keep going.
            ranked = sorted(self._held, key=lambda p: (p not in self._leaving, self._per_partition[p], p))
            self._leaving = set(ranked[:excess])
            return
        self._leaving.clear()
        if excess < 0:
            await self._acquire(-excess)

    async def _acquire(self, wanted: int) -> None:
        candidates = [p for p in self._rotation if p not in self._held]
        if not candidates:
            return
        sent = self._reactor.seconds()
        keys = [self._leases[p] for p in candidates]
        got = await self.client.script(_ACQUIRE, keys, [self.replica, self._lease_ms, wanted])
        for index in got:
            partition = candidates[int(index) - 1]
            self._held[partition] = sent + self._claim_idle
            self._unready.add(partition)
        if got and self._reading is not None:
            self._reading.poke()

    async def _recount(self) -> None:
        self._length = int(await self.client.script(_RECOUNT, [self._length_key, *self._streams], []))

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
            self.log.warn(
                "Redis runs without appendonly: alerts accepted into the Redis queue are lost if Redis restarts"
            )

    def _expire_leases(self) -> None:
        now = self._reactor.seconds()
        expired = [p for p, until in self._held.items() if until <= now]
        for partition in expired:
            self._lose(partition)
        if expired:
            self.log.warn(
                "Redis queue leases of partitions {partitions} not renewed for {seconds}s; their buffered entries"
                " are left to their next holder",
                partitions=expired,
                seconds=self._claim_idle,
            )

    def _lose(self, partition: int) -> None:
        self._held.pop(partition, None)
        self._unready.discard(partition)
        self._leaving.discard(partition)
        for ident, taken in list(self._entries.items()):
            # What is in delivery finishes; its acknowledgement is harmless.
            if ident[0] == partition and not taken:
                self._drop(ident)

    # Reading.

    async def _read_step(self) -> float:
        reader = self._reader
        pause = self._claim_idle / 3
        if reader is None:
            return pause
        try:
            await self._give_back()
            if self._draining:
                return pause
            await self._ready_partitions()
            await self._sweep()
            partitions = self._readable()
            if not partitions or len(self._entries) >= self._read_batch * _BUFFERED_BATCHES:
                # Until poked: a partition taken, room made, Redis back.
                return pause
            await self._read(reader, partitions)
        except RedisError as e:
            self._read_failed(e)
            return min(1.0, pause)
        self._recovered()
        return 0.0

    def _read_failed(self, error: Exception) -> None:
        if not self._running:
            # Stopping closed the reading connection.
            return
        if str(error).startswith("NOGROUP"):
            # The group is gone (Redis lost its data, or someone deleted
            # it): set the partitions up again, from what the streams hold.
            self.log.warn("Redis queue: consumer group missing ({reason}); creating it again", reason=str(error))
            self._unready.update(self._held)
            return
        self._outage(error)

    def _readable(self) -> list[int]:
        return [p for p in sorted(self._held) if p not in self._unready and p not in self._leaving]

    async def _ready_partitions(self) -> None:
        readied = []
        for partition in sorted(self._unready):
            await self.client.script(_ENSURE_GROUP, [self._streams[partition]], [GROUP])
            await self._claim_pending(partition)
            if partition in self._held:
                self._unready.discard(partition)
                readied.append(partition)
        if readied:
            self.log.info("Redis queue partitions {partitions} are now read here", partitions=readied)

    async def _claim_pending(self, partition: int) -> None:
        stream = self._streams[partition]
        cursor = "0-0"
        while partition in self._held:
            reply = await self.client.command(
                "queue_claim", "XAUTOCLAIM", stream, GROUP, self.replica, 0, cursor, "COUNT", self._read_batch
            )
            cursor = reply[0]
            self._admit(partition, reply[1])
            if cursor == "0-0":
                return

    async def _give_back(self) -> None:
        now = self._reactor.seconds()
        for partition in list(self._leaving_since):
            if partition not in self._leaving:
                del self._leaving_since[partition]
        for partition in self._leaving:
            self._leaving_since.setdefault(partition, now)
        # A partition still busy here after claim_idle (an alert of it
        # failing again and again) is given back all the same: what is
        # buffered of it stays pending for the next holder, and the rest
        # of the partition must not wait behind one key.
        overdue = [
            p for p in self._leaving if self._per_partition[p] and now - self._leaving_since[p] >= self._claim_idle
        ]
        for partition in overdue:
            self._lose(partition)
        idle = sorted({p for p in self._leaving if not self._per_partition[p]} | set(overdue))
        if not idle:
            return
        for partition in idle:
            self._held.pop(partition, None)
            self._leaving.discard(partition)
            self._leaving_since.pop(partition, None)
            self._unready.discard(partition)
        await self.client.script(_RELEASE, [self._leases[p] for p in idle], [self.replica])
        self.log.info("Redis queue partitions {partitions} given back", partitions=idle)

    async def _sweep(self) -> None:
        now = self._reactor.seconds()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._claim_idle
        for partition in self._readable():
            await self._sweep_partition(partition)

    async def _sweep_partition(self, partition: int) -> None:
        stream = self._streams[partition]
        consumers = await self.client.command("queue_sweep", "XINFO", "CONSUMERS", stream, GROUP)
        for info in consumers:
            fields = dict(zip(info[::2], info[1::2], strict=True))
            name = str(fields["name"])
            if name == self.replica:
                continue
            if int(fields["pending"]):
                await self._claim_orphans(partition, name)
            elif int(fields["idle"]) >= self._lease_ms:
                await self.client.script(_FORGET_CONSUMER, [stream], [GROUP, name])

    async def _claim_orphans(self, partition: int, consumer: str) -> None:
        stream = self._streams[partition]
        pending = await self.client.command(
            "queue_sweep", "XPENDING", stream, GROUP, "IDLE", self._lease_ms, "-", "+", self._read_batch, consumer
        )
        ids = [row[0] for row in pending]
        if not ids:
            return
        entries = await self.client.command("queue_sweep", "XCLAIM", stream, GROUP, self.replica, self._lease_ms, *ids)
        self.log.warn(
            "Redis queue: claimed {count} entries of partition {partition} left pending by {consumer}",
            count=len(entries),
            partition=partition,
            consumer=consumer,
        )
        self._admit(partition, entries)

    async def _read(self, reader: RedisClient, partitions: list[int]) -> None:
        streams = [self._streams[p] for p in partitions]
        count = -(-self._read_batch // len(partitions))
        reply = await reader.command(
            "queue_read",
            "XREADGROUP",
            "GROUP",
            GROUP,
            self.replica,
            "COUNT",
            count,
            "BLOCK",
            self._block_ms,
            "STREAMS",
            *streams,
            *([">"] * len(streams)),
        )
        for stream, entries in reply or ():
            partition = self._partition_of_stream[stream]
            # One taken again meanwhile claims what was read of it, in order.
            if partition not in self._unready:
                self._admit(partition, entries)

    def _admit(self, partition: int, entries: Sequence[Any]) -> None:
        """
        Buffer entries read or claimed, unless the partition is no longer
        ours (its next holder claims them) or they are here already.
        """
        if partition not in self._held:
            return
        fresh = []
        for item in entries:
            # An entry deleted after it was read comes back without fields.
            if not item or item[1] is None:
                continue
            entry, fields = str(item[0]), item[1]
            ident = (partition, entry)
            if ident in self._entries:
                continue
            try:
                envelope = _decode(partition, entry, fields)
            except ValueError as e:
                self.log.error(
                    "Redis queue entry {entry} of partition {partition} is not an alert ({error}); kept as a dead"
                    " letter",
                    entry=entry,
                    partition=partition,
                    error=str(e),
                )
                self._bury_entry(ident, f"unreadable: {e}", 0)
                continue
            self._entries[ident] = False
            self._per_partition[partition] += 1
            fresh.append(envelope)
        self._local.put(fresh)

    # Outages: logged once each.

    def _outage(self, reason: object) -> None:
        if self._down:
            return
        self._down = True
        then = "alerts go to the local fallback queue" if self.failover.fail_open else "webhooks are answered 503"
        self.log.warn("Redis queue unavailable ({reason}); {then} until it is back", reason=str(reason), then=then)

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            self.log.info("Redis queue available again")
