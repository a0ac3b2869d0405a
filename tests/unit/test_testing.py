"""
The fakes L{alertgateway.testing} ships: they behave as the parts they
stand for, so that tests written with them mean something.
"""

from __future__ import annotations

from typing import Any, cast

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.config import parse_config
from alertgateway.core.decision import Verdict
from alertgateway.core.model import Alert, fingerprint
from alertgateway.testing import (
    HANG,
    Answer,
    DecisionDriver,
    GatewayReactor,
    InlineExecutor,
    ManualExecutor,
    StubProcessor,
    gateway_service,
)
from alertgateway.web.health import Lifecycle
from tests.unit._http import stop


def make_alert(pod: str) -> Alert:
    labels = {"alertname": "PodCrash", "namespace": "payments", "pod": pod}
    return Alert(fingerprint(labels), "alertmanager", "firing", labels, {}, None, None, "", "2026-11-26T03:50Z")


class DecisionDriverTests(SynchronousTestCase):
    """
    The pure decider on dictionaries, each decision committed at once.
    """

    def test_committed_at_once(self) -> None:
        """
        A decision's changes are in the table when decide returns: the same
        alert again is a duplicate, and after the window new again.
        """
        clock = Clock()
        driver = DecisionDriver(clock)
        first = driver.decide([make_alert("a")])
        self.assertEqual([r.verdict for r in first.rulings], [Verdict.NEW])
        self.assertIn(make_alert("a").fingerprint, driver.table.episodes)
        self.assertEqual([r.verdict for r in driver.decide([make_alert("a")]).rulings], [Verdict.DUPLICATE])
        clock.advance(301)
        self.assertEqual([r.verdict for r in driver.decide([make_alert("a")]).rulings], [Verdict.NEW])

    def test_storm_members_kept_in_order(self) -> None:
        """
        Waiting storm members are appended in order and listed from the
        head by the tick.
        """
        clock = Clock()
        driver = DecisionDriver(clock)
        driver.decide([make_alert(str(n)) for n in range(15)])
        [group] = driver.table.storm_groups()
        waiting = driver.table.members[group]
        self.assertEqual([m.fingerprint for m in waiting], [make_alert(str(n)).fingerprint for n in range(11, 15)])
        clock.advance(300)
        [closed] = driver.tick().outgoing
        self.assertEqual(closed.body["state"], "closed")
        self.assertEqual(driver.table.members, {})


class ExecutorTests(SynchronousTestCase):
    """
    The executors that stand for the SQLite thread.
    """

    def test_inline(self) -> None:
        """
        InlineExecutor runs each call at once; while broken, it fails them
        instead.
        """
        executor = InlineExecutor()
        self.assertEqual(self.successResultOf(executor.run(lambda: 7)), 7)
        executor.broken = OSError("disk full")
        self.failureResultOf(executor.run(lambda: 7), OSError)
        self.assertEqual(executor.calls, 2)

    def test_manual(self) -> None:
        """
        ManualExecutor holds calls until told, then runs the oldest.
        """
        executor = ManualExecutor()
        first, second = executor.run(lambda: 1), executor.run(lambda: 1 // 0)
        self.assertNoResult(first)
        executor.run_next()
        self.assertEqual(self.successResultOf(first), 1)
        executor.run_next()
        self.failureResultOf(second, ZeroDivisionError)


class StubProcessorTests(SynchronousTestCase):
    """
    The stub Alert Processor behind treq's StubTreq.
    """

    def test_answers_in_turn(self) -> None:
        """
        Requests get the answers given, in turn, then the default, and are
        recorded with their headers and body.
        """
        processor = StubProcessor(Answer(500, {"Retry-After": "3"}), default=Answer(202))
        client = cast(Any, StubTreq(processor))
        first = self.successResultOf(client.post("http://p.test/api/v1/alerts", data=b"{}"))
        second = self.successResultOf(client.post("http://p.test/api/v1/alerts", data=b"[]"))
        self.assertEqual((first.code, second.code), (500, 202))
        self.assertEqual([r.body for r in processor.received], [b"{}", b"[]"])
        self.assertEqual(processor.received[0].path, "/api/v1/alerts")

    def test_hang(self) -> None:
        """
        HANG never answers, and the request is kept as hanging.
        """
        processor = StubProcessor(HANG)
        client = cast(Any, StubTreq(processor))
        self.assertNoResult(client.post("http://p.test/api/v1/alerts", data=b"{}"))
        self.assertEqual(len(processor.hanging), 1)


class GatewayServiceTests(SynchronousTestCase):
    """
    A whole gateway on a memory reactor.
    """

    def test_starts_and_stops(self) -> None:
        """
        The gateway built on a GatewayReactor listens on it and is ready;
        it stops cleanly.
        """
        config = parse_config("queue: {backend: memory}\nalert_processor: {endpoint: 'file:x'}\n", environ={})
        service, reactor, _ = gateway_service(config)
        service.startService()
        self.assertEqual(service.readiness.state, Lifecycle.READY)
        self.assertEqual([port for port, *_ in cast(GatewayReactor, reactor).tcpServers], [8080, 9090])
        stop(self, service)
        self.assertEqual(service.readiness.state, Lifecycle.STOPPING)
