# -*- test-case-name: tests.unit.test_state_sqlite -*-
"""
The decider's state in the queue's SQLite database (C{state.backend:
sqlite}, the default): decisions survive a restart, or a crash.

The working set is the memory store's (decisions read memory, so a
duplicate-heavy load is no read load on the disk); the database is written
through and read at start.  What the processor must receive is committed in
the same transaction as the queue rows it produces, before the webhook is
answered: a decision that forwards something (a new episode, an
escalation, a resolution, a storm event) or changes a storm (its members,
which must never be only in memory), and the signature of a signed
webhook.  Pure bookkeeping (a duplicate's count and last sighting, what
expiry and the bounds forget) is written by L{SQLiteState.flush}, run every
C{state.flush_interval}: a crash loses at most that much of it.  Two things
are not written at all: a delivery's outcome (the queue records it: what
left the queue was delivered, a dead letter was rejected) and the groups
only watched for a storm (after a restart a storm starts at worst a few
alerts later).

Tables: C{episodes} (one JSON document per dedup key), C{groups} (one per
correlation group in a storm, its waiting members apart), C{members} (the
members waiting in storms, in order) and C{replays} (signature replay keys
and until when they count).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

import attrs
from twisted.internet.defer import Deferred, succeed

from alertgateway.core.decider import DeciderSettings
from alertgateway.core.decision import Changes, Decision
from alertgateway.core.episodes import Delivery, Episode
from alertgateway.core.storms import Group, Member
from alertgateway.state.memory import MAX_GROUPS, MemoryState
from alertgateway.state.ports import Replay, StateWrite

__all__ = ["Database", "Restored", "SQLiteState", "create_tables", "stats"]

T = TypeVar("T")

# Replay keys that no longer count are forgotten at least this often, even
# when no bookkeeping is due (a signed sender's webhooks are all written
# through).
_PRUNE_EVERY = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (key TEXT PRIMARY KEY, last_seen REAL NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS episodes_seen ON episodes (last_seen);
CREATE TABLE IF NOT EXISTS groups (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (seq INTEGER PRIMARY KEY AUTOINCREMENT, group_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS members_group ON members (group_id, seq);
CREATE TABLE IF NOT EXISTS replays (key TEXT PRIMARY KEY, until REAL NOT NULL);
"""


class Database(Protocol):
    """
    The queue's database, as the state store uses it: C{run} runs work on
    the database's own thread, in its next transaction.
    """

    def run(self, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]: ...


def create_tables(connection: sqlite3.Connection) -> None:
    """
    Create the state's tables where they are missing.
    """
    for statement in _SCHEMA.strip().split(";"):
        if statement.strip():
            connection.execute(statement)


def _dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"))


@attrs.frozen
class Restored:
    """
    What a start found in the database, and how long reading it took.
    """

    episodes: int
    storms: int
    members: int
    replays: int
    seconds: float
    replay_keys: tuple[Replay, ...] = ()


@attrs.frozen
class _Rows:
    """
    The state as read from the database.
    """

    episodes: list[tuple[str, str]]
    groups: list[tuple[str, str]]
    members: list[tuple[str, str]]
    replays: list[tuple[str, float]]
    # The idempotency keys of what the queue still holds, by item state.
    outstanding: dict[str, str]


def _read(connection: sqlite3.Connection, *, lapsed: float, max_tracked: int, now: float) -> _Rows:
    """
    On the database's thread: forget what lapsed while the gateway was
    away, then read the rest.
    """
    create_tables(connection)
    connection.execute("DELETE FROM episodes WHERE last_seen < ?", (lapsed,))
    # Past the bound (dedup.max_tracked lowered), the least recent go.
    connection.execute(
        "DELETE FROM episodes WHERE key NOT IN (SELECT key FROM episodes ORDER BY last_seen DESC LIMIT ?)",
        (max_tracked,),
    )
    connection.execute("DELETE FROM replays WHERE until < ?", (now,))
    return _Rows(
        episodes=connection.execute("SELECT key, doc FROM episodes ORDER BY last_seen, key").fetchall(),
        groups=connection.execute("SELECT id, doc FROM groups").fetchall(),
        members=connection.execute("SELECT group_id, doc FROM members ORDER BY seq").fetchall(),
        replays=connection.execute("SELECT key, until FROM replays").fetchall(),
        outstanding=dict(connection.execute("SELECT idempotency_key, state FROM items").fetchall()),
    )


