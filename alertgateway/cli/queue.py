# -*- test-case-name: tests.unit.test_cli_queue,tests.unit.test_cli -*-
"""
C{alertgateway queue list|retry|purge}: the pending items and dead letters
of the queue the configuration names, on every backend, also while the
gateway runs.

C{sqlite}: the database at C{queue.path} (a running gateway takes retried
dead letters back within C{queue.retry_interval}).  C{redis}: the streams
in Redis, through L{alertgateway.redis.queue.admin}, and this host's local
fallback database at C{queue.path} if there is one (what was accepted
while Redis was unreachable).  C{memory}: nothing outlives the process.

Items are named by their row (a number) in a database, by their stream
entry in Redis (C{<partition>/<entry ID>} pending, C{<entry ID>} dead).
A listing shows the alert's name, the dedup key, the attempts, the age and
the last error, oldest first, at most C{--limit} of them.  A database that
is not there, or a Redis that does not answer within its timeouts, is one
line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol

import attrs
from twisted.internet.interfaces import IReactorTime

from alertgateway.cli._common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, load_or_report, on_reactor, redis_location
from alertgateway.config import GatewayConfig
from alertgateway.delivery import journal
from alertgateway.delivery.journal import QueuedItem
from alertgateway.interfaces import IClientReactor

if TYPE_CHECKING:
    # Imported when used: the other commands need no Redis client.
    from alertgateway.redis.client import RedisClient
    from alertgateway.redis.queue.admin import QueueAdmin

__all__ = ["add_arguments", "queue_command"]

# Items listed when --limit does not say.
DEFAULT_LIMIT = 1000


def add_arguments(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """
    The actions of C{queue} and their options; returns the actions'
    parsers.
    """
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list queued items (dead letters by default)")
    listing.add_argument("--state", choices=("dead", "pending", "all"), default="dead")
    listing.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="show at most this many, oldest first")
    listing.add_argument("--json", action="store_true", help="one JSON object per line, the body included")
    retry = actions.add_parser("retry", help="send dead letters again (all, or the given ids)")
    retry.add_argument("ids", nargs="*")
    drop = actions.add_parser("purge", help="drop dead letters (or pending items) for good")
    drop.add_argument("--state", choices=("dead", "pending"), default="dead")
    drop.add_argument("ids", nargs="*")
    return [listing, retry, drop]


class _Store(Protocol):
    """
    One place items wait: a database, or the Redis streams.
    """

    @property
    def where(self) -> str:
        """
        How its lines name it, beside others (empty when alone).
        """

    def owns(self, name: str) -> bool: ...

    async def count(self, state: str | None) -> int: ...

    async def items(self, state: str | None, limit: int) -> list[QueuedItem]: ...

    async def retry(self, names: Sequence[str]) -> str: ...

    async def purge(self, state: str, names: Sequence[str]) -> int: ...


@attrs.frozen
class _Database:
    """
    A queue database (the SQLite queue, or the Redis queue's fallback).
    """

    connection: sqlite3.Connection
    # How its lines name it, beside the Redis queue's.
    where: str = ""

    def owns(self, name: str) -> bool:
        return name.isdigit()

    async def count(self, state: str | None) -> int:
        return journal.count_items(self.connection, state)

    async def items(self, state: str | None, limit: int) -> list[QueuedItem]:
        return journal.list_items(self.connection, state, limit)

    async def retry(self, names: Sequence[str]) -> str:
        marked = journal.retry_dead(self.connection, [int(name) for name in names])
        return f"{marked} dead letter(s){self.where} marked for another try"

    async def purge(self, state: str, names: Sequence[str]) -> int:
        return journal.purge(self.connection, state, [int(name) for name in names])


@attrs.frozen
class _Streams:
    """
    The Redis queue's streams.
    """

    admin: QueueAdmin
    where = " in the Redis queue"

    def owns(self, name: str) -> bool:
        from alertgateway.redis.queue.admin import is_entry_name

        return is_entry_name(name)

    async def count(self, state: str | None) -> int:
        return await self.admin.count(state)

    async def items(self, state: str | None, limit: int) -> list[QueuedItem]:
        found: list[QueuedItem] = []
        if state in ("pending", None):
            found += await self.admin.pending(limit)
        if state in ("dead", None):
            found += await self.admin.dead(limit)
        return found

    async def retry(self, names: Sequence[str]) -> str:
        retried = await self.admin.retry(names)
        full = f"; {retried.left} left dead: the queue is full (queue.max_items)" if retried.left else ""
        return f"{retried.moved} dead letter(s) back{self.where}{full}"

    async def purge(self, state: str, names: Sequence[str]) -> int:
        return await self.admin.purge(state, names)


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size, smaller, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            return f"{seconds // size}{unit}{seconds % size // small_size:02d}{smaller}"
    return f"{seconds}s"


def _table(items: Sequence[QueuedItem], now: float) -> list[str]:
    rows = [("ID", "STATE", "ALERTNAME", "KEY", "ATTEMPTS", "AGE", "LAST ERROR")]
    rows += [
        (str(i.id), i.state, i.alertname or "-", i.key, str(i.attempts), _age(now - i.accepted_at), i.reason or "-")
        for i in items
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]) for row in rows]


def _json(item: QueuedItem, now: float) -> str:
    document = {**attrs.asdict(item), "alertname": item.alertname, "age_seconds": round(now - item.accepted_at, 3)}
    return json.dumps(document, separators=(",", ":"))


async def run_action(args: argparse.Namespace, stores: Sequence[_Store], out: IO[str], err: IO[str], now: float) -> int:
    """
    Do what C{args} asks on C{stores} (each holding items of its own).
    """
    names: list[str] = getattr(args, "ids", [])
    unknown = [name for name in names if not any(store.owns(name) for store in stores)]
    if unknown:
        print(f"not an item of this queue: {', '.join(unknown)} (see queue list)", file=err)
        return EXIT_INVALID
    if args.action == "list":
        state = None if args.state == "all" else args.state
        items: list[QueuedItem] = []
        total = 0
        for store in stores:
            items += await store.items(state, args.limit)
            total += await store.count(state)
        items = sorted(items, key=lambda item: item.accepted_at)[: args.limit]
        if args.json:
            for item in items:
                print(_json(item, now), file=out)
        elif items:
            print("\n".join(_table(items, now)), file=out)
        print(f"{len(items)} item(s)" + (f" of {total}: --limit shows more" if total > len(items) else ""), file=err)
        return EXIT_OK
    for store in stores:
        mine = [name for name in names if store.owns(name)]
        if names and not mine:
            continue
        if args.action == "retry":
            print(await store.retry(mine), file=out)
        else:
            print(f"{await store.purge(args.state, mine)} {args.state} item(s){store.where} dropped", file=out)
    return EXIT_OK


class _Unusable(Exception):
    """
    The queue database is not there, or cannot be read; the message says
    which, naming it.
    """


@contextlib.contextmanager
def _databases(path: str, *, fallback: bool) -> Iterator[list[_Store]]:
    """
    The queue database at C{path}, open while the block runs; none if it
    is the Redis queue's C{fallback} and not there.

    @raise _Unusable: If it is not there (and not a fallback), or cannot be
        opened or read.
    """
    if not os.path.exists(path):
        if not fallback:
            raise _Unusable(f"no queue database at {path} (queue.path): is this where the gateway runs?")
        yield []
        return
    try:
        # Opened for reading and writing, never made: a database that is
        # not there was never the queue.
        connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None)
        connection.execute("PRAGMA busy_timeout=5000")
    except sqlite3.Error as e:
        raise _Unusable(f"cannot open the queue database {path}: {e}") from None
    try:
        yield [_Database(connection, f" in the fallback queue {path}" if fallback else "")]
    except sqlite3.Error as e:
        raise _Unusable(f"cannot use the queue database {path}: {e}") from None
    finally:
        connection.close()


def _at_once(coroutine: Coroutine[Any, Any, int]) -> int:
    """
    The result of a coroutine that waits for nothing (the databases answer
    at once), without a reactor.
    """
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    done: list[int | Failure] = []
    Deferred.fromCoroutine(coroutine).addBoth(done.append)
    [result] = done
    if isinstance(result, Failure):
        result.raiseException()
    assert isinstance(result, int)
    return result


def queue_command(
    args: argparse.Namespace, out: IO[str], err: IO[str], *, seconds: Callable[[], float] | None = None
) -> int:
    """
    C{alertgateway queue list|retry|purge}: work on the queue the
    configuration names.

    @param seconds: The time now, for the ages listed.
    """
    import time

    config = load_or_report(args.config, err)
    if config is None:
        return EXIT_INVALID
    if getattr(args, "limit", 1) < 1:
        print("--limit must be at least 1", file=err)
        return EXIT_INVALID
    now = (seconds or time.time)()
    backend = config.queue.backend
    if backend == "memory":
        print("queue.backend is memory: nothing is kept outside the running gateway", file=err)
        return EXIT_FAILED
    if backend == "redis":
        return on_reactor(lambda reactor: redis_queue(args, config, out, err, reactor=reactor))
    try:
        with _databases(config.queue.path, fallback=False) as stores:
            return _at_once(run_action(args, stores, out, err, now))
    except _Unusable as e:
        print(str(e), file=err)
        return EXIT_FAILED


async def redis_queue(
    args: argparse.Namespace, config: GatewayConfig, out: IO[str], err: IO[str], *, reactor: IClientReactor
) -> int:
    """
    The queue commands with C{queue.backend: redis}: on the streams, and on
    this host's fallback database if there is one.
    """
    from alertgateway.app.settings import redis_settings
    from alertgateway.observability.metrics import RedisMetrics
    from alertgateway.redis.client import RedisClient, RedisError
    from alertgateway.redis.queue.admin import QueueAdmin

    settings = redis_settings(config.state.redis)
    client = RedisClient(settings, reactor, RedisMetrics.unregistered(), name="queue command")
    client.start()
    try:
        waited = settings.connect_timeout + settings.timeout
        if not await _connected(client, reactor, waited):
            where = redis_location(settings.url)
            print(f"cannot reach Redis at {where} within {waited:g}s (state.redis)", file=err)
            return EXIT_FAILED
        streams = _Streams(
            QueueAdmin(client, partitions=config.queue.redis.partitions, max_items=config.queue.max_items)
        )
        with _databases(config.queue.path, fallback=True) as stores:
            return await run_action(args, [streams, *stores], out, err, reactor.seconds())
    except _Unusable as e:
        print(str(e), file=err)
        return EXIT_FAILED
    except RedisError as e:
        print(f"Redis: {e}", file=err)
        return EXIT_FAILED
    finally:
        await client.stop()


async def _connected(client: RedisClient, reactor: IReactorTime, seconds: float) -> bool:
    """
    Whether C{client} connects within C{seconds}.
    """
    from twisted.internet.defer import Deferred, TimeoutError

    if client.up:
        return True
    up: Deferred[None] = Deferred()

    def _changed(now_up: bool) -> None:
        if now_up and not up.called:
            up.callback(None)

    client.on_state(_changed)
    with contextlib.suppress(TimeoutError):
        await up.addTimeout(seconds, reactor)
        return True
    return False
