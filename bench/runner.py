"""
The command line of the benchmark: ``python -m bench [options]``.

Starts the stub processor, runs the chosen scenarios (each with a fresh
gateway), then prints the machine, the table, notes, the targets and a
one-line summary; ``--json PATH`` writes the same as JSON, and ``--record``
(implied by a full run of every scenario) appends the summary to the
history of bench/RESULTS.md.  Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench.procs import BIN, REPO, Process
from bench.report import (
    append_history,
    as_json,
    commit_name,
    describe,
    history_row,
    machine,
    notes_text,
    summary_line,
    table,
    targets_text,
)
from bench.scenarios import SCENARIOS, Bench, Settings
from bench.servers import Stub, stub_processor

# Every scenario, in the order of a full run.
ALL = "abcdefgh"
RESULTS = REPO / "bench" / "RESULTS.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="The gateway's reproducible benchmark.")
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute in all): a smoke test")
    parser.add_argument("--scenarios", default=ALL, help="which scenarios, e.g. a,b,d (default: all)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 15, 3 with --quick)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs, queues)")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy flame graphs of the gateway runs into DIR")
    parser.add_argument(
        "--record",
        action="store_true",
        help="append the summary to the history in bench/RESULTS.md (always done by a full run of every scenario)",
    )
    args = parser.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.replace(",", "").lower() if not s.isspace()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}: choose among {''.join(SCENARIOS)}")
    if not args.quick and args.duration is None and sorted(args.scenarios) == sorted(SCENARIOS):
        args.record = True
    return args


def settings_for(args: argparse.Namespace) -> Settings:
    settings = Settings.quick() if args.quick else Settings()
    if args.duration:
        settings.seconds = args.duration
    return settings


def run(args: argparse.Namespace, workdir: Path) -> int:
    settings = settings_for(args)
    info = machine(workdir)
    print("Machine\n" + describe(info), flush=True)
    started = time.monotonic()
    with stub_processor(workdir) as (process, base):
        bench = Bench(settings, workdir, Stub(process, base), profile_dir=args.profile)
        for letter in args.scenarios:
            SCENARIOS[letter](bench)
    elapsed = time.monotonic() - started
    print(f"\nResults ({'quick' if args.quick else 'full'} run, {elapsed:.0f} s; latencies in ms)\n")
    print(table(bench.rows))
    print(
        "\n  req/s: 2xx answers per second; alerts/s: alerts in them; p50-p99: response latency;"
        "\n  r2p: receipt-to-processor latency (send to stub arrival, same clock); errors: socket errors"
        "\n  and non-2xx answers (202 and 207 are success); peak RSS: VmHWM of the server process;"
        "\n  vs ceiling: req/s over the ceiling's with the same wrk command and payload."
    )
    print("\nNotes\n" + notes_text(bench.rows))
    print("\nTargets\n" + targets_text(bench.targets))
    summary = summary_line(bench.summary)
    print("\n" + summary)
    if args.record:
        row = history_row(info["date"][:10], commit_name(), "quick" if args.quick else "full", bench.summary)
        RESULTS.write_text(append_history(RESULTS.read_text(), row))
        print(f"\nrecorded in {RESULTS}")
    if args.json:
        options = {"quick": args.quick, "scenarios": "".join(args.scenarios), **asdict(settings), "elapsed": elapsed}
        found = as_json(info, options, bench.rows, bench.targets)
        found["summary"] = bench.summary
        args.json.write_text(json.dumps(found, indent=2))
        print(f"\nJSON written to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed: apt-get install -y wrk (bench/run does it when root)", file=sys.stderr)
        return 2
    if args.profile and not (BIN / "py-spy").exists():
        print("bench: --profile needs py-spy in the venv: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="alertgateway-bench-"))
    try:
        return run(args, workdir)
    finally:
        Process.stop_all()
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
