# -*- test-case-name: tests.unit.test_redis_queue -*-
"""
L{Outage}: whether the Redis queue has lost Redis, so that an outage is
logged once when it begins and once when it ends, whichever part of the
queue (accepting, acknowledging, leases, reads) notices it.
"""

from __future__ import annotations

from twisted.logger import Logger

from alertgateway.redis.failover import Failover

__all__ = ["Outage"]

_log = Logger()


class Outage:
    """
    The queue's view of Redis: up until an operation fails, down until one
    succeeds again.

    @param failover: Says what happens to alerts meanwhile (its mode), for
        the log line.
    """

    def __init__(self, failover: Failover) -> None:
        self._failover = failover
        self.down = False

    def failed(self, reason: object) -> None:
        """
        An operation on Redis failed for C{reason}.
        """
        if self.down:
            return
        self.down = True
        then = "alerts go to the local fallback queue" if self._failover.fail_open else "webhooks are answered 503"
        # Before the first connection this is a start, not an outage (the
        # client warns if that takes longer than its connect_timeout).
        log = _log.warn if self._failover.client.ever_up else _log.info
        log("Redis queue unavailable ({reason}); {then} until it is back", reason=str(reason), then=then)

    def recovered(self) -> None:
        """
        An operation on Redis succeeded.
        """
        if self.down:
            self.down = False
            _log.info("Redis queue available again")
