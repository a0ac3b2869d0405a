# -*- test-case-name: tests.unit.test_redis_queue -*-
"""
L{RedisQueueSettings}: what the Redis queue is told by whoever builds it
(the app layer, from C{queue.max_items} and C{queue.redis}).
"""

from __future__ import annotations

import attrs

__all__ = ["RedisQueueSettings"]


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
