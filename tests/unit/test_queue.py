"""
The in-memory delivery queue.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.model import fingerprint
from alertgateway.delivery.queue import MemoryQueue
from alertgateway.state.errors import QueueFull
from tests.unit._support import envelope


class MemoryQueueTests(SynchronousTestCase):
    """
    Per-key order, one in delivery per key, a bound and its waiters.
    """

    def test_envelope_key(self) -> None:
        """
        An envelope's key is its alert's fingerprint.
        """
        e = envelope("A")
        self.assertEqual(e.key, fingerprint({"alertname": "A"}))

    def test_envelope_headers(self) -> None:
        """
        An envelope carries no headers unless given some, and they take no
        part in its key: alerts of one fingerprint stay in one order
        whatever headers came with them.
        """
        plain = envelope("A")
        with_headers = attrs.evolve(plain, request_id="r2", headers=(("X-Env", "prod"),))
        self.assertEqual(plain.headers, ())
        self.assertEqual(with_headers.headers, (("X-Env", "prod"),))
        self.assertEqual(plain.key, with_headers.key)

    def test_take_waits_for_put(self) -> None:
        """
        A take before anything is queued fires when something is.
        """
        queue = MemoryQueue(10)
        taken = queue.take()
        self.assertNoResult(taken)
        a = envelope("A")
        self.successResultOf(queue.put([a]))
        self.assertEqual(self.successResultOf(taken), a)
        self.assertEqual(len(queue), 1)

    def test_one_per_key(self) -> None:
        """
        While an alert is being delivered, the next of the same key is held
        back, even with takers waiting; it goes once the first is done.
        """
        queue = MemoryQueue(10)
        first, second = envelope("A", "firing"), envelope("A", "resolved")
        queue.put([first, second])
        self.assertEqual(self.successResultOf(queue.take()), first)
        waiting = queue.take()
        self.assertNoResult(waiting)
        queue.done(first)
        self.assertEqual(self.successResultOf(waiting), second)

    def test_keys_in_parallel(self) -> None:
        """
        Different keys are handed out at once, in the order they came.
        """
        queue = MemoryQueue(10)
        a, b, c = envelope("A"), envelope("B"), envelope("C")
        queue.put([a, b])
        queue.put([c])
        self.assertEqual([self.successResultOf(queue.take()) for _ in range(3)], [a, b, c])

    def test_order_per_key(self) -> None:
        """
        Alerts of one key leave in the order they were accepted, across
        batches and interleaved with other keys.
        """
        queue = MemoryQueue(10)
        a1, b1, a2, a3 = (
            envelope("A", request_id="1"),
            envelope("B"),
            envelope("A", request_id="2"),
            envelope("A", request_id="3"),
        )
        queue.put([a1, b1, a2])
        queue.put([a3])
        order = []
        while len(queue):
            e = self.successResultOf(queue.take())
            order.append(e)
            queue.done(e)
        self.assertEqual(order, [a1, b1, a2, a3])

    def test_bound_all_or_nothing(self) -> None:
        """
        A batch that does not fit is refused whole; the queue is unchanged
        and later batches that fit are taken.
        """
        queue = MemoryQueue(3)
        queue.put([envelope("A"), envelope("B")])
        self.assertRaises(QueueFull, queue.put, [envelope("C"), envelope("D")])
        self.assertEqual(len(queue), 2)
        queue.put([envelope("C")])
        self.assertEqual(len(queue), 3)
        self.assertRaises(QueueFull, queue.put, [envelope("E")])
        self.assertRaises(QueueFull, MemoryQueue(1).put, [envelope("A"), envelope("B")])

    def test_byte_bound(self) -> None:
        """
        With C{max_bytes}, the JSON of what is queued is bounded too: a
        batch that would go past it is refused whole, and what is done
        gives its bytes back.
        """
        a, b, c = envelope("A"), envelope("B"), envelope("C")
        size = len(a.json_body())
        queue = MemoryQueue(10, max_bytes=2 * size)
        queue.put([a])
        self.assertRaises(QueueFull, queue.put, [b, c])
        self.assertEqual((len(queue), queue.bytes), (1, size))
        queue.put([b])
        self.assertRaises(QueueFull, queue.put, [c])
        queue.done(self.successResultOf(queue.take()))
        self.assertEqual(queue.bytes, size)
        queue.put([c])

    def test_holds_json_text(self) -> None:
        """
        The queue keeps an envelope's body as its JSON text only (about
        half the memory of the decoded object): what comes out is the same
        envelope, its body read back from the text.
        """
        queue = MemoryQueue(10)
        a = envelope("A")
        queue.put([a])
        taken = self.successResultOf(queue.take())
        self.assertIsNone(taken._body)
        self.assertEqual((taken, dict(taken.body), taken.json_body()), (a, dict(a.body), a.json_body()))
        moved = attrs.evolve(taken, request_id="r2")
        self.assertEqual((dict(moved.body), moved.json_body()), (dict(a.body), a.json_body()))

    def test_in_delivery_counts(self) -> None:
        """
        An alert being delivered still takes room until it is done.
        """
        queue = MemoryQueue(1)
        a = envelope("A")
        queue.put([a])
        self.successResultOf(queue.take())
        self.assertRaises(QueueFull, queue.put, [envelope("B")])
        queue.done(a)
        queue.put([envelope("B")])

    def test_when_empty(self) -> None:
        """
        when_empty fires at once on an empty queue, otherwise once the last
        alert is done (not merely taken).
        """
        queue = MemoryQueue(10)
        self.successResultOf(queue.when_empty())
        a, b = envelope("A"), envelope("B")
        queue.put([a, b])
        empty = queue.when_empty()
        for e in (self.successResultOf(queue.take()), self.successResultOf(queue.take())):
            self.assertNoResult(empty)
            queue.done(e)
        self.successResultOf(empty)

    def test_cancel_when_empty(self) -> None:
        """
        A cancelled when_empty is forgotten: it fails with CancelledError
        and draining later does not touch it.
        """
        queue = MemoryQueue(10)
        a = envelope("A")
        queue.put([a])
        empty = queue.when_empty()
        empty.cancel()
        self.failureResultOf(empty, CancelledError)
        queue.done(self.successResultOf(queue.take()))
        self.successResultOf(queue.when_empty())

    def test_cancel_take(self) -> None:
        """
        A cancelled take gives up its turn: the next alert goes to the next
        taker instead of being lost to the cancelled one.
        """
        queue = MemoryQueue(10)
        cancelled = queue.take()
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        waiting = queue.take()
        a = envelope("A")
        queue.put([a])
        self.assertEqual(self.successResultOf(waiting), a)
