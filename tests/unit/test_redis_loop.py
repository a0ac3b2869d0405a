"""
L{alertgateway.redis._loop.Loop}, on a fake clock: steps one after the
other, each waiting the delay the previous one returned, cut short by a
poke, going on after a failure, and stopping after the step in progress.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.redis._loop import Loop


class Steps:
    """
    A step that records when it ran and returns the delays given, one per
    run (then 10 s); a run may be made to wait on a Deferred.
    """

    def __init__(self, clock: Clock, *delays: float) -> None:
        self.clock = clock
        self.delays = list(delays)
        self.ran: list[float] = []
        self.hold: Deferred[None] | None = None
        self.fail = False

    async def step(self) -> float:
        self.ran.append(self.clock.seconds())
        if self.hold is not None:
            await self.hold
        if self.fail:
            self.fail = False
            raise ValueError("a bug")
        return self.delays.pop(0) if self.delays else 10.0


class LoopTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()

    def loop(self, steps: Steps) -> Loop:
        loop = Loop("test loop", self.clock, steps.step)
        loop.start()
        self.addCleanup(loop.stop)
        return loop

    def test_waits_as_told(self) -> None:
        """
        The first step runs at once; each next one after the delay the
        previous one returned, and at once after a delay of zero.
        """
        steps = Steps(self.clock, 2.0, 0.0)
        self.loop(steps)
        self.clock.advance(1.9)
        self.assertEqual(steps.ran, [0.0])
        self.clock.advance(0.1)
        self.assertEqual(steps.ran, [0.0, 2.0, 2.0])

    def test_poke_while_waiting(self) -> None:
        """
        A poke while the loop waits runs the next step at once.
        """
        steps = Steps(self.clock)
        loop = self.loop(steps)
        self.clock.advance(1)
        loop.poke()
        self.assertEqual(steps.ran, [0.0, 1.0])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_poke_during_step(self) -> None:
        """
        A poke while a step runs skips the wait after it: what that step
        waited for may have changed meanwhile.
        """
        steps = Steps(self.clock)
        steps.hold = Deferred()
        loop = self.loop(steps)
        loop.poke()
        hold, steps.hold = steps.hold, None
        hold.callback(None)
        self.assertEqual(steps.ran, [0.0, 0.0])

    def test_goes_on_after_a_failure(self) -> None:
        """
        A step that fails is logged and the loop goes on a second later.
        """
        steps = Steps(self.clock)
        steps.fail = True
        self.loop(steps)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.clock.advance(1.0)
        self.assertEqual(steps.ran, [0.0, 1.0])

    def test_stop(self) -> None:
        """
        Stopping fires once the step in progress is over, and no step runs
        after it.
        """
        steps = Steps(self.clock)
        steps.hold = Deferred()
        loop = self.loop(steps)
        stopped = loop.stop()
        self.assertNoResult(stopped)
        steps.hold.callback(None)
        self.successResultOf(stopped)
        self.clock.advance(100)
        self.assertEqual(steps.ran, [0.0])
        self.assertEqual(self.clock.getDelayedCalls(), [])
