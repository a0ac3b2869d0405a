# -*- test-case-name: tests.unit.test_web_health -*-
"""
Liveness and readiness: C{/health}, C{/health/live}, C{/health/ready}.

Readiness is false until every listener is up and again from the moment
shutdown begins, so a load balancer stops sending before connections close.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

from alertgateway import __version__
from alertgateway.web.resource import HandlerResource, Response
from alertgateway.web.site import GatewayRequest

__all__ = ["HealthResource", "Lifecycle", "LiveResource", "Readiness", "ReadyResource"]


class Lifecycle(enum.Enum):
    """
    Where the gateway is in its life, as the probes report it.
    """

    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"


class Readiness:
    """
    The gateway's lifecycle state as the probes report it.
    """

    def __init__(self) -> None:
        self.state = Lifecycle.STARTING
        self.stopping_since: float | None = None

    @property
    def ready(self) -> bool:
        return self.state is Lifecycle.READY

    def start(self) -> None:
        """
        Starting (again): not ready until every listener is up.
        """
        self.state = Lifecycle.STARTING
        self.stopping_since = None

    def started(self) -> bool:
        """
        Every listener is up: ready, unless shutdown has begun meanwhile.

        @return: Whether this made the gateway ready.
        """
        if self.state is not Lifecycle.STARTING:
            return False
        self.state = Lifecycle.READY
        return True

    def stop(self, now: float) -> None:
        """
        Shutdown begins at C{now}.
        """
        self.state = Lifecycle.STOPPING
        self.stopping_since = now

    def accepts(self, arrived: float) -> bool:
        """
        Whether a webhook whose request began at C{arrived} is taken: always
        while starting (a request racing the last listener is not refused),
        and during shutdown only if it began before, as it is in flight.
        """
        if self.state is not Lifecycle.STOPPING:
            return True
        return self.stopping_since is not None and arrived < self.stopping_since


class LiveResource(HandlerResource):
    endpoint = "/health/live"

    async def handle_GET(self, request: GatewayRequest) -> Response:
        return Response(200, {"status": "alive"})


class ReadyResource(HandlerResource):
    endpoint = "/health/ready"

    def __init__(
        self,
        readiness: Readiness,
        details: Callable[[], dict[str, Any]],
        can_serve: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__()
        self._readiness = readiness
        self._details = details
        self._can_serve = can_serve

    async def handle_GET(self, request: GatewayRequest) -> Response:
        ready = self._readiness.ready and self._can_serve()
        body = {"status": "ready" if ready else "not ready", "state": self._readiness.state.value}
        body.update(self._details())
        return Response(200 if ready else 503, body)


class HealthResource(HandlerResource):
    endpoint = "/health"

    def __init__(self, name: str, readiness: Readiness, details: Callable[[], Mapping[str, Any]] = dict) -> None:
        super().__init__()
        self._name = name
        self._readiness = readiness
        self._details = details

    async def handle_GET(self, request: GatewayRequest) -> Response:
        body: dict[str, Any] = {
            "status": "ok",
            "service": self._name,
            "version": __version__,
            "state": self._readiness.state.value,
        }
        body.update(self._details())
        return Response(200, body)
