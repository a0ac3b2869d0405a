"""
Run the documentation's shell snippets that talk to a gateway (markers
C{<!-- snippet: run config=… -->}) against the real plugin.

Each page's snippets run in the order they are written, in the working
directory of a gateway started (C{twistd -n alertgateway}) with the
configuration the marker names: a gateway configuration snippet, or a file
of the repository such as the embedded default C{etc/alertgateway.yaml}.
Snippets naming one configuration share one gateway, so a later snippet
sees what an earlier one sent, as a reader following the page would.

What is replaced, and nothing else: the host and port of every URL (the
gateway listens on an ephemeral port; a URL on port 9090 is its metrics
listener), and C{/etc/alertgateway/gateway.yaml} (the gateway's own file).
The working directory has the repository's C{tests/} (for the payload
fixtures) and C{.venv} (this interpreter's virtualenv); C{alertgateway} is
on C{PATH}; the variables of L{SNIPPET_ENV} are set, with the secrets the
gateway was given.  A snippet passes when bash (C{-eu -o pipefail}) exits 0
and the gateway answered every request the snippet made with a 2xx.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml
from twisted.trial.unittest import TestCase

from tests.docs._markdown import PAGES, REPO, Block, blocks, named
from tests.docs._snippets import Supplier
from tests.integration.harness import GatewayProcess, http_client, reactor, run, sleep, source_env

_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::(\d+))?")
_CONFIG_FILE = "/etc/alertgateway/gateway.yaml"
_METRICS_PORT = "9090"
# Paths the gateway itself serves to the test, not to the snippet.
_TEST_PATHS = ("/health/ready",)


def run_blocks(page: str) -> list[Block]:
    return [block for block in blocks(page) if block.kind in ("run", "file")]


class _Session:
    """
    The gateways one page's snippets run against, one per configuration.
    """

    def __init__(self, test: TestCase) -> None:
        self.test = test
        self.gateways: dict[str, GatewayProcess] = {}
        self.files: list[Block] = []

    async def gateway(self, name: str) -> GatewayProcess:
        if name in self.gateways:
            return self.gateways[name]
        supplier = Supplier(Path(self.test.mktemp()).absolute())
        if (REPO / name).is_file():
            config: dict[str, Any] = yaml.safe_load((REPO / name).read_text())
        else:
            config = supplier.gateway_config(named(name))
        # The harness reads the gateway's JSON log for its ports.
        config["logging"] = {**config.get("logging", {}), "format": "json", "level": "debug"}
        directory = Path(self.test.mktemp()).absolute()
        directory.mkdir()
        (directory / "tests").symlink_to(REPO / "tests")
        (directory / ".venv").symlink_to(Path(sys.executable).parent.parent)
        gateway = GatewayProcess(config, env=supplier.environ, directory=directory)
        self.gateways[name] = gateway
        for block in self.files:
            self._write(gateway, block)
        await gateway.start()
        return gateway

    def add_file(self, block: Block) -> None:
        self.files.append(block)
        for gateway in self.gateways.values():
            self._write(gateway, block)

    def _write(self, gateway: GatewayProcess, block: Block) -> None:
        (gateway.directory / block.options["name"]).write_text(block.text)

    async def stop(self) -> None:
        for gateway in self.gateways.values():
            await gateway.stop()


def _script(block: Block, gateway: GatewayProcess) -> str:
    metrics = gateway.metrics_url.removesuffix("/metrics")

    def address(match: re.Match[str]) -> str:
        return metrics if match.group(1) == _METRICS_PORT else gateway.url

    return _URL.sub(address, block.text).replace(_CONFIG_FILE, str(gateway.config_path))


def _requests(gateway: GatewayProcess) -> list[dict[str, Any]]:
    return [line for line in gateway.access_log() if line.get("path") not in _TEST_PATHS]


async def _drained(gateway: GatewayProcess, timeout: float = 10.0) -> None:
    """
    Wait until the gateway has delivered everything it accepted.
    """
    deadline = reactor.seconds() + timeout
    while True:
        response = await http_client().get(gateway.url + "/health/ready")
        ready = json.loads(await response.content())
        if ready["queue"]["depth"] == 0:
            return
        if reactor.seconds() > deadline:
            raise AssertionError(f"the gateway did not deliver everything in {timeout}s: {ready}")
        await sleep(0.1)


async def _logged(gateway: GatewayProcess, before: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """
    The requests logged since C{before}, once at least one more is (the
    access log is written a moment after the answer).
    """
    deadline = reactor.seconds() + timeout
    while len(_requests(gateway)) <= before and reactor.seconds() < deadline:
        await sleep(0.05)
    await sleep(0.2)
    return _requests(gateway)[before:]


class RunSnippetTests(TestCase):
    """
    The shell snippets of each page, run against the gateway they name.
    """

    timeout = 180

    async def _run_page(self, page: str) -> None:
        session = _Session(self)
        bash = shutil.which("bash")
        assert bash is not None
        environ = source_env({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"})
        try:
            found = run_blocks(page)
            self.assertTrue(any(block.kind == "run" for block in found), page)
            for block in found:
                if block.kind == "file":
                    session.add_file(block)
                    continue
                gateway = await session.gateway(block.options["config"])
                before = len(_requests(gateway))
                done = await run(
                    [bash, "-eu", "-o", "pipefail", "-c", _script(block, gateway)],
                    env={**environ, **gateway.env},
                    cwd=str(gateway.directory),
                )
                self.assertEqual(done.code, 0, f"{block.where} failed:\n{done.output}")
                if _URL.search(block.text):
                    answered = await _logged(gateway, before)
                    self.assertTrue(answered, f"{block.where}: no request reached the gateway")
                    refused = [(r["method"], r["path"], r["status"]) for r in answered if r["status"] >= 300]
                    self.assertEqual(refused, [], f"{block.where}:\n{done.output}")
                await _drained(gateway)
        finally:
            await session.stop()

    async def test_readme(self) -> None:
        """
        The README's first steps: post a fixture, see it in the file sink,
        send samples with send-test.
        """
        await self._run_page("README.md")

    async def test_configuration(self) -> None:
        """
        Checking a configuration file with check-config.
        """
        await self._run_page("docs/configuration.md")

    async def test_http_api(self) -> None:
        """
        Form, gzip and XML bodies, and the alert status API.
        """
        await self._run_page("docs/http-api.md")

    async def test_security(self) -> None:
        """
        Signing a Standard Webhooks request by hand.
        """
        await self._run_page("docs/security.md")

    async def test_delivery(self) -> None:
        """
        The queue commands on a running gateway's database.
        """
        await self._run_page("docs/delivery.md")

    async def test_operations(self) -> None:
        """
        Signing a Grafana request by hand.
        """
        await self._run_page("docs/operations.md")

    def test_every_page_covered(self) -> None:
        """
        Every page with run snippets has a test above, named after it.
        """
        pages = [page for page in PAGES if any(b.kind == "run" for b in blocks(page))]
        self.assertEqual([page for page in pages if not hasattr(self, test_name(page))], [])


def test_name(page: str) -> str:
    """
    The name of the test that runs C{page}'s snippets: C{docs/http-api.md}
    is C{test_http_api}.
    """
    return "test_" + Path(page).stem.lower().replace("-", "_")
