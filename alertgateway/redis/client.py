# -*- test-case-name: tests.unit.test_redis_client -*-
"""
The gateway's connection to Redis: a small pool of txredisapi connections,
kept up with backoff, through which every shared-state operation goes.

Each operation is bounded (C{state.redis.timeout}, counting the wait for a
connection), timed into C{gateway_redis_latency_seconds} and, when it
fails, counted in C{gateway_redis_errors_total}.  While no connection is up
an operation fails at once with L{RedisUnavailable} instead of waiting for
one: the callers decide what to do then (C{state.redis.on_failure}).  Every
failure of Redis reaches the callers as a L{RedisError}, a
L{StateUnavailable} of the stores' hierarchy: an error reply keeps its
message (C{NOGROUP ...}), and nothing outside this module sees txredisapi.

Lua scripts are loaded once per Redis server and called by their SHA1; a
server that lost them (restarted, C{SCRIPT FLUSH}) gets them again on the
first C{NOSCRIPT}.

txredisapi drives its reconnections and reply timeouts from the global
reactor; everything of ours (timeouts, latency) uses the injected one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
import txredisapi
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from alertgateway.interfaces import IClientReactor
from alertgateway.observability.metrics import RedisMetrics
from alertgateway.redis._failures import classify, refusal
from alertgateway.state.errors import StateUnavailable

__all__ = ["RedisClient", "RedisError", "RedisSettings", "RedisUnavailable", "Script"]

_log = Logger()

# How often a client that txredisapi stopped reconnecting is started again.
_WATCHDOG_INTERVAL = 5.0


@attrs.frozen
class RedisSettings:
    """
    How to reach Redis, and how long to wait for it.  Secrets are kept out
    of C{repr}.

    @ivar url: C{redis://[user:password@]host:port/db}, or C{rediss://} for
        TLS.
    @ivar password: Wins over the URL's.
    @ivar key_prefix: Every key the gateway writes starts with it.
    @ivar timeout: Seconds for each answer, counting the wait for a
        connection.
    @ivar connect_timeout: Seconds for a connection to be made.
    @ivar pool_size: Connections kept open.
    @ivar ca_file: For C{rediss://}: the CA that signed the server's
        certificate (the system's trusted CAs when C{None}).
    """

    url: str = attrs.field(repr=False)
    password: str | None = attrs.field(default=None, repr=False)
    key_prefix: str = "alertgateway:"
    timeout: float = 1.0
    connect_timeout: float = 2.0
    pool_size: int = 4
    ca_file: str | None = None


class RedisError(StateUnavailable):
    """
    A Redis operation failed: Redis refused it (the message is its error
    reply, such as C{NOGROUP ...}), or could not answer (L{RedisUnavailable}).
    """


class RedisUnavailable(RedisError):
    """
    Redis could not answer: not connected, too slow, or not serving.
    """


@attrs.frozen
class Script:
    """
    A Lua script, called by its SHA1.
    """

    name: str
    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode("utf-8"), usedforsecurity=False).hexdigest()


@attrs.frozen
class _Address:
    host: str
    port: int
    db: int
    tls: bool
    username: str | None
    password: str | None


def _address(settings: RedisSettings) -> _Address:
    parts = urlsplit(settings.url)
    password = unquote(parts.password) if parts.password else None
    return _Address(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=int(parts.path.strip("/") or 0),
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        # A password given as a key (file, environment) wins over the URL's.
        password=settings.password or password,
    )


class _UnwrapTLS:
    """
    A TLS client endpoint that hands txredisapi its own protocol, not the
    TLS wrapper around it.
    """

    def __init__(self, wrapped: IStreamClientEndpoint) -> None:
        self._wrapped = wrapped

    def connect(self, factory: Any) -> Deferred[Any]:
        d: Deferred[Any] = self._wrapped.connect(factory)
        return d.addCallback(lambda protocol: getattr(protocol, "wrappedProtocol", protocol))


class _Factory(txredisapi.RedisFactory):  # type: ignore[misc]
    """
    txredisapi's pool factory, telling us when connections come and go.
    """

    def __init__(self, on_change: Callable[[int], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_change = on_change

    def addConnection(self, conn: Any) -> None:
        super().addConnection(conn)
        self._on_change(self.size)

    def delConnection(self, conn: Any) -> None:
        super().delConnection(conn)
        self._on_change(self.size)


class RedisClient:
    """
    Run commands and scripts on Redis, metered and bounded in time.

    @param reactor: Provides IReactorTime and IReactorTCP.
    @param name: Names the client in its log lines; a client that blocks on
        reads (the queue's) has one of its own.
    """

    def __init__(
        self,
        settings: RedisSettings,
        reactor: IClientReactor,
        metrics: RedisMetrics,
        *,
        name: str = "state",
    ) -> None:
        self.settings = settings
        self.prefix = settings.key_prefix
        self._reactor = reactor
        self._metrics = metrics
        self._address = _address(settings)
        self._name = name
        self._factory: _Factory | None = None
        self.up = False
        # Whether a connection was ever up: until then nothing went down.
        self.ever_up = False
        # Set by stop(): losing the connections then is what was asked for.
        self._stopping = False
        self._first_check: IDelayedCall | None = None
        self._listeners: list[Callable[[bool], None]] = []
        self._watchdog: LoopingCall | None = None

    def key(self, *parts: str) -> str:
        """
        A key of ours: the prefix, then C{parts} joined by C{:}.
        """
        return self.prefix + ":".join(parts)

    def on_state(self, listener: Callable[[bool], None]) -> None:
        """
        Call C{listener} with C{True} or C{False} when Redis comes up or
        goes away.
        """
        self._listeners.append(listener)

    def _endpoint(self) -> IStreamClientEndpoint | _UnwrapTLS:
        address = self._address
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            self._reactor, address.host, address.port, timeout=self.settings.connect_timeout
        )
        if address.tls:
            trust = platformTrust()
            if self.settings.ca_file:
                with open(self.settings.ca_file, "rb") as f:
                    trust = Certificate.loadPEM(f.read())
            return _UnwrapTLS(wrapClientTLS(optionsForClientTLS(address.host, trust), endpoint))
        return endpoint

    def start(self) -> None:
        """
        Start connecting, and reconnecting with backoff whenever the
        connection is lost.
        """
        self._stopping = False
        self._connect()
        self._first_check = self._reactor.callLater(self.settings.connect_timeout, self._still_connecting)
        self._watchdog = LoopingCall(self._revive)
        self._watchdog.clock = self._reactor
        self._watchdog.start(_WATCHDOG_INTERVAL, now=False)

    def _still_connecting(self) -> None:
        self._first_check = None
        # A connection lost since is an outage, and warned of as one.
        if not self.ever_up:
            seconds = self.settings.connect_timeout
            _log.warn(
                "No connection to Redis ({name}) {seconds}s after starting; still trying",
                name=self._name,
                seconds=seconds,
            )

    def _revive(self) -> None:
        """
        Start over when txredisapi gave up: it stops reconnecting for good
        when a connection is lost during its handshake (AUTH, SELECT),
        which a Redis restart can cause; a gateway must not stay
        disconnected for that.
        """
        factory = self._factory
        if factory is None or self.up or not factory.stopped:
            return
        _log.warn("The Redis client ({name}) stopped reconnecting; starting it again", name=self._name)
        factory.disconnect().addErrback(lambda _: None)
        self._connect()

    def _connect(self) -> None:
        address = self._address
        self._factory = _Factory(
            self._changed,
            uuid=f"{address.host}:{address.port}",
            # No SELECT for database 0: a connection lost during that
            # handshake makes txredisapi stop reconnecting for good.
            dbid=address.db or None,
            poolsize=self.settings.pool_size,
            isLazy=True,
            handler=txredisapi.ConnectionHandler,
            charset="utf-8",
            password=address.password,
            replyTimeout=self.settings.timeout,
            convertNumbers=False,
            username=address.username,
        )
        # Reconnect quickly at first, then back off to 10 s at most.
        self._factory.initialDelay = 0.2
        self._factory.maxDelay = 10
        self._factory.startConnecting(self._endpoint())

    def stop(self) -> Deferred[None]:
        """
        Close every connection and stop reconnecting.
        """
        self._stopping = True
        if self._first_check is not None and self._first_check.active():
            self._first_check.cancel()
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        factory, self._factory = self._factory, None
        if factory is None:
            return Deferred.fromCoroutine(_nothing())
        d: Deferred[Any] = factory.disconnect()
        return d.addBoth(lambda _: None)

    def _changed(self, size: int) -> None:
        up = size > 0
        if up == self.up:
            return
        self.up = up
        self.ever_up = self.ever_up or up
        self._metrics.up.set(1 if up else 0)
        if up or self._stopping:
            _log.info("{what} Redis ({name})", what="Connected to" if up else "Disconnected from", name=self._name)
        else:
            _log.warn("Lost every connection to Redis ({name}); reconnecting", name=self._name)
        for listener in list(self._listeners):
            listener(up)

    def command(self, operation: str, *args: Any) -> Deferred[Any]:
        """
        Run one command.

        @param operation: Names the operation in the metrics.
        @raise RedisUnavailable: Through the Deferred, when Redis cannot
            answer in time.
        @raise RedisError: Through the Deferred, when Redis refuses the
            command.
        """
        return self._run(operation, lambda handler: handler.execute_command(*args))

    def pipeline(self, operation: str, commands: Sequence[Sequence[Any]]) -> Deferred[list[Any]]:
        """
        Send several commands in one write, and collect their answers.
        """

        def _send(handler: Any) -> Deferred[list[Any]]:
            from twisted.internet.defer import gatherResults

            # One connection, so the commands go out back to back.
            d: Deferred[Any] = handler._factory.getConnection(peek=True)

            def _on(connection: Any) -> Deferred[list[Any]]:
                return gatherResults([connection.execute_command(*c) for c in commands], consumeErrors=True)

            return d.addCallback(_on)

        return self._run(operation, _send)

    def script(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Deferred[Any]:
        """
        Run a Lua script by its SHA1, loading it first if the server does
        not know it.
        """

        def _evalsha(handler: Any) -> Deferred[Any]:
            call: Deferred[Any] = handler.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)

            def _missing(failure: Failure) -> Any:
                if failure.check(txredisapi.ResponseError) and str(failure.value).startswith("NOSCRIPT"):
                    load: Deferred[Any] = handler.execute_command("SCRIPT", "LOAD", script.source)
                    return load.addCallback(
                        lambda _: handler.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                    )
                return failure

            return call.addErrback(_missing)

        return self._run(script.name, _evalsha)

    def _run(self, operation: str, call: Callable[[Any], Deferred[Any]]) -> Deferred[Any]:
        metrics = self._metrics
        if self._factory is None or not self.up:
            metrics.errors.labels(operation=operation, reason="unavailable").inc()
            return fail(RedisUnavailable("not connected to Redis"))
        started = self._reactor.seconds()
        try:
            d = call(self._factory.handler)
        except Exception as e:  # txredisapi raises when a connection just died
            metrics.errors.labels(operation=operation, reason="unavailable").inc()
            return fail(RedisUnavailable(str(e)))
        d.addTimeout(self.settings.timeout, self._reactor)

        def _done(result: Any) -> Any:
            metrics.latency.labels(operation=operation).observe(self._reactor.seconds() - started)
            return result

        def _failed(failure: Failure) -> Failure:
            reason = classify(failure)
            metrics.errors.labels(operation=operation, reason=reason).inc()
            if reason != "error":
                raise RedisUnavailable(f"{operation}: {failure.getErrorMessage() or repr(failure.value)}")
            refused = refusal(failure)
            if refused is not None:
                raise RedisError(str(refused)) from refused
            return failure

        return d.addCallbacks(_done, _failed)


async def _nothing() -> None:
    return None
