# -*- test-case-name: tests.unit.test_state_behaviour -*-
"""
Signature replay memory shared by every replica: a signed webhook accepted
by one replica is a replay on any other.

Each process still checks its own L{alertgateway.guards.signatures.ReplayCache}
first (it answers without a round trip, and is what remains while Redis is
unreachable in C{fail_open}); this adds one C{SET NX} with the message's
remaining lifetime, which is atomic by itself.
"""

from __future__ import annotations

import math

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from alertgateway.redis.client import RedisClient

__all__ = ["RedisReplays"]


class RedisReplays:
    def __init__(self, client: RedisClient, clock: IReactorTime) -> None:
        self._client = client
        self._clock = clock

    def claim(self, key: str, until: float) -> Deferred[bool]:
        """
        Remember C{key} until C{until}.

        @return: A Deferred firing with C{True} if no replica had it yet.
        """
        ttl = max(1, math.ceil((until - self._clock.seconds()) * 1000))
        d = self._client.command("replay_claim", "SET", self._client.key("replay", key), "1", "NX", "PX", ttl)
        return d.addCallback(lambda reply: reply is not None)

    def forget(self, key: str) -> Deferred[None]:
        """
        Forget C{key}: its request was not accepted, and the sender's retry
        is no replay.
        """
        d = self._client.command("replay_forget", "DEL", self._client.key("replay", key))
        return d.addCallback(lambda _: None)
