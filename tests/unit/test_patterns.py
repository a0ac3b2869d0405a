"""
Adaptive timeouts and the failure ratio.
"""

from __future__ import annotations

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.delivery.timeouts import AdaptiveTimeout, FailureRatio
from tests.unit._http import capture_events


class AdaptiveTimeoutTests(SynchronousTestCase):
    """
    Tends to a high percentile of recent latencies times a factor, within
    bounds: down slowly, back up at once.
    """

    def make(self, decay: float = 1.0) -> AdaptiveTimeout:
        return AdaptiveTimeout(
            minimum=0.5, maximum=8.0, factor=4.0, quantile=0.9, window=10, min_samples=5, decay=decay
        )

    def test_maximum_until_enough_samples(self) -> None:
        """
        Until min_samples latencies are seen an attempt gets the maximum
        (the configured timeout).
        """
        timeout = self.make()
        for _ in range(4):
            timeout.observe(0.01)
        self.assertEqual(timeout.current(), 8.0)

    def test_follows_percentile(self) -> None:
        """
        The timeout tends to the quantile of the window times the factor.
        """
        timeout = self.make()
        for latency in (0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 1.5):
            timeout.observe(latency)
        self.assertAlmostEqual(timeout.current(), 2.0)

    def test_down_slowly(self) -> None:
        """
        Each success lowers it by at most decay of itself: a burst of fast
        answers does not cut a processor short at once.
        """
        timeout = self.make(decay=0.1)
        for _ in range(6):
            timeout.observe(0.01)
        self.assertAlmostEqual(timeout.current(), 8.0 * 0.9**2)

    def test_bounds(self) -> None:
        """
        Within [minimum, maximum]: a fast processor is not cut below the
        minimum, a slow one not waited for beyond the maximum.
        """
        fast, slow = self.make(), self.make()
        for _ in range(10):
            fast.observe(0.001)
            slow.observe(10.0)
        self.assertEqual((fast.current(), slow.current()), (0.5, 8.0))

    def test_window(self) -> None:
        """
        Only the last window latencies count.
        """
        timeout = self.make()
        for _ in range(10):
            timeout.observe(1.9)
        for _ in range(10):
            timeout.observe(0.25)
        self.assertAlmostEqual(timeout.current(), 1.0)

    def test_timeout_back_to_maximum(self) -> None:
        """
        A timed-out attempt sends it back to the maximum at once, and what
        was learnt of the latency is forgotten: a processor that became
        slower gets all the time allowed from the next attempt on.
        """
        timeout = self.make()
        for _ in range(10):
            timeout.observe(0.001)
        self.assertTrue(timeout.below_maximum)
        timeout.timed_out()
        self.assertEqual((timeout.current(), timeout.below_maximum), (8.0, False))
        for _ in range(4):
            timeout.observe(0.001)
        self.assertEqual(timeout.current(), 8.0)


class FailureRatioTests(SynchronousTestCase):
    """
    The exponentially weighted failure ratio and its warning.
    """

    def test_rises_and_decays(self) -> None:
        """
        Failures raise the ratio by alpha of the way to 1, successes lower
        it by alpha of the way to 0.
        """
        ratio = FailureRatio(alpha=0.5, warn_at=2.0)
        self.assertEqual(ratio.record(True), 0.5)
        self.assertEqual(ratio.record(True), 0.75)
        self.assertEqual(ratio.record(False), 0.375)

    def test_warns_once_when_rising(self) -> None:
        """
        Crossing warn_at while rising logs one warning naming the class of
        the last failure; another only after it fell under half of warn_at.
        """
        warnings = capture_events(self, lambda e: e.get("log_level") == LogLevel.warn)
        ratio = FailureRatio(alpha=0.5, warn_at=0.6)
        ratio.record(True, "5xx")
        self.assertEqual(warnings, [])
        ratio.record(True, "timeout")
        ratio.record(True, "timeout")
        self.assertEqual([e["kind"] for e in warnings], ["timeout"])
        for _ in range(3):
            ratio.record(False)
        self.assertLess(ratio.value, 0.3)
        ratio.record(True, "connect")
        ratio.record(True, "connect")
        self.assertEqual([e["kind"] for e in warnings], ["timeout", "connect"])
