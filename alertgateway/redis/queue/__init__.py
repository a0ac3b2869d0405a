# -*- test-case-name: tests.unit.test_redis_queue -*-
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

One commit.  With the Redis state (C{state.backend: redis}), C{put} is
given the decision's state write (a L{alertgateway.redis.commit.RedisCommit})
with its envelopes, and one script writes both, guarded by the versions the
decision was taken on: a webhook's decision and its queue entries exist
together or not at all.

Durability.  C{put} answers once Redis has the batch.  That is a promise not
to lose it only if Redis persists every write: run it with C{appendonly yes}
and C{appendfsync always} (C{everysec} may lose the last second on a power
loss).  A warning is logged when C{appendonly} is off.

Redis unreachable.  With C{state.redis.on_failure: fail_open}, batches go to
the local SQLite fallback queue (C{queue.path}) and are delivered by this
replica through the same C{take}; what it still holds is delivered on the
next start.  (A batch that comes with the Redis state's write is not
queued: the state decides again from local memory, and that decision's
batch goes to the fallback.)  Their order relative to envelopes of the same key accepted
through Redis is best effort.  With C{fail_closed}, C{put} fails with
L{QueueFull}, so the webhook answers 503 with C{Retry-After} and the sender
retries.  The lease and read loops keep trying, logging once per outage.

Dead letters stay in the C{dead} stream (each with its reason, attempts,
partition and original entry) until an operator retries or drops them
(C{alertgateway queue}, through L{admin}).

Redis 6.2 or later (C{XAUTOCLAIM}, C{XPENDING IDLE}).  The scripts use
several keys at once: this needs one Redis, or a key prefix with a hash tag
(C{{alertgateway}:}) on a Redis Cluster.  Changing C{partitions} moves keys
to other streams: drain the queue first.

The parts: L{RedisQueue} (L{queue}) is what the forwarder and the intake
use; L{Appender} (L{appender}) puts batches in; L{Leases} (L{leases}) holds
partitions, L{Reader} (L{reader}) claims
and reads them into the L{Buffer} (L{buffer}), L{Acks} (L{acks})
acknowledges, L{Outage} (L{outage}) logs each outage once; L{codec} is the
envelope as a stream entry, L{keys} where everything is in Redis,
L{RedisQueueSettings} (L{settings}) what the queue is told; L{QueueAdmin}
(L{admin}) is what the queue commands do beside the replicas.  The Lua
scripts are C{alertgateway/redis/scripts/queue_*.lua}.
"""

from __future__ import annotations

from alertgateway.redis.queue.keys import GROUP
from alertgateway.redis.queue.queue import RedisQueue
from alertgateway.redis.queue.settings import RedisQueueSettings

__all__ = ["GROUP", "RedisQueue", "RedisQueueSettings"]
