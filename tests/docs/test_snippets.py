"""
Every snippet of the documentation is valid for the program it is meant
for: gateway configurations load, Alertmanager configurations pass
C{amtool check-config}, shell parses, YAML parses, Redis directives are
those of C{deploy/redis/redis.conf}.  The shell snippets that talk to a
running gateway are run in L{tests.docs.test_run_snippets}.
"""

from __future__ import annotations

import configparser
import json
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import yaml
from twisted.trial.unittest import TestCase

from alertgateway.config import ConfigError, parse_config, warnings_for
from tests.docs._markdown import REPO, Block, all_blocks
from tests.docs._snippets import Supplier
from tests.integration.harness import require_binary, run


def of_kind(*kinds: str) -> list[Block]:
    return [block for block in all_blocks() if block.kind in kinds]


async def bash_syntax(script: str) -> str | None:
    """
    What C{bash -n} says of C{script}, or C{None} when it parses.
    """
    bash = shutil.which("bash")
    assert bash is not None
    done = await run([bash, "-n", "-c", script])
    return None if done.code == 0 else done.output


class GatewayConfigTests(TestCase):
    """
    The gateway configuration snippets.
    """

    def test_load_without_warnings(self) -> None:
        """
        Every gateway configuration snippet, merged into the base and with
        the files and variables it names supplied, loads, and
        C{check-config} has no warning about it.
        """
        snippets = of_kind("gateway-config")
        self.assertGreater(len(snippets), 10)
        problems = []
        for block in snippets:
            supplier = Supplier(Path(self.mktemp()).absolute())
            config = supplier.gateway_config(block)
            try:
                loaded = parse_config(yaml.safe_dump(config), environ=supplier.environ, origin=block.where)
            except ConfigError as e:
                problems.append(f"{block.where}: {e}")
                continue
            problems.extend(f"{block.where}: warning: {warning}" for warning in warnings_for(loaded))
        self.assertEqual(problems, [])

    def test_readme_config_is_whole(self) -> None:
        """
        The README's minimal configuration loads on its own, without the
        base the other snippets are merged into.
        """
        (block,) = [b for b in of_kind("gateway-config") if b.page == "README.md"]
        supplier = Supplier(Path(self.mktemp()).absolute())
        config: dict[str, Any] = yaml.safe_load(block.text)
        supplier.supply(config, scheme=None)
        loaded = parse_config(yaml.safe_dump(config), environ={})
        self.assertEqual(warnings_for(loaded), [])


class AlertmanagerConfigTests(TestCase):
    """
    The Alertmanager configuration snippets.
    """

    async def test_pass_amtool(self) -> None:
        """
        Every Alertmanager snippet passes C{amtool check-config}; one that
        shows only the receivers gets a route to its first receiver.
        """
        amtool = require_binary("amtool", "prometheus-alertmanager")
        snippets = of_kind("alertmanager-config")
        self.assertGreaterEqual(len(snippets), 3)
        for block in snippets:
            config: dict[str, Any] = yaml.safe_load(block.text)
            config.setdefault("route", {"receiver": config["receivers"][0]["name"]})
            Supplier(Path(self.mktemp()).absolute()).supply(config, scheme=None)
            path = Path(self.mktemp() + ".yml")
            path.write_text(yaml.safe_dump(config))
            done = await run([amtool, "check-config", str(path)])
            self.assertEqual(done.code, 0, f"{block.where}:\n{done.output}")


class OtherSnippetTests(TestCase):
    """
    Snippets for other programs, checked as far as this machine can.
    """

    async def test_shell_parses(self) -> None:
        """
        Every shell snippet, those run against a gateway included, passes
        C{bash -n}.
        """
        snippets = of_kind("shell", "run")
        self.assertGreater(len(snippets), 20)
        for block in snippets:
            self.assertIsNone(await bash_syntax(block.text), block.where)

    def test_yaml_parses(self) -> None:
        """
        Every YAML snippet for another program is a YAML mapping.
        """
        for block in of_kind("yaml"):
            self.assertIsInstance(yaml.safe_load(block.text), dict, block.where)

    def test_redis_directives_as_deployed(self) -> None:
        """
        Every Redis directive shown is in C{deploy/redis/redis.conf}, with
        the same value.
        """
        deployed = {
            line.strip()
            for line in (REPO / "deploy/redis/redis.conf").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        }
        snippets = of_kind("redis-conf")
        self.assertTrue(snippets)
        for block in snippets:
            for line in block.text.splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    self.assertIn(line.strip(), deployed, block.where)

    async def test_units_parse(self) -> None:
        """
        Every systemd unit parses as INI, and its commands as shell.
        """
        snippets = of_kind("ini")
        self.assertTrue(snippets)
        for block in snippets:
            unit = configparser.ConfigParser(interpolation=None, strict=True)
            unit.optionxform = str  # type: ignore[assignment,method-assign]
            unit.read_string(block.text)
            for name, value in unit["Service"].items():
                if name.startswith("Exec"):
                    self.assertIsNone(await bash_syntax(value.replace("%i", "1")), f"{block.where}: {name}")

    def test_examples_are_valid(self) -> None:
        """
        A JSON example is valid JSON unless it elides part of itself (…);
        a file for the run snippets is valid in its format.
        """
        for block in of_kind("example", "file"):
            if block.lang == "json":
                try:
                    json.loads(block.text)
                except ValueError:
                    self.assertIn("…", block.text, block.where)
            elif block.lang == "xml":
                ElementTree.fromstring(block.text)
            elif block.lang == "yaml":
                self.assertIsInstance(yaml.safe_load(block.text), dict, block.where)

    def test_run_configs_exist(self) -> None:
        """
        Every run snippet names a gateway configuration snippet, or a file
        of the repository, to run against.
        """
        names = {block.options.get("name") for block in of_kind("gateway-config")}
        for block in of_kind("run"):
            config = block.options["config"]
            self.assertTrue(config in names or (REPO / config).is_file(), block.where)
