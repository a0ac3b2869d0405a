"""
L{alertgateway.app.reuseport}: the socket handed to the reactor (on a
L{MemoryReactor} that inspects it), the errors as failed Deferreds, and on
the real reactor two endpoints sharing a port while a socket bound without
C{SO_REUSEPORT} keeps it to itself.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from typing import Any, cast

from twisted.internet import reactor as _global_reactor
from twisted.internet.defer import maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorSocket, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from alertgateway.app import reuseport
from alertgateway.app.reuseport import ReusePortEndpoint, ReusePortUnsupported, endpoint_for

reactor: Any = _global_reactor

if getattr(socket, "SO_REUSEPORT", None) is None:
    NO_REUSEPORT: str | None = "the platform has no SO_REUSEPORT"
else:
    NO_REUSEPORT = None


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


class _Seen:
    """
    What the socket handed to C{adoptStreamPort} looked like at that moment.
    """

    def __init__(self, fileno: int, family: int) -> None:
        self.fileno = fileno
        self.family = family
        # A file status flag, shared with duplicates.
        self.blocking = not fcntl.fcntl(fileno, fcntl.F_GETFL) & os.O_NONBLOCK
        # Inspect a duplicate, as the real reactor listens on one.
        with socket.socket(fileno=os.dup(fileno)) as s:
            self.reuse_port = s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
            self.reuse_address = s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
            self.listening = s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            self.kind = s.type
            self.address = s.getsockname()


class _InspectingReactor(MemoryReactor):
    """
    A MemoryReactor that records the socket it is asked to adopt.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[_Seen] = []

    def adoptStreamPort(self, fileno: int, addressFamily: int, factory: Any) -> Any:
        self.seen.append(_Seen(fileno, addressFamily))
        return super().adoptStreamPort(fileno, addressFamily, factory)


class _RefusingReactor(_InspectingReactor):
    def adoptStreamPort(self, fileno: int, addressFamily: int, factory: Any) -> Any:
        self.seen.append(_Seen(fileno, addressFamily))
        raise OSError(errno.EBADF, "refused by the test")


def _closed(fileno: int) -> bool:
    try:
        os.fstat(fileno)
    except OSError as e:
        return e.errno == errno.EBADF
    return False


class AdoptedSocketTests(SynchronousTestCase):
    """
    The socket L{ReusePortEndpoint.listen} makes and gives the reactor.
    """

    skip = NO_REUSEPORT

    def test_provides_interface(self) -> None:
        """
        It is an L{IStreamServerEndpoint}, so the service can use it wherever
        it uses C{serverFromString}'s endpoints.
        """
        self.assertTrue(verifyObject(IStreamServerEndpoint, ReusePortEndpoint(MemoryReactor(), 0)))

    def test_socket_options(self) -> None:
        """
        The reactor adopts a bound, listening, non-blocking IPv4 stream
        socket with C{SO_REUSEADDR} and C{SO_REUSEPORT} set, with the
        factory given, and the Deferred fires with the port it returns.
        """
        fake = _InspectingReactor()
        factory = Factory.forProtocol(Protocol)
        d = ReusePortEndpoint(fake, 0, interface="127.0.0.1", backlog=7).listen(factory)
        port = self.successResultOf(d)
        [seen] = fake.seen
        self.assertEqual(seen.family, socket.AF_INET)
        self.assertEqual(seen.kind, socket.SOCK_STREAM)
        self.assertTrue(seen.reuse_port)
        self.assertTrue(seen.reuse_address)
        self.assertTrue(seen.listening)
        self.assertFalse(seen.blocking)
        self.assertEqual(seen.address[0], "127.0.0.1")
        self.assertNotEqual(seen.address[1], 0)
        self.assertEqual(fake.adoptedPorts, [(seen.fileno, socket.AF_INET, factory)])
        self.assertTrue(IListeningPort.providedBy(port))

    def test_own_copy_closed(self) -> None:
        """
        Once the reactor has adopted (duplicated) the socket, the endpoint's
        own descriptor is closed: no descriptor leaks per listener, and
        stopping the reactor's port really releases the address.
        """
        fake = _InspectingReactor()
        self.successResultOf(ReusePortEndpoint(fake, 0, interface="127.0.0.1").listen(Factory.forProtocol(Protocol)))
        self.assertTrue(_closed(fake.seen[0].fileno))

    def test_empty_interface_is_ipv4_any(self) -> None:
        """
        C{""}, as for C{listenTCP}, binds IPv4 on every interface.
        """
        fake = _InspectingReactor()
        self.successResultOf(ReusePortEndpoint(fake, 0).listen(Factory.forProtocol(Protocol)))
        [seen] = fake.seen
        self.assertEqual((seen.family, seen.address[0]), (socket.AF_INET, "0.0.0.0"))

    def test_ipv6_interface(self) -> None:
        """
        An IPv6 literal makes an C{AF_INET6} socket (the family is told to
        the reactor too).
        """
        if not _ipv6_loopback():
            raise SkipTest("no IPv6 loopback")
        fake = _InspectingReactor()
        self.successResultOf(ReusePortEndpoint(fake, 0, interface="::1").listen(Factory.forProtocol(Protocol)))
        [seen] = fake.seen
        self.assertEqual((seen.family, seen.address[0]), (socket.AF_INET6, "::1"))
        self.assertEqual(fake.adoptedPorts[0][1], socket.AF_INET6)

    def test_endpoint_for(self) -> None:
        """
        L{endpoint_for} binds C{host:port}, as C{service.host} and
        C{service.port} name them.
        """
        fake = _InspectingReactor()
        endpoint = endpoint_for(fake, "127.0.0.1", 0)
        self.assertIsInstance(endpoint, ReusePortEndpoint)
        self.successResultOf(endpoint.listen(Factory.forProtocol(Protocol)))
        self.assertEqual(fake.seen[0].address[0], "127.0.0.1")


