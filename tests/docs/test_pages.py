"""
The documentation as a whole: a short README that links every page, links
that resolve, no tracker ids, and every fenced block marked with what it is
and written once.
"""

from __future__ import annotations

import configparser
import re
from collections import defaultdict
from urllib.parse import unquote, urlsplit

from twisted.trial.unittest import TestCase

from tests.docs._markdown import (
    KINDS,
    PAGES,
    REPO,
    all_blocks,
    anchors,
    blocks,
    github_anchor,
    indented_code,
    links,
    read,
    tables,
)

README_MAX_LINES = 200

# Pages whose links are checked for tracker ids as well as the
# documentation pages: the benchmark's results are prose too.
TRACKED_PAGES = (*PAGES, "bench/RESULTS.md")

# A requirement or issue tracker's ids: say what the thing does instead.
TRACKER_ID = re.compile(
    r"\bBR-[A-Z]+-"  # requirement ids such as BR-WH-019
    r"|\bissues? \d+"  # "issue 7"
    r"|(?<![\w&/(])#\d+\b(?!-)"  # "#12" (not an anchor such as (#1-the-image))
    r"|\bwork plan\b|\bthe plan(?:'s)?\b",  # the planning document
    re.IGNORECASE,
)

# The options (KEY=VALUE) and flags each kind of snippet marker takes.
_OPTIONS: dict[str, tuple[set[str], set[str]]] = {
    "gateway-config": ({"name"}, {"template"}),
    "alertmanager-config": ({"name"}, set()),
    "run": ({"config"}, set()),
    "file": ({"name"}, set()),
    "example": ({"name"}, set()),
}
_REQUIRED: dict[str, set[str]] = {"run": {"config"}, "file": {"name"}}

# Blocks this short (a command or two) may be repeated where they help.
_DUPLICATE_MIN_LINES = 3


class ReadmeTests(TestCase):
    """
    The README: the package's long description, short, pointing at the rest.
    """

    def test_short(self) -> None:
        """
        The README has at most 200 lines; details belong in docs/.
        """
        lines = read("README.md").splitlines()
        self.assertLessEqual(len(lines), README_MAX_LINES)

    def test_links_every_page(self) -> None:
        """
        The README links every page of docs/ (and the OpenAPI document), so
        none is orphaned.
        """
        targets = {urlsplit(target).path for _, target in links("README.md")}
        pages = {str(p.relative_to(REPO)) for p in (REPO / "docs").iterdir() if p.suffix in (".md", ".yaml")}
        self.assertEqual(sorted(pages - targets), [])

    def test_is_the_long_description(self) -> None:
        """
        The package's long description is the README, as Markdown.
        """
        metadata = configparser.ConfigParser()
        metadata.read(REPO / "setup.cfg")
        self.assertEqual(metadata["metadata"]["long_description"], "file: README.md")
        self.assertEqual(metadata["metadata"]["long_description_content_type"], "text/markdown")


class LinkTests(TestCase):
    """
    Relative links lead somewhere.
    """

    def test_relative_links_resolve(self) -> None:
        """
        Every relative link of every page names a file of the repository
        and, with a fragment, a heading of that page.
        """
        broken = []
        for page in PAGES:
            for line, target in links(page):
                parts = urlsplit(target)
                if parts.scheme or parts.netloc:
                    continue
                path = (REPO / page).parent / unquote(parts.path) if parts.path else REPO / page
                relative = str(path.resolve().relative_to(REPO)) if path.resolve().is_relative_to(REPO) else ""
                if not path.exists():
                    broken.append(f"{page}:{line}: {target}: no such file")
                elif parts.fragment and path.suffix == ".md" and parts.fragment not in anchors(relative):
                    broken.append(f"{page}:{line}: {target}: no such heading")
        self.assertEqual(broken, [])

    def test_github_anchor(self) -> None:
        """
        Headings become GitHub's anchors: lower case, punctuation and markup
        dropped, spaces made hyphens, underscores kept.
        """
        self.assertEqual(github_anchor("Why 503, not 429"), "why-503-not-429")
        self.assertEqual(github_anchor("`rate_limiting`"), "rate_limiting")
        self.assertEqual(github_anchor("Values: durations, secrets"), "values-durations-secrets")
        self.assertEqual(github_anchor("See [the runbook](operations.md)"), "see-the-runbook")


