# -*- test-case-name: tests.unit.test_journal -*-
"""
The durable side of the delivery queue: a SQLite database in WAL mode.

Every accepted envelope is written here before its webhook is answered, so a
crash after a 202 loses nothing; an envelope leaves only once it is
delivered (or is buried as a dead letter, with the reason).

SQLite is only ever called from one dedicated thread (the executor's), never
from the reactor thread.  Writes that arrive while a transaction is being
committed wait and are then committed together in the next one (group
commit), so concurrent webhooks share the cost of syncing to disk.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from alertgateway.delivery.envelope import Envelope

__all__ = ["DiskWrite", "Executor", "JournalError", "QueuedItem", "SQLiteJournal", "open_database"]

# Something else to write in the transaction that writes envelopes (the
# decision state kept in the same database).
DiskWrite = Callable[[sqlite3.Connection], object]

T = TypeVar("T")
_log = Logger()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_id TEXT NOT NULL,
    headers TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS items_state ON items (state, id);
"""


class JournalError(Exception):
    """
    The journal could not record what it was asked to (disk full, I/O error).
    """


class Executor(Protocol):
    """
    Runs blocking calls off the reactor thread, one at a time, and reports
    their results back on the reactor thread.
    """

    def run(self, call: Callable[[], T]) -> Deferred[T]: ...


@attrs.frozen
class QueuedItem:
    """
    An item of a queue as C{alertgateway queue} shows it.

    @ivar id: What names it to C{queue retry} and C{queue purge}: the row
        of the SQLite queue, a stream entry of the Redis queue.
    @ivar state: C{pending}, C{dead}, or C{retry} (a dead letter marked
        for another try that the gateway has not taken back yet).
    @ivar attempts: Deliveries tried (for a dead letter) or begun.
    @ivar reason: Why it is dead: the last error.
    """

    id: int | str
    state: str
    key: str
    request_id: str
    accepted_at: float
    attempts: int
    reason: str
    body: dict[str, Any]

    @property
    def alertname(self) -> str:
        """
        The alert's name, or its storm's group's.
        """
        labels = self.body.get("labels") or self.body.get("groupLabels") or {}
        return str(labels.get("alertname", "")) if isinstance(labels, dict) else ""


def open_database(path: str, synchronous: str = "FULL") -> sqlite3.Connection:
    """
    Open (creating if needed) the queue database in WAL mode.
    """
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={'FULL' if synchronous.upper() == 'FULL' else 'NORMAL'}")
    connection.execute("PRAGMA busy_timeout=5000")
    connection.executescript(_SCHEMA)
    return connection


def _row_envelope(row: sqlite3.Row | tuple[Any, ...]) -> Envelope:
    item_id, key, body, idempotency_key, request_id, headers, accepted_at = row
    return Envelope(
        key,
        json.loads(body),
        idempotency_key,
        request_id,
        tuple((str(n), str(v)) for n, v in json.loads(headers)),
        id=item_id,
        accepted_at=accepted_at,
    )


@attrs.define
class _Operation:
    kind: str
    args: Any
    done: Deferred[Any]