class ListenErrorTests(SynchronousTestCase):
    """
    Whatever goes wrong comes back as a failed Deferred with
    L{CannotListenError}, which the service reports and exits on, never as
    an exception out of C{listen}.
    """

    def test_adopt_fails(self) -> None:
        """
        The reactor refusing the socket fails the Deferred with
        L{CannotListenError} for the endpoint's address, and the socket is
        closed all the same.
        """
        if NO_REUSEPORT:
            raise SkipTest(NO_REUSEPORT)
        fake = _RefusingReactor()
        failure = self.failureResultOf(
            ReusePortEndpoint(fake, 8123, interface="127.0.0.1").listen(Factory.forProtocol(Protocol)),
            CannotListenError,
        )
        self.assertEqual((failure.value.interface, failure.value.port), ("127.0.0.1", 8123))
        self.assertIsInstance(failure.value.socketError, OSError)
        self.assertTrue(_closed(fake.seen[0].fileno))

    def test_platform_without_reuseport(self) -> None:
        """
        Without C{SO_REUSEPORT} (Windows) listening fails, naming the option,
        instead of silently binding a port the other processes cannot share.
        """
        self.patch(reuseport, "_SO_REUSEPORT", None)
        fake = _InspectingReactor()
        failure = self.failureResultOf(
            ReusePortEndpoint(fake, 0).listen(Factory.forProtocol(Protocol)), CannotListenError
        )
        self.assertIsInstance(failure.value.socketError, ReusePortUnsupported)
        self.assertIn("SO_REUSEPORT", str(failure.value))
        self.assertEqual(fake.seen, [])

    def test_reactor_cannot_adopt(self) -> None:
        """
        A reactor without L{IReactorSocket} fails the Deferred rather than
        raising C{AttributeError}.
        """
        if NO_REUSEPORT:
            raise SkipTest(NO_REUSEPORT)
        clock = cast(IReactorSocket, Clock())
        failure = self.failureResultOf(ReusePortEndpoint(clock, 0).listen(Factory.forProtocol(Protocol)))
        failure.trap(CannotListenError)
        self.assertIsInstance(failure.value.socketError, ReusePortUnsupported)

    def test_address_not_local(self) -> None:
        """
        An address no interface of this host has (C{EADDRNOTAVAIL} from
        C{bind}) fails the Deferred.
        """
        if NO_REUSEPORT:
            raise SkipTest(NO_REUSEPORT)
        # TEST-NET-1 (RFC 5737): never configured on a test host.
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain:
                plain.bind(("192.0.2.1", 0))
        except OSError:
            pass
        else:
            raise SkipTest("this host binds non-local addresses (net.ipv4.ip_nonlocal_bind)")
        failure = self.failureResultOf(
            ReusePortEndpoint(_InspectingReactor(), 0, interface="192.0.2.1").listen(Factory.forProtocol(Protocol)),
            CannotListenError,
        )
        self.assertEqual(failure.value.socketError.errno, errno.EADDRNOTAVAIL)


class SharedPortTests(TestCase):
    """
    On the real reactor and the real kernel.
    """

    skip = NO_REUSEPORT

    async def _listen(self, port: int) -> IListeningPort:
        listening: IListeningPort = await ReusePortEndpoint(reactor, port, interface="127.0.0.1").listen(
            Factory.forProtocol(Protocol)
        )
        self.addCleanup(maybeDeferred, listening.stopListening)
        return listening

    async def test_two_endpoints_share_a_port(self) -> None:
        """
        A second endpoint binds the port the first one was given (port 0):
        both listen on the same address, as two gateway processes would.
        """
        first = await self._listen(0)
        number: int = first.getHost().port  # type: ignore[attr-defined]
        second = await self._listen(number)
        self.assertEqual(second.getHost().port, number)  # type: ignore[attr-defined]
        self.assertNotEqual(first, second)

    async def test_port_held_without_reuseport(self) -> None:
        """
        A socket bound (and listening) without C{SO_REUSEPORT} keeps the
        port: the endpoint's Deferred fails with L{CannotListenError}
        carrying C{EADDRINUSE}, as when an older gateway without
        C{service.reuse_port} still runs.
        """
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain:
            plain.bind(("127.0.0.1", 0))
            plain.listen(1)
            number = plain.getsockname()[1]
            with self.assertRaises(CannotListenError) as caught:
                await self._listen(number)
        self.assertEqual(caught.exception.port, number)
        self.assertEqual(caught.exception.socketError.errno, errno.EADDRINUSE)

    async def test_port_released_on_stop(self) -> None:
        """
        Once the reactor's port stops listening nothing holds the address:
        a plain socket (without C{SO_REUSEPORT}) can bind it again, so the
        endpoint left no duplicate of the socket open.
        """
        listening = await ReusePortEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory.forProtocol(Protocol))
        number = listening.getHost().port  # type: ignore[attr-defined]
        await maybeDeferred(listening.stopListening)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain:
            plain.bind(("127.0.0.1", number))
