"""
The rules of the house (docs/architecture.md), checked on the source: each
module says what it is for and which tests cover it, stays small, speaks of
what things do rather than of tracker ids; test modules never import each
other.  (The layer rules are lint-imports' job: setup.cfg.)
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "alertgateway"
TESTS = REPO / "tests"
# About 400 lines: past it a module must say at its top why it is not split.
MAX_LINES = 420
TRACKER_ID = re.compile(r"\bBR-[A-Z]+-|\bissue #?\d+\b|\bwork plan\b", re.IGNORECASE)
TEST_CASE_NAME = re.compile(r"^# -\*- test-case-name: ([\w.,]+) -\*-$")


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


class ModuleTests(SynchronousTestCase):
    """
    Every module of the package.
    """

    def test_names_its_tests(self) -> None:
        """
        The first line names, as Twisted's test-case-name, test modules
        that exist.
        """
        for path in modules():
            with self.subTest(module=str(path.relative_to(REPO))):
                first = path.read_text(encoding="utf-8").split("\n", 1)[0]
                match = TEST_CASE_NAME.match(first)
                self.assertIsNotNone(match, first)
                assert match is not None
                for name in match.group(1).split(","):
                    self.assertTrue((REPO / (name.replace(".", "/") + ".py")).is_file(), name)

    def test_says_what_it_is_for(self) -> None:
        """
        Every module has a docstring.
        """
        for path in modules():
            with self.subTest(module=str(path.relative_to(REPO))):
                self.assertTrue(ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))))

    def test_small(self) -> None:
        """
        No module is much over 400 lines unless its docstring says why.
        """
        for path in modules():
            text = path.read_text(encoding="utf-8")
            if text.count("\n") > MAX_LINES:
                docstring = ast.get_docstring(ast.parse(text)) or ""
                self.assertIn("over 400 lines", docstring, str(path.relative_to(REPO)))

    def test_no_tracker_ids(self) -> None:
        """
        Code and comments say what a thing does, not which ticket asked for
        it.
        """
        for path in modules():
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                self.assertIsNone(TRACKER_ID.search(line), f"{path.relative_to(REPO)}:{number}: {line}")


class TestModuleTests(SynchronousTestCase):
    """
    The tests themselves.
    """

    def test_never_import_each_other(self) -> None:
        """
        A test module imports helper modules, never another test module.
        """
        for path in sorted(TESTS.rglob("test_*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                for name in names:
                    if name.startswith("tests."):
                        self.assertFalse(
                            name.rsplit(".", 1)[-1].startswith("test_"), f"{path.relative_to(REPO)} imports {name}"
                        )
