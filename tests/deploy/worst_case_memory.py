"""
The gateway's memory at the worst case an overlay's configuration allows,
measured on the real plugin: the figures the memory limits of
C{deploy/base/deployment.yaml} are sized from.  Not a test (it takes
minutes); run it by hand after changing a bound or the code that holds the
state:

    PYTHONPATH=. .venv/bin/python -m tests.deploy.worst_case_memory dev
    PYTHONPATH=. .venv/bin/python -m tests.deploy.worst_case_memory production

The overlay's rendered C{gateway.yaml} is used as it is but for where it
listens (loopback, any port), TLS (off), the paths under
C{/var/lib/alertgateway} (a temporary directory in memory), the Alert
Processor (a stub), Redis (a local C{redis-server}, for production) and
C{dedup.window} (an hour, so that no episode expires while this machine
feeds them: the worst case is every one of them within the window).  Then:

1. C{dedup.max_tracked} distinct alerts, 50 to a webhook, each in a group
   of its own (no storm folds them), are accepted and delivered: the
   episodes the gateway tracks reach the bound;
2. the processor fails every delivery, and distinct alerts with
   annotations of C{limits.max_annotation_bytes} are posted until the
   queue refuses them (C{queue.max_items} or C{queue.max_bytes}, whichever
   comes first): the queue is full while the episodes stay at the bound.

It prints the peak resident set (VmHWM) after each phase, and the bytes
written under the queue's directory (the C{queue} emptyDir).
"""

from __future__ import annotations

import http.server
import json
import multiprocessing
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml
from twisted.internet.defer import DeferredSemaphore, ensureDeferred, gatherResults
from twisted.internet.task import deferLater, react

from tests.deploy.kustomize import build
from tests.integration.harness import REPO, GatewayProcess, free_port, http_client, json_headers, reactor
from tests.redis_server import RedisServer

TOKEN = "worst-case-memory-token"
# The problem type of a webhook refused because the queue is full.
FULL = "queue-full"
DATA = "/var/lib/alertgateway"


def overlay_config(overlay: str) -> dict[str, Any]:
    """
    The rendered C{gateway.yaml} of an overlay, as a mapping.
    """
    [config_map] = [
        m
        for m in build(REPO / "deploy" / "overlays" / overlay)
        if m["kind"] == "ConfigMap" and m["metadata"]["name"].startswith("alertgateway-config-")
    ]
    config: dict[str, Any] = yaml.safe_load(config_map["data"]["gateway.yaml"])
    return config


def local_config(config: dict[str, Any], directory: Path, processor: str, redis: RedisServer | None) -> dict[str, Any]:
    """
    The overlay's configuration with only its surroundings replaced.
    """
    text = json.dumps(config).replace(DATA, str(directory))
    local: dict[str, Any] = json.loads(text)
    local["service"] = {k: v for k, v in local["service"].items() if k not in ("host", "port")}
    local["metrics"] = {k: v for k, v in local.get("metrics", {}).items() if k not in ("host", "port")}
    local["security"] = {k: v for k, v in local.get("security", {}).items() if not k.endswith("_file")}
    local["security"]["tls_enabled"] = False
    local["alert_processor"] = {**local.get("alert_processor", {}), "endpoint": processor}
    local["webhook"]["auth"] = {"type": "bearer", "token": TOKEN}
    local["logging"] = {"level": "info", "format": "json", "access_log": False}
    # Every episode within the window, however long feeding them takes
    # here: the worst case is max_tracked of them at once.
    local["dedup"] = {**local.get("dedup", {}), "window": "1h"}
    if redis is not None:
        local["state"]["redis"] = {**local["state"]["redis"], "url": redis.url, "password": "pw"}
        local["state"]["redis"].pop("password_env", None)
    return local


def alerts(tag: str, count: int, annotation_bytes: int = 0) -> bytes:
    """
    An Alertmanager webhook of C{count} firing alerts, each in a
    correlation group of its own (its own alertname).
    """
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "alertgateway",
        "groupKey": f'{{}}:{{tag="{tag}"}}',
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": f"WorstCase{tag}x{n}", "namespace": "memory", "severity": "warning"},
                "annotations": {"description": "x" * annotation_bytes} if annotation_bytes else {},
                "startsAt": "2026-01-01T00:00:00Z",
            }
            for n in range(count)
        ],
    }
    return json.dumps(body).encode()


