"""
The servers the benchmark measures or needs: the gateway (the real plugin,
``twistd -n alertgateway``, with a production-like configuration), the
ceiling and the stub processor.

Each gateway starts fresh in a directory of its own (its configuration,
SQLite queue and log), is ready once ``/health/ready`` answers 200, and is
stopped with SIGTERM after its memory was read.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.procs import (
    BIN,
    LOAD_CPU,
    SERVER_CPU,
    Process,
    free_port,
    get_json,
    http,
    metric,
    pinned,
    wait_for_port_line,
)

WEBHOOK_PATH = "/webhook/prometheus"
TOKEN = "bench-" + secrets.token_urlsafe(24)


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """
    ``base`` with ``extra`` laid over it, mappings merged key by key.
    """
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def gateway_config(directory: Path, ports: Mapping[str, int], processor: str) -> dict[str, Any]:
    """
    The production-like configuration: bearer auth, metrics on their own
    port, JSON logs with the access log, the decisions and the queue in
    SQLite (the default; ``synchronous: full``), an HTTP processor; dedup, escalation,
    correlation and storms at their defaults.  Only the rate limiter is off
    (it would refuse the load being measured) and more concurrent requests
    are allowed (scenario e holds 1,000 connections).
    """
    return {
        "service": {
            "name": "alertgateway-bench",
            "host": "127.0.0.1",
            "port": ports["webhook"],
            "max_concurrent_requests": 5000,
            "shutdown_grace": "5s",
        },
        "webhook": {
            "auth": {"type": "bearer", "token": TOKEN},
            "endpoints": [{"path": WEBHOOK_PATH, "source": "alertmanager"}],
        },
        "rate_limiting": {"enabled": False},
        # alert_processor.batch_size at its default (50): alerts ready
        # together go to the stub's batch endpoint in one request.
        "alert_processor": {"endpoint": processor},
        "queue": {"backend": "sqlite", "path": str(directory / "var" / "queue.db"), "synchronous": "full"},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": ports["metrics"], "path": "/metrics"},
        "logging": {"format": "json", "level": "info", "access_log": True},
        # Scenario f measures 100,000 tracked episodes: more than the
        # defaults keep (they are sized for the manifests' 128 MiB pod).
        "dedup": {"max_tracked": 100_000},
        "state": {"max_bytes": 256 * 1024 * 1024},
    }


class Gateway:
    """
    A running gateway and where to reach it.
    """

    def __init__(self, process: Process, config: dict[str, Any]) -> None:
        self.process = process
        self.config = config
        # Where it runs, and how long it took to be ready once spawned.
        self.directory: Path | None = None
        self.ready_after = 0.0
        port = config["service"]["port"]
        self.base = f"http://127.0.0.1:{port}"
        self.url = self.base + WEBHOOK_PATH
        metrics = config["metrics"]
        self.metrics_url = f"http://127.0.0.1:{metrics['port']}{metrics['path']}" if metrics["enabled"] else None

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise RuntimeError(f"the gateway exited before it was ready:\n{self.process.tail()}")
            try:
                if http("GET", self.base + "/health/ready", timeout=2.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the gateway was not ready within {timeout}s:\n{self.process.tail()}")

    def sample(self, name: str) -> float | None:
        """
        A metric from ``/metrics`` (None with metrics off).
        """
        return metric(self.metrics_url, name) if self.metrics_url else None

    def queue_depth(self) -> int:
        """
        ``gateway_queue_depth``, or the readiness answer's queue depth when
        metrics are off.
        """
        depth = self.sample("gateway_queue_depth")
        if depth is None:
            depth = json.loads(http("GET", self.base + "/health/ready")[1])["queue"]["depth"]
        return int(depth)

    def wait_drained(self, timeout: float) -> float | None:
        """
        Seconds until the queue was empty, or None if it was not in ``timeout``.
        """
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.queue_depth() == 0:
                return time.monotonic() - started
            time.sleep(0.25)
        return None


@contextmanager
def gateway(
    workdir: Path, processor: str, overrides: Mapping[str, Any] | None = None, directory: Path | None = None
) -> Iterator[Gateway]:
    """
    Start a gateway on the server CPU, fresh or (given the C{directory} of
    an earlier one) on what that one left; stop it with SIGTERM after use.
    """
    again = directory is not None
    if directory is None:
        directory = Path(workdir) / f"gateway-{time.monotonic_ns()}"
        (directory / "var").mkdir(parents=True)
    ports = {"webhook": free_port(), "metrics": free_port()}
    config = merge(gateway_config(directory, ports, processor), overrides or {})
    path = directory / "gateway.yaml"
    # JSON is YAML: no YAML writer needed.
    path.write_text(json.dumps(config, indent=2))
    argv = pinned(SERVER_CPU, [str(BIN / "twistd"), "-n", "--pidfile=", "alertgateway", "--config", str(path)])
    log = directory / ("gateway-again.log" if again else "gateway.log")
    started = time.monotonic()
    process = Process("gateway", argv, log, cwd=directory)
    running = Gateway(process, config)
    running.directory = directory
    try:
        running.wait_ready(120.0)
        running.ready_after = time.monotonic() - started
        yield running
    finally:
        code = process.stop()
        if code not in (0, None):
            print(f"warning: the gateway exited with {code}; see {process.log}")


@contextmanager
def python_server(module: str, name: str, cpu: int, workdir: Path) -> Iterator[tuple[Process, str]]:
    """
    Run ``python -m <module>`` (a server printing ``PORT <n>``) pinned to ``cpu``.
    """
    log = Path(workdir) / f"{name}-{time.monotonic_ns()}.log"
    process = Process(name, pinned(cpu, [str(BIN / "python"), "-m", module]), log)
    try:
        port = wait_for_port_line(process)
        yield process, f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def ceiling(workdir: Path) -> Any:
    """
    The ceiling on the server CPU: ``with ceiling(dir) as (process, base_url)``.
    """
    return python_server("bench.ceiling", "ceiling", SERVER_CPU, workdir)


def stub_processor(workdir: Path) -> Any:
    """
    The stub processor on the load CPU: ``with stub_processor(dir) as (process, base_url)``.
    """
    return python_server("bench.stub_processor", "stub", LOAD_CPU, workdir)


class Stub:
    """
    The stub processor's API, and its process.
    """

    def __init__(self, process: Process, base: str) -> None:
        self.process = process
        self.base = base

    def reset(self) -> None:
        http("POST", self.base + "/reset")

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = get_json(self.base + "/stats")
        return stats

    def latency(self) -> dict[str, Any]:
        latency: dict[str, Any] = get_json(self.base + "/latency")
        return latency
