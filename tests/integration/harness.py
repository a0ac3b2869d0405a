"""
Run the real plugin (C{twistd -n alertgateway}) as a subprocess on ephemeral
ports, and a stub Alert Processor in the test process, both on the real
reactor.

The gateway logs JSON; the harness reads the C{Listening for …} events to
learn the ports it bound (C{tcp:0}), so tests never race for a free port.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import yaml
from treq.client import HTTPClient
from twisted.internet import reactor as _global_reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures"
reactor: Any = _global_reactor


def fixture(name: str) -> bytes:
    """
    The bytes of a payload fixture: C{../shared/fixtures} beside the
    repository, or the copy under C{tests/fixtures}.
    """
    for folder in (REPO / "tests" / "fixtures", FIXTURES):
        path = folder / name
        if path.exists():
            return path.read_bytes()
    raise FileNotFoundError(name)


def twistd() -> str:
    return str(Path(sys.executable).with_name("twistd"))


@attrs.define
class Received:
    """
    One request the stub processor received.
    """

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class StubProcessor(Resource):
    """
    An Alert Processor that records what it receives and answers with the
    queued status codes (then 200).
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Received] = []
        self.codes: list[int] = []
        self.port: IListeningPort | None = None
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def render_POST(self, request: Any) -> bytes:
        headers = {k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        body = json.loads(request.content.read())
        code = self.codes.pop(0) if self.codes else 200
        request.setResponseCode(code)
        if code == 200:
            self.received.append(Received(request.path.decode(), headers, body))
            for count, waiter in list(self._waiters):
                if len(self.received) >= count:
                    self._waiters.remove((count, waiter))
                    waiter.callback(None)
        return b'{"ok":true}'

    async def start(self) -> str:
        self.port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(self))
        address: Any = self.port.getHost()
        return f"http://127.0.0.1:{address.port}"

    async def stop(self) -> None:
        if self.port is not None:
            await maybeDeferred(self.port.stopListening)

    def wait_for(self, count: int, timeout: float = 10.0) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if len(self.received) >= count:
            d.callback(None)
        else:
            self._waiters.append((count, d))
        return d.addTimeout(timeout, reactor)


class _GatewayProtocol(ProcessProtocol):
    def __init__(self, process: GatewayProcess) -> None:
        self._process = process
        self._buffer = b""

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._process.line_received(line.decode("utf-8", "replace"))

    def errReceived(self, data: bytes) -> None:
        self._process.stderr += data.decode("utf-8", "replace")

    def processEnded(self, reason: Failure) -> None:
        self._process.process_ended(reason)


class GatewayProcess:
    """
    A C{twistd -n alertgateway} subprocess with a configuration of the
    test's choosing (webhook and metrics on ephemeral loopback ports).
    """

    def __init__(self, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="alertgateway-test-"))
        base: dict[str, Any] = {
            "service": {"listen": ["tcp:0:interface=127.0.0.1"], "shutdown_grace": "5s"},
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
        self.raw_lines: list[str] = []
        self.stderr = ""
        self.ports: dict[str, int] = {}
        self.exit_code: int | None = None
        self._ready: Deferred[None] = Deferred()
        self._ended: Deferred[int] = Deferred()
        self._transport: Any = None

    def line_received(self, line: str) -> None:
        self.raw_lines.append(line)
        try:
            event = json.loads(line)
        except ValueError:
            return
        self.lines.append(event)
        if event.get("role") in ("webhook", "metrics") and "port" in event:
            self.ports[event["role"]] = int(event["port"])
        if event.get("message") == "Ready" and not self._ready.called:
            self._ready.callback(None)

    def process_ended(self, reason: Failure) -> None:
        value = reason.value
        if isinstance(value, ProcessDone):
            self.exit_code = 0
        elif isinstance(value, ProcessTerminated):
            self.exit_code = value.exitCode if value.exitCode is not None else -(value.signal or 0)
        if not self._ready.called:
            self._ready.errback(RuntimeError(f"gateway exited before ready:\n{self.output()}"))
        self._ended.callback(self.exit_code if self.exit_code is not None else -1)

    def output(self) -> str:
        return "\n".join(self.raw_lines) + "\n" + self.stderr

    async def start(self, timeout: float = 20.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        args = [twistd(), "-n", "--pidfile=", "alertgateway", "--config", str(self.config_path)]
        self._transport = reactor.spawnProcess(_GatewayProtocol(self), args[0], args, env=env, path=str(self.directory))
        await self._ready.addTimeout(timeout, reactor)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['webhook']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    def access_log(self) -> Iterator[dict[str, Any]]:
        return (line for line in self.lines if line.get("type") == "access")

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.exit_code is None and self._transport is not None:
            self._transport.signalProcess(signal.Signals(sig).name[3:])
        return await self._ended.addTimeout(timeout, reactor)

    async def ended(self, timeout: float = 20.0) -> int:
        return await self._ended.addTimeout(timeout, reactor)


def http_client() -> HTTPClient:
    """
    A treq client without persistent connections, so no pool outlives the
    test.
    """
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)
