# -*- test-case-name: tests.unit.test_service -*-
"""
The gateway's object graph, built from a validated configuration in one
place: the queue and its store, the sink and the forwarder, the decision
state, admission, the guards and the resource trees.

Nothing here starts anything: L{alertgateway.app.service} owns the lifecycle.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

import attrs
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, Logger
from twisted.web.client import HTTPConnectionPool

from alertgateway.app import delivery_parts, settings
from alertgateway.config import GatewayConfig, StateBackend
from alertgateway.core.decider import DeciderSettings
from alertgateway.delivery.breaker import CircuitBreaker
from alertgateway.delivery.durable import DurableQueue
from alertgateway.delivery.executor import ThreadExecutor
from alertgateway.delivery.forwarder import Forwarder
from alertgateway.delivery.journal import Executor
from alertgateway.delivery.queue import DeliveryQueue
from alertgateway.delivery.sinks import Sink
from alertgateway.delivery.timeouts import AdaptiveTimeout
from alertgateway.guards.ratelimit import Limiter, RateLimiter
from alertgateway.guards.replays import ReplayCache
from alertgateway.intake.admission import Admission
from alertgateway.intake.backlog import StormBacklog
from alertgateway.intake.outcomes import Outcomes
from alertgateway.interfaces import IGatewayReactor
from alertgateway.observability.access import AccessLog, access_log
from alertgateway.observability.logs import LineBuffer, make_logs
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.state.memory import MemoryState
from alertgateway.state.ports import StateStore, Tracked
from alertgateway.state.sqlite import SQLiteState
from alertgateway.tls import ReloadingServerTLS, TLSFilesError
from alertgateway.web.health import Readiness

__all__ = ["Gateway", "build"]

_log = Logger()

# How often a synchronous request reads whether another replica delivered
# its alerts (queue.backend: redis).
SHARED_QUEUE_POLL = 0.1


if TYPE_CHECKING:
    # Imported where Redis is configured: unused, its modules and their
    # dependencies take 4.5 MB of a gateway's memory.
    from alertgateway.redis.client import RedisClient
    from alertgateway.redis.failover import Failover, SharedReplays
    from alertgateway.redis.queue import RedisQueue


@attrs.define
class Gateway:
    """
    Every part of one gateway, wired together.

    @ivar durable: The SQLite queue: the queue itself, or the Redis
        queue's fallback; C{None} with the memory queue.
    @ivar own_executor: The SQLite thread, when the gateway runs its own.
    @ivar tls: The webhook listener's TLS, unless its files could not be
        loaded (then C{tls_problem} says why, reported at start).
    """

    config: GatewayConfig
    reactor: IGatewayReactor
    log_observer: ILogObserver
    # Where log lines wait on their way out, the access log's too.
    log_buffer: LineBuffer
    # None with logging.access_log: false, or a level above info.
    access_log: AccessLog | None
    metrics: GatewayMetrics
    readiness: Readiness
    decider: DeciderSettings
    own_executor: ThreadExecutor | None
    redis: RedisClient | None
    failover: Failover | None
    queue: DeliveryQueue
    durable: DurableQueue | None
    # The queue, when it is the Redis one.
    redis_queue: RedisQueue | None
    pool: HTTPConnectionPool | None
    sink: Sink
    breaker: CircuitBreaker | None
    forwarder: Forwarder
    state: StateStore
    backlog: StormBacklog
    admission: Admission
    outcomes: Outcomes
    replays: ReplayCache
    shared_replays: SharedReplays | None
    limiter: Limiter | None
    tls: ReloadingServerTLS | None
    tls_problem: str | None


def build(
    config: GatewayConfig,
    reactor: IGatewayReactor,
    *,
    log_stream: IO[str] | None = None,
    executor: Executor | None = None,
) -> Gateway:
    """
    Build every part of a gateway from C{config}.

    @param executor: Runs SQLite calls; by default a thread of the
        gateway's own (tests pass one that runs them inline).
    """
    metrics = GatewayMetrics(counting=config.metrics.enabled)
    logs = make_logs(log_stream or sys.stdout, config.logging.format, config.logging.level, reactor)
    own_executor = None
    if executor is None and config.queue.backend in ("sqlite", "redis"):
        executor = own_executor = ThreadExecutor(reactor)
    redis: RedisClient | None = None
    failover: Failover | None = None
    if config.state.backend == "redis" or config.queue.backend == "redis":
        from alertgateway.redis.client import RedisClient
        from alertgateway.redis.failover import Failover

        # One connection pool for everything shared through Redis.
        redis = RedisClient(settings.redis_settings(config.state.redis), reactor, metrics.redis)
        failover = Failover(redis, config.state.redis.on_failure, metrics.redis)
    else:
        # A gateway without Redis exports no Redis series: an alert on
        # gateway_redis_up == 0 must not fire for it.
        metrics.redis.forget()
    queue, durable, redis_queue = delivery_parts.queue(config, reactor, executor, redis, failover)
    processor = config.alert_processor
    timeouts = (
        AdaptiveTimeout(minimum=processor.timeout_min, maximum=processor.timeout)
        if processor.adaptive_timeout
        else None
    )
    sink, pool, client = delivery_parts.sink(config, reactor, timeouts)
    metrics.delivery.forward_timeout.set(processor.timeout)
    breaker = delivery_parts.breaker(config, reactor, metrics, client)
    forwarder = Forwarder(
        queue,
        sink,
        clock=reactor,
        metrics=metrics.delivery,
        max_in_flight=processor.max_in_flight,
        max_retries=processor.max_retries,
        batch_size=processor.batch_size,
        batch_linger=processor.batch_linger,
        breaker=breaker,
        timeouts=timeouts,
    )
    decider = settings.decider_settings(config)
    state, local = _state(config, reactor, metrics, decider, redis, failover, queue, durable)
    if local is not None:
        # In memory the gauges read the state when scraped, at no cost per
        # request; elsewhere counting costs a round trip, made by the tick.
        metrics.decisions.dedup_tracked.set_function(lambda: local.tracked_episodes)
        metrics.decisions.storms_active.set_function(lambda: local.active_storms)
    backlog = StormBacklog(
        clock=reactor,
        submit=forwarder.submit,
        room=forwarder.room,
        gauges=_gauges(metrics) if local is None else None,
    )
    backlog.attach(state)
    admission = Admission(
        state,
        clock=reactor,
        submit=forwarder.submit,
        room=forwarder.room,
        backlog=backlog,
        metrics=metrics.decisions,
        environments=frozenset(decider.rules),
        default_environment=decider.default_environment,
    )
    outcomes = Outcomes(
        state, clock=reactor, poll_interval=SHARED_QUEUE_POLL if config.queue.backend == "redis" else None
    )
    forwarder.subscribe(outcomes.delivered)
    replays = ReplayCache(reactor, ttl=settings.replay_window(config))
    shared_replays: SharedReplays | None = None
    if redis is not None and failover is not None and config.state.backend == "redis":
        from alertgateway.redis.failover import SharedReplays
        from alertgateway.redis.replays import RedisReplays

        shared_replays = SharedReplays(RedisReplays(redis, reactor), replays, failover)
    tls, tls_problem = _tls(config, reactor, metrics)
    return Gateway(
        config=config,
        reactor=reactor,
        log_observer=logs.observer,
        log_buffer=logs.buffer,
        access_log=access_log(logs) if config.logging.access_log else None,
        metrics=metrics,
        readiness=Readiness(),
        decider=decider,
        own_executor=own_executor,
        redis=redis,
        failover=failover,
        queue=queue,
        durable=durable,
        redis_queue=redis_queue,
        pool=pool,
        sink=sink,
        breaker=breaker,
        forwarder=forwarder,
        state=state,
        backlog=backlog,
        admission=admission,
        outcomes=outcomes,
        replays=replays,
        shared_replays=shared_replays,
        limiter=_limiter(config, reactor, redis, failover),
        tls=tls,
        tls_problem=tls_problem,
    )


def _state(
    config: GatewayConfig,
    reactor: IGatewayReactor,
    metrics: GatewayMetrics,
    decider: DeciderSettings,
    redis: RedisClient | None,
    failover: Failover | None,
    queue: DeliveryQueue,
    durable: DurableQueue | None,
) -> tuple[StateStore, MemoryState | None]:
    """
    The state store, and the memory store (on its own, or under the SQLite
    state) when it is the only one.
    """
    evictions = metrics.decisions.dedup_evictions
    max_bytes = config.state.max_bytes
    if config.state.backend == StateBackend.SQLITE:
        assert durable is not None
        stored = SQLiteState(
            decider,
            durable.journal,
            clock=reactor.seconds,
            max_tracked=config.dedup.max_tracked,
            max_bytes=max_bytes,
            on_evict=evictions.inc,
        )
        metrics.decisions.state_bytes.set_function(lambda: stored.bytes)
        return stored, stored
    if config.state.backend != StateBackend.REDIS or redis is None or failover is None:
        local = MemoryState(decider, max_tracked=config.dedup.max_tracked, max_bytes=max_bytes, on_evict=evictions.inc)
        metrics.decisions.state_bytes.set_function(lambda: local.bytes)
        return local, local
    local = MemoryState(decider, max_tracked=config.dedup.max_tracked, max_bytes=max_bytes)
    # What this process keeps: the fallback's state (Redis keeps the rest).
    metrics.decisions.state_bytes.set_function(lambda: local.bytes)
    from alertgateway.redis.decisions import RedisState
    from alertgateway.redis.failover import FailoverState

    shared = RedisState(
        redis,
        reactor,
        decider,
        max_tracked=config.dedup.max_tracked,
        # The Redis queue writes each decision with its envelopes, in one
        # script; a queue elsewhere takes it after, and the state takes back
        # what it refuses.
        queue_in_redis=config.queue.backend == "redis",
        pause=lambda seconds: deferLater(reactor, seconds),
    )
    return FailoverState(shared, local, failover), None


def _gauges(metrics: GatewayMetrics) -> Callable[[Tracked], None]:
    evicted = [0]

    def _set(tracked: Tracked) -> None:
        decisions = metrics.decisions
        decisions.dedup_tracked.set(tracked.episodes)
        decisions.storms_active.set(tracked.storms)
        if tracked.evictions > evicted[0]:
            decisions.dedup_evictions.inc(tracked.evictions - evicted[0])
            evicted[0] = tracked.evictions

    return _set


def _limiter(
    config: GatewayConfig, reactor: IGatewayReactor, redis: RedisClient | None, failover: Failover | None
) -> Limiter | None:
    limits = config.rate_limiting
    if not limits.enabled:
        return None
    local = RateLimiter(
        reactor,
        global_limit=limits.global_limit,
        burst=limits.burst_size,
        endpoint_limits=settings.endpoint_limits(config),
        per_client_limit=limits.per_client_limit,
        max_clients=limits.max_tracked_clients,
    )
    if redis is None or failover is None or config.state.backend != "redis":
        return local
    from alertgateway.redis.failover import FailoverLimiter
    from alertgateway.redis.limits import RedisRateLimiter

    shared = RedisRateLimiter(
        redis,
        reactor,
        global_limit=limits.global_limit,
        burst=limits.burst_size,
        endpoint_limits=settings.endpoint_limits(config),
        per_client_limit=limits.per_client_limit,
    )
    return FailoverLimiter(shared, local, failover)


def _tls(
    config: GatewayConfig, reactor: IGatewayReactor, metrics: GatewayMetrics
) -> tuple[ReloadingServerTLS | None, str | None]:
    files = config.security.tls_files()
    if files is None or config.service.listen:
        return None, None
    webhooks = metrics.webhooks

    def _refused(reason: str) -> None:
        # Refused before any HTTP request, so before any endpoint.
        webhooks.refused("tls", reason)

    try:
        return ReloadingServerTLS(files, clock=reactor, on_refused=_refused), None
    except TLSFilesError as e:
        # Reported when starting, through the same path as a port that
        # cannot be bound: a log line and a non-zero exit, not a traceback
        # out of twistd.
        return None, str(e)
