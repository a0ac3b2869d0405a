"""
Processes of the benchmark: starting them pinned to a CPU, reading their
memory, stopping them, and small HTTP helpers for loopback URLs.

The gateway (or the ceiling) runs on CPU ``SERVER_CPU``; the load
generators and the stub processor on ``LOAD_CPU``, so that runs are
comparable and the generator never steals the server's CPU.  Without
``taskset`` or with a single CPU nothing is pinned (the report says so).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SERVER_CPU = 0
LOAD_CPU = 1


def can_pin() -> bool:
    """
    Whether processes can be pinned: taskset exists and CPUs 0 and 1 are ours.
    """
    return shutil.which("taskset") is not None and {SERVER_CPU, LOAD_CPU} <= os.sched_getaffinity(0)


def pinned(cpu: int, argv: Sequence[str]) -> list[str]:
    """
    ``argv`` run on ``cpu`` (taskset execs it: the pid stays the program's).
    """
    return ["taskset", "-c", str(cpu), *argv] if can_pin() else list(argv)


def source_env() -> dict[str, str]:
    """
    The environment for our subprocesses: the source tree first on the
    path, so twistd runs this checkout's gateway and plugin.
    """
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    """
    A loopback TCP port that was free a moment ago.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def memory_mb(pid: int) -> dict[str, float]:
    """
    ``{"rss": VmRSS, "peak": VmHWM}`` of a live process, in MB (2**20 bytes).
    """
    found: dict[str, float] = {}
    names = {"VmRSS:": "rss", "VmHWM:": "peak"}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            field = line.split()
            if field and field[0] in names:
                found[names[field[0]]] = int(field[1]) / 1024.0
    return found


def cpu_seconds(pid: int) -> float:
    """
    User and system CPU time a live process has used so far.
    """
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """
    CPU time of the finished children of this process (the load generators).
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _busy_jiffies() -> dict[int, tuple[int, int]]:
    """
    Per CPU: (busy, total) jiffies since boot, from /proc/stat.
    """
    found = {}
    with open("/proc/stat", encoding="ascii") as stat:
        for line in stat:
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                numbers = [int(v) for v in values]
                # idle and iowait are not busy.
                found[int(name[3:])] = (sum(numbers) - numbers[3] - numbers[4], sum(numbers))
    return found


class CpuMeter:
    """
    CPU use between its creation and ``stop``: of given processes (1.0 is
    one whole CPU) and of the benchmark's two CPUs as a whole, so that load
    from other programs on the machine shows.
    """

    def __init__(self, **pids: int) -> None:
        self.pids = pids
        self.cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.system = _busy_jiffies()
        self.wall = time.monotonic()

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.wall, 1e-9)
        found = {name: (cpu_seconds(pid) - self.cpu[name]) / wall for name, pid in self.pids.items()}
        system = _busy_jiffies()
        for cpu in (SERVER_CPU, LOAD_CPU):
            if cpu in system and cpu in self.system:
                busy = system[cpu][0] - self.system[cpu][0]
                total = system[cpu][1] - self.system[cpu][1]
                found[f"cpu{cpu}_busy"] = busy / total if total else 0.0
        return found


class Process:
    """
    A long-running subprocess we started, always stopped by ``stop``.
    """

    running: list[Process] = []  # noqa: RUF012 -- the registry of every live one, for cleanup

    def __init__(self, name: str, argv: Sequence[str], log: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.log = log
        self._out: IO[bytes] = open(log, "wb")  # noqa: SIM115 -- closed in stop()
        self.popen = subprocess.Popen(  # noqa: S603 -- our own programs
            list(argv), stdout=self._out, stderr=subprocess.STDOUT, cwd=cwd, env=source_env()
        )
        Process.running.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def memory(self) -> dict[str, float]:
        return memory_mb(self.pid)

    def stop(self, timeout: float = 30.0) -> int:
        """
        SIGTERM, then SIGKILL after ``timeout`` seconds; the exit code.
        """
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()
        if self in Process.running:
            Process.running.remove(self)
        return self.popen.returncode

    @classmethod
    def stop_all(cls) -> None:
        for process in list(cls.running):
            process.stop(timeout=10.0)


def wait_for_port_line(process: Process, timeout: float = 15.0) -> int:
    """
    The port a stub or ceiling printed as ``PORT <n>``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in process.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("PORT "):
                return int(line.split()[1])
        if not process.alive():
            break
        time.sleep(0.05)
    raise RuntimeError(f"{process.name} did not start:\n{process.tail()}")


def http(method: str, url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """
    One request to a loopback URL: the status and the body (errors too).
    """
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 -- loopback URLs only
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_json(url: str) -> Any:
    status, body = http("GET", url)
    if status != 200:
        raise RuntimeError(f"GET {url}: HTTP {status}")
    return json.loads(body)


def metric(url: str, name: str) -> float | None:
    """
    The sum of a metric's samples on a Prometheus text page (None if absent).
    """
    status, body = http("GET", url)
    if status != 200:
        return None
    total = None
    for line in body.decode().splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total
