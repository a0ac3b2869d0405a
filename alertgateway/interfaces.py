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

__all__ = ["IGatewayReactor"]


class IGatewayReactor(
    IReactorCore,
    IReactorTime,
    IReactorTCP,
    IReactorSSL,
    IReactorSocket,
    IReactorThreads,
    IReactorPluggableNameResolver,
):
    """
    Time (every timer and timeout), TCP and TLS (listeners, the processor,
    Redis), socket adoption (C{SO_REUSEPORT}), threads (the SQLite thread),
    name resolution (host names in C{allowed_ips}) and the core (start,
    stop, shutdown triggers).
    """