class TrackerIdTests(TestCase):
    """
    The documentation says what things do, not which ticket asked for them.
    """

    def test_no_tracker_ids(self) -> None:
        """
        No page mentions a requirement id, an issue number or the planning
        document.
        """
        found = [
            f"{page}:{number}: {match.group(0)}"
            for page in TRACKED_PAGES
            for number, line in enumerate(read(page).splitlines(), 1)
            for match in TRACKER_ID.finditer(line)
        ]
        self.assertEqual(found, [])

    def test_pattern(self) -> None:
        """
        The pattern catches tracker ids and leaves anchors and prose alone.
        """
        for text in ("(BR-WH-019)", "scenario of issue 7", "see #12.", "the work plan", "the plan's floor"):
            self.assertIsNotNone(TRACKER_ID.search(text), text)
        for text in ("[x](#1-the-image)", "operations.md#alertgatewaydown", "capacity planning", "&#39;"):
            self.assertIsNone(TRACKER_ID.search(text), text)


class SnippetMarkerTests(TestCase):
    """
    Every fenced block says what it is, so a test can check it.
    """

    def test_every_block_is_marked(self) -> None:
        """
        Every fenced block has a snippet marker of a known kind, with the
        options that kind takes.
        """
        problems = []
        for block in all_blocks():
            kind = block.kind
            if kind is None or kind not in KINDS:
                problems.append(f"{block.where}: marker kind {kind!r}, expected one of {sorted(KINDS)}")
                continue
            allowed, flags = _OPTIONS.get(kind, (set(), set()))
            if set(block.options) - allowed or block.flags - flags:
                problems.append(f"{block.where}: {kind} takes {sorted(allowed | flags)}")
            required = _REQUIRED.get(kind, set())
            if required - set(block.options):
                problems.append(f"{block.where}: {kind} needs {sorted(required)}")
        self.assertEqual(problems, [])

    def test_names_unique(self) -> None:
        """
        A snippet name names one block.
        """
        names: dict[str, list[str]] = defaultdict(list)
        for block in all_blocks():
            if "name" in block.options and block.kind != "file":
                names[block.options["name"]].append(block.where)
        self.assertEqual({name: where for name, where in names.items() if len(where) > 1}, {})

    def test_no_indented_code_blocks(self) -> None:
        """
        Code is fenced, never indented: an indented block cannot carry a
        marker.
        """
        found = [f"{page}:{line}" for page in PAGES for line in indented_code(page)]
        self.assertEqual(found, [])

    def test_blocks_found(self) -> None:
        """
        The block reader finds the blocks of lists (indented fences) too.
        """
        operations = blocks("docs/operations.md")
        self.assertTrue(any(block.text.startswith("docker build") for block in operations))
        self.assertGreater(len(operations), 10)


class DuplicateTests(TestCase):
    """
    Every snippet exists once, so there is one copy to keep true.
    """

    def test_no_block_twice(self) -> None:
        """
        No fenced block of three lines or more appears twice, on one page
        or on two (whitespace aside).
        """
        seen: dict[str, list[str]] = defaultdict(list)
        for block in all_blocks():
            lines = [" ".join(line.split()) for line in block.text.splitlines() if line.strip()]
            if len(lines) >= _DUPLICATE_MIN_LINES:
                seen["\n".join(lines)].append(block.where)
        self.assertEqual([where for where in seen.values() if len(where) > 1], [])

    def test_tables_read(self) -> None:
        """
        The table reader splits rows into cells, an escaped pipe kept.
        """
        (commands,) = [t for t in tables("docs/delivery.md") if t[0] == ["command", "does"]]
        self.assertIn("[--state dead|pending|all]", commands[1][0])