def _write_changes(
    connection: sqlite3.Connection,
    episodes: Sequence[tuple[str, Episode | None]],
    groups: Sequence[tuple[str, Group | None]],
    waiting: Sequence[tuple[str, bool, int, Sequence[Member]]],
    replays: Sequence[Replay],
) -> None:
    """
    On the database's thread, in the transaction of the queue rows: write a
    decision's changes.
    """
    for key, episode in episodes:
        if episode is None:
            connection.execute("DELETE FROM episodes WHERE key = ?", (key,))
        else:
            connection.execute(
                "INSERT OR REPLACE INTO episodes (key, last_seen, doc) VALUES (?, ?, ?)",
                (key, episode.last_seen, _dumps(episode.to_json())),
            )
    for group_id, group in groups:
        if group is None:
            connection.execute("DELETE FROM groups WHERE id = ?", (group_id,))
        else:
            connection.execute(
                "INSERT OR REPLACE INTO groups (id, doc) VALUES (?, ?)", (group_id, _dumps(group.to_json()))
            )
    for group_id, cleared, taken, added in waiting:
        if cleared:
            connection.execute("DELETE FROM members WHERE group_id = ?", (group_id,))
        elif taken:
            connection.execute(
                "DELETE FROM members WHERE seq IN (SELECT seq FROM members WHERE group_id = ? ORDER BY seq LIMIT ?)",
                (group_id, taken),
            )
        connection.executemany(
            "INSERT INTO members (group_id, doc) VALUES (?, ?)",
            [(group_id, _dumps(member.to_json())) for member in added],
        )
    connection.executemany("INSERT OR REPLACE INTO replays (key, until) VALUES (?, ?)", list(replays))


def _write_bookkeeping(
    connection: sqlite3.Connection, episodes: Sequence[tuple[str, Episode | None]], now: float
) -> None:
    """
    On the database's thread: what changed without being written, what was
    forgotten, and the replay keys that no longer count.
    """
    _write_changes(connection, episodes, [], [], [])
    connection.execute("DELETE FROM replays WHERE until < ?", (now,))


