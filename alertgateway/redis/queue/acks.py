# -*- test-case-name: tests.unit.test_redis_queue -*-
"""
L{Acks}: acknowledging entries of the Redis queue once delivered (C{XACK},
C{XDEL}) or moved to the dead letters, until Redis has them.

An acknowledgement is sent at once; one that fails is kept and sent again
(L{Acks.retry}) with each lease renewal, and before the replica leaves.
Meanwhile its entry stays pending in Redis under this replica's name: a
replica that dies first leaves it to be delivered again by the next holder,
which is the at-least-once promise.  Each answer is the shared length.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from alertgateway.redis.client import RedisClient, Script
from alertgateway.redis.queue.codec import Ident
from alertgateway.redis.queue.keys import GROUP, QueueKeys
from alertgateway.redis.queue.outage import Outage
from alertgateway.redis.scripts import load

__all__ = ["Acks"]

_DONE = load("queue_done")
_BURY = load("queue_bury")


@attrs.frozen
class _Settle:
    """
    An acknowledgement (done or dead letter) to send, again if need be.
    """

    script: Script
    keys: tuple[str, ...]
    args: tuple[Any, ...]


class Acks:
    """
    Acknowledgements on their way to Redis.

    @param on_length: Told the shared length each acknowledgement answers.
    """

    def __init__(self, client: RedisClient, keys: QueueKeys, outage: Outage, on_length: Callable[[int], None]) -> None:
        self._client = client
        self._keys = keys
        self._outage = outage
        self._on_length = on_length
        self._unsettled: deque[_Settle] = deque()
        # Sent and not answered yet.
        self._sent: set[Deferred[Any]] = set()

    def done(self, ident: Ident) -> None:
        """
        The entry is delivered: acknowledge and delete it.
        """
        partition, entry = ident
        self._send(_Settle(_DONE, (self._keys.streams[partition], self._keys.length), (GROUP, entry)))

    def bury(self, ident: Ident, reason: str, attempts: int) -> None:
        """
        The entry is refused for good: copy it to the dead letters, with
        why, then acknowledge and delete it.
        """
        partition, entry = ident
        keys = (self._keys.streams[partition], self._keys.length, self._keys.dead)
        self._send(_Settle(_BURY, keys, (GROUP, entry, reason, attempts, partition)))

    def _send(self, settle: _Settle) -> None:
        d = self._client.script(settle.script, settle.keys, settle.args)
        d.addCallbacks(self._settled, self._unsettled_now, errbackArgs=(settle,))
        self._sent.add(d)
        d.addBoth(lambda _: self._sent.discard(d))

    async def answered(self) -> None:
        """
        Wait until every acknowledgement sent so far is answered (or kept
        to be sent again): the length they answer is then current.
        """
        while self._sent:
            await next(iter(self._sent))

    def _settled(self, length: object) -> None:
        self._on_length(int(str(length)))

    def _unsettled_now(self, failure: Failure, settle: _Settle) -> None:
        # Pending in Redis still: sent again with the next renewal.
        self._outage.failed(failure.value)
        self._unsettled.append(settle)

    async def retry(self) -> None:
        """
        Send again, in order, what failed to reach Redis.

        @raise RedisError: At the first that fails again (it is kept, with
            those after it).
        """
        while self._unsettled:
            settle = self._unsettled[0]
            self._settled(await self._client.script(settle.script, settle.keys, settle.args))
            self._unsettled.popleft()
