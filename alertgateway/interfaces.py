# -*- test-case-name: tests.unit.test_service -*-
"""
The reactor the gateway runs on, as one typed interface: what its parts use
of it, so that each can be given the real reactor or a test's fake without
C{Any}.
"""

from __future__ import annotations

from twisted.internet.interfaces import (
    IReactorCore,
    IReactorPluggableNameResolver,
    IReactorSocket,
    IReactorSSL,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
)

__all__ = ["IClientReactor", "IGatewayReactor"]


class IClientReactor(IReactorTime, IReactorTCP, IReactorPluggableNameResolver):
    """
    What a client connection needs (Redis, the processor): time for its
    timeouts, TCP, and name resolution.
    """


class IGatewayReactor(IClientReactor, IReactorCore, IReactorSSL, IReactorSocket, IReactorThreads):
    """
    Everything the gateway asks of its reactor: what clients need, TLS
    listeners, socket adoption (C{SO_REUSEPORT}), threads (the SQLite
    thread) and the core (start, stop, shutdown triggers).
    """
