# -*- test-case-name: tests.unit.test_state_memory -*-
"""
The one hierarchy of errors the gateway's stores raise.

Whatever keeps the state or the queue (memory, SQLite, Redis), a failure
the caller can do something about is a L{StorageError}: the web layer maps
L{StateUnavailable} to 503 C{state-unavailable} and L{QueueFull} to 503
C{queue-full}, both with C{Retry-After}, so the sender retries.  Adapters
wrap their own errors (a Redis reply, a lost connection, a disk error) in
one of these; nothing above the stores catches an adapter's exception.
"""

from __future__ import annotations

__all__ = ["QueueFull", "StateContended", "StateUnavailable", "StorageError"]


class StorageError(Exception):
    """
    A store cannot do what was asked, now; the same request may succeed
    later.
    """


class StateUnavailable(StorageError):
    """
    Decisions cannot be taken or read now: the shared state cannot be
    reached (and the gateway fails closed), or refused the write.
    """


class StateContended(StateUnavailable):
    """
    Other replicas kept changing the entries a decision needed.
    """


class QueueFull(StorageError):
    """
    The queue cannot take the whole batch: it is at one of its bounds, or
    its store refused the write.
    """
