"""
Run the real plugin (C{twistd -n alertgateway}) as a subprocess on ephemeral
ports, and a stub Alert Processor in the test process, both on the real
reactor.

The gateway logs JSON; the harness reads the C{Listening for …} events to
learn the ports it bound (C{tcp:0}), so tests never race for a free port.

Also here: L{run} (a bounded subprocess on the reactor), L{require_binary}
(the one place that decides whether a missing system tool skips or fails a
test) and an independent implementation of Alertmanager's fingerprint, so
the tests do not check the gateway against its own code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml
from prometheus_client.parser import text_string_to_metric_families
from treq.client import HTTPClient
from twisted.internet import reactor as _global_reactor
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest, SkipTest, TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures"
reactor: Any = _global_reactor


def fixture(name: str) -> bytes:
    """
    The bytes of a payload fixture: the copy under C{tests/fixtures}, or
    C{../shared/fixtures} beside the repository.
    """
    for folder in (REPO / "tests" / "fixtures", FIXTURES):
        path = folder / name
        if path.exists():
            return path.read_bytes()
    raise FileNotFoundError(name)


def fixture_json(name: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(fixture(name))
    return value


def distinct_json(name: str, tag: str, label: str = "itest_copy") -> dict[str, Any]:
    """
    A payload fixture whose every alert carries one more label, C{label}
    set to C{tag}: other alerts than the fixture's (other fingerprints, so
    the gateway's deduplication sees them as new), the same shape and
    correlation group.  An Alertmanager alert's own C{fingerprint} is
    recomputed, as Alertmanager would have written it; a legacy Grafana
    body gets the label as a tag.
    """
    body = fixture_json(name)
    if "alerts" not in body:
        body["tags"] = {**(body.get("tags") or {}), label: tag}
        return body
    for alert in body["alerts"]:
        alert["labels"] = {**alert["labels"], label: tag}
        if "fingerprint" in alert:
            alert["fingerprint"] = am_fingerprint(alert["labels"])
    return body


def distinct(name: str, tag: str, label: str = "itest_copy") -> bytes:
    """
    The bytes of L{distinct_json}.
    """
    return json.dumps(distinct_json(name, tag, label)).encode()


def resolved_json(body: Mapping[str, Any], ends_at: str = "2026-11-26T04:20:00Z") -> dict[str, Any]:
    """
    An Alertmanager-shaped body (C{alerts} with C{labels}) whose every
    alert, and the group, is resolved at C{ends_at}: what Alertmanager
    sends once the alerts stop firing.
    """
    copy: dict[str, Any] = json.loads(json.dumps(body))
    copy["status"] = "resolved"
    for alert in copy["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = ends_at
    return copy


def venv_script(name: str) -> str:
    """
    A console script of the virtualenv running the tests (C{twistd},
    C{alertgateway}).
    """
    return str(Path(sys.executable).with_name(name))


def twistd() -> str:
    return venv_script("twistd")


def source_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    The environment for subprocesses that must run the source tree, not
    whatever copy of the package is installed.
    """
    return {**os.environ, "PYTHONPATH": str(REPO), **(extra or {})}


def require_binary(name: str, package: str) -> str:
    """
    The path of a system tool a test needs.

    Missing, it skips the test with the command that installs it, except
    under C{CI=true}: CI must never silently skip the tests that prove the
    gateway works with the real Alertmanager and promtool.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} not installed: apt-get install {package}"
    if os.environ.get("CI") == "true":
        raise FailTest(f"{message} (required when CI=true)")
    raise SkipTest(message)


def free_port() -> int:
    """
    A TCP port that was free a moment ago, for programs that cannot be told
    to bind port 0 and report it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def am_fingerprint(labels: Mapping[str, str]) -> str:
    """
    Alertmanager's fingerprint (prometheus/common C{LabelSet.Fingerprint}),
    written independently of C{alertgateway.core.model}.
    """
    h = 0xCBF29CE484222325
    data = b"".join(k.encode() + b"\xff" + labels[k].encode() + b"\xff" for k in sorted(labels))
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    return format(h, "016x")


# --- bounded subprocesses ---------------------------------------------------


@attrs.frozen
class Completed:
    """
    A finished subprocess.
    """

    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


