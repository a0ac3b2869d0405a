"""
Running the load generators: ``wrk`` with the scripts of ``bench/wrk``
(closed loop, a fixed number of connections) and ``bench.pace`` (a constant
rate, or a fixed number of batches), both on the load CPU.

Each prints one ``BENCH_RESULT {json}`` line; wrk's comes from the Lua
``done()`` callback, which has wrk's exact latency percentiles.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import BIN, LOAD_CPU, children_cpu_seconds, pinned, source_env
from bench.servers import TOKEN

WRK_DIR = Path(__file__).resolve().parent / "wrk"
WRK_TIMEOUT = "10s"


def wrk_version() -> str:
    path = shutil.which("wrk")
    if path is None:
        return "not installed"
    done = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    return (done.stdout or done.stderr).splitlines()[0].split(" Copyright")[0].strip()


def _result(output: str, what: str) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith("BENCH_RESULT "):
            found: dict[str, Any] = json.loads(line[len("BENCH_RESULT ") :])
            return found
    raise RuntimeError(f"{what} printed no result:\n{output[-3000:]}")


@dataclass
class WrkRun:
    """
    What one wrk run measured.

    ``ok`` counts 2xx answers (wrk counts an answer of 400 or more as a
    status error); socket errors are connect, read, write and timeout.
    """

    seconds: float
    requests: int
    ok: int
    status_errors: int
    socket_errors: dict[str, int]
    latency_ms: dict[str, float]
    generator_cpu: float
    raw: dict[str, Any]

    @property
    def ok_per_second(self) -> float:
        return self.ok / self.seconds

    @property
    def errors(self) -> int:
        return self.status_errors + sum(self.socket_errors.values())


def run_wrk(url: str, script: str, connections: int, seconds: float, options: Mapping[str, Any]) -> WrkRun:
    """
    ``wrk -t1 -c<connections> -d<seconds>`` with ``bench/wrk/<script>.lua``.
    """
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        WRK_TIMEOUT,
        "--latency",
        "-s",
        str(WRK_DIR / f"{script}.lua"),
        url,
        "--",
        f"token={TOKEN}",
        *(f"{key}={value}" for key, value in options.items()),
    ]
    cpu = children_cpu_seconds()
    done = subprocess.run(  # noqa: S603 -- our own command line
        pinned(LOAD_CPU, argv), capture_output=True, text=True, timeout=seconds + 120, check=False
    )
    cpu = children_cpu_seconds() - cpu
    raw = _result(done.stdout + done.stderr, "wrk")
    errors = raw["errors"]
    latency = {key: value / 1000.0 for key, value in raw["latency_us"].items()}
    return WrkRun(
        seconds=raw["duration_us"] / 1e6,
        requests=raw["requests"],
        ok=raw["requests"] - errors["status"],
        status_errors=errors["status"],
        socket_errors={key: errors[key] for key in ("connect", "read", "write", "timeout")},
        latency_ms={"p50": latency["50"], "p95": latency["95"], "p99": latency["99"], "max": latency["max"]},
        generator_cpu=cpu / (raw["duration_us"] / 1e6),
        raw=raw,
    )


def run_pace(mode: str, arguments: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """
    ``python -m bench.pace <mode> --key value ...`` on the load CPU.
    """
    argv = [str(BIN / "python"), "-m", "bench.pace", mode, "--token", TOKEN]
    for key, value in arguments.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(  # noqa: S603 -- our own command line
        pinned(LOAD_CPU, argv), capture_output=True, text=True, timeout=timeout, check=False, env=source_env()
    )
    return _result(done.stdout + done.stderr, f"bench.pace {mode}")


def profiler(pid: int, path: Path, seconds: float) -> subprocess.Popen[bytes]:
    """
    ``py-spy record`` of ``pid`` for ``seconds`` into a flame graph at ``path``.
    """
    argv = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--output", str(path), "--duration"]
    argv += [str(max(1, round(seconds))), "--rate", "100", "--nonblocking"]
    return subprocess.Popen(  # noqa: S603 -- our own command line
        pinned(LOAD_CPU, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
