"""
The benchmark's results: one row per measurement, the targets checked
against them, the machine they were measured on, printed as one table and
a summary line, written as JSON, and kept as a row of the history in
bench/RESULTS.md.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load import wrk_version
from bench.procs import LOAD_CPU, REPO, SERVER_CPU, can_pin


@dataclass
class Row:
    """
    One line of the table.  Latencies in ms, memory in MB; None prints "-".

    ``latency_ms``: response latency seen by the sender (p50, p95, p99).
    ``receipt_ms``: receipt-to-processor latency (p95, p99): from the
    sender's send time to the stub processor's arrival time.
    ``ratio``: requests/s divided by the ceiling's on the same payload.
    """

    scenario: str
    server: str
    requests_per_s: float | None = None
    alerts_per_s: float | None = None
    latency_ms: dict[str, float] | None = None
    receipt_ms: dict[str, float] | None = None
    errors: int | None = None
    peak_rss_mb: float | None = None
    ratio: float | None = None
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Target:
    """
    One target of the issue and what was measured for it.
    """

    scenario: str
    goal: str
    measured: str
    met: bool


COLUMNS = (
    ("scenario", "<"),
    ("server", "<"),
    ("req/s", ">"),
    ("alerts/s", ">"),
    ("p50 ms", ">"),
    ("p95 ms", ">"),
    ("p99 ms", ">"),
    ("r2p p95", ">"),
    ("r2p p99", ">"),
    ("errors", ">"),
    ("peak RSS MB", ">"),
    ("vs ceiling", ">"),
)


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ms(found: dict[str, float] | None, key: str) -> str:
    if not found or key not in found:
        return "-"
    value = found[key]
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"


def cells(row: Row) -> list[str]:
    return [
        row.scenario,
        row.server,
        _number(row.requests_per_s),
        _number(row.alerts_per_s),
        _ms(row.latency_ms, "p50"),
        _ms(row.latency_ms, "p95"),
        _ms(row.latency_ms, "p99"),
        _ms(row.receipt_ms, "p95"),
        _ms(row.receipt_ms, "p99"),
        "-" if row.errors is None else str(row.errors),
        _number(row.peak_rss_mb, 1),
        "-" if row.ratio is None else f"{row.ratio * 100:.0f} %",
    ]


def table(rows: Iterable[Row]) -> str:
    """
    The rows as an aligned text table.
    """
    body = [cells(row) for row in rows]
    headers = [name for name, _ in COLUMNS]
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]

    def line(values: list[str]) -> str:
        return "  ".join(
            value.ljust(width) if align == "<" else value.rjust(width)
            for value, width, (_, align) in zip(values, widths, COLUMNS, strict=True)
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(values) for values in body)])


def _cpu_model() -> str:
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                return text.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _filesystem(path: Path) -> str:
    """
    The type of the filesystem holding ``path`` (the queue's fsyncs depend on it).
    """
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if str(path).startswith(fields[1]) and len(fields[1]) > len(best):
                best, kind = fields[1], fields[2]
    except OSError:
        pass
    return f"{kind} ({best or '?'})"


def _version(module: str) -> str:
    try:
        imported = __import__(module)
        return str(getattr(imported, "__version__", "?"))
    except ImportError:
        return "not installed"


def machine(workdir: Path) -> dict[str, Any]:
    """
    What the numbers were measured on.
    """
    sys.path.insert(0, str(REPO))
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "pinning": (
            f"gateway/ceiling on CPU {SERVER_CPU}; wrk, pacer, stub on CPU {LOAD_CPU} (taskset)"
            if can_pin()
            else "none (taskset missing or fewer than 2 CPUs): numbers are noisier"
        ),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "twisted": _version("twisted"),
        "alertgateway": _version("alertgateway"),
        "wrk": wrk_version(),
        "workdir": f"{workdir} on {_filesystem(workdir)}",
    }


def describe(info: dict[str, Any]) -> str:
    return "\n".join(f"  {key:<13}{value}" for key, value in info.items())


def targets_text(targets: Iterable[Target]) -> str:
    found = list(targets)
    goal = max((len(t.goal) for t in found), default=0)
    measured = max((len(t.measured) for t in found), default=0)
    return "\n".join(
        f"  ({t.scenario}) {t.goal:<{goal}}  {t.measured:<{measured}}  {'met' if t.met else 'NOT MET'}" for t in found
    )


def notes_text(rows: Iterable[Row]) -> str:
    return "\n".join(f"  {row.scenario} {row.server}: {note}" for row in rows for note in row.notes)


def as_json(info: dict[str, Any], options: dict[str, Any], rows: list[Row], targets: list[Target]) -> dict[str, Any]:
    return {
        "machine": info,
        "options": options,
        "rows": [asdict(row) for row in rows],
        "targets": [asdict(target) for target in targets],
    }


# The summary line's figures, in order: key, format, unit.
SUMMARY: tuple[tuple[str, str, str], ...] = (
    ("a", ".2f", ""),
    ("b", ".2f", ""),
    ("c", ".2f", ""),
    ("h", ".2f", ""),
    ("d167", ".1f", "ms"),
    ("d1667", ".1f", "ms"),
    ("metrics", ".1f", "%"),
    ("access", ".1f", "%"),
    ("rss", ".0f", "MB"),
)


def _figure(values: Mapping[str, float], key: str, form: str, unit: str) -> str:
    value = values.get(key)
    return "-" if value is None else f"{value:{form}}{unit}"


def summary_line(values: Mapping[str, float]) -> str:
    """
    Every ratio and figure of the run on one line, e.g. ``summary: a=0.71
    b=0.43 … rss=58MB`` (ratios to the ceiling; the p95 receipt-to-
    processor latencies of d; the throughput metrics and the access log
    cost; RSS at rest); what was not measured is left out.
    """
    found = [f"{key}={_figure(values, key, form, unit)}" for key, form, unit in SUMMARY if key in values]
    return "summary: " + " ".join(found)


HISTORY_HEADING = "## History"
HISTORY_INTRO = (
    "One row per recorded run (`--record`, and every full run of all scenarios), appended by the benchmark:"
    " ratios to the ceiling, receipt-to-processor p95, what metrics and the access log cost, RSS at rest."
    " Quick runs (3 s per measurement) are smoke tests: compare full runs only."
)
HISTORY_COLUMNS = ("date", "commit", "run", "a", "b", "c", "h", "d167 p95", "d1667 p95", "metrics", "access", "RSS")


def history_row(date: str, commit: str, run: str, values: Mapping[str, float]) -> str:
    """
    One row of the history table (a "-" for what was not measured).
    """
    figures = [_figure(values, key, form, unit) for key, form, unit in SUMMARY]
    return "| " + " | ".join([date, commit, run, *figures]) + " |"


def append_history(text: str, row: str) -> str:
    """
    ``text`` (bench/RESULTS.md) with ``row`` added at the end of its history
    table; the section and the table are made at the end of the page if
    missing.  What the page says elsewhere is kept as it is.
    """
    lines = text.splitlines()
    if HISTORY_HEADING not in lines:
        header = "| " + " | ".join(HISTORY_COLUMNS) + " |"
        rule = "|" + "|".join("---" for _ in HISTORY_COLUMNS) + "|"
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", HISTORY_HEADING, "", HISTORY_INTRO, "", header, rule, row]
        return "\n".join(lines) + "\n"
    at = lines.index(HISTORY_HEADING) + 1
    # Past the prose to the table, then to its last row.
    while at < len(lines) and not lines[at].startswith("|") and not lines[at].startswith("#"):
        at += 1
    while at < len(lines) and lines[at].startswith("|"):
        at += 1
    lines.insert(at, row)
    return "\n".join(lines) + "\n"


def commit_name(repo: Path = REPO) -> str:
    """
    The checkout's short commit hash, ``+changes`` when tracked files differ
    from it; ``unknown`` outside a git checkout.
    """
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        head = subprocess.run(  # noqa: S603 -- a fixed git command line
            [git, "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(  # noqa: S603
            [git, "-C", str(repo), "diff", "--quiet", "HEAD"], capture_output=True, check=False
        ).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if changed else "")