class _Collector(ProcessProtocol):
    def __init__(self, stdin: bytes | None) -> None:
        self._stdin = stdin
        self.out = b""
        self.err = b""
        self.ended: Deferred[int] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        if self._stdin is not None:
            self.transport.write(self._stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(_exit_code(reason))


def _exit_code(reason: Failure) -> int:
    value = reason.value
    if isinstance(value, ProcessDone):
        return 0
    if isinstance(value, ProcessTerminated):
        return value.exitCode if value.exitCode is not None else -(value.signal or 0)
    return -1


async def run(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: str | None = None,
    timeout: float = 30.0,
) -> Completed:
    """
    Run a program to completion on the reactor (so servers in the test
    process keep answering meanwhile).  Past C{timeout} it is killed and
    the test fails with what it printed.
    """
    collector = _Collector(stdin)
    transport = reactor.spawnProcess(
        collector, args[0], list(args), env=dict(env if env is not None else os.environ), path=cwd
    )
    ended = collector.ended
    timed_out = reactor.callLater(timeout, _kill, transport)
    code = await ended
    if timed_out.active():
        timed_out.cancel()
    else:
        raise FailTest(f"{args} did not finish in {timeout}s:\n{collector.out.decode()}\n{collector.err.decode()}")
    return Completed(code, collector.out.decode("utf-8", "replace"), collector.err.decode("utf-8", "replace"))


def _kill(transport: Any) -> None:
    with contextlib.suppress(ProcessExitedAlready):
        transport.signalProcess("KILL")


class _LineProcessProtocol(ProcessProtocol):
    """
    Hand a long-running process's stdout to a callback line by line and
    keep its stderr.
    """

    def __init__(self, owner: ManagedProcess) -> None:
        self._owner = owner
        self._buffer = b""

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._owner.line_received(line.decode("utf-8", "replace"))

    def errReceived(self, data: bytes) -> None:
        self._owner.stderr += data.decode("utf-8", "replace")

    def processEnded(self, reason: Failure) -> None:
        if self._buffer:
            self._owner.line_received(self._buffer.decode("utf-8", "replace"))
        self._owner.process_ended(_exit_code(reason))


class ManagedProcess:
    """
    A long-running subprocess that a test starts and must always stop:
    L{stop} sends a signal, and SIGKILL if that is not enough, so no test
    leaves a process behind.
    """

    def __init__(self) -> None:
        self.raw_lines: list[str] = []
        self.stderr = ""
        self.exit_code: int | None = None
        self._ended: Deferred[int] = Deferred()
        self._transport: Any = None
        self._line_waiters: list[tuple[Callable[[str], bool], Deferred[str]]] = []

    @property
    def pid(self) -> int:
        """
        The process id (to read what the process holds open under
        C{/proc}).
        """
        pid: int = self._transport.pid
        return pid

    def spawn(self, args: Sequence[str], env: Mapping[str, str], cwd: str) -> None:
        self._transport = reactor.spawnProcess(_LineProcessProtocol(self), args[0], list(args), env=dict(env), path=cwd)

    def line_received(self, line: str) -> None:
        self.raw_lines.append(line)
        for predicate, waiter in list(self._line_waiters):
            if predicate(line):
                self._line_waiters.remove((predicate, waiter))
                # It may have timed out already.
                if not waiter.called:
                    waiter.callback(line)

    def process_ended(self, code: int) -> None:
        self.exit_code = code
        for _, waiter in self._line_waiters:
            if not waiter.called:
                waiter.errback(RuntimeError(f"process exited ({code}) while a line was awaited:\n{self.output()}"))
        self._line_waiters = []
        self._ended.callback(code)

    def output(self) -> str:
        return "\n".join(self.raw_lines) + "\n" + self.stderr

    def send_signal(self, sig: int) -> None:
        if self.exit_code is None and self._transport is not None:
            with contextlib.suppress(ProcessExitedAlready):
                self._transport.signalProcess(signal.Signals(sig).name[3:])

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> Deferred[str]:
        """
        Fire with the first output line (already seen or yet to come) that
        satisfies C{predicate}.
        """
        d: Deferred[str] = Deferred()
        for line in self.raw_lines:
            if predicate(line):
                d.callback(line)
                return d
        if self.exit_code is not None:
            d.errback(RuntimeError(f"process already exited ({self.exit_code}):\n{self.output()}"))
            return d
        self._line_waiters.append((predicate, d))
        return d.addTimeout(timeout, reactor)

    async def ended(self, timeout: float = 20.0) -> int:
        return await self._waited(timeout)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """
        Signal the process and wait for it to exit; kill it if it does not
        exit in C{timeout} seconds (the test then fails: it hung).
        """
        self.send_signal(sig)
        return await self._waited(timeout)

    async def _waited(self, timeout: float) -> int:
        if self.exit_code is not None:
            return self.exit_code
        done: Deferred[int] = Deferred()
        self._ended.addBoth(_relay, done)
        try:
            return await done.addTimeout(timeout, reactor)
        except Exception:
            self.send_signal(signal.SIGKILL)
            await self._ended_again()
            raise FailTest(f"process did not exit within {timeout}s; killed:\n{self.output()}") from None

    async def _ended_again(self) -> None:
        if self.exit_code is None:
            done: Deferred[int] = Deferred()
            self._ended.addBoth(_relay, done)
            await done


def _relay(result: Any, target: Deferred[Any]) -> Any:
    if not target.called:
        if isinstance(result, Failure):
            target.errback(result)
        else:
            target.callback(result)
    return result


# --- the stub Alert Processor -------------------------------------------------


@attrs.define
class Received:
    """
    One request the stub processor received.
    """

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    code: int = 200
    at: float = 0.0


@attrs.frozen
class Answer:
    """
    A scripted answer of the stub processor.
    """

    code: int
    headers: Mapping[str, str] = attrs.field(factory=dict)


class _TrackingSite(Site):
    """
    A Site that remembers its open connections so that stopping it can
    close them: a gateway's pooled connections must not outlive the test.
    """

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.noisy = False
        self.open: set[Protocol] = set()
        self.closed: dict[Protocol, Deferred[None]] = {}

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        assert protocol is not None
        self.open.add(protocol)
        done: Deferred[None] = Deferred()
        self.closed[protocol] = done
        original = protocol.connectionLost

        def connection_lost(reason: Failure) -> None:
            self.open.discard(protocol)
            original(reason)
            done.callback(None)

        protocol.connectionLost = connection_lost
        return protocol


class StubProcessor(Resource):
    """
    An Alert Processor that records what it receives and answers with the
    scripted L{answers}, then with L{fallback} (200 unless a test makes it,
    say, a 503 for an outage).  With C{hold} set it keeps each request open
    until L{release}, to stand for a slow processor; with C{delay}, it
    answers each that many seconds late.  A GET (its health check) is
    answered C{health}.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Received] = []
        self.attempts: list[Received] = []
        self.answers: list[Answer] = []
        self.fallback = Answer(200)
        self.hold = False
        self.held: list[Any] = []
        self.delay = 0.0
        self.health = 200
        self.health_checks = 0
        self.port: IListeningPort | None = None
        self._site: _TrackingSite | None = None
        self._waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []

    @property
    def codes(self) -> list[int]:
        return [a.code for a in self.answers]

    @codes.setter
    def codes(self, codes: list[int]) -> None:
        self.answers = [Answer(c) for c in codes]

    def render_POST(self, request: Any) -> bytes | int:
        headers = {k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        body = json.loads(request.content.read())
        answer = self.answers.pop(0) if self.answers else self.fallback
        path = request.path.decode()
        if path.endswith("/batch"):
            # A batch is recorded as the alerts it carries, each as a single
            # delivery would have sent it; it is answered once, for all.
            records = [
                Received(
                    path.removesuffix("/batch"),
                    {
                        **headers,
                        **{k.lower(): v for k, v in item["headers"].items()},
                        "idempotency-key": item["idempotencyKey"],
                        "x-request-id": item["requestId"],
                    },
                    item["alert"],
                    answer.code,
                    reactor.seconds(),
                )
                for item in body
            ]
        else:
            records = [Received(path, headers, body, answer.code, reactor.seconds())]
        self.attempts.extend(records)
        if self.hold:
            self.held.extend((request, record, answer) for record in records)
            self._check_waiters()
            return NOT_DONE_YET
        if self.delay:
            reactor.callLater(self.delay, self._late, request, records, answer)
            return NOT_DONE_YET
        return self._answer(request, records, answer)

    def _late(self, request: Any, records: list[Received], answer: Answer) -> None:
        if not request.finished and not request._disconnected:
            request.write(self._answer(request, records, answer))
            request.finish()

    def render_GET(self, request: Any) -> bytes:
        self.health_checks += 1
        request.setResponseCode(self.health)
        return b"{}"

    def _answer(self, request: Any, records: list[Received], answer: Answer) -> bytes:
        request.setResponseCode(answer.code)
        for name, value in answer.headers.items():
            request.setHeader(name, value)
        if answer.code == 200:
            self.received.extend(records)
        self._check_waiters()
        return b'{"ok":true}'

    def release(self) -> None:
        """
        Answer every held request.
        """
        self.hold = False
        held, self.held = self.held, []
        # The records of one batch request are answered together.
        by_request: dict[int, tuple[Any, list[Received], Answer]] = {}
        for request, record, answer in held:
            by_request.setdefault(id(request), (request, [], answer))[1].append(record)
        for request, records, answer in by_request.values():
            if not request.finished and not request._disconnected:
                request.write(self._answer(request, records, answer))
                request.finish()

    def _check_waiters(self) -> None:
        for condition, waiter in list(self._waiters):
            if condition():
                self._waiters.remove((condition, waiter))
                waiter.callback(None)

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if condition():
            d.callback(None)
            return d
        self._waiters.append((condition, d))

        def _explain(failure: Failure) -> Failure:
            if (condition, d) in self._waiters:
                self._waiters.remove((condition, d))
            failure.trap(DeferredTimeout)
            raise FailTest(f"{what}: timed out; received so far: {[r.body for r in self.attempts]}")

        return d.addTimeout(timeout, reactor).addErrback(_explain)

    def wait_for(self, count: int, timeout: float = 10.0) -> Deferred[None]:
        """
        Fire once C{count} alerts were delivered (answered 200).
        """
        return self._wait(lambda: len(self.received) >= count, timeout, f"waiting for {count} delivered alerts")

    def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> Deferred[None]:
        return self._wait(condition, timeout, "waiting for a condition on the received alerts")

    def wait_held(self, count: int, timeout: float = 10.0) -> Deferred[None]:
        return self._wait(lambda: len(self.held) >= count, timeout, f"waiting for {count} held requests")

    async def start(self) -> str:
        self._site = _TrackingSite(self)
        self.port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self._site)
        address: Any = self.port.getHost()
        return f"http://127.0.0.1:{address.port}"

    async def stop(self) -> None:
        self.release()
        if self.port is not None:
            await maybeDeferred(self.port.stopListening)
        if self._site is not None:
            closing = [self._site.closed[p] for p in self._site.open]
            for protocol in list(self._site.open):
                assert protocol.transport is not None
                protocol.transport.abortConnection()  # type: ignore[attr-defined]
            await DeferredList(closing)


# --- the gateway under test ---------------------------------------------------


class GatewayProcess(ManagedProcess):
    """
    A C{twistd -n alertgateway} subprocess with a configuration of the
    test's choosing (webhook and metrics on ephemeral loopback ports).

    It runs in C{directory} (its working directory, where the configuration
    is written and relative paths such as the default C{var/queue.db}
    land): a temporary one removed when the process ends, or the caller's,
    kept, so that a second gateway can be started where the first one was
    killed.
    """

    def __init__(
        self, config: dict[str, Any], env: dict[str, str] | None = None, directory: Path | None = None
    ) -> None:
        super().__init__()
        self._owns_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="alertgateway-test-"))
        base: dict[str, Any] = {
            # Short: a stopping gateway answers 503 for all of it.
            "service": {"listen": ["tcp:0:interface=127.0.0.1"], "shutdown_grace": "1s"},
            "metrics": {"listen": ["tcp:0:interface=127.0.0.1"]},
            "logging": {"format": "json", "level": "debug"},
        }
        for key, value in config.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        self.config_path = self.directory / "gateway.yaml"
        self.config_path.write_text(yaml.safe_dump(base))
        self.env = env or {}
        self.lines: list[dict[str, Any]] = []
        self.ports: dict[str, int] = {}
        self._ready: Deferred[None] = Deferred()

    def line_received(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict):
            self.lines.append(event)
            if event.get("role") in ("webhook", "metrics", "probe") and "port" in event:
                self.ports[event["role"]] = int(event["port"])
            if event.get("message") == "Ready" and not self._ready.called:
                self._ready.callback(None)
        super().line_received(line)

    def process_ended(self, code: int) -> None:
        if not self._ready.called:
            self._ready.errback(RuntimeError(f"gateway exited ({code}) before ready:\n{self.output()}"))
        super().process_ended(code)
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    async def start(self, timeout: float = 20.0) -> None:
        args = [twistd(), "-n", "--pidfile=", "alertgateway", "--config", str(self.config_path)]
        self.spawn(args, source_env(self.env), str(self.directory))
        try:
            await self._ready.addTimeout(timeout, reactor)
        except Exception:
            await self.stop(signal.SIGKILL)
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['webhook']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    @property
    def https_url(self) -> str:
        """
        The webhook listener's base URL when C{security.tls_enabled}.
        """
        return f"https://127.0.0.1:{self.ports['webhook']}"

    @property
    def probe_url(self) -> str:
        """
        The (last) C{service.probe_listen} listener's base URL.
        """
        return f"http://127.0.0.1:{self.ports['probe']}"

    async def sample(self, name: str, **labels: str) -> float | None:
        """
        The value of one sample on C{/metrics} (e.g.
        C{gateway_security_rejections_total} with its labels), or C{None}
        if it is not exposed.
        """
        response = await http_client().get(self.metrics_url)
        text = (await response.content()).decode()
        for family in text_string_to_metric_families(text):
            for found in family.samples:
                if found.name == name and found.labels == labels:
                    return float(found.value)
        return None

    def access_log(self) -> Iterator[dict[str, Any]]:
        return (line for line in self.lines if line.get("type") == "access")

    async def settled_access_log(self, wait: float = 0.5) -> list[dict[str, Any]]:
        """
        The access lines, once those of the requests answered so far are
        written: the gateway writes them within 50 ms of the answer.
        """
        await sleep(wait)
        return list(self.access_log())

    def wait_for_event(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> Deferred[str]:
        """
        Fire once a JSON log event satisfying C{predicate} was written.
        """

        def matches(line: str) -> bool:
            try:
                event = json.loads(line)
            except ValueError:
                return False
            return isinstance(event, dict) and predicate(event)

        return self.wait_for_line(matches, timeout)


async def gateway_to_stub(
    case: TestCase, config: dict[str, Any], env: dict[str, str] | None = None
) -> tuple[GatewayProcess, StubProcessor]:
    """
    A stub processor and a gateway (C{config}) forwarding to it, both
    stopped at the end of C{case}.
    """
    stub = StubProcessor()
    url = await stub.start()
    case.addCleanup(stub.stop)
    gateway = GatewayProcess({**config, "alert_processor": {"endpoint": url, **config.get("alert_processor", {})}}, env)
    await gateway.start()
    case.addCleanup(gateway.stop)
    return gateway, stub


def http_client() -> HTTPClient:
    """
    A treq client without persistent connections, so no pool outlives the
    test.
    """
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


def json_headers(token: str | None = None, request_id: str | None = None) -> dict[bytes | str, list[bytes | str]]:
    headers: dict[bytes | str, list[bytes | str]] = {
        b"Content-Type": [b"application/json"],
        b"User-Agent": [b"alertgateway-tests/1.0"],
    }
    if token is not None:
        headers[b"Authorization"] = [f"Bearer {token}".encode()]
    if request_id is not None:
        headers[b"X-Request-ID"] = [request_id.encode()]
    return headers


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)


# --- a real Prometheus Alertmanager -------------------------------------------


class AlertmanagerProcess(ManagedProcess):
    """
    Debian's C{prometheus-alertmanager} with one route to a webhook
    receiver, clustering off, short group timers, state in a temp dir.
    """

    def __init__(self, binary: str, webhook_url: str, token: str, group_interval: str = "1s") -> None:
        super().__init__()
        self.binary = binary
        self.directory = Path(tempfile.mkdtemp(prefix="alertmanager-test-"))
        # Alertmanager cannot bind port 0 and tell us which port it got.
        self.port = free_port()
        config = {
            "route": {
                "receiver": "gateway",
                "group_by": ["alertname"],
                "group_wait": "1s",
                "group_interval": group_interval,
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "gateway",
                    "webhook_configs": [
                        {
                            "url": webhook_url,
                            "send_resolved": True,
                            "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
                        }
                    ],
                }
            ],
        }
        self.config_path = self.directory / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 15.0) -> None:
        args = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ]
        self.spawn(args, dict(os.environ), str(self.directory))
        deadline = reactor.seconds() + timeout
        client = http_client()
        last = "no answer yet"
        while reactor.seconds() < deadline:
            if self.exit_code is not None:
                raise FailTest(f"alertmanager exited ({self.exit_code}):\n{self.output()}")
            try:
                response = await client.get(self.url + "/-/ready")
                await response.content()
            except Exception as e:
                last = repr(e)
            else:
                if response.code == 200:
                    return
                last = f"HTTP {response.code}"
            await sleep(0.1)
        await self.stop(signal.SIGKILL)
        raise FailTest(f"alertmanager not ready in {timeout}s ({last}):\n{self.output()}")

    def process_ended(self, code: int) -> None:
        super().process_ended(code)
        shutil.rmtree(self.directory, ignore_errors=True)
