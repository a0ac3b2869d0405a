"""
Several gateway replicas sharing one Redis (issue 6, "Done when"): two
C{twistd -n alertgateway} processes with C{state.backend: redis} and
C{queue.backend: redis} under the same key prefix, one stub processor.

What one replica has seen the other answers as a duplicate, and an alert
sent to both at once is forwarded once; an HA pair of real Alertmanagers
notifying different replicas reaches the processor once per alert; the
global rate limit holds for the replicas together; what a replica killed
with C{kill -9} had not delivered is delivered by the other; and a Redis
restart in the middle of the traffic loses nothing, answering 202 from
local memory (C{fail_open}) or 503 with C{Retry-After} (C{fail_closed}).

Every test starts a Redis of its own (L{tests.redis_server.RedisServer})
and a key prefix of its own.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import attrs
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, DeferredList
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest, TestCase

from tests.integration.harness import (
    AlertmanagerProcess,
    Answer,
    GatewayProcess,
    Received,
    StubProcessor,
    am_fingerprint,
    http_client,
    json_headers,
    reactor,
    require_binary,
    sleep,
)
from tests.redis_server import RedisServer

TOKEN = "replicas-itest-token-7c41d0"
WEBHOOK = "/webhook/prometheus"
# A processor outage as the stub plays it.
DOWN = Answer(503, {"Retry-After": "1"})
UP = Answer(200)
# When nothing more reached the processor this long after what was
# expected, nothing more was forwarded.
DELIVERY_GRACE = 1.0
PROBLEM_TYPES = ("state-unavailable", "queue-full")
T = TypeVar("T")
JSON: dict[bytes | str, list[bytes | str]] = {b"Content-Type": [b"application/json"]}


def _prefix() -> str:
    """
    A key prefix of the test's own.
    """
    return f"itest-replicas-{uuid.uuid4().hex[:10]}:"


def _config(
    processor: str,
    redis: RedisServer,
    prefix: str,
    on_failure: str = "fail_open",
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """
    A replica's configuration: shared state and queue in C{redis} under
    C{prefix}, a quick breaker and short retries, no storm aggregation (the
    tests send many alerts of one alertname), plus C{sections}.
    """
    config: dict[str, Any] = {
        "alert_processor": {"endpoint": processor, "max_retries": 0, "timeout": "1s"},
        "webhook": {"auth": {"token": TOKEN}},
        "storm": {"enabled": False},
        "circuit_breaker": {
            "failure_threshold": 3,
            "recovery_timeout": "300ms",
            "max_recovery_timeout": "500ms",
            "half_open_requests": 1,
        },
        "state": {
            "backend": "redis",
            "redis": {"url": redis.url, "key_prefix": prefix, "on_failure": on_failure, "timeout": "1s"},
        },
        "queue": {
            "backend": "redis",
            "path": "var/queue.db",
            "retry_interval": "300ms",
            "redis": {"partitions": 16, "claim_idle": "2s", "read_batch": 100},
        },
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


def _body(index: int, test: str, status: str = "firing") -> dict[str, Any]:
    """
    An Alertmanager webhook with one alert of its own (labels C{test} and
    C{n=index}).
    """
    labels = {"alertname": "ReplicaProbe", "namespace": "itest", "test": test, "n": str(index)}
    ends = "2026-11-26T04:20:00Z" if status == "resolved" else "0001-01-01T00:00:00Z"
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"replica probe {index}"},
        "startsAt": "2026-11-26T04:00:00Z",
        "endsAt": ends,
        "generatorURL": "",
        "fingerprint": am_fingerprint(labels),
    }
    return {
        "receiver": "gateway",
        "status": status,
        "alerts": [alert],
        "groupLabels": {"alertname": "ReplicaProbe"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="ReplicaProbe", n="{index}"}}',
        "truncatedAlerts": 0,
    }


def _fingerprint(index: int, test: str) -> str:
    return str(_body(index, test)["alerts"][0]["fingerprint"])


def _streams(records: Sequence[Received]) -> dict[str, list[tuple[str, str]]]:
    """
    What the processor received per fingerprint: (status, decision), in
    the order received.
    """
    streams: dict[str, list[tuple[str, str]]] = {}
    for record in records:
        streams.setdefault(record.body["fingerprint"], []).append((record.body["status"], record.body["decision"]))
    return streams


def _delivered(stub: StubProcessor) -> set[str]:
    return {r.body["fingerprint"] for r in stub.received}


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _all(coroutines: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """
    Run C{coroutines} side by side and wait for every one of them (even
    when one fails, so none is left running after the test); their
    results, or the first failure.
    """
    outcomes: list[tuple[bool, Any]] = await DeferredList(
        [Deferred.fromCoroutine(c) for c in coroutines], consumeErrors=True
    )
    for ok, value in outcomes:
        if not ok:
            assert isinstance(value, Failure)
            value.raiseException()
    return [value for _, value in outcomes]


@attrs.frozen
class Posted:
    """
    One webhook sent to a replica and the answer.
    """

    index: int
    replica: str
    code: int
    headers: dict[str, str]
    body: Any


class _ReplicaCase(TestCase):
    timeout = 45

    def redis(self) -> RedisServer:
        """
        A Redis of the test's own, stopped (its data removed) after
        everything else.
        """
        server = RedisServer().start()
        self.addCleanup(server.stop)
        return server

    async def stub(self) -> StubProcessor:
        stub = StubProcessor()
        await stub.start()
        self.addCleanup(stub.stop)
        return stub

    async def replica(self, stub: StubProcessor, redis: RedisServer, prefix: str, **options: Any) -> GatewayProcess:
        """
        A gateway forwarding to C{stub} through C{redis} (killed after the
        test, and then checked for tracebacks in its log), started and
        connected to Redis: until its first connection is up it would
        decide from local memory (C{fail_open}).
        """
        assert stub.port is not None
        url = f"http://127.0.0.1:{stub.port.getHost().port}"  # type: ignore[attr-defined]
        gateway = GatewayProcess(_config(url, redis, prefix, **options))
        # After it stopped: nothing went wrong unnoticed.
        self.addCleanup(self.no_tracebacks, gateway)
        await gateway.start()
        self.addCleanup(gateway.stop, signal.SIGKILL)
        await self.redis_up(gateway, 1)
        return gateway

    def no_tracebacks(self, gateway: GatewayProcess) -> None:
        """
        Fail if the gateway logged a traceback (an unhandled error): Redis
        going away must be handled, not crash a callback chain.
        """
        output = gateway.output()
        for marker in ("Traceback (", "Unhandled error", "Unhandled Error"):
            self.assertNotIn(marker, output, output[-6000:])

    async def replicas(
        self, stub: StubProcessor, redis: RedisServer, prefix: str, **options: Any
    ) -> tuple[GatewayProcess, GatewayProcess]:
        """
        Two replicas A and B of one configuration, started side by side.
        """
        a, b = await _all([self.replica(stub, redis, prefix, **options) for _ in range(2)])
        return a, b

    async def post(self, gateway: GatewayProcess, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        response = await http_client().post(
            gateway.url + WEBHOOK, data=json.dumps(body).encode(), headers=json_headers(TOKEN)
        )
        text = await response.content()
        headers = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
        return response.code, headers, json.loads(text) if text else None

    async def accept(self, gateway: GatewayProcess, body: dict[str, Any]) -> list[str]:
        """
        Post a webhook that must be accepted (202); the status the gateway
        gives each alert.
        """
        code, _, answer = await self.post(gateway, body)
        self.assertEqual(code, 202, answer)
        return [a["status"] for a in answer["alerts"]]

    async def ready(self, gateway: GatewayProcess) -> tuple[int, dict[str, Any]]:
        response = await http_client().get(gateway.url + "/health/ready")
        return response.code, json.loads(await response.content())

    async def counter(self, gateway: GatewayProcess, name: str, **labels: str) -> float:
        return await gateway.sample(name, **labels) or 0.0

    async def total(self, gateway: GatewayProcess, name: str) -> float:
        """
        The sum of every sample called C{name} on C{/metrics}, whatever
        its labels.
        """
        response = await http_client().get(gateway.metrics_url)
        text = (await response.content()).decode()
        return sum(
            float(s.value) for family in text_string_to_metric_families(text) for s in family.samples if s.name == name
        )

    async def eventually(
        self, check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0, interval: float = 0.1
    ) -> None:
        """
        Poll C{check} until it holds; past C{timeout} the test fails.
        """
        deadline = reactor.seconds() + timeout
        while not await check():
            if reactor.seconds() > deadline:
                raise FailTest(f"timed out after {timeout}s waiting for {what}")
            await sleep(interval)

    async def redis_up(self, gateway: GatewayProcess, value: int, timeout: float = 10.0) -> None:
        """
        Wait until C{gateway_redis_up} is C{value} on C{gateway}.
        """

        async def check() -> bool:
            return await gateway.sample("gateway_redis_up") == value

        try:
            await self.eventually(check, f"gateway_redis_up {value}", timeout)
        except FailTest:
            raise FailTest(f"gateway_redis_up never became {value}:\n{gateway.output()[-6000:]}") from None


class SharedDeduplicationTests(_ReplicaCase):
    async def test_alert_seen_by_one_replica_is_a_duplicate_on_the_other(self) -> None:
        """
        An alert posted to replica A and then the same alert to replica B:
        A answers it C{new}, B answers it C{duplicate} (with
        C{duplicateCount} 1) and counts it in
        C{gateway_alerts_deduplicated_total}; the processor receives each
        alert once, as C{new}.
        """
        redis, stub = self.redis(), await self.stub()
        a, b = await self.replicas(stub, redis, _prefix())
        count = 3
        for index in range(count):
            self.assertEqual(await self.accept(a, _body(index, "sequence")), ["new"])
            code, _, answer = await self.post(b, _body(index, "sequence"))
            self.assertEqual(code, 202, answer)
            [result] = answer["alerts"]
            self.assertEqual(
                (result["status"], result["duplicateCount"], result["fingerprint"]),
                ("duplicate", 1, _fingerprint(index, "sequence")),
                answer,
            )
        await stub.wait_for(count)
        await sleep(DELIVERY_GRACE)
        self.assertEqual(
            _streams(stub.received), {_fingerprint(i, "sequence"): [("firing", "new")] for i in range(count)}
        )
        self.assertEqual(await self.counter(b, "gateway_alerts_deduplicated_total", source="alertmanager"), count)
        self.assertEqual(await self.counter(a, "gateway_alerts_deduplicated_total", source="alertmanager"), 0)

    async def test_same_alert_to_both_replicas_at_once_is_forwarded_once(self) -> None:
        """
        Each of several alerts posted to A and B at the same moment (every
        request in flight together): both answer 202, exactly one of the
        two says C{new} and the other C{duplicate}, and the processor
        receives exactly one C{new} per alert and nothing else.
        """
        redis, stub = self.redis(), await self.stub()
        replicas = await self.replicas(stub, redis, _prefix())
        count = 8
        answers = await _all(
            [self.post(gateway, _body(index, "race")) for index in range(count) for gateway in replicas]
        )
        self.assertEqual([code for code, _, _ in answers], [202] * 2 * count, [body for _, _, body in answers])
        statuses: dict[str, list[str]] = {}
        for _, _, answer in answers:
            for result in answer["alerts"]:
                statuses.setdefault(result["fingerprint"], []).append(result["status"])
        self.assertEqual(
            {f: sorted(s) for f, s in statuses.items()},
            {_fingerprint(i, "race"): ["duplicate", "new"] for i in range(count)},
        )
        await stub.wait_for(count)
        await sleep(DELIVERY_GRACE)
        self.assertEqual(_streams(stub.received), {_fingerprint(i, "race"): [("firing", "new")] for i in range(count)})
        duplicates = [
            await self.counter(g, "gateway_alerts_deduplicated_total", source="alertmanager") for g in replicas
        ]
        self.assertEqual(sum(duplicates), count)


class AlertmanagerPairTests(_ReplicaCase):
    async def _alertmanager(self, binary: str, gateway: GatewayProcess) -> AlertmanagerProcess:
        alertmanager = AlertmanagerProcess(binary, gateway.url + WEBHOOK, TOKEN, group_interval="500ms")
        await alertmanager.start()
        self.addCleanup(alertmanager.stop)
        return alertmanager

    async def _post_alerts(self, alertmanager: AlertmanagerProcess, alerts: list[dict[str, Any]]) -> None:
        """
        Give alerts to an Alertmanager, as Prometheus does.
        """
        response = await http_client().post(
            alertmanager.url + "/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers=JSON,
        )
        body = await response.content()
        self.assertEqual(response.code, 200, body)

    async def test_ha_alertmanager_pair_on_two_replicas_forwards_once(self) -> None:
        """
        Two real Alertmanagers (an HA pair, clustering off, so both notify)
        are given the same alerts, and each notifies a different replica:
        A and B each receive every alert (C{gateway_alerts_received_total}),
        between them answer each one C{duplicate} once
        (C{gateway_alerts_deduplicated_total} over both is one per alert),
        and the processor receives each alert once, as C{new}.  Both then
        send the resolution: it is forwarded once per alert as well.
        """
        binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
        redis, stub = self.redis(), await self.stub()
        replicas = await self.replicas(stub, redis, _prefix())
        pair = await _all([self._alertmanager(binary, g) for g in replicas])

        # Started now: an alert older than group_wait would make Alertmanager
        # notify at once, maybe before the other alerts of the call are in,
        # and then again with all of them.
        started = datetime.now(UTC)
        labels = [
            {"alertname": "ReplicaPairE2E", "instance": f"db-{n}:9187", "namespace": "payments", "severity": "page"}
            for n in range(3)
        ]
        fingerprints = {am_fingerprint(ls) for ls in labels}
        firing = [{"labels": ls, "startsAt": _rfc3339(started)} for ls in labels]
        await _all([self._post_alerts(am, firing) for am in pair])

        async def deduplicated(total: int) -> bool:
            counts = [
                await self.counter(g, "gateway_alerts_deduplicated_total", source="alertmanager") for g in replicas
            ]
            return sum(counts) >= total

        await self.eventually(lambda: deduplicated(len(labels)), "a duplicate of every alert", timeout=15)
        await stub.wait_for(len(labels))
        await sleep(DELIVERY_GRACE)
        self.assertEqual(_streams(stub.received), {f: [("firing", "new")] for f in fingerprints})
        for gateway in replicas:
            received = await self.counter(
                gateway, "gateway_alerts_received_total", source="alertmanager", status="firing"
            )
            self.assertEqual(received, len(labels), gateway.output()[-4000:])

        ended = datetime.now(UTC) - timedelta(seconds=1)
        resolved = [{**alert, "endsAt": _rfc3339(ended)} for alert in firing]
        await _all([self._post_alerts(am, resolved) for am in pair])
        await self.eventually(lambda: deduplicated(2 * len(labels)), "a duplicate of every resolution", timeout=15)
        await stub.wait_for(2 * len(labels))
        await sleep(DELIVERY_GRACE)
        self.assertEqual(
            _streams(stub.received), {f: [("firing", "new"), ("resolved", "resolved")] for f in fingerprints}
        )
        duplicates = [
            await self.counter(g, "gateway_alerts_deduplicated_total", source="alertmanager") for g in replicas
        ]
        self.assertEqual(sum(duplicates), 2 * len(labels))


class SharedRateLimitTests(_ReplicaCase):
    async def test_global_limit_holds_across_replicas(self) -> None:
        """
        With C{rate_limiting.global_limit} 6 a minute and C{burst_size} 5,
        twenty webhooks sent in turn to A and B: five are accepted in all
        (at most one more refilled meanwhile), not five per replica; both
        replicas accepted some and both refuse the rest with 503 (the
        default for an Alertmanager endpoint) C{rate-limited} (scope
        global) and C{Retry-After}.
        """
        redis, stub = self.redis(), await self.stub()
        burst = 5
        a, b = await self.replicas(
            stub, redis, _prefix(), rate_limiting={"enabled": True, "global_limit": 6, "burst_size": burst}
        )
        posted: list[Posted] = []
        for index in range(4 * burst):
            name, gateway = ("A", a) if index % 2 == 0 else ("B", b)
            code, headers, body = await self.post(gateway, _body(index, "rate"))
            posted.append(Posted(index, name, code, headers, body))
        accepted = [p for p in posted if p.code == 202]
        refused = [p for p in posted if p.code != 202]
        self.assertIn(len(accepted), (burst, burst + 1), [(p.replica, p.code) for p in posted])
        self.assertEqual({p.replica for p in accepted}, {"A", "B"})
        self.assertEqual({p.replica for p in refused}, {"A", "B"})
        # The burst is used first: every refusal comes after it.
        self.assertEqual([p.code for p in posted[:burst]], [202] * burst)
        for refusal in refused:
            self.assertEqual(refusal.code, 503, refusal)
            self.assertTrue(refusal.body["type"].endswith("rate-limited"), refusal)
            self.assertEqual(refusal.body["scope"], "global", refusal)
            self.assertGreater(int(refusal.headers["retry-after"]), 0, refusal)
        limited = [
            await self.counter(g, "gateway_rate_limited_total", endpoint=WEBHOOK, scope="global") for g in (a, b)
        ]
        self.assertEqual(sum(limited), len(refused))
        await stub.wait_for(len(accepted))
        self.assertEqual(_delivered(stub), {_fingerprint(p.index, "rate") for p in accepted})


class FailoverTests(_ReplicaCase):
    async def test_kill_9_of_a_replica_its_pending_alerts_delivered_by_the_other(self) -> None:
        """
        Replica A alone (every partition leased to it) accepts alerts while
        the processor answers 503, so they stay pending on A; B starts,
        then A is killed with C{kill -9} and the processor recovers: B takes
        over A's partitions after C{queue.redis.claim_idle} (2 s) and
        delivers every alert A accepted (at least once; none missing).
        """
        redis, stub = self.redis(), await self.stub()
        prefix = _prefix()
        stub.fallback = DOWN
        a = await self.replica(stub, redis, prefix)
        count = 6
        for index in range(count):
            self.assertEqual(await self.accept(a, _body(index, "crash")), ["new"])
        # A is trying to deliver them: they are its pending deliveries.
        await stub.wait_until(lambda: len(stub.attempts) >= 1)
        b = await self.replica(stub, redis, prefix)
        self.assertEqual(await a.stop(signal.SIGKILL), -signal.SIGKILL)
        killed = reactor.seconds()
        stub.fallback = UP
        expected = {_fingerprint(i, "crash") for i in range(count)}
        try:
            # claim_idle (2 s) for A's leases to lapse, then B's claim.
            await stub.wait_until(lambda: _delivered(stub) >= expected, timeout=10)
        except FailTest as e:
            raise FailTest(f"{e}\n--- replica B:\n{b.output()[-6000:]}") from None
        # Delivered by B: A was dead before the processor accepted anything.
        self.assertTrue(all(r.at >= killed for r in stub.received))
        self.assertEqual(_delivered(stub), expected)
        self.assertEqual({s for stream in _streams(stub.received).values() for s in stream}, {("firing", "new")})


class _Traffic:
    """
    One new alert after another, posted in turn to each replica until
    L{stop}: traffic in the middle of which Redis goes away and comes back.
    """

    def __init__(self, case: _ReplicaCase, replicas: dict[str, GatewayProcess], test: str) -> None:
        self._case = case
        self._replicas = list(replicas.items())
        self._test = test
        self.posted: list[Posted] = []
        self._running = True
        self._done: Deferred[None] = Deferred.fromCoroutine(self._send())

    async def _send(self) -> None:
        index = 0
        while self._running:
            name, gateway = self._replicas[index % len(self._replicas)]
            code, headers, body = await self._case.post(gateway, _body(index, self._test))
            self.posted.append(Posted(index, name, code, headers, body))
            index += 1
            await sleep(0.02)

    async def more(self, count: int, timeout: float = 10.0) -> None:
        """
        Wait until C{count} more webhooks were answered.
        """
        target = len(self.posted) + count

        async def check() -> bool:
            return len(self.posted) >= target

        await self._case.eventually(check, f"{count} more webhooks answered", timeout, interval=0.02)

    async def stop(self) -> list[Posted]:
        self._running = False
        await self._done
        return self.posted

    def fingerprints(self, code: int) -> set[str]:
        return {_fingerprint(p.index, self._test) for p in self.posted if p.code == code}


async def _expect_delivered(
    stub: StubProcessor, expected: set[str], replicas: tuple[GatewayProcess, GatewayProcess], timeout: float
) -> None:
    """
    Wait until every alert of C{expected} reached the processor; else fail
    with what is missing and the replicas' logs.
    """
    try:
        await stub.wait_until(lambda: _delivered(stub) >= expected, timeout=timeout)
    except FailTest as e:
        missing = sorted(expected - _delivered(stub))
        logs = "".join(f"\n--- {name}:\n{g.output()[-5000:]}" for name, g in zip("AB", replicas, strict=True))
        raise FailTest(f"{e}\nmissing: {missing}{logs}") from None


class RedisRestartTests(_ReplicaCase):
    async def test_fail_open_accepts_through_a_redis_restart_and_loses_nothing(self) -> None:
        """
        C{fail_open}, the processor down so that accepted alerts wait in the
        queue: Redis is killed in the middle of a stream of webhooks to A
        and B.  Every webhook is still answered 202; C{gateway_redis_up}
        drops to 0, C{/health/ready} stays 200 with C{redis.up} false, and
        C{gateway_redis_fallbacks_total{facility="dedup"}} counts the
        decisions taken from local memory (and C{gateway_redis_errors_total}
        the failed operations, beside the latencies of the ones before in
        C{gateway_redis_latency_seconds}).  Redis is started again (with
        its data), C{gateway_redis_up} is 1 again, the processor recovers,
        and every accepted alert, before, during and after the outage,
        reaches it.
        """
        redis, stub = self.redis(), await self.stub()
        stub.fallback = DOWN
        a, b = await self.replicas(stub, redis, _prefix())
        traffic = _Traffic(self, {"A": a, "B": b}, "open")
        try:
            await traffic.more(6)
            redis.kill()
            for gateway in (a, b):
                await self.redis_up(gateway, 0)
            await traffic.more(8)
            for gateway in (a, b):
                code, ready = await self.ready(gateway)
                self.assertEqual(code, 200, ready)
                self.assertEqual(ready["redis"], {"up": False, "onFailure": "fail_open"})
                fallbacks = await self.counter(gateway, "gateway_redis_fallbacks_total", facility="dedup")
                self.assertGreater(fallbacks, 0, gateway.output()[-4000:])
                self.assertGreater(await self.total(gateway, "gateway_redis_errors_total"), 0)
                self.assertGreater(await self.total(gateway, "gateway_redis_latency_seconds_count"), 0)
            redis.start()
            for gateway in (a, b):
                await self.redis_up(gateway, 1, timeout=15)
            await traffic.more(6)
        finally:
            posted = await traffic.stop()
        self.assertEqual({p.code for p in posted}, {202}, [(p.index, p.replica, p.code, p.body) for p in posted])

        stub.fallback = UP
        expected = traffic.fingerprints(202)
        await _expect_delivered(stub, expected, (a, b), timeout=20)
        self.assertEqual(_delivered(stub), expected)

    async def test_fail_closed_refuses_while_redis_is_down_then_delivers(self) -> None:
        """
        C{fail_closed}: with Redis killed in the middle of a stream of
        webhooks, every webhook is answered either 202 or 503
        (C{state-unavailable} or C{queue-full} problem+json with
        C{Retry-After}); once both replicas see Redis gone, webhooks are
        refused so and C{/health/ready} is 503 with C{redis} C{{up: false,
        onFailure: fail_closed}}.  With Redis started again both are ready
        and accept again, the refused webhooks sent again (as Alertmanager
        retries) are accepted, and every accepted alert reaches the
        processor.
        """
        redis, stub = self.redis(), await self.stub()
        a, b = await self.replicas(stub, redis, _prefix(), on_failure="fail_closed")
        traffic = _Traffic(self, {"A": a, "B": b}, "closed")
        try:
            await traffic.more(6)
            redis.kill()
            for gateway in (a, b):
                await self.redis_up(gateway, 0)
            await traffic.more(6)
            for gateway in (a, b):
                code, ready = await self.ready(gateway)
                self.assertEqual(code, 503, ready)
                self.assertEqual(ready["redis"], {"up": False, "onFailure": "fail_closed"})
                code, headers, problem = await self.post(gateway, _body(1000, "closed"))
                self.assertEqual(code, 503, problem)
                self.assertEqual(headers["content-type"], "application/problem+json")
                self.assertTrue(problem["type"].endswith(PROBLEM_TYPES), problem)
                self.assertGreater(int(headers["retry-after"]), 0)
            redis.start()
            for gateway in (a, b):
                await self.redis_up(gateway, 1, timeout=15)

                async def ready_again(gateway: GatewayProcess = gateway) -> bool:
                    return (await self.ready(gateway))[0] == 200

                await self.eventually(ready_again, "/health/ready 200 again")
            await traffic.more(6)
        finally:
            posted = await traffic.stop()
        self.assertEqual({p.code for p in posted} - {202, 503}, set(), [(p.index, p.code, p.body) for p in posted])
        refused = [p for p in posted if p.code == 503]
        self.assertTrue(refused, "no webhook was refused while Redis was down")
        for refusal in refused:
            self.assertTrue(refusal.body["type"].endswith(PROBLEM_TYPES), refusal)
            self.assertGreater(int(refusal.headers["retry-after"]), 0, refusal)
        # Traffic after the restart is accepted again.
        self.assertEqual({p.code for p in posted[-3:]}, {202}, posted[-3:])

        # The sender retries what was refused, now that Redis is back.
        for refusal in refused:
            gateway = a if refusal.replica == "A" else b
            await self.accept(gateway, _body(refusal.index, "closed"))
        await self.accept(a, _body(1000, "closed"))

        expected = {_fingerprint(p.index, "closed") for p in posted} | {_fingerprint(1000, "closed")}
        await _expect_delivered(stub, expected, (a, b), timeout=15)
        self.assertEqual(_delivered(stub), expected)