class _Processor(http.server.BaseHTTPRequestHandler):
    """
    An Alert Processor in a process of its own (so it keeps up with the
    gateway): it accepts every delivery, or with C{failing} set refuses
    each with 503, and counts them.
    """

    protocol_version = "HTTP/1.1"
    # One segment per answer, sent at once: headers and body written
    # apart would wait for the client's delayed acknowledgement.
    wbufsize = -1
    disable_nagle_algorithm = True
    failing: Any = None
    delivered: Any = None

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        code = 503 if self.failing.value else 200
        if code == 200:
            with self.delivered.get_lock():
                self.delivered.value += 1
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(port: int, failing: Any, delivered: Any) -> None:
    _Processor.failing, _Processor.delivered = failing, delivered
    http.server.ThreadingHTTPServer(("127.0.0.1", port), _Processor).serve_forever()


def status_memory(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


async def post_all(url: str, bodies: list[bytes], retry_full: bool, parallel: int = 4) -> list[tuple[int, str]]:
    """
    Post every body, C{parallel} at a time.  A body refused for a reason
    that passes (503 other than C{queue-full}: a rate limit) is posted
    again a moment later, as Alertmanager would; one refused because the
    queue is full is posted again only while C{retry_full}.
    """
    client = http_client()
    semaphore = DeferredSemaphore(parallel)
    answers: list[tuple[int, str]] = []

    async def one(body: bytes) -> None:
        while True:
            response = await client.post(url, data=body, headers=json_headers(TOKEN))
            text = (await response.content()).decode("utf-8", "replace")
            answers.append((response.code, text))
            if response.code != 503 or (FULL in text and not retry_full):
                return
            await deferLater(reactor, 0.2)

    await gatherResults([semaphore.run(lambda b: ensureDeferred(one(b)), body) for body in bodies])
    return answers


async def measure(overlay: str) -> dict[str, Any]:
    config = overlay_config(overlay)
    redis = None
    if config.get("state", {}).get("backend") == "redis":
        redis = RedisServer(password="pw").start()
    failing, delivered = multiprocessing.Value("b", 0), multiprocessing.Value("l", 0)
    port = free_port()
    server = multiprocessing.Process(target=_serve, args=(port, failing, delivered), daemon=True)
    server.start()
    processor = f"http://127.0.0.1:{port}"
    # In memory: the disk's speed is not what is measured, and a slow disk
    # would let episodes expire before the bound is reached.
    directory = Path(tempfile.mkdtemp(prefix="alertgateway-memory-", dir="/dev/shm"))
    environ = {"GRAFANA_HMAC_SECRET": "unused", "REDIS_PASSWORD": "pw", "WEBHOOK_TOKEN": TOKEN}
    gateway = GatewayProcess(local_config(config, directory / "data", processor, redis), env=environ)
    try:
        await gateway.start(timeout=60)
        pid = gateway._transport.pid
        report: dict[str, Any] = {"overlay": overlay, "at rest": status_memory(pid)}
        url = gateway.url + "/webhook/prometheus"
        tracked = int(config.get("dedup", {}).get("max_tracked", 100_000))
        batches = [alerts(f"t{n}", 50) for n in range(tracked // 50)]
        answers = await post_all(url, batches, retry_full=True)
        for _ in range(6000):
            if delivered.value >= tracked:
                break
            await deferLater(reactor, 0.1)
        codes = [code for code, _ in answers]
        report["episodes"] = {
            "posted": len(batches) * 50,
            "answers": {c: codes.count(c) for c in set(codes)},
            "tracked": await gateway.sample("gateway_dedup_tracked"),
            **status_memory(pid),
        }
        failing.value = 1
        limit = int(config.get("limits", {}).get("max_annotation_bytes", 65536)) - len("description") - 64
        full = sent = 0
        while full < 3 and sent < 20_000:
            answers = await post_all(url, [alerts(f"q{uuid.uuid4().hex[:8]}", 1, limit) for _ in range(20)], False)
            sent += 20
            full += sum(1 for code, text in answers if code == 503 and FULL in text)
        report["queue full"] = {
            "big alerts posted": sent,
            "queue depth": await gateway.sample("gateway_queue_depth"),
            "tracked": await gateway.sample("gateway_dedup_tracked"),
            "disk MB": disk_bytes(directory) / 2**20,
            **status_memory(pid),
        }
        print(json.dumps(report, indent=2), flush=True)
        return report
    finally:
        await gateway.stop(timeout=120)
        server.kill()
        if redis is not None:
            redis.stop()


def main(reactor: Any, overlay: str) -> Any:
    return ensureDeferred(measure(overlay))


if __name__ == "__main__":
    react(main, [sys.argv[1]])