class SQLiteState(MemoryState):
    """
    The memory store, written through to the queue's database.

    @param database: The queue's database (its journal).
    @param clock: Gives the time for what the flush forgets.
    """

    def __init__(
        self,
        settings: DeciderSettings,
        database: Database,
        *,
        clock: Callable[[], float],
        max_tracked: int,
        max_groups: int = MAX_GROUPS,
        on_evict: Callable[[int], object] | None = None,
    ) -> None:
        super().__init__(settings, max_tracked=max_tracked, max_groups=max_groups, on_evict=on_evict)
        self._database = database
        self._clock = clock
        # Written later, by the flush: keys whose committed episode changed
        # (or went).
        self._dirty: set[str] = set()
        # When the flush last forgot the replay keys that no longer count.
        self._pruned = clock()
        # Delivery outcomes that ended while the state was being restored
        # (the forwarder may start first): applied once it is.
        self._restoring: list[tuple[str, str, Delivery]] | None = None

    # Durable decisions.

    def _state_write(self, decision: Decision, replay: Replay | None) -> StateWrite | None:
        changes = decision.changes
        groups = []
        for group, value in changes.groups.items():
            # A group only watched for a storm (its recent sightings) is not
            # kept: it forwards nothing, and after a restart a storm starts
            # at worst a few alerts later.
            if group in self._storms or (value is not None and value.storm is not None):
                groups.append((group, value))
        if not (decision.outgoing or groups or changes.waiting or replay is not None or self._copy_resolved(changes)):
            return None
        return partial(
            _write_changes,
            episodes=list(changes.episodes.items()),
            groups=groups,
            waiting=[(g, c.cleared, c.taken, c.added) for g, c in changes.waiting.items()],
            replays=[replay] if replay is not None else [],
        )

    def _copy_resolved(self, changes: Changes) -> bool:
        """
        Whether a copy of an HA pair resolved (the episode's copies went
        down): not bookkeeping, as the episode's own resolution waits for it.
        """
        for key, episode in changes.episodes.items():
            before = self._episodes.get(key)
            if episode is not None and before is not None and len(episode.copies) < len(before.copies):
                return True
        return False

    # Bookkeeping, written later.

    def _changed(self, key: str) -> None:
        self._dirty.add(key)

    def _dropped(self, key: str) -> None:
        self._dirty.add(key)

    def flush(self) -> Deferred[None]:
        """
        Write what changed without being written (and forget what was
        forgotten).  Keys with a decision still being committed wait for the
        next flush: their value on disk must not go back in time.
        """
        now = self._clock()
        if not self._dirty and now - self._pruned < _PRUNE_EVERY:
            return succeed(None)
        self._pruned = now
        locks = self._locks
        ready = [key for key in self._dirty if "e" + key not in locks]
        self._dirty.difference_update(ready)
        episodes = [(key, self._episodes.get(key)) for key in ready]
        work = partial(_write_bookkeeping, episodes=episodes, now=now)
        d = self._database.run(work)

        def _failed(failure: Any) -> None:
            # Written by the next flush.
            self._dirty.update(ready)
            failure.raiseException()

        return d.addCallbacks(lambda _: None, _failed)

    # Start.

    def restore(self, now: float) -> Deferred[Restored]:
        """
        Read the state the database holds: the episodes still within their
        window (the most recent C{max_tracked}), the groups and their storms,
        the members waiting in them, the replay keys that still count.
        """
        started = time.monotonic()
        self._restoring = []
        work = partial(_read, lapsed=now - self.settings.window, max_tracked=self.max_tracked, now=now)
        d = self._database.run(work)

        def _failed(failure: Any) -> Any:
            self._restoring = None
            return failure

        return d.addCallbacks(self._adopt, _failed, callbackArgs=(started,))

    def delivered(self, key: str, idempotency_key: str, outcome: Delivery) -> Deferred[None]:
        if self._restoring is not None:
            # Its episode is not back yet: recorded on it once it is.
            self._restoring.append((key, idempotency_key, outcome))
        return super().delivered(key, idempotency_key, outcome)

    def _adopt(self, rows: _Rows, started: float) -> Restored:
        for _, doc in rows.episodes:
            episode = _delivery_of(Episode.from_json(json.loads(doc)), rows.outstanding)
            self._episodes[episode.key] = episode
            self._by_fingerprint[episode.fingerprint] = episode.key
        outcomes, self._restoring = self._restoring or [], None
        for key, idempotency_key, outcome in outcomes:
            restored = self._episodes.get(key)
            if restored is not None:
                self._episodes[key] = restored.delivered(idempotency_key, outcome)
        waiting: dict[str, list[Member]] = {}
        for group_id, doc in rows.members:
            waiting.setdefault(group_id, []).append(Member.from_json(json.loads(doc)))
        members = 0
        for group_id, doc in rows.groups:
            listed = waiting.get(group_id, [])
            group = Group.from_json(json.loads(doc), waiting=len(listed))
            if group.storm is not None:
                self._storms[group_id] = group
                if listed:
                    self._waiting[group_id] = deque(listed)
                    members += len(listed)
            else:
                self._watching[group_id] = group
        return Restored(
            episodes=len(self._episodes),
            storms=len(self._storms),
            members=members,
            replays=len(rows.replays),
            seconds=time.monotonic() - started,
            replay_keys=tuple((key, until) for key, until in rows.replays),
        )


def _delivery_of(episode: Episode, outstanding: dict[str, str]) -> Episode:
    """
    How the delivery of what C{episode} last forwarded went, from what the
    queue still holds: gone from it, it was delivered; a dead letter, it
    was rejected.  (Outcomes are not written as they happen: the queue
    already records them.)
    """
    forwarded = episode.forwarded
    if not forwarded or episode.delivery is not Delivery.QUEUED:
        return episode
    state = outstanding.get(forwarded)
    if state is None:
        return episode.delivered(forwarded, Delivery.DELIVERED)
    if state == "dead":
        return episode.delivered(forwarded, Delivery.REJECTED)
    return episode


def stats(connection: sqlite3.Connection) -> dict[str, int]:
    """
    What the database holds, for C{alertgateway state stats}: episodes,
    correlation groups, open storms, members waiting in storms, replay
    keys, and the queue's items by state.
    """
    create_tables(connection)

    def count(query: str) -> int:
        return int(connection.execute(query).fetchone()[0])

    storms = sum(
        1 for (doc,) in connection.execute("SELECT doc FROM groups") if json.loads(doc).get("storm") is not None
    )
    by_state = dict(connection.execute("SELECT state, COUNT(*) FROM items GROUP BY state").fetchall())
    return {
        "episodes": count("SELECT COUNT(*) FROM episodes"),
        "groups": count("SELECT COUNT(*) FROM groups"),
        "storms": storms,
        "waiting_members": count("SELECT COUNT(*) FROM members"),
        "replay_keys": count("SELECT COUNT(*) FROM replays"),
        "queued": int(by_state.get("pending", 0)) + int(by_state.get("retry", 0)),
        "dead_letters": int(by_state.get("dead", 0)),
    }
