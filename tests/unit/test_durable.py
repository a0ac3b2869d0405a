"""
The durable queue: bounds, all-or-nothing writes, replay, dead letters.
"""

from __future__ import annotations

import json
import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.delivery.durable import DurableQueue
from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.journal import SQLiteJournal, list_items, open_database, retry_dead
from alertgateway.state.errors import QueueFull
from alertgateway.testing import ManualExecutor
from tests.unit._http import InlineExecutor
from tests.unit._support import envelope


def size(e: Envelope) -> int:
    return len(json.dumps(e.body, separators=(",", ":")))


class DurableQueueTests(SynchronousTestCase):
    """
    DurableQueue over a SQLite journal run inline.
    """

    def make(self, max_items: int = 10, max_bytes: int = 10**6, executor: object = None) -> DurableQueue:
        if not hasattr(self, "path"):
            directory = self.mktemp()
            os.makedirs(directory)
            self.path = os.path.join(directory, "queue.db")
        journal = SQLiteJournal(self.path, executor or InlineExecutor(), clock_seconds=lambda: 5.0)  # type: ignore[arg-type]
        queue = DurableQueue(journal, max_items=max_items, max_bytes=max_bytes)
        self.addCleanup(lambda: journal.close())
        return queue

    def loaded(self, **kwargs: int) -> DurableQueue:
        queue = self.make(**kwargs)
        self.successResultOf(queue.load())
        return queue

    def pending(self) -> list[str]:
        connection = open_database(self.path)
        try:
            return [f"{i.body['labels']['alertname']}" for i in list_items(connection, "pending")]
        finally:
            connection.close()

    def test_put_written_before_answer(self) -> None:
        """
        put fires once the batch is on disk; the envelopes can then be
        taken, carrying their row ids.
        """
        queue = self.loaded()
        self.successResultOf(queue.put([envelope("A"), envelope("B")]))
        self.assertEqual(self.pending(), ["A", "B"])
        self.assertEqual(len(queue), 2)
        taken = self.successResultOf(queue.take())
        self.assertEqual(taken.id, 1)

    def test_bound_items_in_progress(self) -> None:
        """
        max_items counts writes still being committed; a batch that does
        not fit is refused whole and nothing of it is written.
        """
        executor = ManualExecutor()
        queue = self.make(max_items=3, executor=executor)
        loading = queue.load()
        executor.run_next()
        self.successResultOf(loading)
        writing = queue.put([envelope("A"), envelope("B")])
        self.assertEqual(len(queue), 2)
        self.assertRaises(QueueFull, queue.put, [envelope("C"), envelope("D")])
        executor.run_next()
        self.successResultOf(writing)
        self.assertEqual(len(queue), 2)
        writing = queue.put([envelope("C")])
        executor.run_next()
        self.successResultOf(writing)
        self.assertEqual(self.pending(), ["A", "B", "C"])
        self.assertRaises(QueueFull, queue.put, [envelope("D")])

    def test_bound_bytes(self) -> None:
        """
        max_bytes bounds the bodies queued, those being written included;
        delivered envelopes free their bytes.
        """
        one = size(envelope("A"))
        executor = ManualExecutor()
        queue = self.make(max_bytes=2 * one + 1, executor=executor)
        loading = queue.load()
        executor.run_next()
        self.successResultOf(loading)
        writing = queue.put([envelope("A")])
        self.assertEqual(queue.bytes, one)
        queue.put([envelope("B")])
        self.assertRaises(QueueFull, queue.put, [envelope("C")])
        executor.run_next()
        executor.run_next()
        self.successResultOf(writing)
        self.assertEqual(queue.bytes, 2 * one)
        taken = self.successResultOf(queue.take())
        queue.done(taken)
        executor.run_next()
        self.assertEqual(queue.bytes, one)
        queue.put([envelope("C")])
        executor.run_next()
        self.assertEqual(self.pending(), ["B", "C"])

    def test_disk_error(self) -> None:
        """
        A write the database refuses fails put with QueueFull, leaves
        nothing queued or reserved, and nothing half-written on disk.
        """
        executor = ManualExecutor()
        queue = self.make(executor=executor)
        loading = queue.load()
        executor.run_next()
        self.successResultOf(loading)
        connection = queue.journal._connection
        assert connection is not None
        connection.execute(
            "CREATE TRIGGER full BEFORE INSERT ON items WHEN NEW.body LIKE '%\"B\"%'"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
        writing = queue.put([envelope("A"), envelope("B")])
        executor.run_next()
        self.assertIn("disk is full", str(self.failureResultOf(writing, QueueFull).value))
        self.flushLoggedErrors()
        self.assertEqual((len(queue), queue.bytes), (0, 0))
        self.assertEqual(self.pending(), [])

    def test_replay_keeps_order(self) -> None:
        """
        What was neither delivered nor buried comes back on reopen, in
        acceptance order per key, including an item taken but interrupted.
        """
        queue = self.loaded()
        self.successResultOf(queue.put([envelope("A", "firing"), envelope("B")]))
        self.successResultOf(queue.put([envelope("A", "resolved"), envelope("C")]))
        first = self.successResultOf(queue.take())
        second = self.successResultOf(queue.take())
        queue.done(second)
        self.assertEqual(first.body["status"], "firing")
        again = self.make()
        self.assertEqual(self.successResultOf(again.load()), 3)
        order: list[str] = []
        while len(order) < 3:
            taken = self.successResultOf(again.take())
            order.append(f"{taken.body['labels']['alertname']}:{taken.body['status']}")
            again.done(taken)
        self.assertLess(order.index("A:firing"), order.index("A:resolved"))
        self.assertEqual(sorted(order), ["A:firing", "A:resolved", "C:firing"])

    def test_reload_resets(self) -> None:
        """
        Loading again (a restart of the service) replaces what memory held
        by what the database holds: nothing is queued twice.
        """
        queue = self.loaded()
        self.successResultOf(queue.put([envelope("A"), envelope("B")]))
        self.successResultOf(queue.journal.close())
        self.assertEqual(self.successResultOf(queue.load()), 2)
        self.assertEqual(len(queue), 2)

    def test_bury_and_adopt(self) -> None:
        """
        A buried envelope leaves the queue and stays on disk as a dead
        letter; once marked for retry it is adopted back, behind what is
        queued.
        """
        queue = self.loaded()
        self.successResultOf(queue.put([envelope("A")]))
        taken = self.successResultOf(queue.take())
        queue.bury(taken, "400 bad", 1)
        self.assertEqual((len(queue), queue.bytes), (0, 0))
        connection = open_database(self.path)
        self.addCleanup(connection.close)
        [dead] = list_items(connection, "dead")
        self.assertEqual((dead.state, dead.reason), ("dead", "400 bad"))
        self.assertEqual(self.successResultOf(queue.adopt_retried()), 0)
        retry_dead(connection)
        self.assertEqual(self.successResultOf(queue.adopt_retried()), 1)
        again = self.successResultOf(queue.take())
        self.assertEqual(again.idempotency_key, taken.idempotency_key)
        self.assertEqual(queue.bytes, size(taken))

    def test_release_and_postpone(self) -> None:
        """
        A released envelope is the next one taken; a postponed one only
        after its delay, while other keys go and later envelopes of its
        key wait behind it.
        """
        clock = Clock()
        queue = self.loaded()
        self.successResultOf(queue.put([envelope("A", "firing"), envelope("A", "resolved"), envelope("B")]))
        a = self.successResultOf(queue.take())
        queue.release(a)
        again = self.successResultOf(queue.take())
        self.assertEqual(again.id, a.id)
        b = self.successResultOf(queue.take())
        self.assertEqual(b.body["labels"]["alertname"], "B")
        queue.done(b)
        queue.postpone(again, 10, clock)
        waiting = queue.take()
        clock.advance(9.9)
        self.assertNoResult(waiting)
        clock.advance(0.1)
        self.assertEqual(self.successResultOf(waiting).id, a.id)
        self.assertEqual(queue.oldest(), 5.0)

    def test_stop_timers(self) -> None:
        """
        stop_timers cancels the waits of postponed envelopes, which stay
        queued.
        """
        clock = Clock()
        queue = self.loaded()
        self.successResultOf(queue.put([envelope("A")]))
        queue.postpone(self.successResultOf(queue.take()), 10, clock)
        queue.stop_timers()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(len(queue), 1)
