"""
The benchmark's scenarios, each producing rows of the table, targets and
figures of the summary line.

(a) single-alert webhooks, duplicate-heavy (1,000 fingerprints cycling);
(b) single-alert webhooks, every alert new and forwarded, sustained;
(c) 50-alert batches, duplicate-heavy;
(d) constant 167/s and 1,667/s, receipt-to-processor latency;
(e) 1,000 concurrent connections;
(f) RSS at rest and with 100,000 tracked fingerprints;
(g) metrics, then the access log, switched off, each against all on;
(h) 50-alert batches, every alert new and forwarded.

Throughput scenarios run the ceiling with the same wrk command (script,
payload, connections, duration) right before the gateway; the ratio is the
gateway's 2xx answers per second over the ceiling's.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import WrkRun, profiler, run_pace, run_wrk
from bench.procs import LOAD_CPU, SERVER_CPU, CpuMeter, Process
from bench.report import Row, Target
from bench.servers import WEBHOOK_PATH, Stub, ceiling, gateway

# Scenario g's variants, each measured against everything on.
SWITCHED_OFF: dict[str, dict[str, Any]] = {
    "metrics": {"metrics": {"enabled": False}},
    "access": {"logging": {"access_log": False}},
}

# Throughput goals: the gateway's requests/s over the ceiling's.
RATIO_GOALS = {"a": 0.70, "b": 0.40, "c": 0.50, "h": 0.30}
# How much of the throughput each may cost (scenario g).
COST_GOALS = {"metrics": 0.01, "access": 0.05}
# After a sustained run of new alerts the queue must be empty this soon.
DRAINED_SOON = 5.0


@dataclass
class Settings:
    """
    How long and how much; ``--quick`` shrinks everything.
    """

    seconds: float = 15.0
    # Scenario b: new alerts long enough to show whether the queue keeps up.
    sustained_seconds: float = 30.0
    pace_seconds: float = 10.0
    rates: tuple[float, ...] = (167.0, 1667.0)
    fingerprints: int = 100_000
    g_rounds: int = 3
    drain_timeout: float = 120.0

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            seconds=3.0, sustained_seconds=3.0, pace_seconds=3.0, fingerprints=10_000, g_rounds=1, drain_timeout=60.0
        )


@dataclass
class Bench:
    """
    One run: where, with which stub processor, and what was found so far.
    """

    settings: Settings
    workdir: Path
    stub: Stub
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    ceilings: dict[tuple[str, str, int, float], Row] = field(default_factory=dict)
    profile_dir: Path | None = None
    # The figures of the summary line, by key (see report.SUMMARY).
    summary: dict[str, float] = field(default_factory=dict)

    def say(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    @contextmanager
    def profiling(self, process: Process, name: str, seconds: float) -> Iterator[None]:
        """
        With ``--profile DIR``, record a py-spy flame graph of ``process``
        while the block runs (py-spy on the load CPU, not pausing the
        process; the numbers of a profiled run are still a little lower).
        """
        if self.profile_dir is None:
            yield
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        path = self.profile_dir / (re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") + ".svg")
        spy = profiler(process.pid, path, seconds)
        try:
            yield
        finally:
            spy.wait(timeout=seconds + 60)
            self.say(f"profile written to {path}")


def _options_key(options: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(options.items()))


def _cpu_notes(cpu: dict[str, float], generator: float) -> list[str]:
    """
    Who was busy, and whether something else was: a server well below
    100 % was not saturated; CPU 0 much busier than the server means another
    program disturbed the measurement.
    """
    server, stub = cpu["server"], cpu.get("stub")
    text = f"CPU: server {server * 100:.0f} %, generator {generator * 100:.0f} %"
    if stub is not None:
        text += f", stub processor {stub * 100:.0f} %"
    server_busy, load_busy = cpu.get(f"cpu{SERVER_CPU}_busy"), cpu.get(f"cpu{LOAD_CPU}_busy")
    if server_busy is not None and load_busy is not None:
        text += f"; CPU {SERVER_CPU} busy {server_busy * 100:.0f} %, CPU {LOAD_CPU} busy {load_busy * 100:.0f} %"
    notes = [text]
    other = (cpu.get(f"cpu{SERVER_CPU}_busy") or 0.0) - server
    if other > 0.10:
        notes.append(f"DISTURBED: {other * 100:.0f} % of CPU {SERVER_CPU} went to other programs")
    return notes


def _meter(server: Process, stub: Stub | None = None) -> CpuMeter:
    return CpuMeter(server=server.pid, stub=stub.process.pid) if stub is not None else CpuMeter(server=server.pid)


def _wrk_notes(run: WrkRun, cpu: dict[str, float]) -> list[str]:
    notes = _cpu_notes(cpu, run.generator_cpu)
    broken = {kind: count for kind, count in run.socket_errors.items() if count}
    if broken:
        notes.append("socket errors: " + ", ".join(f"{kind} {count}" for kind, count in broken.items()))
    if run.status_errors:
        notes.append(f"{run.status_errors} answers were not 2xx")
    return notes


def ceiling_row(
    bench: Bench, scenario: str, script: str, options: Mapping[str, Any], connections: int, seconds: float
) -> Row:
    """
    The ceiling on this payload, connection count and duration (measured
    once per run).
    """
    key = (script, _options_key(options), connections, seconds)
    if key in bench.ceilings:
        return bench.ceilings[key]
    bench.say(f"{scenario}: ceiling, wrk {script} {_options_key(options)} -c{connections} -d{seconds:g}s")
    with ceiling(bench.workdir) as (process, base):
        meter = _meter(process)
        run = run_wrk(base + WEBHOOK_PATH, script, connections, seconds, options)
        cpu = meter.stop()
        memory = process.memory()
    batch = int(options.get("batch", 1))
    row = Row(
        scenario=scenario,
        server="ceiling",
        requests_per_s=run.ok_per_second,
        alerts_per_s=run.ok_per_second * batch,
        latency_ms=run.latency_ms,
        errors=run.errors,
        peak_rss_mb=memory["peak"],
        ratio=1.0,
        notes=_wrk_notes(run, cpu),
        raw={"wrk": run.raw, "cpu": {**cpu, "generator": run.generator_cpu}},
    )
    bench.ceilings[key] = row
    bench.rows.append(row)
    return row


def gateway_wrk_row(
    bench: Bench,
    scenario: str,
    script: str,
    options: Mapping[str, Any],
    connections: int,
    overrides: Mapping[str, Any] | None = None,
    drain: bool = False,
    seconds: float | None = None,
    variant: str = "",
) -> Row:
    """
    The gateway under the same wrk command as its ceiling.  With ``drain``,
    read the queue's depth as the load stops, wait until everything queued
    is delivered and report the stub's receipt-to-processor latency (alerts
    carrying ``bench_sent``).  ``variant`` names the overrides (for the
    progress lines and profiles).
    """
    seconds = bench.settings.seconds if seconds is None else seconds
    ceiling = ceiling_row(bench, scenario, script, options, connections, seconds)
    with gateway(bench.workdir, bench.stub.base, overrides) as gw:
        bench.say(
            f"{scenario}{' ' + variant if variant else ''}: gateway (pid {gw.process.pid}),"
            f" wrk {script} {_options_key(options)} -c{connections} -d{seconds:g}s"
        )
        bench.stub.reset()
        meter = _meter(gw.process, bench.stub)
        with bench.profiling(gw.process, f"{scenario} {variant}", seconds):
            run = run_wrk(gw.url, script, connections, seconds, options)
        cpu = meter.stop()
        during = bench.stub.stats()
        depth = gw.queue_depth() if drain else None
        drained = gw.wait_drained(bench.settings.drain_timeout) if drain else None
        after = bench.stub.stats()
        receipt = bench.stub.latency()["ms"] if drain else None
        memory = gw.process.memory()
    batch = int(options.get("batch", 1))
    notes = _wrk_notes(run, cpu)
    notes.append(
        f"processor got {during['alerts']:,} alerts ({during['alerts'] / run.seconds:,.0f}/s) and"
        f" {during['storms']:,} storm events in {during['requests']:,} requests during the run"
    )
    if drain:
        notes.append(
            f"queue depth {depth:,} as the load stopped, "
            + (
                f"0 {drained:.1f} s later; {after['timed']:,} alerts timed"
                if drained is not None
                else f"NOT drained within {bench.settings.drain_timeout:.0f} s"
            )
        )
    return Row(
        scenario=scenario,
        server="gateway",
        requests_per_s=run.ok_per_second,
        alerts_per_s=run.ok_per_second * batch,
        latency_ms=run.latency_ms,
        receipt_ms=receipt,
        errors=run.errors,
        peak_rss_mb=memory["peak"],
        ratio=run.ok_per_second / ceiling.requests_per_s if ceiling.requests_per_s else None,
        notes=notes,
        raw={
            "wrk": run.raw,
            "processor": after,
            "cpu": {**cpu, "generator": run.generator_cpu},
            "queue": {"depth_at_end": depth, "drained_after": drained},
        },
    )


def _ratio_target(bench: Bench, letter: str, row: Row) -> None:
    goal = RATIO_GOALS[letter]
    ratio = row.ratio or 0.0
    bench.summary[letter] = ratio
    bench.targets.append(
        Target(letter, f">= {goal * 100:.0f} % of the ceiling's requests/s", f"{ratio * 100:.1f} %", ratio >= goal)
    )


def _drain_target(bench: Bench, letter: str, row: Row, seconds: float) -> None:
    """
    New alerts sustained: no error, and the queue empty soon after.
    """
    queue = row.raw["queue"]
    drained = queue["drained_after"]
    bench.targets.append(
        Target(
            letter,
            f"sustained {seconds:g} s: 0 errors, queue at 0 within {DRAINED_SOON:g} s",
            f"{row.errors} errors, depth {queue['depth_at_end']:,} at the end, "
            + (f"0 after {drained:.1f} s" if drained is not None else "not drained"),
            row.errors == 0 and drained is not None and drained <= DRAINED_SOON,
        )
    )


def scenario_a(bench: Bench) -> None:
    row = gateway_wrk_row(bench, "a 1 alert, dup", "duplicates", {"batch": 1, "fingerprints": 1000}, 20)
    bench.rows.append(row)
    _ratio_target(bench, "a", row)


def scenario_b(bench: Bench) -> None:
    seconds = bench.settings.sustained_seconds
    row = gateway_wrk_row(bench, "b 1 alert, new", "unique", {"batch": 1}, 20, drain=True, seconds=seconds)
    bench.rows.append(row)
    _ratio_target(bench, "b", row)
    _drain_target(bench, "b", row, seconds)


def scenario_c(bench: Bench) -> None:
    row = gateway_wrk_row(bench, "c 50 alerts, dup", "duplicates", {"batch": 50, "fingerprints": 1000}, 20)
    bench.rows.append(row)
    _ratio_target(bench, "c", row)


def scenario_h(bench: Bench) -> None:
    row = gateway_wrk_row(bench, "h 50 alerts, new", "unique", {"batch": 50}, 20, drain=True)
    bench.rows.append(row)
    _ratio_target(bench, "h", row)
    _drain_target(bench, "h", row, bench.settings.seconds)


def _pace_row(bench: Bench, rate: float) -> Row:
    seconds = bench.settings.pace_seconds
    with gateway(bench.workdir, bench.stub.base) as gw:
        bench.say(f"d: gateway (pid {gw.process.pid}), paced {rate:g}/s for {seconds:g} s")
        bench.stub.reset()
        meter = _meter(gw.process, bench.stub)
        with bench.profiling(gw.process, f"d {rate:g}", seconds):
            result = run_pace(
                "pace",
                {"url": gw.url, "stub": bench.stub.base, "rate": rate, "duration": seconds},
                timeout=seconds + 120,
            )
        # Over the sending and the wait for the last arrivals.
        cpu = meter.stop()
        memory = gw.process.memory()
    notes = [
        f"achieved {result['achieved_rate']:,.0f}/s of {rate:g}/s; {result['ok']:,} accepted,"
        f" {result['delivered']:,} delivered, {result['missing']:,} missing; answers {result['codes']}",
        f"{result['late']:,} requests sent > 5 ms late; up to {result['connections']} connections",
        *_cpu_notes(cpu, result["generator_cpu"]),
    ]
    if result["achieved_rate"] < 0.97 * rate:
        limited = "generator" if result["generator_cpu"] > 0.9 else "gateway (answers slower than the rate)"
        notes.append(f"RATE NOT KEPT: limited by the {limited}")
    return Row(
        scenario=f"d {rate:g}/s",
        server="gateway",
        requests_per_s=result["ok_rate"],
        alerts_per_s=result["ok_rate"],
        latency_ms=result["latency_ms"],
        receipt_ms=result["receipt_to_processor_ms"],
        errors=result["errors"] + result["missing"],
        peak_rss_mb=memory["peak"],
        notes=notes,
        raw={"pace": result, "cpu": cpu},
    )


def scenario_d(bench: Bench) -> None:
    limits = {167.0: 5.0, 1667.0: 10.0}
    for rate in bench.settings.rates:
        row = _pace_row(bench, rate)
        bench.rows.append(row)
        limit = limits.get(rate, 10.0)
        p95 = (row.receipt_ms or {}).get("p95", float("inf"))
        bench.summary[f"d{rate:g}"] = p95
        kept = row.raw["pace"]["achieved_rate"] >= 0.97 * rate
        bench.targets.append(
            Target(
                "d",
                f"{rate:g}/s: receipt-to-processor p95 <= {limit:g} ms, no errors",
                f"p95 {p95:.2f} ms, {row.errors} errors" + ("" if kept else ", rate not kept"),
                p95 <= limit and row.errors == 0 and kept,
            )
        )


def scenario_e(bench: Bench) -> None:
    row = gateway_wrk_row(bench, "e 1000 conns", "duplicates", {"batch": 1, "fingerprints": 1000}, 1000)
    bench.rows.append(row)
    refused = row.raw["wrk"]["errors"]["connect"]
    bench.targets.append(
        Target(
            "e", "no errors, no refused connections", f"{row.errors} errors, {refused} connect errors", row.errors == 0
        )
    )


def scenario_f(bench: Bench) -> None:
    count = bench.settings.fingerprints
    bench.say("f: gateway at rest")
    with gateway(bench.workdir, bench.stub.base) as gw:
        time.sleep(2.0)
        rest = gw.process.memory()
        bench.rows.append(
            Row(
                "f at rest",
                "gateway",
                peak_rss_mb=rest["rss"],
                notes=[f"VmRSS 2 s after ready (VmHWM {rest['peak']:.1f} MB)"],
            )
        )
        bench.say(f"f: feeding {count:,} new fingerprints in batches of 50")
        bench.stub.reset()
        meter = _meter(gw.process, bench.stub)
        feed = run_pace("feed", {"url": gw.url, "batches": count // 50, "batch": 50}, timeout=1800)
        drained = gw.wait_drained(600.0)
        cpu = meter.stop()
        time.sleep(1.0)
        tracked = gw.sample("gateway_dedup_tracked")
        evicted = gw.sample("gateway_dedup_evictions_total")
        loaded = gw.process.memory()
        forwarded = bench.stub.stats()
    row = Row(
        scenario=f"f {count // 1000}k fps",
        server="gateway",
        requests_per_s=feed["batches"] / feed["elapsed"],
        alerts_per_s=feed["alerts"] / feed["elapsed"],
        latency_ms=feed["latency_ms"],
        errors=feed["errors"] + feed["rejected"],
        peak_rss_mb=loaded["peak"],
        notes=[
            f"VmRSS {loaded['rss']:.1f} MB once drained; gateway_dedup_tracked {tracked or 0:,.0f},"
            f" evictions {evicted or 0:,.0f}",
            f"{feed['alerts']:,} alerts accepted in {feed['elapsed']:.1f} s, {feed['retries']:,} answers 503/429"
            f" (queue full) retried; processor got {forwarded['alerts']:,} alerts;"
            + (f" queue drained {drained:.1f} s after the feed" if drained is not None else " queue NOT drained"),
            *_cpu_notes(cpu, feed["generator_cpu"]),
        ],
        raw={"feed": feed, "tracked": tracked, "memory": loaded, "rest": rest, "cpu": cpu},
    )
    bench.rows.append(row)
    _restart_row(bench, gw.directory, count)
    bench.summary["rss"] = rest["rss"]
    bench.targets.append(Target("f", "<= 60 MB RSS at rest", f"{rest['rss']:.1f} MB", rest["rss"] <= 60.0))
    scaled = "" if count == 100_000 else f" (only {count:,} fingerprints: --quick)"
    bench.targets.append(
        Target(
            "f",
            "<= 200 MB peak RSS with 100,000 fingerprints" + scaled,
            f"{loaded['peak']:.1f} MB (tracked {tracked or 0:,.0f})",
            loaded["peak"] <= 200.0 and count == 100_000,
        )
    )


def _restart_row(bench: Bench, directory: Path | None, count: int) -> None:
    """
    Start a gateway again where (f) left its database (stopped with
    SIGTERM): how long until it is ready, and what it says it restored.
    """
    bench.say("f: starting again on the same database")
    with gateway(bench.workdir, bench.stub.base, directory=directory) as again:
        ready = again.ready_after
        tracked = again.sample("gateway_dedup_tracked")
        memory = again.process.memory()
    # Read once the gateway has stopped: log lines reach the file up to
    # 50 ms after they are logged.
    restored = _restored(again.process.log)
    episodes = int(restored.get("episodes", 0))
    seconds = float(restored.get("seconds", 0.0))
    bench.rows.append(
        Row(
            scenario=f"f restart {count // 1000}k",
            server="gateway",
            peak_rss_mb=memory["peak"],
            notes=[
                f"ready {ready:.2f} s after spawn; restored {episodes:,} episodes in {seconds:.2f} s;"
                f" gateway_dedup_tracked {tracked or 0:,.0f}"
            ],
            raw={"ready_after": ready, "restored": restored, "memory": memory},
        )
    )
    bench.targets.append(
        Target(
            "f",
            f"restart with {count:,} episodes ready in < 5 s",
            f"{ready:.2f} s ({episodes:,} episodes restored in {seconds:.2f} s)",
            ready < 5.0 and episodes >= min(count, 100_000) * 0.99,
        )
    )


def _restored(log: Path) -> dict[str, Any]:
    """
    The fields of the gateway's "Restored …" log event.
    """
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and str(event.get("message", "")).startswith("Restored "):
            return event
    return {}


def _merged(scenario: str, runs: list[Row]) -> Row:
    """
    The mean of several rows of one configuration.
    """
    keys = ("p50", "p95", "p99")
    latency = {k: statistics.mean((r.latency_ms or {}).get(k, 0.0) for r in runs) for k in keys}
    ratios = [r.ratio for r in runs if r.ratio is not None]
    return Row(
        scenario=scenario,
        server="gateway",
        requests_per_s=statistics.mean(r.requests_per_s or 0.0 for r in runs),
        alerts_per_s=statistics.mean(r.alerts_per_s or 0.0 for r in runs),
        latency_ms=latency,
        errors=sum(r.errors or 0 for r in runs),
        peak_rss_mb=max(r.peak_rss_mb or 0.0 for r in runs),
        ratio=statistics.mean(ratios) if ratios else None,
        notes=[f"mean of {len(runs)} runs: " + ", ".join(f"{r.requests_per_s:,.0f}" for r in runs) + " req/s"],
        raw={"runs": [r.raw for r in runs]},
    )


def scenario_g(bench: Bench) -> None:
    """
    Each switch off against everything on, in rounds whose order rotates
    (so a drift of the machine does not always favour the same variant);
    the cost is 1 - on/off over the means of the rounds.
    """
    options = {"batch": 1, "fingerprints": 1000}
    variants: list[tuple[str, dict[str, Any] | None]] = [("on", None), *SWITCHED_OFF.items()]
    runs: dict[str, list[Row]] = {name: [] for name, _ in variants}
    for turn in range(bench.settings.g_rounds):
        shift = turn % len(variants)
        for name, overrides in variants[shift:] + variants[:shift]:
            variant = "all on" if overrides is None else f"{name} off"
            row = gateway_wrk_row(bench, "g", "duplicates", options, 20, overrides=overrides, variant=variant)
            runs[name].append(row)
    on = _merged("g all on", runs["on"])
    bench.rows.append(on)
    for name, overrides in SWITCHED_OFF.items():
        what = " and ".join(f"{section}.{key}: false" for section, value in overrides.items() for key in value)
        off = _merged(f"g {name} off", runs[name])
        off.notes.append(f"{what}; each against all on")
        bench.rows.append(off)
        cost = cost_of(on.requests_per_s or 0.0, off.requests_per_s or 0.0)
        bench.summary[name] = cost * 100.0
        goal = COST_GOALS[name]
        bench.targets.append(
            Target(
                "g",
                f"{'metrics' if name == 'metrics' else 'access log'} cost <= {goal * 100:g} % of throughput",
                f"{cost * 100:.1f} %",
                cost <= goal,
            )
        )


def cost_of(on: float, off: float) -> float:
    """
    The share of throughput a feature costs: 1 - (with it) / (without it).
    """
    return 1.0 - on / off if off else 0.0


SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "a": scenario_a,
    "b": scenario_b,
    "c": scenario_c,
    "d": scenario_d,
    "e": scenario_e,
    "f": scenario_f,
    "g": scenario_g,
    "h": scenario_h,
}
