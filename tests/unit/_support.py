"""
Small helpers the unit tests share: sample envelopes, running async test
methods under trial, and a Redis queue to decide into.  (Fakes of the
gateway's parts are public API, in L{alertgateway.testing}.)
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import Deferred

from alertgateway.core.decision import Decision
from alertgateway.core.model import Alert, fingerprint
from alertgateway.core.storms import StormSettings
from alertgateway.delivery.durable import DurableQueue
from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.journal import SQLiteJournal
from alertgateway.redis.client import RedisClient
from alertgateway.redis.failover import Failover
from alertgateway.redis.queue import RedisQueue, RedisQueueSettings
from alertgateway.state.ports import Enqueue, StateWrite
from alertgateway.testing import InlineExecutor

__all__ = ["envelope", "inline", "queueing", "redis_queue", "storm_settings"]


def envelope(name: str, status: str = "firing", request_id: str = "r") -> Envelope:
    """
    The envelope of an alert named C{name}, keyed by its fingerprint.
    """
    labels = {"alertname": name}
    alert = Alert(
        fingerprint=fingerprint(labels),
        source="alertmanager",
        status=status,
        labels=labels,
        annotations={},
        starts_at="2026-11-26T03:49:49Z",
        ends_at=None,
        generator_url="",
        received_at="2026-11-26T03:50:00.000Z",
    )
    return Envelope.for_alert(alert, request_id)


def inline(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., Deferred[None]]:
    """
    Run an async test method as trial expects: through a Deferred.
    """

    def run(self: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(test(self))

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


def storm_settings(**overrides: float) -> StormSettings:
    """
    Storms quick to start, flush and close (more than 3 new alerts of a
    group within a minute; updates every 10 s; closed after 30 s quiet;
    2 members an event), C{overrides} applied.
    """
    values: dict[str, Any] = {
        "threshold": 3,
        "window": 60,
        "flush_interval": 10,
        "quiet_period": 30,
        "max_members_listed": 2,
        **overrides,
    }
    return StormSettings(**values)


def redis_queue(
    client: RedisClient, failover: Failover, path: str, *, max_items: int = 100, partitions: int = 4
) -> RedisQueue:
    """
    A Redis queue on C{client}, not started: what accepting needs (its
    streams and shared length, and the fallback database at C{path} for
    C{fail_open}), without the loops that read and deliver.
    """
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    journal = SQLiteJournal(path, InlineExecutor(), clock_seconds=reactor.seconds)
    fallback = DurableQueue(journal, max_items=max_items, max_bytes=10**6)
    settings = RedisQueueSettings(max_items=max_items, partitions=partitions)
    return RedisQueue(client, fallback, failover, reactor=reactor, settings=settings, replica="test")


def queueing(queue: RedisQueue, request_id: str = "r") -> Enqueue:
    """
    An enqueue as admission's: a decision's forwards become envelopes, put
    into C{queue} with the state's write.
    """

    def enqueue(decision: Decision, write: StateWrite | None) -> Deferred[None]:
        envelopes = [Envelope(o.key, o.body, o.idempotency_key, request_id) for o in decision.outgoing]
        return queue.put(envelopes, write)

    return enqueue
