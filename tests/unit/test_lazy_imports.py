"""
Tests for what a gateway leaves unloaded until it needs it: the Redis
client without Redis, the XML parser until an XML body comes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

REPO = Path(__file__).resolve().parents[2]

# Built and started in a fresh interpreter: this test process has loaded
# the Redis modules for other tests already.
_PROGRAM = """
import io, sys
from alertgateway.app.service import GatewayService
from alertgateway.config import parse_config
from alertgateway.testing import GatewayReactor, InlineExecutor

config = parse_config(sys.argv[1], {})
service = GatewayService(config, GatewayReactor(), log_stream=io.StringIO(), executor=InlineExecutor())
service.startService()
print(sorted(m for m in sys.modules if m.startswith(("txredisapi", "alertgateway.redis", "defusedxml"))))
"""


class LazyImportTests(SynchronousTestCase):
    def loaded(self, config: str) -> str:
        directory = Path(self.mktemp())
        directory.mkdir()
        done = subprocess.run(
            [sys.executable, "-c", _PROGRAM, config],
            cwd=directory,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout.strip().splitlines()[-1]

    def test_none_without_redis(self) -> None:
        """
        A gateway whose state and queue are not in Redis loads none of the
        Redis client's modules, nor the XML parser: they take 1.5 MB and
        0.6 MB of its memory at rest.
        """
        config = "queue: {backend: memory}\nstate: {backend: memory}\nalert_processor: {endpoint: 'file:out.jsonl'}\n"
        self.assertEqual(self.loaded(config), "[]")

    def test_loaded_with_redis(self) -> None:
        """
        With the Redis state they are loaded where the gateway is built: the
        check above is not passing for a module that is simply gone.
        """
        config = (
            "queue: {backend: memory}\nstate: {backend: redis, redis: {url: 'redis://127.0.0.1:1'}}\n"
            "alert_processor: {endpoint: 'file:unused.jsonl'}\n"
        )
        self.assertIn("txredisapi", self.loaded(config))
