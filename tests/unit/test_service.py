"""
The gateway's lifecycle as an IService, on a memory reactor.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path
from typing import Any

import attrs
from twisted.application.service import Application, IService
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IHostnameResolver, IHostResolution, IListeningPort, IResolutionReceiver
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogLevel
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from alertgateway.app.service import GatewayService, exit_nonzero
from alertgateway.config import parse_config
from alertgateway.guards.ratelimit import RateLimiter
from alertgateway.state.memory import MemoryState
from alertgateway.testing import Answer, GatewayReactor, StubProcessor
from alertgateway.web.health import Lifecycle
from alertgateway.web.resource import HandlerResource, Response
from alertgateway.web.site import GatewayRequest
from tests.unit._http import (
    AUTH,
    GRAFANA,
    PROMETHEUS,
    TOKEN,
    Connection,
    InlineExecutor,
    alert,
    body,
    capture_events,
    fixture,
    make_config,
    make_service,
    request_bytes,
    stop,
)

BODY = body(alert("A"))


@implementer(IListeningPort)
class RecordingPort:
    """
    A listening port that notes when it is told to stop.
    """

    def __init__(self, events: list[str], port: int, interface: str) -> None:
        self._events = events
        self._address = IPv4Address("TCP", interface or "0.0.0.0", port)

    def startListening(self) -> None:
        pass

    def stopListening(self) -> Deferred[None]:
        self._events.append(f"stop {self._address.port}")
        return succeed(None)

    def getHost(self) -> IPv4Address:
        return self._address


class RecordingReactor(GatewayReactor):
    """
    A memory reactor whose ports record stopListening, and that refuses to
    listen on the ports in C{refuse}.
    """

    # Where twistd notes the signal that stopped the reactor.
    _exitSignal: int | None = None

    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self.refuse = refuse
        self.events: list[str] = []

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> RecordingPort:
        if port in self.refuse:
            raise CannotListenError(interface, port, OSError(errno.EADDRINUSE, "Address already in use"))
        super().listenTCP(port, factory, backlog, interface)
        return RecordingPort(self.events, port, interface)


class Slow(HandlerResource):
    """
    A resource whose answer waits for C{gate}, to hold a request in flight.
    """

    endpoint = "/slow"

    def __init__(self) -> None:
        super().__init__()
        self.gate: Deferred[None] = Deferred()

    async def handle_GET(self, request: GatewayRequest) -> Response:
        await self.gate
        return Response(200, {"slow": True})


def serve_client(reactor: MemoryReactorClock, index: int, resource: Resource) -> iosim.IOPump:
    """
    Complete the C{index}th outgoing connection attempt against a site
    serving C{resource}.
    """
    _host, _port, factory, _timeout, _bind = reactor.tcpClients[index]
    server = Site(resource).buildProtocol(None)
    client = factory.buildProtocol(None)
    pump: iosim.IOPump = iosim.connect(
        server, iosim.FakeTransport(server, isServer=True), client, iosim.FakeTransport(client, isServer=False)
    )
    pump.flush()
    return pump


def ready(service: GatewayService) -> int:
    return Connection(service.site).request("GET", "/health/ready").status


class StartTests(SynchronousTestCase):
    """
    startService: listeners, workers, readiness.
    """

    def test_listens_and_becomes_ready(self) -> None:
        """
        The webhook and metrics sites listen where configured, and the
        gateway turns ready (probe and gauge) once they do.
        """
        reactor = RecordingReactor()
        service, _, _ = make_service(
            make_config("service:\n  host: 127.0.0.1\n  port: 8088\nmetrics:\n  port: 9099\n"), reactor
        )
        self.assertEqual(ready(service), 503)
        self.assertEqual(service.metrics.registry.get_sample_value("gateway_ready"), 0.0)
        service.startService()
        self.assertEqual(
            [(port, factory, interface) for port, factory, _backlog, interface in reactor.tcpServers],
            [(8088, service.site, "127.0.0.1"), (9099, service.metrics_site, "127.0.0.1")],
        )
        self.assertEqual(ready(service), 200)
        self.assertEqual(service.metrics.registry.get_sample_value("gateway_ready"), 1.0)

    def test_no_port_before_the_queue_is_loaded(self) -> None:
        """
        twistd starts an application with privilegedStartService first:
        no port is opened, and the queue database not touched, until
        startService, which loads the queue before it listens.
        """
        db = os.path.join(self.mktemp(), "queue.db")
        Path(db).parent.mkdir(parents=True)
        config = make_config(f"queue:\n  backend: sqlite\n  path: {db}\n", sink=f"file:{self.mktemp()}")
        executor = InlineExecutor()
        reactor = RecordingReactor()
        service, _, _ = make_service(config, reactor, executor)
        application = Application("alertgateway")
        service.setServiceParent(application)
        IService(application).privilegedStartService()
        self.assertEqual((executor.calls, reactor.tcpServers), (0, []))
        IService(application).startService()
        self.assertGreater(executor.calls, 0)
        self.assertEqual(len(reactor.tcpServers), 2)

    def test_listen_override(self) -> None:
        """
        service.listen and metrics.listen replace host and port.
        """
        reactor = RecordingReactor()
        config = make_config(
            "service:\n  listen: ['tcp:7001:interface=127.0.0.2', 'tcp:7002']\n"
            "metrics:\n  listen: ['tcp:7003:interface=127.0.0.3']\n"
        )
        service, _, _ = make_service(config, reactor)
        service.startService()
        self.assertEqual(
            [(port, interface) for port, _f, _b, interface in reactor.tcpServers],
            [(7001, "127.0.0.2"), (7002, ""), (7003, "127.0.0.3")],
        )
        self.assertEqual(ready(service), 200)

    def test_metrics_disabled(self) -> None:
        """
        With metrics disabled only the webhook site listens.
        """
        reactor = RecordingReactor()
        service, _, _ = make_service(make_config("metrics:\n  enabled: false\n"), reactor)
        service.startService()
        self.assertEqual([port for port, *_ in reactor.tcpServers], [8080])

    def test_workers_started(self) -> None:
        """
        Once started, accepted alerts are delivered: here to the file sink.
        """
        path = Path(self.mktemp())
        service, _, _ = make_service(make_config(sink=f"file:{path}"))
        service.startService()
        response = Connection(service.site).request(
            "POST",
            "/webhook/prometheus",
            headers={"Authorization": f"Bearer {TOKEN}"},
            body=fixture("alertmanager-firing.json"),
        )
        self.assertEqual(response.status, 202)
        stop(self, service)
        fingerprints = [json.loads(line)["fingerprint"] for line in path.read_text().splitlines()]
        self.assertEqual(fingerprints, ["704fae8241e05a07", "995194533ae82003"])

    def test_cannot_listen(self) -> None:
        """
        When a listener cannot be opened the gateway never turns ready,
        logs why, stops the reactor and arranges a non-zero exit.
        """
        critical = capture_events(self, lambda e: e.get("log_level") == LogLevel.critical)
        reactor = RecordingReactor(refuse=frozenset({9090}))
        service, _, _ = make_service(make_config(), reactor)
        service.startService()
        self.assertTrue(reactor.hasStopped)
        self.assertIn((exit_nonzero, (), {}), reactor.triggers["after"]["shutdown"])
        [event] = critical
        self.assertIn("Address already in use", event["reason"])
        self.assertEqual(ready(service), 503)
        self.assertEqual(service.metrics.registry.get_sample_value("gateway_ready"), 0.0)

    def test_log_observer_on_application(self) -> None:
        """
        Added to a twistd Application, the service offers its configured
        observer there, which is how twistd picks up logging.format.
        """
        application = Application("alertgateway")
        service, _, _ = make_service()
        service.setServiceParent(application)
        self.assertIs(ILogObserver(application), service.log_observer)

    def test_plain_parent(self) -> None:
        """
        Under a plain MultiService (no Application) there is nothing to
        register, and the service is still added.
        """
        from twisted.application.service import MultiService

        parent = MultiService()
        service, _, _ = make_service()
        service.setServiceParent(parent)
        self.assertEqual(list(parent), [service])


class StopTests(SynchronousTestCase):
    """
    stopService: the ordered, bounded shutdown.
    """

    def start(self, extra: str = "service:\n  shutdown_grace: 3s\n") -> tuple[GatewayService, RecordingReactor]:
        reactor = RecordingReactor()
        self.sink_path = Path(self.mktemp())
        service, _, _ = make_service(make_config(extra, sink=f"file:{self.sink_path}"), reactor)
        self.slow = Slow()
        service.site.resource.putChild(b"slow", self.slow)
        service.startService()
        return service, reactor

    def test_not_ready_at_once(self) -> None:
        """
        From the moment stop begins the gateway is not ready and refuses
        new webhooks, while connections already open still get answers.
        """
        service, _ = self.start()
        connection = Connection(service.site)
        connection.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
        stopping = service.stopService()
        self.assertEqual(ready(service), 503)
        self.assertEqual(service.metrics.registry.get_sample_value("gateway_ready"), 0.0)
        response = Connection(service.site).request(
            "POST",
            "/webhook/prometheus",
            headers={"Authorization": f"Bearer {TOKEN}"},
            body=fixture("alertmanager-firing.json"),
        )
        self.assertEqual(response.status, 503)
        self.assertIsNotNone(response.header("Retry-After"))
        self.slow.gate.callback(None)
        reactor = service.gateway.reactor
        assert isinstance(reactor, RecordingReactor)
        reactor.advance(3)
        self.successResultOf(stopping)

    def test_order(self) -> None:
        """
        In-flight requests are answered; the webhook listener stays open
        for the grace period (new webhooks get 503 shutting-down, not a
        refused connection), then closes; then the metrics listener.
        """
        service, reactor = self.start()
        connection = Connection(service.site)
        connection.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
        stopping = service.stopService()
        self.slow.gate.callback(None)
        [response] = connection.responses()
        self.assertEqual(response.status, 200)
        reactor.advance(2.9)
        self.assertEqual(reactor.events, [])
        late = Connection(service.site).request(
            "POST", "/webhook/prometheus", headers={"Authorization": f"Bearer {TOKEN}"}, body=BODY
        )
        self.assertEqual(late.json()["type"], "urn:alertgateway:problem:shutting-down")
        reactor.advance(0.1)
        self.successResultOf(stopping)
        self.assertEqual(reactor.events, ["stop 8080", "stop 9090"])

    def test_waits_for_upload(self) -> None:
        """
        A webhook whose body is still arriving when stop begins is waited
        for, taken and delivered before the stop completes.
        """
        service, reactor = self.start()
        connection = Connection(service.site)
        raw = request_bytes(
            "POST",
            "/webhook/prometheus",
            headers={"Authorization": f"Bearer {TOKEN}"},
            body=fixture("alertmanager-firing.json"),
        )
        connection.send(raw[:200])
        reactor.advance(1)
        stopping = service.stopService()
        self.assertNoResult(stopping)
        connection.feed(raw[200:])
        [response] = connection.responses()
        self.assertEqual(response.status, 202)
        reactor.advance(3)
        self.successResultOf(stopping)
        self.assertEqual(len(self.sink_path.read_text().splitlines()), 2)

    def test_in_flight_bounded(self) -> None:
        """
        A request that never finishes holds shutdown for shutdown_grace and
        no longer, with a warning.
        """
        warnings = capture_events(self, lambda e: e.get("log_level") == LogLevel.warn)
        service, reactor = self.start()
        Connection(service.site).send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
        stopping = service.stopService()
        reactor.advance(2.9)
        self.assertNoResult(stopping)
        reactor.advance(0.1)
        self.successResultOf(stopping)
        self.assertEqual(reactor.events, ["stop 8080", "stop 9090"])
        self.assertEqual(len(warnings), 1)

    def test_sigterm_exit_status(self) -> None:
        """
        After a clean stop caused by SIGTERM, the signal is not re-raised
        (twistd would make the process die by it); the exit is 0.
        """
        service, reactor = self.start()
        reactor._exitSignal = signal.SIGTERM
        stop(self, service)
        self.assertIsNone(reactor._exitSignal)

    def test_other_signal_kept(self) -> None:
        """
        Any other recorded exit signal is left alone.
        """
        service, reactor = self.start()
        reactor._exitSignal = signal.SIGINT
        stop(self, service)
        self.assertEqual(reactor._exitSignal, signal.SIGINT)


@implementer(IHostnameResolver)
class TableResolver:
    """
    Resolve names from a table (a missing name resolves to nothing) and
    count the lookups.
    """

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Any = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        self.lookups.append(hostName)
        resolution = HostResolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        for address in self.table.get(hostName, []):
            resolutionReceiver.addressResolved(IPv4Address("TCP", address, portNumber))
        resolutionReceiver.resolutionComplete()
        return resolution


@implementer(IHostResolution)
class HostResolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass


class EdgeLifecycleTests(SynchronousTestCase):
    """
    What the edge keeps running between start and stop: host name
    resolution for allowed_ips, the rate limiter's pruning, the probe
    listener.
    """

    def test_host_names_resolved(self) -> None:
        """
        Host names in allowed_ips are resolved through the reactor's
        resolver at start (until then they allow nothing) and again every
        resolve_interval; a name that stops resolving keeps its addresses.
        """
        reactor = RecordingReactor()
        resolver = TableResolver({"sender.test": ["192.0.2.10"]})
        reactor.nameResolver = resolver
        config = make_config("security:\n  allowed_ips: [sender.test]\n  resolve_interval: 60s\n")
        service, _, _ = make_service(config, reactor)
        peer = IPv4Address("TCP", "192.0.2.10", 5000)

        def post(address: IPv4Address) -> int:
            return Connection(service.site, address).request("POST", PROMETHEUS, headers=AUTH, body=BODY).status

        self.assertEqual(post(peer), 403)
        service.startService()
        self.assertEqual(resolver.lookups, ["sender.test"])
        self.assertEqual(post(peer), 202)
        resolver.table = {"sender.test": ["192.0.2.20"]}
        reactor.advance(60)
        self.assertEqual(resolver.lookups, ["sender.test"] * 2)
        self.assertEqual(post(IPv4Address("TCP", "192.0.2.20", 5000)), 202)
        self.assertEqual(post(peer), 403)
        resolver.table = {}
        reactor.advance(60)
        self.assertEqual(post(IPv4Address("TCP", "192.0.2.20", 5000)), 202)
        stop(self, service)
        reactor.advance(600)
        self.assertEqual(len(resolver.lookups), 3)

    def test_limiter_runs_with_service(self) -> None:
        """
        The rate limiter forgets idle clients while the service runs, and
        leaves nothing scheduled once it stops.
        """
        reactor = RecordingReactor()
        config = make_config("rate_limiting:\n  per_client_limit: 60\n  burst_size: 5\n")
        service, _, _ = make_service(config, reactor)
        service.startService()
        connection = Connection(service.site)
        connection.request("POST", PROMETHEUS, headers=AUTH, body=BODY)
        connection.lose()
        assert isinstance(service.limiter, RateLimiter)
        self.assertEqual(service.limiter.tracked_clients, 1)
        reactor.advance(120)
        self.assertEqual(service.limiter.tracked_clients, 0)
        stop(self, service)
        self.assertEqual([c for c in reactor.getDelayedCalls() if "TimeoutMixin" not in repr(c)], [])

    def test_rate_limit_status_by_source(self) -> None:
        """
        Without rate_limiting.reject_status an Alertmanager endpoint
        refuses a rate-limited webhook with 503 and Retry-After (which
        Alertmanager retries; it drops a notification answered 4xx), a
        Grafana endpoint with 429; the status lines carry their reason
        phrases.
        """
        reactor = RecordingReactor()
        config = parse_config(
            "webhook:\n  auth:\n    token: " + TOKEN + "\n"
            "  endpoints:\n"
            "    - {path: /webhook/prometheus, source: alertmanager, rate_limit: 1}\n"
            "    - {path: /webhook/grafana, source: grafana, rate_limit: 1}\n"
            "alert_processor:\n  endpoint: file:unused.jsonl\nqueue:\n  backend: memory\n",
            environ={},
        )
        service, _, _ = make_service(config, reactor)
        service.startService()
        connection = Connection(service.site)
        answers = []
        for path in (PROMETHEUS, PROMETHEUS, GRAFANA, GRAFANA):
            answers.append(connection.request("POST", path, headers=AUTH, body=BODY))
        refused = [answers[1], answers[3]]
        self.assertEqual(
            [(r.status, r.reason) for r in refused], [(503, "Service Unavailable"), (429, "Too Many Requests")]
        )
        self.assertIsNotNone(refused[0].header("Retry-After"))
        stop(self, service)

    def test_rate_limiting_disabled(self) -> None:
        """
        rate_limiting.enabled false: no limiter, no RateLimit headers.
        """
        service, _, _ = make_service(make_config("rate_limiting:\n  enabled: false\n"))
        self.assertIsNone(service.limiter)
        response = Connection(service.site).request("POST", PROMETHEUS, headers=AUTH, body=BODY)
        self.assertEqual(response.status, 202)
        self.assertIsNone(response.header("ratelimit"))

    def test_probe_listener(self) -> None:
        """
        service.probe_listen serves the health checks, and only them, on a
        listener of its own.
        """
        reactor = RecordingReactor()
        service, _, _ = make_service(make_config("service:\n  probe_listen: ['tcp:8081']\n"), reactor)
        service.startService()
        self.assertIn((8081, service.probe_site), [(port, factory) for port, factory, *_ in reactor.tcpServers])
        self.assertEqual(Connection(service.probe_site).request("GET", "/health/ready").status, 200)
        self.assertEqual(Connection(service.probe_site).request("GET", "/health/live").status, 200)
        self.assertEqual(
            Connection(service.probe_site).request("POST", PROMETHEUS, headers=AUTH, body=BODY).status, 404
        )
        self.assertEqual(Connection(service.probe_site).request("GET", "/metrics").status, 404)


class HTTPProcessorTests(SynchronousTestCase):
    """
    Start to stop with an HTTP Alert Processor reached over the memory
    reactor.
    """

    def setUp(self) -> None:
        self.reactor = RecordingReactor()
        config = parse_config(
            f"webhook:\n  auth:\n    token: {TOKEN}\n"
            "alert_processor:\n  endpoint: http://127.0.0.1:8081/base\n  max_in_flight: 1\n"
            "service:\n  shutdown_grace: 4s\nqueue: {backend: memory}\n",
            environ={},
        )
        self.service, _, _ = make_service(config, self.reactor)
        self.service.startService()
        response = Connection(self.service.site).request(
            "POST",
            "/webhook/prometheus",
            headers={"Authorization": f"Bearer {TOKEN}", "X-Request-ID": "req-http"},
            body=fixture("alertmanager-firing.json"),
        )
        self.assertEqual(response.status, 202)

    def test_drains_before_stopping(self) -> None:
        """
        Alerts still queued when stop begins are delivered before the stop
        completes, together in one batch request; the processor sees them
        with the request's id.
        """
        processor = StubProcessor(Answer(202), Answer(202))
        stopping = self.service.stopService()
        self.reactor.advance(3.9)
        self.assertNoResult(stopping)
        pump = serve_client(self.reactor, 0, processor)
        self.assertEqual(len(processor.received), 1)
        # The rest of the grace period, the listener answering 503; the
        # pooled connection to the processor closes.
        self.reactor.advance(0.1)
        pump.flush()
        self.successResultOf(stopping)
        self.assertEqual([r.path for r in processor.received], ["/base/api/v1/alerts/batch"])
        self.assertEqual({r.header("x-request-id") for r in processor.received}, {"req-http"})
        # One worker, one pooled connection for both alerts.
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_drain_bounded(self) -> None:
        """
        A processor that cannot be reached holds the stop for the grace
        period only; what is left is logged as still queued (it stays
        queued) and nothing stays scheduled on the reactor.
        """
        warnings = capture_events(self, lambda e: e.get("log_level") == LogLevel.warn and "count" in e)
        stopping = self.service.stopService()
        self.reactor.advance(3.9)
        self.assertNoResult(stopping)
        self.reactor.advance(0.1)
        self.successResultOf(stopping)
        self.assertEqual([e.get("count") for e in warnings], [2])
        self.assertEqual(len(self.service.queue), 2)
        # Open connections keep their deadlines (the client's to close).
        self.assertEqual([call for call in self.reactor.getDelayedCalls() if "GatewayChannel" not in repr(call)], [])


class RestartTests(SynchronousTestCase):
    """
    A stopped service can be started again.
    """

    def test_restart(self) -> None:
        """
        After stop and start the gateway listens, is ready and delivers
        again.
        """
        path = Path(self.mktemp())
        reactor = RecordingReactor()
        service, _, _ = make_service(make_config(sink=f"file:{path}"), reactor)
        service.startService()
        stop(self, service)
        service.startService()
        self.assertEqual(ready(service), 200)
        self.assertEqual([port for port, *_ in reactor.tcpServers], [8080, 9090, 8080, 9090])
        response = Connection(service.site).request(
            "POST",
            "/webhook/prometheus",
            headers={"Authorization": f"Bearer {TOKEN}"},
            body=fixture("alertmanager-firing.json"),
        )
        self.assertEqual(response.status, 202)
        stop(self, service)
        self.assertEqual(len(path.read_text().splitlines()), 2)


class ExitTests(SynchronousTestCase):
    """
    The exit used when the gateway cannot listen.
    """

    def testexit_nonzero(self) -> None:
        """
        It ends the process at once with status 1 (twistd would otherwise
        exit 0 after the reactor stops).
        """
        statuses: list[int] = []
        self.patch(os, "_exit", statuses.append)
        exit_nonzero()
        self.assertEqual(statuses, [1])


class DecideWiringTests(SynchronousTestCase):
    """
    The decider inside the service: its periodic tick, and delivery outcomes
    reaching the status of alerts.
    """

    def setUp(self) -> None:
        self.path = Path(self.mktemp())
        self.reactor = RecordingReactor()
        config = make_config("dedup: {window: 10s, expire_interval: 3s}\n", sink=f"file:{self.path}")
        self.service, _, _ = make_service(config, self.reactor)

    def post(self) -> None:
        response = Connection(self.service.site).request("POST", PROMETHEUS, headers=AUTH, body=BODY)
        self.assertEqual(response.status, 202, response.body)

    def tracked(self) -> float | None:
        value: float | None = self.service.metrics.registry.get_sample_value("gateway_dedup_tracked")
        return value

    def episodes(self) -> int:
        state = self.service.state
        assert isinstance(state, MemoryState)
        return state.tracked_episodes

    def test_tick_every_expire_interval(self) -> None:
        """
        The tick runs every dedup.expire_interval: an
        episode that lapsed at 10.5s is forgotten by the tick at 12s, not
        before.
        """
        self.service.startService()
        self.reactor.advance(0.5)
        self.post()
        self.assertEqual(self.tracked(), 1.0)
        # In steps, so that each tick runs at its own time.
        self.reactor.pump([2.5, 3, 3, 2.9])
        self.assertEqual((self.episodes(), self.tracked()), (1, 1.0))
        self.reactor.advance(0.1)
        self.assertEqual((self.episodes(), self.tracked()), (0, 0.0))

    def test_tick_stops_with_service(self) -> None:
        """
        stopService stops the tick: nothing is expired any more and nothing
        of it stays scheduled; a restart runs it again.
        """
        self.service.startService()
        self.post()
        stop(self, self.service)
        self.assertEqual(
            [c for c in self.reactor.getDelayedCalls() if "tick" in repr(c) or "LoopingCall" in repr(c)], []
        )
        self.reactor.advance(60)
        self.assertEqual(self.episodes(), 1)
        self.service.startService()
        self.reactor.advance(3)
        self.assertEqual(self.episodes(), 0)
        stop(self, self.service)

    def test_outcomes_reach_episodes(self) -> None:
        """
        The forwarder's outcome of an alert's delivery is what the status
        API then says of it.
        """
        self.service.startService()
        self.post()
        [line] = self.path.read_text().splitlines()
        fingerprint = json.loads(line)["fingerprint"]
        response = Connection(self.service.site).request("GET", f"/v1/alerts/{fingerprint}", headers=AUTH)
        self.assertEqual(response.status, 200, response.body)
        self.assertEqual(response.json()["delivery"], "delivered")
        stop(self, self.service)


class DurableQueueServiceTests(SynchronousTestCase):
    """
    The gateway with the durable (SQLite) queue, run inline on a memory
    reactor.
    """

    def config(self, extra: str = "") -> Any:
        self.db = os.path.join(self.mktemp(), "queue.db")
        self.sink = Path(self.mktemp())
        return make_config(f"queue:\n  backend: sqlite\n  path: {self.db}\n{extra}", sink=f"file:{self.sink}")

    def test_replay_before_listening(self) -> None:
        """
        What a previous run left in the queue database is loaded before the
        gateway listens, and delivered; the readiness body names the
        backend and the breaker.
        """
        from alertgateway.delivery.journal import SQLiteJournal
        from tests.unit._http import InlineExecutor
        from tests.unit._support import envelope

        config = self.config()
        Path(self.db).parent.mkdir(parents=True)
        journal = SQLiteJournal(self.db, InlineExecutor(), clock_seconds=lambda: 1.0)
        self.successResultOf(journal.open())
        self.successResultOf(journal.append([envelope("Old")]))
        self.successResultOf(journal.close())
        executor = InlineExecutor()
        reactor = RecordingReactor()
        service, _, _ = make_service(config, reactor, executor)
        order: list[str] = []
        original = reactor.listenTCP

        def listen(port: int, factory: Any, backlog: int = 50, interface: str = "") -> RecordingPort:
            order.append(f"listen after {executor.calls} queue calls, {len(service.queue)} queued")
            return original(port, factory, backlog, interface)

        reactor.listenTCP = listen  # type: ignore[method-assign]
        service.startService()
        # Opened and replayed, the state restored, the dead letters marked
        # for retry taken, then delivered and removed, before listening.
        self.assertEqual(order[0], "listen after 4 queue calls, 0 queued")
        lines = [json.loads(line) for line in self.sink.read_text().splitlines()]
        self.assertEqual([line["labels"]["alertname"] for line in lines], ["Old"])
        response = Connection(service.site).request("GET", "/health/ready")
        answer = response.json()
        self.assertEqual(answer["queue"]["backend"], "sqlite")
        self.assertEqual(answer["circuitBreaker"], {"state": "closed", "target": "alert-processor"})
        stop(self, service)

    def test_accepted_is_on_disk(self) -> None:
        """
        While the circuit breaker is open webhooks are still accepted (the
        probes report the processor down), and a 202 is sent once the
        alerts are in the database: the file holds them as pending, and
        they stay there after a stop.
        """
        from alertgateway.delivery.journal import list_items, open_database

        service, reactor, _ = make_service(self.config("service:\n  shutdown_grace: 1s\n"))
        service.startService()
        breaker = service.breaker
        assert breaker is not None
        processor = {"name": "alert-processor", "up": True}
        self.assertEqual(Connection(service.site).request("GET", "/health").json()["processor"], processor)
        for _ in range(breaker.failure_threshold):
            breaker.failure()
        # The probes say so, by the processor's name.
        down = {"name": "alert-processor", "up": False}
        self.assertEqual(Connection(service.site).request("GET", "/health/ready").json()["processor"], down)
        self.assertEqual(Connection(service.site).request("GET", "/health").json()["processor"], down)
        response = Connection(service.site).request(
            "POST", PROMETHEUS, headers=AUTH, body=fixture("alertmanager-firing.json")
        )
        self.assertEqual(response.status, 202)
        connection = open_database(self.db)
        self.addCleanup(connection.close)
        self.assertEqual(len(list_items(connection, "pending")), 2)
        self.assertFalse(self.sink.exists())
        stopping = service.stopService()
        reactor.pump([0.5] * 4)
        self.successResultOf(stopping)
        self.assertEqual(len(list_items(connection, "pending")), 2)

    def test_breaker_state_gauge(self) -> None:
        """
        gateway_circuit_breaker_state starts at 0 (closed) for the target,
        named by alert_processor.name (never its URL), and follows the
        breaker's transitions, counted by new state.
        """
        config = self.config()
        service, _, _ = make_service(
            attrs.evolve(config, alert_processor=attrs.evolve(config.alert_processor, name="processor-eu"))
        )
        target = "processor-eu"
        registry = service.metrics.registry
        self.assertEqual(registry.get_sample_value("gateway_circuit_breaker_state", {"target": target}), 0.0)
        breaker = service.breaker
        assert breaker is not None
        for _ in range(breaker.failure_threshold):
            breaker.failure()
        self.assertEqual(registry.get_sample_value("gateway_circuit_breaker_state", {"target": target}), 1.0)
        self.assertEqual(
            registry.get_sample_value("gateway_circuit_breaker_transitions_total", {"target": target, "to": "open"}),
            1.0,
        )
        breaker.stop()

    def test_breaker_disabled(self) -> None:
        """
        With circuit_breaker.enabled false there is no breaker and the
        readiness body says nothing of one.
        """
        service, _, _ = make_service(self.config("circuit_breaker:\n  enabled: false\n"))
        self.assertIsNone(service.breaker)
        service.readiness.state = Lifecycle.READY
        answer = Connection(service.site).request("GET", "/health/ready").json()
        self.assertNotIn("circuitBreaker", answer)

    def test_queue_cannot_open(self) -> None:
        """
        When the queue database cannot be opened the gateway never listens,
        logs why and arranges a non-zero exit.
        """
        from tests.unit._http import InlineExecutor

        critical = capture_events(self, lambda e: e.get("log_level") == LogLevel.critical)
        executor = InlineExecutor()
        executor.broken = OSError("disk on fire")
        reactor = RecordingReactor()
        service, _, _ = make_service(self.config(), reactor, executor)
        service.startService()
        self.assertEqual(reactor.tcpServers, [])
        self.assertIn((exit_nonzero, (), {}), reactor.triggers["after"]["shutdown"])
        [event] = critical
        self.assertIn("disk on fire", event["reason"])
        self.assertEqual(ready(service), 503)
