"""
Read the repository's Markdown as the documentation tests need it: fenced
blocks with their snippet markers, headings and their GitHub anchors,
relative links, and tables.

The snippet convention: the line right before every fenced block of a
documentation page is an HTML comment saying what the block is, so that a
test knows what to do with it (GitHub does not render the comment)::

    <!-- snippet: KIND [KEY=VALUE ...] [FLAG ...] -->
    ```yaml
    ...
    ```

L{KINDS} lists the kinds and the test each gets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs

REPO = Path(__file__).resolve().parents[2]

# What a user may paste, with what the tests do with it.
KINDS: Mapping[str, str] = {
    "gateway-config": "a gateway configuration (a whole file, or the sections it shows): loaded by parse_config",
    "alertmanager-config": "an alertmanager.yml, or its receivers: passes amtool check-config",
    "run": "shell run against a real gateway (config=NAME: a gateway-config snippet, or a file of the repository)",
    "file": "a file (name=FILE) that the page's run snippets use, written where they run",
    "shell": "shell for other machines (kubectl, docker, make, systemctl): passes bash -n",
    "yaml": "YAML for other programs (Kubernetes, Grafana, Helm values): a valid YAML mapping",
    "redis-conf": "Redis directives: each is in deploy/redis/redis.conf",
    "ini": "a systemd unit: parses as INI, its commands pass bash -n",
    "example": "shown, not pasted (a diagram, an answer, a log line); JSON must parse unless elided with …",
}

# The pages whose fenced blocks follow the convention.
PAGES: tuple[str, ...] = (
    "README.md",
    *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")),
    "deploy/README.md",
    "bench/README.md",
)

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_MARKER = re.compile(r"^\s*<!-- snippet: (?P<body>[^>]*?)\s*-->\s*$")
_HEADING = re.compile(r"^(#{1,6}) +(.*?)\s*#*\s*$")
_LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+\1")
_LIST_ITEM = re.compile(r"^( *)(?:[-*+]|\d+[.)]) +")


@attrs.frozen
class Block:
    """
    One fenced block of a page.

    @ivar page: The page, relative to the repository.
    @ivar line: The line of its opening fence, from 1.
    @ivar lang: The fence's info string (C{yaml}, C{sh}, ...).
    @ivar text: Its content, without the indentation of its fence.
    @ivar kind: The marker's kind, or C{None} without a marker.
    @ivar options: The marker's C{KEY=VALUE} words.
    @ivar flags: The marker's other words.
    """

    page: str
    line: int
    lang: str
    text: str
    kind: str | None = None
    options: Mapping[str, str] = attrs.field(factory=dict)
    flags: frozenset[str] = frozenset()

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def read(page: str) -> str:
    return (REPO / page).read_text(encoding="utf-8")


def blocks(page: str) -> list[Block]:
    """
    The fenced blocks of C{page}, with their markers.
    """
    lines = read(page).splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        closing = re.compile(rf"^ *{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        body = [line[indent:] if line[:indent].strip() == "" else line.lstrip() for line in lines[index + 1 : end]]
        kind: str | None = None
        options: dict[str, str] = {}
        flags: frozenset[str] = frozenset()
        marker = _MARKER.match(lines[index - 1]) if index > 0 else None
        if marker is not None:
            kind, options, flags = _parse_marker(marker["body"])
        text = "\n".join(body) + "\n" if body else ""
        found.append(Block(page, index + 1, opening["info"].strip(), text, kind, options, flags))
        index = end + 1
    return found


def _parse_marker(body: str) -> tuple[str, dict[str, str], frozenset[str]]:
    kind, *words = body.split()
    options = dict(word.split("=", 1) for word in words if "=" in word)
    flags = frozenset(word for word in words if "=" not in word)
    return kind, options, flags


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in blocks(page)]


def named(name: str) -> Block:
    """
    The one block, on any page, whose marker says C{name=NAME}.
    """
    (block,) = [b for b in all_blocks() if b.options.get("name") == name]
    return block


def prose(page: str) -> Iterator[tuple[int, str]]:
    """
    The lines of C{page} outside fenced blocks, numbered from 1.
    """
    inside = None
    for number, line in enumerate(read(page).splitlines(), 1):
        fence = _FENCE.match(line)
        if inside is None and fence is not None:
            inside = re.compile(rf"^ *{re.escape(fence['fence'][0])}{{{len(fence['fence'])},}}\s*$")
        elif inside is not None and inside.match(line):
            inside = None
        elif inside is None:
            yield number, line


def github_anchor(heading: str) -> str:
    """
    The anchor GitHub gives a heading: the text of its inline markup, lower
    case, without punctuation, spaces made hyphens.
    """
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(page: str) -> set[str]:
    """
    Every anchor of C{page}'s headings; a repeated heading gets C{-1},
    C{-2} … as on GitHub.
    """
    found: set[str] = set()
    for _, line in prose(page):
        heading = _HEADING.match(line)
        if heading is None:
            continue
        anchor = base = github_anchor(heading.group(2))
        count = 0
        while anchor in found:
            count += 1
            anchor = f"{base}-{count}"
        found.add(anchor)
    return found


def links(page: str) -> list[tuple[int, str]]:
    """
    The targets of C{page}'s inline links (outside code), with their line.
    """
    found = []
    for number, line in prose(page):
        for target in _LINK.findall(_INLINE_CODE.sub("", line)):
            found.append((number, target))
    return found


def cells(row: str) -> list[str]:
    """
    The cells of one table row, C{\\|} read as a pipe.
    """
    parts = re.split(r"(?<!\\)\|", row.strip())
    return [part.strip().replace("\\|", "|") for part in parts[1:-1]]


def tables(page: str) -> list[list[list[str]]]:
    """
    The tables of C{page}: each a list of rows (its header first, without
    the delimiter row), each a list of cells.
    """
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for _, line in prose(page):
        if line.lstrip().startswith("|"):
            row = cells(line)
            if not all(re.fullmatch(r":?-+:?", cell) for cell in row):
                current.append(row)
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def indented_code(page: str) -> list[int]:
    """
    The lines where C{page} starts an indented code block (four spaces
    beyond the content of the list item it is in, after a blank line): such
    blocks carry no marker, so they are not allowed.
    """
    found = []
    content = 0
    previous_blank = True
    for number, line in prose(page):
        if not line.strip():
            previous_blank = True
            continue
        indent = len(line) - len(line.lstrip(" "))
        item = _LIST_ITEM.match(line)
        if previous_blank and indent >= content + 4 and item is None:
            found.append(number)
        if item is not None:
            content = len(item.group(0))
        elif indent == 0:
            content = 0
        previous_blank = False
    return found
