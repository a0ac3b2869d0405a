# -*- test-case-name: tests.unit.test_reuseport -*-
"""
A TCP server endpoint that binds with C{SO_REUSEPORT}, so that several
gateway processes on one host listen on the same port.

Why: one Twisted process uses one core.  With C{SO_REUSEPORT} each process
binds its own listening socket to the same address and port, and the kernel
spreads incoming connections over them (by a hash of the connection's
addresses), so one host uses all its cores without a load balancer in front.
Every process sharing the port must set the option (and, on Linux, run as
the same user): a socket bound without it keeps the port to itself, and the
others fail with C{EADDRINUSE}.  Linux balances connections this way since
3.9; the BSDs and macOS have the option but do not spread connections like
this (FreeBSD's equivalent is C{SO_REUSEPORT_LB}).

Twisted's C{listenTCP} cannot set socket options before C{bind}, so
L{ReusePortEndpoint} makes the socket itself and hands it to the reactor
with C{IReactorSocket.adoptStreamPort}, which takes a duplicate of it.

Deduplication and the queue must then be shared between the processes
(C{state.backend: redis}, C{queue.backend: redis}): see C{docs/scaling.md}.
"""

from __future__ import annotations

import socket
from typing import Any, cast

from twisted.internet.abstract import isIPv6Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IReactorSocket, IStreamServerEndpoint
from zope.interface import implementer

__all__ = ["ReusePortEndpoint", "ReusePortUnsupported", "endpoint_for"]

_ANY_IPV4 = "0.0.0.0"  # noqa: S104 -- what an empty interface means, as for listenTCP
# Absent on platforms without it (Windows); a test may set it to None.
_SO_REUSEPORT: int | None = getattr(socket, "SO_REUSEPORT", None)


class ReusePortUnsupported(OSError):
    """
    The platform, or the reactor, cannot share a port between processes.
    """


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """
    Listen on C{interface:port} with C{SO_REUSEADDR} and C{SO_REUSEPORT} set.

    @param reactor: Provides L{IReactorSocket} (C{adoptStreamPort}).
    @param port: The TCP port; 0 lets the kernel choose one (read it from
        the listening port's C{getHost()} to share it with other endpoints).
    @param interface: An IPv4 or IPv6 address literal; C{""} is IPv4 any
        (C{0.0.0.0}), C{"::"} IPv6 any.
    @param backlog: The length of the socket's accept queue.
    """

    def __init__(self, reactor: IReactorSocket, port: int, interface: str = "", backlog: int = 50) -> None:
        self._reactor = reactor
        self._port = port
        self._interface = interface
        self._backlog = backlog

    def __repr__(self) -> str:
        return f"<ReusePortEndpoint {self._interface or _ANY_IPV4}:{self._port}>"

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """
        Bind and listen, and hand the socket to the reactor.

        @return: A Deferred firing with the L{IListeningPort}, or failing
            with L{CannotListenError} (the port is held by a socket without
            C{SO_REUSEPORT}, the platform lacks the option, the address is
            not local, …).
        """
        try:
            port = self._adopt(protocolFactory)
        except Exception as e:
            return fail(CannotListenError(self._interface, self._port, e))
        return succeed(port)

    def _adopt(self, factory: IProtocolFactory) -> IListeningPort:
        if _SO_REUSEPORT is None:
            raise ReusePortUnsupported("SO_REUSEPORT is not available on this platform")
        reactor = self._reactor
        if not IReactorSocket.providedBy(reactor):
            raise ReusePortUnsupported(f"the reactor {self._reactor!r} cannot adopt sockets (IReactorSocket)")
        family, address = self._address()
        sock = socket.socket(family, socket.SOCK_STREAM)
        # The reactor listens on a duplicate; ours is closed whatever happens.
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, _SO_REUSEPORT, 1)
            sock.setblocking(False)
            sock.bind(address)
            sock.listen(self._backlog)
            # Typed for a ServerFactory; any IProtocolFactory does (as for listenTCP).
            listening: IListeningPort = reactor.adoptStreamPort(sock.fileno(), family, cast(Any, factory))
        return listening

    def _address(self) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
        if not isIPv6Address(self._interface):
            return socket.AF_INET, (self._interface or _ANY_IPV4, self._port)
        # getaddrinfo keeps a scope (fe80::1%eth0) that a bare tuple would lose.
        found = socket.getaddrinfo(
            self._interface, self._port, socket.AF_INET6, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
        )
        return socket.AF_INET6, found[0][4]


def endpoint_for(reactor: IReactorSocket, host: str, port: int, backlog: int = 50) -> ReusePortEndpoint:
    """
    The endpoint for C{service.host} and C{service.port} when
    C{service.reuse_port} is set.
    """
    return ReusePortEndpoint(reactor, port, interface=host, backlog=backlog)
