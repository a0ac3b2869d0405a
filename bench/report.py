"""
The benchmark's results: one row per measurement, the targets of issue 7
checked against them, the machine they were measured on, printed as one
table and written as JSON.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable
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
