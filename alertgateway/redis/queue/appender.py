# -*- test-case-name: tests.unit.test_redis_queue,tests.unit.test_redis_commit -*-
"""
L{Appender}: how a batch gets into the Redis queue.  One script call
appends every envelope to its partition's stream, within the length the
replicas share (C{queue_put.lua}); given the Redis state's write (a
L{RedisCommit}), one call writes the decision and appends its envelopes,
all or nothing (C{state_commit.lua}).  While Redis cannot be reached, a
batch without a state write goes to the local fallback queue
(C{fail_open}) or is refused (C{fail_closed}); one with a state write is
not queued at all: the state decides locally or refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.interfaces import IReactorTime

from alertgateway.delivery.durable import DurableQueue
from alertgateway.delivery.envelope import Envelope
from alertgateway.redis.client import RedisClient, RedisError
from alertgateway.redis.commit import Appended, RedisCommit
from alertgateway.redis.failover import Failover
from alertgateway.redis.queue.codec import encode
from alertgateway.redis.queue.keys import QueueKeys, partition_of
from alertgateway.redis.queue.outage import Outage
from alertgateway.redis.scripts import load
from alertgateway.state.errors import QueueFull

__all__ = ["Appender"]

_PUT = load("queue_put")


class Appender:
    """
    Put batches into the queue's streams.

    @param seen_length: Told the shared length each time a call returns it.
    """

    def __init__(
        self,
        client: RedisClient,
        keys: QueueKeys,
        fallback: DurableQueue,
        failover: Failover,
        outage: Outage,
        *,
        clock: IReactorTime,
        max_items: int,
        seen_length: Callable[[int], None],
    ) -> None:
        self._client = client
        self._keys = keys
        self._fallback = fallback
        self._failover = failover
        self._outage = outage
        self._clock = clock
        self._max_items = max_items
        self._seen_length = seen_length

    async def put(self, envelopes: Sequence[Envelope], write: RedisCommit | None) -> None:
        """
        See L{alertgateway.redis.queue.RedisQueue.put}.
        """
        now = self._clock.seconds()
        partitions = len(self._keys.streams)
        streams = tuple(self._keys.streams[partition_of(e.key, partitions)] for e in envelopes)
        try:
            documents = tuple(encode(e, now) for e in envelopes)
            if write is not None and not envelopes:
                # Nothing to queue (duplicates counted): no room needed.
                await write.run(self._client)
                return
            if write is not None:
                appended = Appended(self._keys.length, self._max_items, streams, documents)
                committed = await write.run(self._client, appended)
                added, length = committed.written, committed.length
            else:
                keys = [self._keys.length, *streams]
                added, length = await self._client.script(_PUT, keys, [self._max_items, *documents])
        except RedisError as e:
            self._outage.failed(e)
            if write is not None:
                # The state is not written either (or, unknown, was with
                # the batch): nothing to fall back to here.
                raise
            if not self._failover.fail_open:
                raise QueueFull(f"the Redis queue is unavailable: {e}") from e
            # Perhaps Redis had the batch after all (an answer that came too
            # late): then it is delivered twice, which the processor dedupes.
            await self._fallback.put(envelopes)
            return
        self._seen_length(int(length))
        if not int(added):
            raise QueueFull(f"{int(length)} queued, room for {self._max_items - int(length)}")
