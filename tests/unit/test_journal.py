"""
The SQLite journal of the durable queue: schema, WAL, group commit, replay,
dead letters, the helpers of C{alertgateway queue}, and its thread.
"""

from __future__ import annotations

import os
import queue as threadqueue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.executor import ThreadExecutor
from alertgateway.delivery.journal import (
    JournalError,
    SQLiteJournal,
    count_items,
    list_items,
    open_database,
    purge,
    retry_dead,
)
from alertgateway.testing import InlineExecutor, ManualExecutor
from tests.unit._support import envelope

T = TypeVar("T")


def open_journal(case: SynchronousTestCase, executor: Any = None) -> tuple[SQLiteJournal, str]:
    directory = case.mktemp()
    os.makedirs(directory)
    path = os.path.join(directory, "queue.db")
    journal = SQLiteJournal(path, executor or InlineExecutor(), clock_seconds=lambda: 1000.0)
    return journal, path


def names(envelopes: list[Envelope]) -> list[str]:
    return [f"{e.body['labels']['alertname']}:{e.body['status']}" for e in envelopes]


class SchemaTests(SynchronousTestCase):
    """
    The database the journal creates.
    """

    def test_wal_and_schema(self) -> None:
        """
        The database is in WAL mode with an items table holding what a
        redelivery needs (key, body, idempotency key, request id, headers,
        acceptance time) and a state.
        """
        journal, path = open_journal(self)
        self.assertEqual(self.successResultOf(journal.open()), [])
        self.successResultOf(journal.close())
        connection = sqlite3.connect(path)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        columns = {row[1] for row in connection.execute("PRAGMA table_info(items)")}
        self.assertTrue(
            {"id", "key", "body", "idempotency_key", "request_id", "headers", "accepted_at", "state", "reason"}
            <= columns
        )

    def test_synchronous(self) -> None:
        """
        synchronous full or normal is set on the connection.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        for setting, value in (("full", 2), ("normal", 1)):
            connection = open_database(os.path.join(directory, f"{setting}.db"), setting)
            self.assertEqual(connection.execute("PRAGMA synchronous").fetchone()[0], value)
            connection.close()


class AppendTests(SynchronousTestCase):
    """
    append, remove, bury and replay.
    """

    def test_replay_order(self) -> None:
        """
        Reopening gives back every pending envelope, in acceptance order,
        with its idempotency key, request id, headers and time; delivered
        and buried ones are not replayed.
        """
        journal, path = open_journal(self)
        self.successResultOf(journal.open())
        first = envelope("A", "firing", request_id="r1")
        first = Envelope(first.key, first.body, first.idempotency_key, "r1", (("X-Env", "prod"),))
        stored = self.successResultOf(journal.append([first, envelope("B"), envelope("A", "resolved")]))
        self.assertEqual([e.id for e in stored], [1, 2, 3])
        more = self.successResultOf(journal.append([envelope("C"), envelope("D")]))
        self.successResultOf(journal.remove(stored[1]))
        self.successResultOf(journal.bury(more[1], "400 bad", 1))
        self.successResultOf(journal.close())
        again = SQLiteJournal(path, InlineExecutor(), clock_seconds=lambda: 0.0)
        replayed = self.successResultOf(again.open())
        self.assertEqual(names(replayed), ["A:firing", "A:resolved", "C:firing"])
        self.assertEqual(replayed[0].headers, (("X-Env", "prod"),))
        self.assertEqual(replayed[0].idempotency_key, first.idempotency_key)
        self.assertEqual(replayed[0].request_id, "r1")
        self.assertEqual(replayed[0].accepted_at, 1000.0)
        self.successResultOf(again.close())

    def test_empty_append(self) -> None:
        """
        Appending nothing writes nothing.
        """
        executor = InlineExecutor()
        journal, _ = open_journal(self, executor)
        self.successResultOf(journal.open())
        self.assertEqual(self.successResultOf(journal.append([])), [])
        self.assertEqual(executor.calls, 1)
        self.successResultOf(journal.close())

    def test_group_commit(self) -> None:
        """
        Operations issued while a commit is in progress wait, and are then
        committed together in one transaction (one executor call); each
        caller hears once its own operation is committed.
        """
        executor = ManualExecutor()
        journal, _ = open_journal(self, executor)
        opened = journal.open()
        executor.run_next()
        self.successResultOf(opened)
        first = journal.append([envelope("A")])
        self.assertEqual(len(executor.calls), 1)
        second = journal.append([envelope("B")])
        third = journal.append([envelope("C"), envelope("D")])
        self.assertEqual(len(executor.calls), 1)
        executor.run_next()
        [a] = self.successResultOf(first)
        self.assertNoResult(second)
        # The second batch is being committed: a remove waits for the next.
        removed = journal.remove(a)
        self.assertEqual(len(executor.calls), 1)
        executor.run_next()
        self.assertEqual([e.id for e in self.successResultOf(second)], [2])
        self.assertEqual([e.id for e in self.successResultOf(third)], [3, 4])
        self.assertNoResult(removed)
        executor.run_next()
        self.assertIsNone(self.successResultOf(removed))
        self.assertEqual(executor.calls, [])

    def test_failed_batch(self) -> None:
        """
        When the transaction fails every operation of the batch fails with
        JournalError and nothing of it is written; later writes go on.
        """
        executor = ManualExecutor()
        journal, path = open_journal(self, executor)
        opened = journal.open()
        executor.run_next()
        self.successResultOf(opened)
        first = journal.append([envelope("A")])
        second = journal.append([envelope("B")])
        third = journal.append([envelope("C")])
        executor.run_next()
        self.successResultOf(first)
        # A trigger makes the insert of C fail, after B's went in.
        assert journal._connection is not None
        journal._connection.execute(
            "CREATE TRIGGER no_c BEFORE INSERT ON items WHEN NEW.body LIKE '%\"C\"%'"
            " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        executor.run_next()
        for d in (second, third):
            self.assertIn("disk full", str(self.failureResultOf(d, JournalError).value))
        self.flushLoggedErrors()
        journal._connection.execute("DROP TRIGGER no_c")
        fourth = journal.append([envelope("D")])
        executor.run_next()
        self.successResultOf(fourth)
        connection = open_database(path)
        self.addCleanup(connection.close)
        self.assertEqual([i.body["labels"]["alertname"] for i in list_items(connection, "pending")], ["A", "D"])

    def test_not_open(self) -> None:
        """
        Writing to a journal that is not open fails with JournalError.
        """
        journal, _ = open_journal(self)
        self.failureResultOf(journal.append([envelope("A")]), JournalError)

    def test_close_waits_for_writes(self) -> None:
        """
        close() lets the writes already asked for commit before the database
        is closed.
        """
        executor = ManualExecutor()
        journal, _ = open_journal(self, executor)
        opened = journal.open()
        executor.run_next()
        self.successResultOf(opened)
        first = journal.append([envelope("A")])
        second = journal.append([envelope("B")])
        closed = journal.close()
        executor.run_next()
        executor.run_next()
        executor.run_next()
        self.successResultOf(first)
        self.successResultOf(second)
        self.successResultOf(closed)


class DeadLetterTests(SynchronousTestCase):
    """
    Dead letters, C{queue list|retry|purge} and adopt_retried.
    """

    def setUp(self) -> None:
        self.journal, path = open_journal(self)
        self.successResultOf(self.journal.open())
        self.a, self.b, self.c = self.successResultOf(
            self.journal.append([envelope("A"), envelope("B"), envelope("C")])
        )
        self.successResultOf(self.journal.bury(self.a, "400 no such team", 2))
        self.successResultOf(self.journal.bury(self.c, "422 bad", 1))
        self.connection = open_database(path)
        self.addCleanup(self.connection.close)
        self.addCleanup(lambda: self.journal.close())

    def test_list(self) -> None:
        """
        list_items shows dead letters with reason and attempts, pending
        items, or everything, in order.
        """
        dead = list_items(self.connection, "dead")
        self.assertEqual([(i.id, i.attempts) for i in dead], [(1, 2), (3, 1)])
        self.assertEqual((dead[0].state, dead[0].reason), ("dead", "400 no such team"))
        self.assertEqual(dead[0].alertname, "A")
        self.assertEqual(dead[0].body["labels"], {"alertname": "A"})
        self.assertEqual([i.id for i in list_items(self.connection, "pending")], [2])
        self.assertEqual([i.id for i in list_items(self.connection)], [1, 2, 3])
        self.assertEqual([i.id for i in list_items(self.connection, limit=2)], [1, 2])
        self.assertEqual((count_items(self.connection), count_items(self.connection, "dead")), (3, 2))

    def test_retry_and_adopt(self) -> None:
        """
        retry_dead marks dead letters (all, or the given ids); the running
        journal's adopt_retried takes them back as pending, once.
        """
        self.assertEqual(retry_dead(self.connection, [3]), 1)
        self.assertEqual(retry_dead(self.connection, [2]), 0)
        adopted = self.successResultOf(self.journal.adopt_retried())
        self.assertEqual([e.id for e in adopted], [3])
        self.assertEqual(adopted[0].idempotency_key, self.c.idempotency_key)
        self.assertEqual(self.successResultOf(self.journal.adopt_retried()), [])
        self.assertEqual([i.id for i in list_items(self.connection, "pending")], [2, 3])
        self.assertEqual(retry_dead(self.connection), 1)
        self.assertEqual([e.id for e in self.successResultOf(self.journal.adopt_retried())], [1])

    def test_purge(self) -> None:
        """
        purge drops dead letters (all or by id), or pending items when
        asked, and nothing of another state.
        """
        self.assertEqual(purge(self.connection, "dead", [2]), 0)
        self.assertEqual(purge(self.connection, "dead", [1]), 1)
        self.assertEqual(purge(self.connection), 1)
        self.assertEqual([i.id for i in list_items(self.connection)], [2])
        self.assertEqual(purge(self.connection, "pending"), 1)
        self.assertEqual(list_items(self.connection), [])


@implementer(IReactorFromThreads)
class FromThreadReactor:
    """
    Just enough of a reactor for deferToThreadPool: callables from other
    threads are queued for the test to run on its own thread.
    """

    def __init__(self) -> None:
        self.calls: threadqueue.Queue[tuple[Callable[..., object], tuple[object, ...]]] = threadqueue.Queue()

    def callFromThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        self.calls.put((callable, args))


class ThreadTests(SynchronousTestCase):
    """
    SQLite runs on the executor's thread, never on the reactor's.
    """

    def wait(self, reactor: FromThreadReactor, d: Deferred[T]) -> T:
        results: list[Any] = []
        d.addBoth(results.append)
        deadline = time.monotonic() + 10
        while not results:
            self.assertLess(time.monotonic(), deadline, "the executor thread did not answer")
            try:
                f, args = reactor.calls.get(timeout=0.1)
            except threadqueue.Empty:
                continue
            f(*args)
        [result] = results
        if isinstance(result, BaseException) or hasattr(result, "raiseException"):
            result.raiseException()
        value: T = result
        return value

    def test_never_on_reactor_thread(self) -> None:
        """
        With the real ThreadExecutor, open, append, remove, bury, adopt and
        close all run SQLite on one thread that is not the calling
        (reactor) thread.
        """
        reactor = FromThreadReactor()
        executor = ThreadExecutor(reactor)
        executor.start()
        self.addCleanup(executor.stop)
        journal, _ = open_journal(self, executor)
        self.wait(reactor, journal.open())
        a, b = self.wait(reactor, journal.append([envelope("A"), envelope("B")]))
        self.wait(reactor, journal.remove(a))
        self.wait(reactor, journal.bury(b, "400", 1))
        self.assertEqual(self.wait(reactor, journal.adopt_retried()), [])
        self.wait(reactor, journal.close())
        self.assertEqual(len(journal.threads), 1)
        self.assertNotIn(threading.get_ident(), journal.threads)

    def test_restart(self) -> None:
        """
        A stopped executor can be started again (the service restarts).
        """
        reactor = FromThreadReactor()
        executor = ThreadExecutor(reactor)
        executor.start()
        executor.stop()
        executor.start()
        self.addCleanup(executor.stop)
        self.assertEqual(self.wait(reactor, executor.run(lambda: 42)), 42)