class SQLiteJournal:
    """
    The queue's items in SQLite, written by group commit on the executor.
    """

    def __init__(
        self, path: str, executor: Executor, *, clock_seconds: Callable[[], float], synchronous: str = "FULL"
    ) -> None:
        self.path = path
        self._executor = executor
        self._seconds = clock_seconds
        self._synchronous = synchronous
        self._connection: sqlite3.Connection | None = None
        self._pending: list[_Operation] = []
        self._writing = False
        self._idle: list[Deferred[None]] = []
        # The thread SQLite runs on, recorded so tests can prove it is not
        # the reactor's.
        self.threads: set[int] = set()

    def open(self) -> Deferred[list[Envelope]]:
        """
        Open the database and load what is pending, in acceptance order.
        """

        def _open() -> list[Envelope]:
            self.threads.add(threading.get_ident())
            self._connection = open_database(self.path, self._synchronous)
            rows = self._connection.execute(
                "SELECT id, key, body, idempotency_key, request_id, headers, accepted_at FROM items"
                " WHERE state = 'pending' ORDER BY id"
            ).fetchall()
            return [_row_envelope(row) for row in rows]

        return self._executor.run(_open)

    def append(self, envelopes: Sequence[Envelope], write: DiskWrite | None = None) -> Deferred[list[Envelope]]:
        """
        Write envelopes, and C{write} in the same transaction; fires with
        the envelopes carrying their row ids once they are committed.
        """
        if not envelopes and write is None:
            return succeed([])
        return self._submit("append", (list(envelopes), self._seconds(), write))

    def run(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """
        Run C{work} on the database, in the next transaction (with the
        writes asked for meanwhile); fires with what it returned.
        """
        return self._submit("run", work)

    def remove(self, envelope: Envelope) -> Deferred[None]:
        """
        Forget a delivered envelope.
        """
        return self._submit("remove", envelope.id)

    def bury(self, envelope: Envelope, reason: str, attempts: int) -> Deferred[None]:
        """
        Keep an envelope the receiver refused for good, as a dead letter.
        """
        return self._submit("bury", (envelope.id, reason, attempts))

    def adopt_retried(self) -> Deferred[list[Envelope]]:
        """
        Take back the dead letters that C{alertgateway queue retry} marked
        for another try.
        """
        return self._submit("adopt", None)

    def _submit(self, kind: str, args: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self._pending.append(_Operation(kind, args, done))
        if not self._writing:
            self._write_next()
        return done

    def _write_next(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            self._writing = False
            idle, self._idle = self._idle, []
            for waiter in idle:
                waiter.callback(None)
            return
        self._writing = True
        self._executor.run(lambda: self._commit(batch)).addBoth(self._committed, batch)

    def _commit(self, batch: list[_Operation]) -> list[Any]:
        """
        On the executor's thread: apply every operation in one transaction.
        """
        self.threads.add(threading.get_ident())
        connection = self._connection
        if connection is None:
            raise JournalError("the queue database is not open")
        results: list[Any] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for operation in batch:
                results.append(self._apply(connection, operation))
            connection.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise JournalError(f"{type(e).__name__}: {e}") from e
        except BaseException:
            # Not SQLite's doing (a bug in a write): nothing of the batch
            # may stay half-written either.
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise
        return results

    def _apply(self, connection: sqlite3.Connection, operation: _Operation) -> Any:
        if operation.kind == "run":
            return operation.args(connection)
        if operation.kind == "append":
            envelopes, now, write = operation.args
            stored = []
            for envelope in envelopes:
                accepted_at = envelope.accepted_at or now
                cursor = connection.execute(
                    "INSERT INTO items (key, body, idempotency_key, request_id, headers, accepted_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        envelope.key,
                        envelope.json_body(),
                        envelope.idempotency_key,
                        envelope.request_id,
                        json.dumps(list(envelope.headers)),
                        accepted_at,
                    ),
                )
                stored.append(envelope.stored(cursor.lastrowid, accepted_at))
            if write is not None:
                write(connection)
            return stored
        if operation.kind == "remove":
            connection.execute("DELETE FROM items WHERE id = ?", (operation.args,))
            return None
        if operation.kind == "bury":
            item_id, reason, attempts = operation.args
            connection.execute(
                "UPDATE items SET state = 'dead', reason = ?, attempts = ? WHERE id = ?", (reason, attempts, item_id)
            )
            return None
        rows = connection.execute(
            "SELECT id, key, body, idempotency_key, request_id, headers, accepted_at FROM items"
            " WHERE state = 'retry' ORDER BY id"
        ).fetchall()
        connection.execute("UPDATE items SET state = 'pending', reason = NULL WHERE state = 'retry'")
        return [_row_envelope(row) for row in rows]

    def _committed(self, result: list[Any] | Failure, batch: list[_Operation]) -> None:
        if isinstance(result, Failure):
            _log.error("Queue database write failed: {error}", error=str(result.value))
            for operation in batch:
                operation.done.errback(result)
        else:
            for operation, value in zip(batch, result, strict=True):
                operation.done.callback(value)
        self._write_next()

    def close(self) -> Deferred[None]:
        """
        Close the database once the writes already asked for are committed.
        """

        def _close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        if not self._writing:
            return self._executor.run(_close)
        idle: Deferred[None] = Deferred()
        self._idle.append(idle)
        return idle.addCallback(lambda _: self._executor.run(_close))


# What the `alertgateway queue` commands do, directly on the file (the
# gateway may be running: WAL lets both use it).


def list_items(connection: sqlite3.Connection, state: str | None = None, limit: int = -1) -> list[QueuedItem]:
    """
    The items in C{state} (every one by default), oldest first, at most
    C{limit} of them (every one by default).
    """
    query = "SELECT id, state, key, request_id, accepted_at, attempts, COALESCE(reason, ''), body FROM items"
    rows = connection.execute(
        query + (" WHERE state = ?" if state else "") + " ORDER BY id LIMIT ?", (state, limit) if state else (limit,)
    ).fetchall()
    return [QueuedItem(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows]


def count_items(connection: sqlite3.Connection, state: str | None = None) -> int:
    """
    How many items are in C{state} (in any state by default).
    """
    query = "SELECT COUNT(*) FROM items WHERE ?1 IS NULL OR state = ?1"
    count: int = connection.execute(query, (state,)).fetchone()[0]
    return count


def retry_dead(connection: sqlite3.Connection, ids: Sequence[int] = ()) -> int:
    if ids:
        cursor = connection.executemany(
            "UPDATE items SET state = 'retry' WHERE state = 'dead' AND id = ?", [(i,) for i in ids]
        )
    else:
        cursor = connection.execute("UPDATE items SET state = 'retry' WHERE state = 'dead'")
    return cursor.rowcount


def purge(connection: sqlite3.Connection, state: str = "dead", ids: Sequence[int] = ()) -> int:
    if ids:
        cursor = connection.executemany("DELETE FROM items WHERE state = ? AND id = ?", [(state, i) for i in ids])
    else:
        cursor = connection.execute("DELETE FROM items WHERE state = ?", (state,))
    return cursor.rowcount
