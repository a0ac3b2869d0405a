"""
The gateway wired for Redis (state.backend: redis) while Redis cannot be
reached: on a memory reactor no connection is ever made, which is the
outage, so both failure modes are seen through the webhook, the readiness
probe and the metrics.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from alertgateway.app.service import GatewayService
from alertgateway.config import parse_config
from alertgateway.redis.client import RedisSettings
from alertgateway.redis.failover import FailoverState
from alertgateway.redis.queue import RedisQueue, RedisQueueSettings
from tests.unit._http import AUTH, Connection, alert, assert_problem, body, make_config, make_service

WEBHOOK = "/webhook/prometheus"


def redis_config(mode: str, extra: str = "") -> str:
    return f"state:\n  backend: redis\n  redis:\n    url: redis://redis.invalid:6379/0\n    on_failure: {mode}\n{extra}"


def started(mode: str, extra: str = "") -> GatewayService:
    service, _, _ = make_service(make_config(redis_config(mode, extra)))
    service.startService()
    return service


class NoRedisTests(SynchronousTestCase):
    def test_no_redis_series(self) -> None:
        """
        A gateway without the Redis backends exports no gateway_redis_*
        series, so an alert on gateway_redis_up == 0 cannot fire for it.
        """
        service, _, _ = make_service()
        output = service.metrics.registry.collect()
        self.assertFalse([m.name for m in output if m.name.startswith("gateway_redis")])


class FailOpenTests(SynchronousTestCase):
    def test_accepts_and_counts(self) -> None:
        """
        fail_open: webhooks are decided from local memory (a repeat is
        still a duplicate here), each such decision is counted, and the
        replica stays ready, saying Redis is down.
        """
        service = started("fail_open")
        connection = Connection(service.site)
        first = connection.request("POST", WEBHOOK, headers=AUTH, body=body(alert("A")))
        second = connection.request("POST", WEBHOOK, headers=AUTH, body=body(alert("A")))
        self.assertEqual((first.status, second.status), (202, 202))
        self.assertEqual(json.loads(second.body)["alerts"][0]["status"], "duplicate")
        fallbacks = service.metrics.registry.get_sample_value("gateway_redis_fallbacks_total", {"facility": "dedup"})
        self.assertEqual(fallbacks, 2)
        self.assertEqual(service.metrics.registry.get_sample_value("gateway_redis_up"), 0)
        ready = Connection(service.site).request("GET", "/health/ready")
        self.assertEqual(ready.status, 200)
        self.assertEqual(json.loads(ready.body)["redis"], {"up": False, "onFailure": "fail_open"})

    def test_rate_limit_local(self) -> None:
        """
        fail_open: rate limits fall back to this replica's buckets (an
        Alertmanager endpoint refuses with 503, which Alertmanager retries).
        """
        service = started("fail_open", "rate_limiting:\n  global_limit: 60\n  burst_size: 1\n")
        connection = Connection(service.site)
        statuses = [connection.request("POST", WEBHOOK, headers=AUTH, body=body(alert("A"))).status for _ in "ab"]
        self.assertEqual(statuses, [202, 503])
        fallbacks = service.metrics.registry.get_sample_value(
            "gateway_redis_fallbacks_total", {"facility": "rate_limit"}
        )
        self.assertEqual(fallbacks, 2)


class FailClosedTests(SynchronousTestCase):
    def test_refuses_with_retry_after(self) -> None:
        """
        fail_closed: webhooks get 503 state-unavailable with Retry-After
        (Alertmanager retries), and the replica is not ready.
        """
        service = started("fail_closed")
        response = Connection(service.site).request("POST", WEBHOOK, headers=AUTH, body=body(alert("A")))
        assert_problem(self, response, 503, "state-unavailable")
        self.assertEqual(response.headers.get("retry-after"), ["5"])
        ready = Connection(service.site).request("GET", "/health/ready")
        self.assertEqual(ready.status, 503)
        self.assertEqual(json.loads(ready.body)["redis"], {"up": False, "onFailure": "fail_closed"})

    def test_status_api(self) -> None:
        """
        fail_closed: the status API cannot read the shared state either,
        and says so with 503.
        """
        service = started("fail_closed")
        response = Connection(service.site).request("GET", "/v1/alerts", headers=AUTH)
        assert_problem(self, response, 503, "state-unavailable")


class SettingsTests(SynchronousTestCase):
    def test_configuration_reaches_redis(self) -> None:
        """
        Every state.redis key the client uses, queue.max_items and
        queue.redis reach the Redis client and queue; the queue fails open
        or closed as state.redis.on_failure says.
        """
        ca_file = self.mktemp()
        with open(ca_file, "w") as f:
            f.write("not read until connecting")
        config = parse_config(
            "alert_processor: {endpoint: 'file:unused.jsonl'}\n"
            "webhook: {auth: {token: t}}\n"
            "state:\n"
            "  redis:\n"
            "    url: rediss://redis.invalid:6380/2\n"
            "    password_env: REDIS_PW\n"
            "    key_prefix: 'gw:'\n"
            "    on_failure: fail_closed\n"
            "    timeout: 3s\n"
            "    connect_timeout: 4s\n"
            "    pool_size: 5\n"
            f"    ca_file: {ca_file}\n"
            "queue:\n"
            "  backend: redis\n"
            "  path: queue.db\n"
            "  max_items: 7\n"
            "  redis: {partitions: 3, claim_idle: 9s, read_batch: 11}\n",
            environ={"REDIS_PW": "pw"},
        )
        service, _, _ = make_service(config)
        assert service.gateway.redis is not None
        self.assertEqual(
            service.gateway.redis.settings,
            RedisSettings(
                url="rediss://redis.invalid:6380/2",
                password="pw",
                key_prefix="gw:",
                timeout=3.0,
                connect_timeout=4.0,
                pool_size=5,
                ca_file=ca_file,
            ),
        )
        queue = service.queue
        assert isinstance(queue, RedisQueue)
        self.assertEqual(queue.settings, RedisQueueSettings(max_items=7, partitions=3, claim_idle=9.0, read_batch=11))
        self.assertIs(queue.failover, service.gateway.failover)
        assert service.gateway.failover is not None
        self.assertFalse(service.gateway.failover.fail_open)

    def test_state_commits_with_the_redis_queue(self) -> None:
        """
        With the Redis queue the Redis state hands it each decision's write,
        to be written with the queue entries in one script; with a queue
        elsewhere (the memory queue here) the state commits on its own and
        takes back what the queue refuses.
        """
        for queue, together in (("queue:\n  backend: redis\n  path: queue.db\n", True), ("", False)):
            with self.subTest(together=together):
                service, _, _ = make_service(make_config(redis_config("fail_closed", queue)))
                state = service.gateway.state
                assert isinstance(state, FailoverState)
                self.assertIs(state.shared.queue_in_redis, together)
