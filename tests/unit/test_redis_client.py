"""
The connection to Redis (L{alertgateway.redis.client}), against a real
C{redis-server}: commands, scripts by SHA1, bounded waits, failures sorted
into "unavailable" and "error", and the metrics of both.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from alertgateway.config import parse_config
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.redis.client import RedisClient, RedisError, RedisSettings, RedisUnavailable, Script, _address
from alertgateway.state.errors import StateUnavailable
from tests.integration._certs import Authority, write_pem
from tests.redis_server import RedisServer, until
from tests.unit._http import capture_events
from tests.unit._support import inline

reactor: Any = _reactor

COUNT = Script("count", "return redis.call('INCRBY', KEYS[1], ARGV[1])")


class AddressTests(SynchronousTestCase):
    def test_url_parts(self) -> None:
        """
        Host, port, database, TLS and credentials come from the URL.
        """
        address = _address(RedisSettings(url="rediss://gw:s%40cret@redis.example:6380/3"))
        self.assertEqual(
            (address.host, address.port, address.db, address.tls, address.username, address.password),
            ("redis.example", 6380, 3, True, "gw", "s@cret"),
        )

    def test_defaults(self) -> None:
        """
        Without port and database: 6379 and database 0, no TLS.
        """
        address = _address(RedisSettings(url="redis://redis"))
        self.assertEqual((address.port, address.db, address.tls, address.password), (6379, 0, False, None))

    def test_password_key_wins(self) -> None:
        """
        A password given as a key (or read from password_file or
        password_env) wins over one in the URL: the URL may sit in a
        ConfigMap, the secret elsewhere.
        """
        address = _address(RedisSettings(url="redis://:old@redis:6379/0", password="new"))
        self.assertEqual(address.password, "new")

    def test_password_from_env(self) -> None:
        """
        state.redis.password_env is read when the configuration is loaded.
        """
        config = parse_config(
            "state: {backend: redis, redis: {url: 'redis://r:6379/0', password_env: REDIS_PW}}",
            environ={"REDIS_PW": "from-env"},
        )
        self.assertEqual(config.state.redis.password, "from-env")

    def test_bad_urls(self) -> None:
        """
        Only redis:// and rediss:// URLs with a host and a numeric database
        are taken; the message names the key.
        """
        for url in ("http://redis:6379", "redis:///0", "redis://redis/zero", "redis://redis:99999/0"):
            with self.subTest(url=url):
                with self.assertRaises(Exception) as caught:
                    parse_config(f"state: {{redis: {{url: '{url}'}}}}")
                self.assertIn("state.redis.url", str(caught.exception))

    def test_key(self) -> None:
        """
        Every key starts with the configured prefix.
        """
        client = RedisClient(RedisSettings(url="redis://redis", key_prefix="gw1:"), reactor, GatewayMetrics().redis)
        self.assertEqual(client.key("ep", "abc"), "gw1:ep:abc")

    def test_secrets_out_of_repr(self) -> None:
        """
        The settings' repr (in a log line, a traceback) shows neither the
        URL, which may hold a password, nor the password.
        """
        settings = RedisSettings(url="redis://:in-url@redis:6379/0", password="given")
        self.assertNotIn("in-url", repr(settings))
        self.assertNotIn("given", repr(settings))


class _Connected(TestCase):
    server: RedisServer

    def make_server(self) -> RedisServer:
        return RedisServer()

    def setUp(self) -> Deferred[None]:  # type: ignore[override]  # trial waits for it
        self.server = self.make_server().start()
        self.addCleanup(self.server.stop)
        self.metrics = GatewayMetrics()
        self.client = self.connect(self.config())
        return Deferred.fromCoroutine(until(lambda: self.client.up))

    def config(self) -> RedisSettings:
        return RedisSettings(url=self.server.url, timeout=0.3)

    def connect(self, settings: RedisSettings) -> RedisClient:
        client = RedisClient(settings, reactor, self.metrics.redis)
        client.start()
        self.addCleanup(client.stop)
        return client

    def errors(self, operation: str, reason: str) -> float:
        value: float = self.metrics.redis.errors.labels(operation=operation, reason=reason)._value.get()
        return value


class ClientTests(_Connected):
    @inline
    async def test_command_and_latency(self) -> None:
        """
        A command answers through a Deferred and its round trip is timed
        under its operation's name.
        """
        self.assertEqual(await self.client.command("set", "SET", "k", "v"), "OK")
        self.assertEqual(await self.client.command("get", "GET", "k"), "v")
        samples = {
            (s.name, s.labels.get("operation")): s.value
            for m in self.metrics.registry.collect()
            for s in m.samples
            if s.name == "gateway_redis_latency_seconds_count"
        }
        self.assertEqual(samples[("gateway_redis_latency_seconds_count", "get")], 1)
        self.assertEqual(self.metrics.redis.up._value.get(), 1)

    @inline
    async def test_script_reloaded(self) -> None:
        """
        A script is called by its SHA1 and loaded again when the server
        lost it (restarted, SCRIPT FLUSH).
        """
        self.assertEqual(await self.client.script(COUNT, ["n"], [2]), 2)
        await self.client.command("flush", "SCRIPT", "FLUSH")
        self.assertEqual(await self.client.script(COUNT, ["n"], [3]), 5)

    @inline
    async def test_pipeline(self) -> None:
        """
        Several commands go out in one write and answer in order.
        """
        self.assertEqual(await self.client.pipeline("p", [("INCR", "c"), ("INCR", "c"), ("GET", "c")]), [1, 2, "2"])

    @inline
    async def test_error_reply(self) -> None:
        """
        A command Redis refuses is an error of ours (a bug), not an outage:
        it fails with RedisError (a StateUnavailable, not RedisUnavailable)
        carrying Redis's message, and is counted as an error.
        """
        with self.assertRaises(RedisError) as caught:
            await self.client.command("bad", "NOSUCHCOMMAND")
        self.assertNotIsInstance(caught.exception, RedisUnavailable)
        self.assertIsInstance(caught.exception, StateUnavailable)
        self.assertTrue(str(caught.exception).startswith("ERR unknown command"), str(caught.exception))
        self.assertEqual(self.errors("bad", "error"), 1)

    @inline
    async def test_error_code_kept(self) -> None:
        """
        The message of a RedisError starts with Redis's error code, as
        callers test it (NOGROUP: the queue's consumer group is gone).
        """
        await self.client.command("add", "XADD", "s", "*", "f", "v")
        with self.assertRaises(RedisError) as caught:
            await self.client.command("read", "XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">")
        self.assertTrue(str(caught.exception).startswith("NOGROUP"), str(caught.exception))

    @inline
    async def test_script_error_reply(self) -> None:
        """
        A script that fails is a RedisError, with the script's message,
        counted as an error under the script's name.
        """
        broken = Script("broken", "return redis.error_reply('BROKEN on purpose')")
        with self.assertRaises(RedisError) as caught:
            await self.client.script(broken, [], [])
        self.assertTrue(str(caught.exception).startswith("BROKEN"), str(caught.exception))
        self.assertEqual(self.errors("broken", "error"), 1)

    @inline
    async def test_pipeline_error_reply(self) -> None:
        """
        A pipeline with a command Redis refuses fails with RedisError too.
        """
        with self.assertRaises(RedisError):
            await self.client.pipeline("p", [("INCR", "c"), ("NOSUCHCOMMAND",)])

    @inline
    async def test_timeout(self) -> None:
        """
        An answer slower than state.redis.timeout is RedisUnavailable,
        counted as a timeout: a stuck Redis must not hold requests.
        """
        other = self.connect(self.config())
        await until(lambda: other.up)
        await other.command("pause", "CLIENT", "PAUSE", "1000")
        with self.assertRaises(RedisUnavailable):
            await self.client.command("slow", "GET", "k")
        self.assertEqual(self.errors("slow", "timeout"), 1)

    @inline
    async def test_outage(self) -> None:
        """
        With the server gone, commands fail at once with RedisUnavailable
        (no waiting for a connection), listeners and gateway_redis_up are
        told, and the client reconnects by itself when it is back.
        """
        changes: list[bool] = []
        self.client.on_state(changes.append)
        self.server.kill()
        await until(lambda: not self.client.up)
        self.assertEqual(self.metrics.redis.up._value.get(), 0)
        with self.assertRaises(RedisUnavailable):
            await self.client.command("get", "GET", "k")
        self.assertEqual(self.errors("get", "unavailable"), 1)
        self.server.start()
        await until(lambda: self.client.up)
        self.assertEqual(await self.client.command("get", "GET", "k"), None)
        self.assertEqual(changes, [False, True])

    @inline
    async def test_revived(self) -> None:
        """
        A client whose library gave up reconnecting (a connection lost
        during its handshake) is started again by the watchdog.
        """
        self.server.kill()
        await until(lambda: not self.client.up)
        factory = self.client._factory
        assert factory is not None
        await factory.stopTrying()
        self.server.start()
        self.client._revive()
        await until(lambda: self.client.up)
        self.assertEqual(await self.client.command("ping", "PING"), "PONG")

    @inline
    async def test_stopped_quietly(self) -> None:
        """
        Stopping the client (a clean shutdown) logs that it disconnected at
        info, never the "lost every connection" warning of an outage; once
        started again, an outage warns as before.
        """
        events = capture_events(self, lambda e: e.get("log_namespace") == "alertgateway.redis.client")
        await self.client.stop()
        await until(lambda: not self.client.up)
        self.assertEqual(
            [(e["log_level"], formatEvent(e)) for e in events], [(LogLevel.info, "Disconnected from Redis (state)")]
        )
        del events[:]
        self.client.start()
        await until(lambda: self.client.up)
        self.server.kill()
        await until(lambda: not self.client.up)
        self.assertEqual(
            [(e["log_level"], formatEvent(e)) for e in events],
            [
                (LogLevel.info, "Connected to Redis (state)"),
                (LogLevel.warn, "Lost every connection to Redis (state); reconnecting"),
            ],
        )

    @inline
    async def test_still_connecting(self) -> None:
        """
        A client with no connection connect_timeout after it started warns
        once, and goes on trying; one that connected in time, or was
        stopped first, does not.
        """
        events = capture_events(self, lambda e: e.get("log_namespace") == "alertgateway.redis.client")
        settings = RedisSettings(url=self.server.url, timeout=0.3, connect_timeout=0.2)
        connected = self.connect(settings)
        await until(lambda: connected.up)
        stopped = self.connect(settings)
        await stopped.stop()
        self.server.kill()
        late = self.connect(settings)
        await deferLater(reactor, 0.4)
        self.assertFalse(late.up)
        warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(
            [w for w in warnings if w.startswith("No connection")],
            ["No connection to Redis (state) 0.2s after starting; still trying"],
        )
        self.server.start()
        await until(lambda: late.up)

    @inline
    async def test_stopped(self) -> None:
        """
        A stopped client refuses commands; stopping twice is harmless.
        """
        await self.client.stop()
        await self.client.stop()
        with self.assertRaises(RedisUnavailable):
            await self.client.command("get", "GET", "k")


class PasswordTests(_Connected):
    def make_server(self) -> RedisServer:
        return RedisServer(password="pw-7f3a")

    def config(self) -> RedisSettings:
        return RedisSettings(url=self.server.url, password="pw-7f3a", timeout=0.5)

    @inline
    async def test_authenticated(self) -> None:
        """
        With state.redis.password the client authenticates before use.
        """
        self.assertEqual(await self.client.command("ping", "PING"), "PONG")


class TLSTests(_Connected):
    def make_server(self) -> RedisServer:
        directory = Path(tempfile.mkdtemp(prefix="redis-tls-"))
        authority = Authority("Redis test CA")
        server = authority.server("redis")
        self.ca_file = write_pem(directory / "ca.pem", authority.cert_pem)
        return RedisServer(
            tls=(
                write_pem(directory / "server.pem", server.cert_pem),
                write_pem(directory / "server.key", server.key_pem),
                self.ca_file,
            )
        )

    def config(self) -> RedisSettings:
        return RedisSettings(url=self.server.url, ca_file=str(self.ca_file), timeout=1.0)

    @inline
    async def test_rediss(self) -> None:
        """
        rediss:// connects over TLS, verifying the server against
        state.redis.ca_file.
        """
        self.assertEqual(await self.client.command("ping", "PING"), "PONG")


class DeployedConfigTests(_Connected):
    def make_server(self) -> RedisServer:
        return RedisServer(config_file=Path(__file__).resolve().parents[2] / "deploy" / "redis" / "redis.conf")

    @inline
    async def test_durable(self) -> None:
        """
        deploy/redis/redis.conf loads in the real redis-server and turns on
        what the no-loss promise needs: append-only persistence, and no
        eviction of the gateway's keys.
        """
        appendonly = await self.client.command("config", "CONFIG", "GET", "appendonly")
        policy = await self.client.command("config", "CONFIG", "GET", "maxmemory-policy")
        fsync = await self.client.command("config", "CONFIG", "GET", "appendfsync")
        self.assertEqual((appendonly[1], policy[1], fsync[1]), ("yes", "noeviction", "everysec"))
