# -*- test-case-name: tests.unit.test_journal -*-
"""
One dedicated thread for blocking work (SQLite), owned by the service.

Calls run one at a time, in order, off the reactor thread; their results
come back on the reactor thread as Deferreds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

__all__ = ["ThreadExecutor"]

T = TypeVar("T")


class ThreadExecutor:
    """
    Run blocking calls on a single thread of their own.

    @param reactor: Provides C{callFromThread} (IReactorFromThreads).
    """

    def __init__(self, reactor: IReactorFromThreads, name: str = "alertgateway-queue") -> None:
        self._reactor = reactor
        self._name = name
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)

    def start(self) -> None:
        if self._pool.joined:
            # A stopped pool cannot be started again (the service was
            # restarted): take a new one.
            self._pool = ThreadPool(minthreads=1, maxthreads=1, name=self._name)
        self._pool.start()

    def stop(self) -> None:
        if self._pool.started:
            self._pool.stop()

    def run(self, call: Callable[[], T]) -> Deferred[T]:
        d: Deferred[T] = deferToThreadPool(self._reactor, self._pool, call)
        return d
