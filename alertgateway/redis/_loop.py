# -*- test-case-name: tests.unit.test_redis_loop -*-
"""
L{Loop}: background work that runs step after step until stopped, each step
saying how long to wait before the next, with a way to cut that wait short.

The Redis queue renews its leases and reads its partitions this way; unlike
a C{LoopingCall}, a step that fails does not end the loop, and a step that
waits on Redis is never run twice at once.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

__all__ = ["Loop"]

_log = Logger()

# How long a loop waits after an unexpected error (a bug) before going on.
_AFTER_BUG = 1.0


class Loop:
    """
    Run C{step} again and again until stopped.  Each run says how long to
    wait before the next; L{poke} cuts that wait short (or skips the next
    one), for when something the step waits for has changed.

    @param name: Names the loop in the log line of a step that failed.
    """

    def __init__(self, name: str, clock: IReactorTime, step: Callable[[], Coroutine[Any, Any, float]]) -> None:
        self._name = name
        self._clock = clock
        self._step = step
        self._running = False
        self._poked = False
        self._wake: Deferred[None] | None = None
        self._call: IDelayedCall | None = None
        self._done: Deferred[None] = succeed(None)

    def start(self) -> None:
        self._running = True
        self._done = Deferred.fromCoroutine(self._run())

    async def _run(self) -> None:
        while self._running:
            try:
                delay = await self._step()
            except Exception:
                _log.failure("{name} failed; going on", name=self._name)
                delay = _AFTER_BUG
            if self._running:
                await self._sleep(delay)

    def _sleep(self, delay: float) -> Deferred[None]:
        if self._poked or delay <= 0:
            self._poked = False
            return succeed(None)
        self._wake = Deferred()
        self._call = self._clock.callLater(delay, self._woken)
        return self._wake

    def _woken(self) -> None:
        wake, self._wake = self._wake, None
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        if wake is not None:
            wake.callback(None)

    def poke(self) -> None:
        """
        Run the next step now if the loop is waiting, or without waiting
        after the step in progress.
        """
        if self._wake is not None:
            self._woken()
        else:
            self._poked = True

    def stop(self) -> Deferred[None]:
        """
        Stop after the run in progress, if any; fires once it is over.
        """
        self._running = False
        self.poke()
        return self._done
