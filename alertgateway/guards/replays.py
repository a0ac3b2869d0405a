# -*- test-case-name: tests.unit.test_signatures -*-
"""
The memory of signed messages already accepted, so that a captured signed
request cannot be replayed while its timestamp is still acceptable.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.internet.interfaces import IReactorTime

__all__ = ["ReplayCache"]


class ReplayCache:
    """
    Remember message ids (or signatures) while a replay of them would still
    be acceptable; L{prune}, run periodically, forgets the expired ones.  Bounded: past
    C{max_entries} the least recently remembered are forgotten first.

    @param ttl: How long a key is remembered when the caller cannot say
        until when its message stays acceptable (a Grafana signature
        without a timestamp).
    """

    def __init__(self, clock: IReactorTime, ttl: float, max_entries: int = 100_000) -> None:
        self._clock = clock
        self._ttl = ttl
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_remember(self, key: str, until: float | None = None) -> bool:
        """
        @param until: The last moment at which the message would still be
            accepted (its timestamp plus the tolerance); C{ttl} from now if
            not given.
        @return: C{True} if C{key} is new (and now remembered), C{False} if
            it is remembered.
        """
        now = self._clock.seconds()
        expires = self._seen.get(key)
        # Inclusive: a message is still acceptable at exactly its last moment.
        if expires is not None and expires >= now:
            return False
        self.remember(key, now + self._ttl if until is None else until)
        return True

    def remember(self, key: str, until: float) -> None:
        """
        Remember C{key} until C{until}: a signature accepted before a
        restart.
        """
        self._seen[key] = until
        self._seen.move_to_end(key)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def until(self, key: str) -> float | None:
        """
        Until when C{key} is remembered, if it is.
        """
        return self._seen.get(key)

    def forget(self, key: str) -> None:
        """
        Forget C{key}: its request was not accepted after all, and the
        sender's retry (with the same id, as senders must) is no replay.
        """
        self._seen.pop(key, None)

    def prune(self) -> None:
        """
        Forget the keys whose messages can no longer be accepted anyway.
        """
        now = self._clock.seconds()
        # Expiry follows each message's own timestamp, not insertion order,
        # so every entry is looked at.
        for key in [key for key, expires in self._seen.items() if expires < now]:
            del self._seen[key]
