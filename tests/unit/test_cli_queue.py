"""
Tests for C{alertgateway queue list|retry|purge} (L{alertgateway.cli.queue}
and, for the Redis queue, L{alertgateway.redis.queue.admin}): the SQLite
queue's database, and the Redis queue's streams against a real
C{redis-server}, filled by the gateway's own queue code.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from alertgateway import cli
from alertgateway.cli.queue import queue_command, redis_queue
from alertgateway.config import parse_config
from alertgateway.delivery.durable import DurableQueue
from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.journal import SQLiteJournal
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.redis.client import RedisClient, RedisSettings
from alertgateway.redis.failover import Failover
from alertgateway.redis.queue import RedisQueue, RedisQueueSettings
from alertgateway.redis.queue.admin import BATCH
from tests.redis_server import RedisServer, until
from tests.unit._http import InlineExecutor
from tests.unit._support import envelope, inline

reactor: Any = _reactor

# 2026-11-26T03:49:49Z
NOW = 1795664989.0
HEADER = ["ID", "STATE", "ALERTNAME", "KEY", "ATTEMPTS", "AGE", "LAST", "ERROR"]


def name(e: Envelope) -> str:
    return str(e.body["labels"]["alertname"])


def columns(out: str) -> list[list[str]]:
    """
    The listing's rows, split at runs of spaces (no cell here has one but
    the last).
    """
    return [line.split(None, 6) for line in out.splitlines()]


class SQLiteQueueTests(SynchronousTestCase):
    """
    The queue commands on the database of C{queue.backend: sqlite}.
    """

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.db = str(self.directory / "queue.db")
        self.config = self.directory / "gateway.yaml"
        self.config.write_text(
            f"webhook:\n  auth:\n    token: t\nalert_processor:\n  endpoint: file:x.jsonl\nqueue:\n  path: {self.db}\n"
        )
        journal = SQLiteJournal(self.db, InlineExecutor(), clock_seconds=lambda: NOW)
        self.successResultOf(journal.open())
        a, b, c = self.successResultOf(journal.append([envelope("A"), envelope("B"), envelope("C")]))
        self.keys = [a.key, b.key, c.key]
        self.successResultOf(journal.bury(a, "HTTP 400: no such team", 1))
        self.successResultOf(journal.bury(c, "HTTP 422", 2))
        self.successResultOf(journal.close())

    def run_cli(self, *argv: str, now: float = NOW + 125) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        args = cli.build_parser().parse_args([*argv, "--config", str(self.config)])
        code = queue_command(args, out, err, seconds=lambda: now)
        return code, out.getvalue(), err.getvalue()

    def test_list(self) -> None:
        """
        list shows dead letters by default, oldest first, under a header:
        id, state, alert name, dedup key, attempts, age and last error.
        """
        code, out, err = self.run_cli("queue", "list")
        self.assertEqual((code, err), (0, "2 item(s)\n"))
        self.assertEqual(
            columns(out),
            [
                ["ID", "STATE", "ALERTNAME", "KEY", "ATTEMPTS", "AGE", "LAST ERROR"],
                ["1", "dead", "A", self.keys[0], "1", "2m05s", "HTTP 400: no such team"],
                ["3", "dead", "C", self.keys[2], "2", "2m05s", "HTTP 422"],
            ],
        )
        _code, out, _err = self.run_cli("queue", "list", "--state", "pending", now=NOW + 3 * 86400 + 7300)
        self.assertEqual(columns(out)[1], ["2", "pending", "B", self.keys[1], "0", "3d02h", "-"])
        _code, out, _err = self.run_cli("queue", "list", "--state", "all")
        self.assertEqual([row[0] for row in columns(out)], ["ID", "1", "2", "3"])

    def test_list_json_and_limit(self) -> None:
        """
        --json prints one object per item, the body included; --limit
        bounds the listing and says there is more.
        """
        _code, out, err = self.run_cli("queue", "list", "--json", "--limit", "1")
        [item] = [json.loads(line) for line in out.splitlines()]
        self.assertEqual(
            {k: item[k] for k in ("id", "state", "alertname", "key", "attempts", "reason", "age_seconds")},
            {
                "id": 1,
                "state": "dead",
                "alertname": "A",
                "key": self.keys[0],
                "attempts": 1,
                "reason": "HTTP 400: no such team",
                "age_seconds": 125.0,
            },
        )
        self.assertEqual(item["body"]["labels"], {"alertname": "A"})
        self.assertEqual(err, "1 item(s) of 2: --limit shows more\n")

    def test_retry(self) -> None:
        """
        retry marks the given dead letters (or all) for another try.
        """
        self.assertEqual(self.run_cli("queue", "retry", "3")[1], "1 dead letter(s) marked for another try\n")
        self.assertEqual([row[0] for row in columns(self.run_cli("queue", "list")[1])], ["ID", "1"])
        self.assertEqual(self.run_cli("queue", "retry")[1], "1 dead letter(s) marked for another try\n")
        self.assertEqual(self.run_cli("queue", "list")[1:], ("", "0 item(s)\n"))

    def test_purge(self) -> None:
        """
        purge drops dead letters (given ids, or all), or pending items with
        --state pending.
        """
        self.assertEqual(self.run_cli("queue", "purge", "1")[1], "1 dead item(s) dropped\n")
        self.assertEqual(self.run_cli("queue", "purge")[1], "1 dead item(s) dropped\n")
        self.assertEqual(self.run_cli("queue", "purge", "--state", "pending")[1], "1 pending item(s) dropped\n")
        self.assertEqual(self.run_cli("queue", "list", "--state", "all")[1], "")

    def test_not_an_item(self) -> None:
        """
        An id that cannot name an item of this queue is refused before
        anything is done.
        """
        code, out, err = self.run_cli("queue", "retry", "1", "3/1-0")
        self.assertEqual((code, out), (cli.EXIT_INVALID, ""))
        self.assertEqual(err, "not an item of this queue: 3/1-0 (see queue list)\n")
        self.assertEqual(len(columns(self.run_cli("queue", "list")[1])), 3)

    def test_missing_database(self) -> None:
        """
        A queue.path with no database (or no directory) is one line and
        exit status 1, and no database is made there.
        """
        for path in (self.directory / "elsewhere.db", self.directory / "no" / "such" / "dir" / "queue.db"):
            with self.subTest(path=path):
                self.config.write_text(f"queue:\n  path: {path}\n")
                code, out, err = self.run_cli("queue", "list")
                self.assertEqual((code, out), (cli.EXIT_FAILED, ""))
                self.assertEqual(err, f"no queue database at {path} (queue.path): is this where the gateway runs?\n")
                self.assertFalse(os.path.exists(path))

    def test_not_a_database(self) -> None:
        """
        A file that is not a queue database is one line and exit status 1.
        """
        path = self.directory / "junk.db"
        path.write_bytes(b"not a database, and long enough to be read as one " * 100)
        self.config.write_text(f"queue:\n  path: {path}\n")
        code, _out, err = self.run_cli("queue", "list")
        self.assertEqual(code, cli.EXIT_FAILED)
        self.assertEqual(err, f"cannot use the queue database {path}: file is not a database\n")

    def test_memory_backend(self) -> None:
        """
        With queue.backend memory there is no database: the command says so
        and fails.
        """
        self.config.write_text(self.config.read_text() + "  backend: memory\n")
        code, _, err = self.run_cli("queue", "list")
        self.assertEqual(code, cli.EXIT_FAILED)
        self.assertIn("queue.backend is memory", err)

    def test_invalid_config(self) -> None:
        """
        An invalid configuration is reported, with the check-config exit
        status; --config is required.
        """
        self.config.write_text("queue:\n  backend: tape\n")
        code, _, err = self.run_cli("queue", "list")
        self.assertEqual(code, cli.EXIT_INVALID)
        self.assertIn("backend", err)
        self.patch(__import__("sys"), "stderr", io.StringIO())
        self.assertRaises(SystemExit, cli.main, ["queue", "list"], io.StringIO(), io.StringIO())

    def test_main(self) -> None:
        """
        alertgateway queue, through main, on the real time.
        """
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(cli.main(["queue", "list", "-c", str(self.config)], out, err), cli.EXIT_OK)
        self.assertEqual(err.getvalue(), "2 item(s)\n")


class RedisQueueCommandTests(TestCase):
    """
    The queue commands with C{queue.backend: redis}, on a real Redis whose
    streams the gateway's own Redis queue filled.
    """

    timeout = 30

    def setUp(self) -> None:
        self.server = RedisServer().start()
        self.addCleanup(self.server.stop)
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.fallback = self.directory / "queue.db"

    def config_text(self, url: str | None = None, max_items: int = 100) -> str:
        return (
            f"queue:\n  backend: redis\n  path: {self.fallback}\n  max_items: {max_items}\n"
            f"  redis: {{partitions: 4}}\n"
            f"state:\n  redis: {{url: '{url or self.server.url}', connect_timeout: 0.3, timeout: 0.3}}\n"
        )

    async def replica(self, max_items: int = 100) -> tuple[RedisClient, RedisQueue]:
        """
        A replica's queue, as the gateway runs it (4 partitions).
        """
        settings = RedisSettings(url=self.server.url, timeout=0.5, connect_timeout=0.5, pool_size=1)
        client = RedisClient(settings, reactor, GatewayMetrics().redis)
        client.start()
        self.addCleanup(client.stop)
        await until(lambda: client.up)
        journal = SQLiteJournal(str(self.directory / "replica.db"), InlineExecutor(), clock_seconds=reactor.seconds)
        queue = RedisQueue(
            client,
            DurableQueue(journal, max_items=max_items, max_bytes=10**6),
            Failover(client, "fail_open", GatewayMetrics().redis),
            reactor=reactor,
            settings=RedisQueueSettings(max_items=max_items, partitions=4, claim_idle=0.5, read_batch=10, block=0.1),
            replica="r1",
        )
        await queue.start()
        self.addCleanup(queue.stop)
        return client, queue

    async def fill(self, queue: RedisQueue, client: RedisClient) -> None:
        """
        Dead letters A (3 attempts) and C, and B pending, read once.
        """
        await queue.put([envelope("A"), envelope("B"), envelope("C")])
        taken = {}
        for _ in range(3):
            e = await queue.take().addTimeout(2, reactor)
            taken[name(e)] = e
        queue.bury(taken["A"], "HTTP 400: no such team", 3)
        queue.bury(taken["C"], "HTTP 422", 1)
        # B stays taken: read by this replica, not delivered.
        await until(lambda: len(queue) == 1)
        self.taken = taken
        self.taken_b = taken["B"]

    async def run_cli(self, *argv: str, text: str | None = None) -> tuple[int, str, str]:
        config_path = self.directory / "gateway.yaml"
        config_path.write_text(text or self.config_text())
        args = cli.build_parser().parse_args([*argv, "--config", str(config_path)])
        out, err = io.StringIO(), io.StringIO()
        code = await redis_queue(args, parse_config(config_path.read_text(), {}), out, err, reactor=reactor)
        return code, out.getvalue(), err.getvalue()

    @inline
    async def test_list(self) -> None:
        """
        list shows the dead letters (named by their entry in the dead
        stream, with the reason and attempts of their burial) and the
        pending items (named partition/entry, with how often they were
        handed to a replica), oldest first, with alert names and keys.
        """
        client, queue = await self.replica()
        await self.fill(queue, client)
        code, out, err = await self.run_cli("queue", "list")
        self.assertEqual((code, err), (0, "2 item(s)\n"))
        rows = columns(out)
        self.assertEqual(rows[0], ["ID", "STATE", "ALERTNAME", "KEY", "ATTEMPTS", "AGE", "LAST ERROR"])
        self.assertEqual(
            [(r[1], r[2], r[3], r[4], r[6]) for r in rows[1:]],
            [
                ("dead", "A", self.taken["A"].key, "3", "HTTP 400: no such team"),
                ("dead", "C", self.taken["C"].key, "1", "HTTP 422"),
            ],
        )
        self.assertRegex(rows[1][0], r"^[0-9]+-[0-9]+$")
        _code, out, _err = await self.run_cli("queue", "list", "--state", "pending", "--json")
        [pending] = [json.loads(line) for line in out.splitlines()]
        self.assertEqual(pending["id"], f"{self.taken_b.partition}/{self.taken_b.entry}")
        self.assertEqual((pending["state"], pending["alertname"], pending["attempts"]), ("pending", "B", 1))
        self.assertEqual(pending["body"]["labels"], {"alertname": "B"})
        _code, out, err = await self.run_cli("queue", "list", "--state", "all", "--limit", "2")
        self.assertEqual(len(columns(out)), 3)
        self.assertEqual(err, "2 item(s) of 3: --limit shows more\n")

    @inline
    async def test_retry(self) -> None:
        """
        retry puts dead letters back in their key's stream, where a running
        replica delivers them again with their idempotency key; past
        queue.max_items the rest stay dead, and say so.
        """
        client, queue = await self.replica()
        await self.fill(queue, client)
        dead = columns((await self.run_cli("queue", "list"))[1])[1:]
        code, out, _err = await self.run_cli("queue", "retry", dead[1][0])
        self.assertEqual((code, out), (0, "1 dead letter(s) back in the Redis queue\n"))
        again = await queue.take().addTimeout(2, reactor)
        c = self.taken["C"]
        self.assertEqual((again.key, again.idempotency_key), (c.key, c.idempotency_key))
        queue.done(again)
        # B, taken, counts against the bound of 1.
        code, out, _err = await self.run_cli("queue", "retry", text=self.config_text(max_items=1))
        self.assertEqual(
            out, "0 dead letter(s) back in the Redis queue; 1 left dead: the queue is full (queue.max_items)\n"
        )
        code, out, _err = await self.run_cli("queue", "retry")
        self.assertEqual(out, "1 dead letter(s) back in the Redis queue\n")
        self.assertEqual(name(await queue.take().addTimeout(2, reactor)), "A")
        self.assertEqual((await self.run_cli("queue", "list"))[2], "0 item(s)\n")

    @inline
    async def test_purge(self) -> None:
        """
        purge drops dead letters (by id, or all) and pending items (by id,
        or all), counting the shared length down.
        """
        client, queue = await self.replica()
        await self.fill(queue, client)
        dead = columns((await self.run_cli("queue", "list"))[1])[1:]
        self.assertEqual(
            (await self.run_cli("queue", "purge", dead[0][0]))[1], "1 dead item(s) in the Redis queue dropped\n"
        )
        self.assertEqual((await self.run_cli("queue", "purge"))[1], "1 dead item(s) in the Redis queue dropped\n")
        name = f"{self.taken_b.partition}/{self.taken_b.entry}"
        code, out, _err = await self.run_cli("queue", "purge", "--state", "pending", name)
        self.assertEqual((code, out), (0, "1 pending item(s) in the Redis queue dropped\n"))
        self.assertEqual(await client.command("test", "GET", "alertgateway:q:length"), "0")
        await queue.put([envelope("D"), envelope("E")])
        dropped = (await self.run_cli("queue", "purge", "--state", "pending"))[1]
        self.assertEqual(dropped, "2 pending item(s) in the Redis queue dropped\n")
        self.assertEqual((await self.run_cli("queue", "list", "--state", "all"))[2], "0 item(s)\n")
        self.assertEqual(await client.command("test", "GET", "alertgateway:q:length"), "0")

    @inline
    async def test_many(self) -> None:
        """
        Acting on every item walks the streams in batches: more dead
        letters than one batch are all retried.
        """
        _client, queue = await self.replica(max_items=1000)
        count = BATCH + 7
        await queue.put([envelope(f"K{n}") for n in range(count)])
        for _ in range(count):
            queue.bury(await queue.take().addTimeout(2, reactor), "HTTP 400", 1)
        await until(lambda: len(queue) == 0)
        await queue.stop()
        _code, out, _err = await self.run_cli("queue", "retry", text=self.config_text(max_items=1000))
        self.assertEqual(out, f"{count} dead letter(s) back in the Redis queue\n")
        self.assertEqual((await self.run_cli("queue", "list", "--state", "pending"))[2], f"{count} item(s)\n")

    @inline
    async def test_fallback_database(self) -> None:
        """
        Items of this host's fallback database (accepted while Redis was
        unreachable) are listed and acted on beside Redis's, by number.
        """
        journal = SQLiteJournal(str(self.fallback), InlineExecutor(), clock_seconds=lambda: 1.0)
        await journal.open()
        [local] = await journal.append([envelope("L")])
        await journal.bury(local, "HTTP 400", 2)
        await journal.close()
        client, queue = await self.replica()
        await self.fill(queue, client)
        _code, out, _err = await self.run_cli("queue", "list")
        self.assertEqual([(r[0], r[2]) for r in columns(out)[1:2]], [("1", "L")])
        self.assertEqual(len(columns(out)), 4)
        code, out, _err = await self.run_cli("queue", "retry", "1")
        self.assertEqual(
            (code, out), (0, f"1 dead letter(s) in the fallback queue {self.fallback} marked for another try\n")
        )
        connection = sqlite3.connect(self.fallback)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("SELECT state FROM items").fetchall(), [("retry",)])

    @inline
    async def test_unreachable(self) -> None:
        """
        A Redis that does not answer is one line naming where it was looked
        for (never its password) and how long, exit status 1.
        """
        self.server.kill()
        url = self.server.url.replace("redis://", "redis://:hunter2@")
        code, out, err = await self.run_cli("queue", "list", text=self.config_text(url))
        self.assertEqual((code, out), (cli.EXIT_FAILED, ""))
        self.assertEqual(
            err, f"cannot reach Redis at redis://127.0.0.1:{self.server.port}/0 within 0.6s (state.redis)\n"
        )
