# -*- test-case-name: tests.unit.test_service -*-
"""
The gateway as a C{MultiService}: its children are its parts (the SQLite
thread, the Redis client, the queue, the forwarder's workers, the periodic
work as C{TimerService}s, the listeners), started in that order.

Start: the parts, then (once the queue has replayed what it held: a new
alert must not be queued ahead of older ones of its key) the listeners;
ready once all listen.  A part that cannot start (a port taken, TLS files
that do not load, a queue database that cannot be opened) stops the process
with a non-zero exit, not a traceback.

Stop (SIGTERM under twistd) is one ordered drain, written out in
L{GatewayService.stopService}: not ready and refusing new webhooks, stop
listening for webhooks, let in-flight requests finish, drain the queue,
close the sink, stop the periodic work, close the queue and its thread,
close Redis and the HTTP pool, stop the probe and metrics listeners
(late, so the drain can be watched), and last write out the log lines still
waiting in their buffer.  The waits share one budget,
C{service.shutdown_grace}.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.error import ReactorNotRunning
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from alertgateway.app.build import Gateway, build
from alertgateway.app.listeners import listeners_for
from alertgateway.app.trees import build_sites
from alertgateway.config import GatewayConfig
from alertgateway.delivery.journal import Executor
from alertgateway.interfaces import IGatewayReactor
from alertgateway.state.sqlite import Restored, SQLiteState

__all__ = ["GatewayService", "Part"]

_log = Logger()

# How often replay keys whose messages can no longer be accepted are dropped.
_REPLAY_PRUNE_INTERVAL = 30.0


class Part(Service):
    """
    A part of the gateway that is started and stopped with it.

    @ivar started: What the last start gave (a Deferred for a part that
        starts asynchronously, such as a queue replaying its database).
    """

    def __init__(self, name: str, start: Callable[[], object], stop: Callable[[], object] = lambda: None) -> None:
        self.setName(name)
        self._start = start
        self._stop = stop
        self.started: Deferred[Any] = succeed(None)

    def startService(self) -> None:
        super().startService()
        self.started = maybeDeferred(self._start)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        stopped: Deferred[object] = maybeDeferred(self._stop)
        return stopped.addCallback(lambda _: None)


class GatewayService(MultiService):
    """
    The whole gateway, built from a validated configuration.

    @param executor: Runs SQLite calls (tests pass one that runs them
        inline); by default a thread of the service's own.
    """

    def __init__(
        self,
        config: GatewayConfig,
        reactor: IGatewayReactor,
        log_stream: IO[str] | None = None,
        executor: Executor | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self._reactor = reactor
        self.gateway = gateway = build(config, reactor, log_stream=log_stream, executor=executor)
        self.log_observer = gateway.log_observer
        self.metrics = gateway.metrics
        self.readiness = gateway.readiness
        self.queue = gateway.queue
        self.forwarder = gateway.forwarder
        self.breaker = gateway.breaker
        self.limiter = gateway.limiter
        self.state = gateway.state
        self.sites = sites = build_sites(gateway)
        self.site = sites.webhook
        self.probe_site = sites.probe
        self.metrics_site = sites.metrics
        self._front, self._back = listeners_for(
            config, reactor, gateway.tls, webhook=sites.webhook, probe=sites.probe, metrics=sites.metrics
        )
        self._queue_part = Part("queue", self._load_queue, self._close_queue)
        self._timers: list[Service] = []
        self._retry_timer: TimerService | None = None
        self._add_parts(gateway)
        self.metrics.ready.set(0)

    def _add_parts(self, gateway: Gateway) -> None:
        """
        The children, in the order they start.
        """
        config = self.config
        if gateway.own_executor is not None:
            Part("sqlite-thread", gateway.own_executor.start, gateway.own_executor.stop).setServiceParent(self)
        if gateway.redis is not None:
            Part("redis", gateway.redis.start, gateway.redis.stop).setServiceParent(self)
        self._queue_part.setServiceParent(self)
        Part("forwarder", gateway.forwarder.start, lambda: gateway.forwarder.stop(0)).setServiceParent(self)
        self._every(config.dedup.expire_interval, self._tick)
        if isinstance(gateway.state, SQLiteState):
            self._every(config.state.flush_interval, self._flush)
        self._every(_REPLAY_PRUNE_INTERVAL, gateway.replays.prune)
        if gateway.limiter is not None:
            self._every(gateway.limiter.interval, gateway.limiter.tick)
        if any(f.hostnames for f in self.sites.address_filters):
            self._every(config.security.resolve_interval, self._resolve_hostnames)
        if gateway.tls is not None:
            self._every(config.security.cert_reload_interval, self._reload_tls)
        self._front.setServiceParent(self)
        self._back.setServiceParent(self)

    def _every(self, interval: float, call: Callable[[], object]) -> TimerService:
        timer = TimerService(interval, call)
        timer.clock = self._reactor
        timer.setServiceParent(self)
        self._timers.append(timer)
        return timer

    def setServiceParent(self, parent: Any) -> None:
        super().setServiceParent(parent)
        # twistd asks the application for its log observer after building
        # it: this is how logging.format and logging.level take effect.
        if isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.log_observer)

    # Starting.

    def startService(self) -> None:
        # A service may be started again after a stop (not under twistd,
        # but by anything that embeds it).
        self.readiness.start()
        self.gateway.log_buffer.buffered(self._reactor)
        problem = self.gateway.tls_problem
        if problem is not None:
            Service.startService(self)
            self._fail(f"TLS: {problem}")
            return
        super().startService()
        self._queue_part.started.addCallbacks(self._open, self._cannot_load)

    def _load_queue(self) -> Deferred[None]:
        """
        Replay what the durable queue holds, before anything new is taken;
        then take the dead letters marked for retry, periodically.
        """
        gateway = self.gateway
        durable = gateway.durable
        if durable is None:
            return succeed(None)
        Path(self.config.queue.path).parent.mkdir(parents=True, exist_ok=True)

        def _adopt_retried(_: object = None) -> None:
            timer = TimerService(self.config.queue.retry_interval, durable.adopt_retried)
            timer.clock = self._reactor
            timer.startService()
            self._retry_timer = timer

        if gateway.redis_queue is not None:
            return gateway.redis_queue.start().addCallback(_adopt_retried)

        def _loaded(count: int) -> Deferred[None] | None:
            _log.info("Queue {path}: {count} alerts to deliver from before", path=self.config.queue.path, count=count)
            _adopt_retried()
            state = gateway.state
            if isinstance(state, SQLiteState):
                return state.restore(self._reactor.seconds()).addCallback(self._restored, count)
            return None

        return durable.load().addCallback(_loaded)

    def _restored(self, restored: Restored, queued: int) -> None:
        """
        The decisions from before are back: so are the signatures already
        accepted.
        """
        for key, until in restored.replay_keys:
            self.gateway.replays.remember(key, until)
        _log.info(
            "Restored {episodes} episodes, {storms} open storms with {members} waiting members,"
            " {replays} signatures and {queued} queued alerts from {path} in {seconds:.2f}s",
            episodes=restored.episodes,
            storms=restored.storms,
            members=restored.members,
            replays=restored.replays,
            queued=queued,
            path=self.config.queue.path,
            seconds=restored.seconds,
        )

    def _open(self, _: object) -> None:
        d = DeferredList([self._front.open(), self._back.open()], fireOnOneErrback=True, consumeErrors=True)
        d.addCallbacks(self._listening, self._cannot_listen)

    def _listening(self, _: object) -> None:
        if self.running and self.readiness.started():
            self.metrics.ready.set(1)
            _log.info("Ready")

    def _cannot_listen(self, failure: Failure) -> None:
        reason = getattr(failure.value, "subFailure", failure)
        self._fail(str(reason.value))

    def _cannot_load(self, failure: Failure) -> None:
        _log.critical("Cannot open the queue {path}: {reason}", path=self.config.queue.path, reason=str(failure.value))
        self._exit()

    def _fail(self, reason: str) -> None:
        _log.critical("Cannot listen: {reason}", reason=reason)
        self._exit()

    def _exit(self) -> None:
        # Make the process exit non-zero instead of running without a
        # listener; the supervisor sees the failure.
        self._reactor.addSystemEventTrigger("after", "shutdown", exit_nonzero)
        try:
            self._reactor.stop()
        except ReactorNotRunning:
            # twistd starts the service before running the reactor, and
            # endpoints bind synchronously: stopping must wait until it runs
            # or the process would hang without a listener.
            self._reactor.callWhenRunning(self._reactor.stop)

    # Periodic work.

    def _flush(self) -> Deferred[None]:
        state = self.gateway.state
        assert isinstance(state, SQLiteState)
        return state.flush().addErrback(
            lambda f: _log.warn("Cannot write the state's bookkeeping yet: {error}", error=str(f.value))
        )

    def _tick(self) -> Deferred[None]:
        self.forwarder.refresh_age()
        return self.gateway.backlog.tick()

    def _resolve_hostnames(self) -> Deferred[None]:
        resolver = self._reactor.nameResolver
        filters = [f for f in self.sites.address_filters if f.hostnames]
        return DeferredList([f.refresh(resolver) for f in filters]).addCallback(lambda _: None)

    def _reload_tls(self) -> None:
        tls = self.gateway.tls
        if tls is not None and tls.refresh():
            self.metrics.tls_reloads.inc()

    # Stopping: the one ordered drain.

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        gateway = self.gateway
        reactor = self._reactor
        self.readiness.stop(reactor.seconds())
        self.metrics.ready.set(0)
        deadline: float = reactor.seconds() + self.config.service.shutdown_grace

        def remaining() -> float:
            return max(0.0, deadline - float(reactor.seconds()))

        _log.info(
            "Shutting down: new webhooks are answered 503 for {grace:g}s while the queue drains",
            grace=self.config.service.shutdown_grace,
        )
        # The listeners stay open for the grace period: a sender still
        # routed here (a Service's endpoints take a while to change) gets
        # 503 shutting-down, which it retries elsewhere, rather than a
        # refused connection.  Sharing the port with other processes
        # (reuse_port), they close at once: the kernel then sends every new
        # connection to the others.
        linger = not self.config.service.reuse_port
        d = succeed(None) if linger else self._front.close()
        d.addCallback(lambda _: self.site.when_idle().addTimeout(remaining(), reactor))
        d.addErrback(lambda f: _log.warn("In-flight requests still open at the end of the grace period"))
        d.addCallback(lambda _: gateway.forwarder.stop(remaining()))
        d.addCallback(lambda _: self._stop_child("forwarder"))
        d.addCallback(lambda _: gateway.sink.close())
        if linger:
            d.addCallback(lambda _: deferLater(reactor, remaining()))
            d.addCallback(lambda _: self._front.close())
        # No periodic work (a storm flush into the queue) once the queue
        # and Redis are closing.
        d.addCallback(lambda _: self._stop_timers())
        d.addCallback(lambda _: self._flush() if isinstance(gateway.state, SQLiteState) else None)
        d.addCallback(lambda _: self._stop_child("queue"))
        d.addCallback(lambda _: self._stop_child("sqlite-thread"))
        d.addCallback(lambda _: self._stop_child("redis"))
        d.addCallback(lambda _: gateway.pool.closeCachedConnections() if gateway.pool is not None else None)
        d.addCallback(lambda _: self._back.close())
        d.addErrback(lambda f: _log.failure("Error during shutdown", failure=f))
        d.addCallback(self._stopped)
        return d

    def _stop_child(self, name: str) -> Deferred[None] | None:
        if name not in self.namedServices:
            return None
        child = self.getServiceNamed(name)
        if not child.running:
            return None
        d: Deferred[None] = maybeDeferred(child.stopService)
        return d

    def _stop_timers(self) -> Deferred[None]:
        retry = self._retry_timer
        timers = [t for t in [*self._timers, retry] if t is not None and t.running]
        self._retry_timer = None
        return DeferredList([maybeDeferred(t.stopService) for t in timers], consumeErrors=True).addCallback(
            lambda _: None
        )

    def _close_queue(self) -> Deferred[None] | None:
        gateway = self.gateway
        if gateway.redis_queue is not None:
            # Gives its partitions back to the other replicas at once, and
            # closes its fallback journal.
            d = gateway.redis_queue.stop()
        elif gateway.durable is not None:
            d = gateway.durable.journal.close()
        else:
            return None
        return d.addErrback(lambda f: _log.error("Cannot close the queue database: {error}", error=str(f.value)))

    def _stopped(self, _: object) -> None:
        _log.info("Stopped")
        # The last lines out now, and whatever is logged after (twistd's own
        # last words) at once: the reactor that would flush them is
        # stopping.
        self.gateway.log_buffer.direct()
        # twistd re-raises the signal that stopped the reactor so the process
        # dies "by SIGTERM"; after a clean drain a plain exit 0 is the truth,
        # and what supervisors expect from a graceful stop.
        if getattr(self._reactor, "_exitSignal", None) == signal.SIGTERM:
            self._reactor._exitSignal = None  # type: ignore[attr-defined]


def exit_nonzero() -> None:
    os._exit(1)
