"""
The Lua scripts as files (L{alertgateway.redis.scripts}): each loads once
into a L{Script} named as its file (the operation in the metrics), says
what it is for, and is valid Lua to a real C{redis-server}.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.redis import scripts as _lua
from alertgateway.redis.client import RedisClient, RedisSettings
from alertgateway.redis.scripts import load
from tests.redis_server import RedisServer, until
from tests.unit._support import inline

reactor: Any = _reactor


def script_names() -> list[str]:
    """
    The name of every script file shipped in the package.
    """
    files = resources.files(_lua.__name__).iterdir()
    return sorted(f.name.removesuffix(".lua") for f in files if f.name.endswith(".lua"))


class LoaderTests(SynchronousTestCase):
    def test_shared_state_names(self) -> None:
        """
        The shared-state scripts keep their module-level names, and their
        names in the metrics (gateway_redis_*{operation}).
        """
        self.assertEqual(
            {
                "LOAD": _lua.LOAD.name,
                "COMMIT": _lua.COMMIT.name,
                "UNDO": _lua.UNDO.name,
                "DELIVERED": _lua.DELIVERED.name,
                "EXPIRE": _lua.EXPIRE.name,
                "BUCKETS": _lua.BUCKETS.name,
            },
            {
                "LOAD": "state_load",
                "COMMIT": "state_commit",
                "UNDO": "state_undo",
                "DELIVERED": "state_delivered",
                "EXPIRE": "state_expire",
                "BUCKETS": "rate_buckets",
            },
        )

    def test_every_file(self) -> None:
        """
        The package ships the six shared-state scripts and the queue's
        eleven (two of them the queue commands').
        """
        self.assertEqual(len(script_names()), 17)
        self.assertEqual(len([n for n in script_names() if n.startswith("queue_")]), 11)

    def test_loaded_once(self) -> None:
        """
        Loading a script again gives the same object: each file is read
        once.
        """
        self.assertIs(load("state_load"), _lua.LOAD)
        self.assertIs(load("queue_put"), load("queue_put"))

    def test_documented(self) -> None:
        """
        Every script starts with a Lua comment saying what it is for and
        what it takes or returns.
        """
        for name in script_names():
            with self.subTest(name=name):
                source = load(name).source
                comment = [line for line in source.splitlines() if line.startswith("--")]
                self.assertTrue(source.startswith("-- "), name)
                self.assertTrue(any(w in " ".join(comment) for w in ("KEYS", "ARGV", "Returns")), name)

    def test_unknown(self) -> None:
        """
        A script that does not exist is an error when loaded, not when run.
        """
        with self.assertRaises(FileNotFoundError):
            load("no_such_script")


class ServerTests(TestCase):
    def setUp(self) -> Deferred[None]:  # type: ignore[override]  # trial waits for it
        self.server = RedisServer().start()
        self.addCleanup(self.server.stop)
        self.client = RedisClient(RedisSettings(url=self.server.url), reactor, GatewayMetrics().redis)
        self.client.start()
        self.addCleanup(self.client.stop)
        return Deferred.fromCoroutine(until(lambda: self.client.up))

    @inline
    async def test_valid_lua(self) -> None:
        """
        Redis compiles every script file (SCRIPT LOAD), comments and all,
        and knows it by the SHA1 it is called by.
        """
        for name in script_names():
            script = load(name)
            sha = await self.client.command("load", "SCRIPT", "LOAD", script.source)
            self.assertEqual(sha, script.sha, name)
