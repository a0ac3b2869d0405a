# -*- test-case-name: tests.unit.test_service -*-
"""
The delivery part of the gateway's object graph: where accepted alerts wait
(the queue), where they go (the sink) and when sending pauses (the circuit
breaker, with the processor's health check).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from treq.client import HTTPClient
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool

from alertgateway.app import settings
from alertgateway.config import GatewayConfig
from alertgateway.delivery.breaker import BreakerState, CircuitBreaker
from alertgateway.delivery.durable import DurableQueue
from alertgateway.delivery.http import BytesProducer, HTTPSink
from alertgateway.delivery.journal import Executor, SQLiteJournal
from alertgateway.delivery.pool import QuietConnectionPool
from alertgateway.delivery.probe import ProcessorProbe
from alertgateway.delivery.queue import DeliveryQueue, MemoryQueue
from alertgateway.delivery.sinks import FileSink, Sink
from alertgateway.delivery.timeouts import AdaptiveTimeout
from alertgateway.interfaces import IGatewayReactor
from alertgateway.observability.metrics import GatewayMetrics

if TYPE_CHECKING:
    # Imported where Redis is configured: unused, its modules cost 4.5 MB.
    from alertgateway.redis.client import RedisClient
    from alertgateway.redis.failover import Failover
    from alertgateway.redis.queue import RedisQueue

__all__ = ["breaker", "queue", "sink"]

_log = Logger()


def queue(
    config: GatewayConfig,
    reactor: IGatewayReactor,
    executor: Executor | None,
    redis: RedisClient | None,
    failover: Failover | None,
) -> tuple[DeliveryQueue, DurableQueue | None, RedisQueue | None]:
    chosen = config.queue
    if chosen.backend == "memory":
        return MemoryQueue(chosen.max_items, chosen.max_bytes), None, None
    assert executor is not None
    journal = SQLiteJournal(chosen.path, executor, clock_seconds=reactor.seconds, synchronous=chosen.synchronous)
    durable = DurableQueue(journal, max_items=chosen.max_items, max_bytes=chosen.max_bytes)
    if chosen.backend == "redis":
        from alertgateway.redis.queue import RedisQueue

        assert redis is not None and failover is not None
        # The SQLite queue holds what is accepted while Redis is down.
        redis_queue = RedisQueue(
            redis, durable, failover, reactor=reactor, settings=settings.redis_queue_settings(chosen)
        )
        return redis_queue, durable, redis_queue
    return durable, durable, None


def sink(
    config: GatewayConfig, reactor: IGatewayReactor, timeouts: AdaptiveTimeout | None
) -> tuple[Sink, HTTPConnectionPool | None, HTTPClient | None]:
    processor = config.alert_processor
    endpoint = processor.endpoint
    if endpoint.startswith("file:"):
        return FileSink(endpoint[len("file:") :]), None, None
    pool = QuietConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = processor.max_in_flight
    agent = Agent(reactor, pool=pool, connectTimeout=processor.timeout)
    client = HTTPClient(agent, data_to_body_producer=BytesProducer)
    timeout = timeouts.current if timeouts is not None else processor.timeout
    credential = (processor.auth_header, processor.auth_secret) if processor.auth_secret else None
    return HTTPSink(client, endpoint, clock=reactor, timeout=timeout, credential=credential), pool, client


def breaker(
    config: GatewayConfig, reactor: IGatewayReactor, metrics: GatewayMetrics, client: HTTPClient | None
) -> CircuitBreaker | None:
    """
    The circuit breaker, and the processor's health check that it starts
    while open (C{alert_processor.health_path}).
    """
    wanted = config.circuit_breaker
    processor = config.alert_processor
    delivery = metrics.delivery
    delivery.processor_up.set(1)
    if not wanted.enabled:
        return None
    # A name, not the URL: the metrics and the log are read by more people
    # than the configuration.
    target = processor.name
    delivery.breaker_state.labels(target=target).set(0)
    probe: ProcessorProbe | None = None

    def _transition(old: BreakerState, new: BreakerState) -> None:
        delivery.breaker_state.labels(target=target).set(new.gauge)
        delivery.breaker_transitions.labels(target=target, to=new.value).inc()
        _log.info("Circuit breaker for {target}: {old} -> {new}", target=target, old=old.value, new=new.value)
        if new is BreakerState.CLOSED:
            delivery.processor_up.set(1)
            if probe is not None:
                probe.stop()
        elif new is BreakerState.OPEN:
            if probe is None:
                delivery.processor_up.set(0)
            else:
                probe.start()

    made = CircuitBreaker(
        reactor,
        failure_threshold=wanted.failure_threshold,
        failure_ratio=wanted.failure_ratio,
        window=wanted.window,
        min_attempts=wanted.min_attempts,
        recovery_timeout=wanted.recovery_timeout,
        half_open_requests=wanted.half_open_requests,
        max_recovery_timeout=wanted.max_recovery_timeout,
        on_transition=_transition,
    )
    if processor.health_path is not None and client is not None:
        probe = ProcessorProbe(
            client,
            processor.endpoint.rstrip("/") + processor.health_path,
            clock=reactor,
            interval=processor.health_interval,
            timeout=min(processor.timeout, processor.health_interval),
            on_healthy=made.probe_now,
            on_state=lambda up: delivery.processor_up.set(1 if up else 0),
            headers={processor.auth_header: [processor.auth_secret]} if processor.auth_secret else None,
        )
        made.probe = probe
    return made
