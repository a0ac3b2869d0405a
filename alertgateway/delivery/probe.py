# -*- test-case-name: tests.unit.test_breaker -*-
"""
The Alert Processor's health check (C{alert_processor.health_path}), asked
while the circuit breaker is open.

Without it, delivery resumes when the breaker's recovery timeout ends,
whatever the processor did meanwhile; with it, the processor is asked every
C{alert_processor.health_interval}, and its first 2xx answer lets the
breaker probe at once: delivery resumes within a check of the processor's
return.  What the last check said is C{gateway_processor_up}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = ["GettingClient", "ProcessorProbe"]

_log = Logger()


class GettingClient(Protocol):
    """
    The part of C{treq.client.HTTPClient} (and C{StubTreq}) the check uses.
    """

    def get(self, url: str, /, *, headers: dict[bytes | str, list[bytes | str]] | None = ...) -> Deferred[Any]: ...


class ProcessorProbe:
    """
    Ask C{url} every C{interval} seconds while L{start}ed.

    @param on_healthy: Called at each 2xx answer.
    @param on_state: Told C{True} or C{False} after each check.
    @param headers: Sent with each check (the gateway's credential for
        the processor, C{alert_processor.auth_secret}).
    """

    def __init__(
        self,
        client: GettingClient,
        url: str,
        *,
        clock: IReactorTime,
        interval: float,
        timeout: float,
        on_healthy: Callable[[], object],
        on_state: Callable[[bool], object] = lambda up: None,
        headers: dict[bytes | str, list[bytes | str]] | None = None,
    ) -> None:
        self._client = client
        self._headers = headers
        self.url = url
        self._clock = clock
        self.interval = interval
        self.timeout = timeout
        self._on_healthy = on_healthy
        self._on_state = on_state
        self._loop: LoopingCall | None = None
        self.up: bool | None = None

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        """
        Check now, then every C{interval}, until L{stop}.
        """
        if self._loop is not None:
            return
        loop = self._loop = LoopingCall(self.check)
        loop.clock = self._clock
        loop.start(self.interval, now=True)

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    def check(self) -> Deferred[None]:
        """
        One check; never fails (a LoopingCall whose call fails stops).
        """
        return ensureDeferred(self._check())

    async def _check(self) -> None:
        try:
            response = await self._client.get(self.url, headers=self._headers).addTimeout(self.timeout, self._clock)
            code = response.code
            # The answer's body is not needed; the connection goes back to
            # the pool once it is read.
            await response.content()
        except (CancelledError, TimeoutError):
            healthy, why = False, f"no answer within {self.timeout:g}s"
        except Exception as e:
            healthy, why = False, f"{type(e).__name__}: {e}"
        else:
            healthy, why = 200 <= code < 300, f"HTTP {code}"
        if healthy != self.up:
            _log.info(
                "Alert Processor health check: {state} ({why})", state="healthy" if healthy else "failing", why=why
            )
        self.up = healthy
        self._on_state(healthy)
        if healthy:
            self._on_healthy()
