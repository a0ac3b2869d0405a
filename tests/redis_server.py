"""
A real C{redis-server} for the tests, started from PATH on an ephemeral
port in a temporary directory, with append-only persistence on (as the
README asks of production), so that a restart keeps what was written.

Missing, the tests that need it skip with the command that installs it;
under C{CI=true} they fail instead: CI must prove the Redis backends work.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from twisted.internet.task import deferLater
from twisted.trial.unittest import FailTest, SkipTest

__all__ = ["RedisServer", "require_redis", "until"]


def require_redis() -> str:
    """
    The path of C{redis-server}, or skip (fail under C{CI=true}).
    """
    path = shutil.which("redis-server")
    if path is not None:
        return path
    message = "redis-server not installed: apt-get install redis-server"
    if os.environ.get("CI") == "true":
        raise FailTest(f"{message} (required when CI=true)")
    raise SkipTest(message)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """
    Wait on the real reactor until C{condition} holds, or fail the test.
    """
    from twisted.internet import reactor

    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await deferLater(reactor, 0.01)
    raise FailTest(f"not reached within {timeout} s")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """
    One C{redis-server} process; L{stop} it in the test's cleanup.

    The process is driven synchronously (it starts in milliseconds): tests
    on the real reactor and tests that start gateways both use it.
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        tls: tuple[Path, Path, Path] | None = None,
        config_file: Path | None = None,
        port: int | None = None,
    ) -> None:
        """
        @param config_file: A configuration file to start from (the
            options below override it).
        @param port: Listen on this port (inside a network namespace of the
            test's own, say) rather than a free one.
        @param password: Ask clients for it (C{requirepass}).
        @param tls: Serve TLS only, with these certificate, key and CA
            files.
        """
        self.password = password
        self.tls = tls
        self.config_file = config_file
        self.binary = require_redis()
        self.directory = Path(tempfile.mkdtemp(prefix="alertgateway-redis-"))
        self.port = port or _free_port()
        self._fixed_port = port is not None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls is not None else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def _argv(self) -> list[str]:
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            cert, key, ca = self.tls
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert)]
            listen += ["--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        if self.password is not None:
            listen += ["--requirepass", self.password]
        if self.config_file is not None:
            return [self.binary, str(self.config_file), *listen]
        # Every write on disk before it is acknowledged: a kill loses nothing.
        durable = ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        return [self.binary, *durable, *listen]

    def start(self) -> RedisServer:
        """
        Start it (again, on the same port and data, after L{kill}) and
        wait until it answers.
        """
        for _ in range(5):
            self._process = subprocess.Popen(
                [*self._argv(), "--bind", "127.0.0.1", "--dir", str(self.directory), "--protected-mode", "no"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_answering():
                return self
            self._process.kill()
            self._process.wait()
            if self._fixed_port:
                break
            # The port was taken between choosing and binding: another.
            self.port = _free_port()
        raise RuntimeError("redis-server did not start")

    def _wait_answering(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if self.tls is not None or self.password is not None:
                        # Listening is all that can be seen without TLS or
                        # the password.
                        return True
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def kill(self) -> None:
        """
        Kill it (SIGKILL): what it had written to its append-only file
        comes back with L{start}.
        """
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def command(self, *args: str) -> bytes:
        """
        Run one command with a raw socket, for checks from outside the
        gateway (no client library in the way).
        """
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"".join(parts))
            return s.recv(1 << 20)
