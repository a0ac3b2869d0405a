# -*- test-case-name: tests.unit.test_redis_queue -*-
"""
Where the Redis queue keeps what: one stream per partition, read through
the consumer group L{GROUP}, a lease per partition, the shared length, the
replicas' heartbeats and the dead letters, all under the client's prefix.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import attrs

from alertgateway.redis.client import RedisClient

__all__ = ["GROUP", "QueueKeys", "partition_of"]

# The consumer group every replica reads through.
GROUP = "gateway"


def partition_of(key: str, partitions: int) -> int:
    """
    The partition of an envelope's key: stable across processes and
    replicas.
    """
    return zlib.crc32(key.encode("utf-8")) % partitions


@attrs.frozen
class QueueKeys:
    """
    The Redis keys of a queue.

    @ivar streams: Each partition's stream, by partition.
    @ivar leases: Each partition's lease, by partition.
    @ivar length: The shared count of what the streams hold.
    @ivar replicas: The replicas' heartbeats.
    @ivar dead: The dead-letter stream.
    """

    streams: tuple[str, ...]
    leases: tuple[str, ...]
    length: str
    replicas: str
    dead: str
    _partitions: Mapping[str, int] = attrs.field(init=False, repr=False, eq=False)

    @_partitions.default
    def _by_stream(self) -> Mapping[str, int]:
        return {stream: p for p, stream in enumerate(self.streams)}

    @classmethod
    def of(cls, client: RedisClient, partitions: int) -> QueueKeys:
        """
        The keys of a queue of C{partitions} partitions, under C{client}'s
        prefix.
        """
        return cls(
            streams=tuple(client.key("q", str(p)) for p in range(partitions)),
            leases=tuple(client.key("lease", str(p)) for p in range(partitions)),
            length=client.key("q", "length"),
            replicas=client.key("replicas"),
            dead=client.key("dead"),
        )

    def partition_of_stream(self, stream: str) -> int:
        return self._partitions[stream]
