# -*- test-case-name: tests.unit.test_service -*-
"""
The gateway's listeners as services: the webhook listener (TCP, TLS, or a
port shared with other processes through C{SO_REUSEPORT}), the plaintext
probe listeners and the metrics listener.

A L{Listener} is a C{StreamServerEndpointService} that says when it is
listening (or why it cannot), logs where, and can be started again after a
stop.  A L{Listeners} group starts its listeners only once it is told to
(the queue must be replayed first: a new alert must not be queued ahead of
older ones of its key), and fires once every one of them listens.
"""

from __future__ import annotations

from collections.abc import Iterator

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from alertgateway.app.reuseport import endpoint_for
from alertgateway.config import GatewayConfig
from alertgateway.interfaces import IGatewayReactor
from alertgateway.tls import ReloadingServerTLS
from alertgateway.web.site import GatewaySite

__all__ = ["Listener", "Listeners", "listeners_for"]

_log = Logger()


class Listener(StreamServerEndpointService):
    """
    Listen on one endpoint while running.

    @ivar role: C{webhook}, C{probe} or C{metrics}, for the log.
    @ivar description: The endpoint as configured, for the log.
    @ivar port: The listening port, once listening.
    """

    def __init__(
        self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory, *, role: str, description: str
    ) -> None:
        super().__init__(endpoint, factory)
        self.role = role
        self.description = description
        self.port: IListeningPort | None = None
        self._outcome: Deferred[None] | None = None

    def privilegedStartService(self) -> None:
        # Not the base class's: a failure to listen is reported through
        # listening(), to whoever decides what to do about it, rather than
        # logged as an unhandled error.
        Service.privilegedStartService(self)
        self._outcome = Deferred()
        self._waitingForPort = self.endpoint.listen(self.factory).addCallbacks(self._bound, self._unbound)

    def _bound(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        address = port.getHost()
        _log.info(
            "Listening for {role} on {host}:{port}",
            role=self.role,
            host=getattr(address, "host", ""),
            port=getattr(address, "port", 0),
            listener=self.description,
        )
        if self._outcome is not None and not self._outcome.called:
            self._outcome.callback(None)
        return port

    def _unbound(self, failure: Failure) -> None:
        if self._outcome is not None and not self._outcome.called:
            self._outcome.errback(failure)

    def listening(self) -> Deferred[None]:
        """
        Fires once listening, or fails with why it cannot (once).
        """
        if self._outcome is None:
            return succeed(None)
        return self._outcome

    def stopService(self) -> Deferred[None]:
        if self._waitingForPort is None:
            self.running = False
            return succeed(None)
        d: Deferred[None] = super().stopService()
        # Started again, it listens again.
        self._waitingForPort = None
        self._outcome = None
        self.port = None
        return d


class Listeners(MultiService):
    """
    A group of listeners, started only by L{open}.
    """

    def privilegedStartService(self) -> None:
        # Not passed on to the listeners: twistd calls this before
        # startService, and a webhook port must not be open before the
        # queue is loaded.  (A port below 1024 needs the capability to bind
        # it, as the gateway never runs as root.)
        Service.privilegedStartService(self)

    def startService(self) -> None:
        # Marked running; the listeners start in open().
        self.running = True

    def open(self) -> Deferred[None]:
        """
        Start every listener; fires once all listen, or fails with the
        first reason one cannot.
        """
        listeners = list(self._listeners())
        for listener in listeners:
            listener.startService()
        d = DeferredList([listener.listening() for listener in listeners], fireOnOneErrback=True, consumeErrors=True)

        def _first_reason(failure: Failure) -> Failure:
            reason = getattr(failure.value, "subFailure", None)
            return reason if isinstance(reason, Failure) else failure

        return d.addCallbacks(lambda _: None, _first_reason)

    def _listeners(self) -> Iterator[Listener]:
        for service in self:
            assert isinstance(service, Listener)
            yield service

    def close(self) -> Deferred[None]:
        """
        Stop every listener that is listening.
        """
        stopping = [listener.stopService() for listener in self._listeners() if listener.running]
        self.running = False
        return DeferredList(stopping, consumeErrors=True).addCallback(lambda _: None)

    def stopService(self) -> Deferred[None]:
        return self.close()


def listeners_for(
    config: GatewayConfig,
    reactor: IGatewayReactor,
    tls: ReloadingServerTLS | None,
    *,
    webhook: GatewaySite,
    probe: GatewaySite,
    metrics: GatewaySite,
) -> tuple[Listeners, Listeners]:
    """
    The webhook listeners, and the probe and metrics listeners: two groups,
    closed at different points of a drain.
    """
    service = config.service
    front = Listeners()
    if service.reuse_port and not service.listen:
        # Shared with the other gateway processes of this host; TLS, if on,
        # is layered over the adopted socket.
        shared = endpoint_for(reactor, service.host, service.port, backlog=service.backlog)
        factory: IProtocolFactory = TLSMemoryBIOFactory(tls, False, webhook) if tls is not None else webhook
        scheme = "ssl" if tls is not None else "tcp"
        description = f"{scheme}:{service.port}:interface={service.host}:reuse_port"
        Listener(shared, factory, role="webhook", description=description).setServiceParent(front)
    elif tls is not None:
        endpoint = SSL4ServerEndpoint(reactor, service.port, tls, interface=service.host, backlog=service.backlog)
        description = f"ssl:{service.port}:interface={service.host}"
        Listener(endpoint, webhook, role="webhook", description=description).setServiceParent(front)
    else:
        for description in config.webhook_listeners():
            server = serverFromString(reactor, description)
            Listener(server, webhook, role="webhook", description=description).setServiceParent(front)
    # The probes and the metrics answer until the end of a drain: it can be
    # watched, and the probes say why the instance is not ready.
    back = Listeners()
    for description in service.probe_listen:
        server = serverFromString(reactor, description)
        Listener(server, probe, role="probe", description=description).setServiceParent(back)
    for description in config.metrics_listeners():
        server = serverFromString(reactor, description)
        Listener(server, metrics, role="metrics", description=description).setServiceParent(back)
    return front, back
