"""
Run one pod as L{tests.deploy.test_container} laid it out, inside the
private network namespace that test made (so the pod's fixed ports and the
services it names are its own), and write what happened as JSON:

    python -m tests.deploy.pod_run SPEC.json REPORT.json

The spec (JSON) names the containers' bwrap command lines in order (init
containers, then the gateway), the probes, the webhook to send and how to
check it, Redis to start (production) and the Alert Processor to stand in
for, and how long the gateway may take to stop.  As the kubelet would:
each init container must exit 0 before the next starts; the gateway must
become live and ready; then a webhook is posted over TLS, verified against
the CA the spec names for the Service's name; once the alert is delivered,
SIGTERM, and the exit is timed.  Every wait has a deadline.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.redis_server import RedisServer

OUTPUT_LIMIT = 20_000


class _Processor(http.server.BaseHTTPRequestHandler):
    """
    The Alert Processor the gateway's configuration names: records each
    delivery and accepts it.
    """

    received: list[dict[str, Any]] = []
    # Keep-alive, as a real processor: the gateway pools its connections.
    protocol_version = "HTTP/1.1"
    # One segment per answer, sent at once: headers and body written
    # apart would wait for the client's delayed acknowledgement.
    wbufsize = -1
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received.append({"path": self.path, "body": json.loads(body or b"null")})
        answer = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Verified(http.client.HTTPSConnection):
    """
    HTTPS to loopback, verifying the certificate for C{server_name}: the
    name a sender in the cluster uses.
    """

    def __init__(self, port: int, server_name: str, context: ssl.SSLContext) -> None:
        super().__init__("127.0.0.1", port, timeout=10, context=context)
        self.server_name = server_name
        self.tls_context = context

    def connect(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.sock = self.tls_context.wrap_socket(raw, server_hostname=self.server_name)


class Running:
    """
    A container started under bwrap, its output collected on threads, its
    pid and exit status read from bwrap's JSON status pipe.
    """

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        read, write = os.pipe()
        argv = [a.replace("{status_fd}", str(write)) for a in argv]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(write,))
        os.close(write)
        self.status: dict[str, int] = {}
        self.output = b""
        self._threads = [
            threading.Thread(target=self._read_status, args=(read,), daemon=True),
            threading.Thread(target=self._read_output, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_status(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as stream:
            for line in stream:
                self.status.update(json.loads(line))

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output += line

    def pid(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while "child-pid" not in self.status:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{self.name}: bwrap did not start it:\n{self.text()}")
            time.sleep(0.01)
        return self.status["child-pid"]

    def wait(self, timeout: float) -> int | None:
        """
        The container's exit code, or None if it did not exit in time (it
        is then killed).
        """
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
        for thread in self._threads:
            thread.join(5)
        return self.status.get("exit-code", self.process.returncode)

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")[-OUTPUT_LIMIT:]


def _post(webhook: dict[str, Any]) -> dict[str, Any]:
    """
    Post the spec's webhook over TLS, verified for the Service's name: the
    answer's status, Retry-After and body, or the error.
    """
    context = ssl.create_default_context(cafile=webhook["ca_file"])
    connection = _Verified(webhook["port"], webhook["server_name"], context)
    try:
        connection.request(
            "POST",
            webhook["path"],
            body=Path(webhook["body_file"]).read_bytes(),
            headers={"Authorization": f"Bearer {webhook['token']}", "Content-Type": "application/json"},
        )
        answer = connection.getresponse()
        body = answer.read().decode("utf-8", "replace")
        return {"status": answer.status, "retry-after": answer.getheader("Retry-After"), "body": body}
    except (OSError, ssl.SSLError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        connection.close()


def _unverified(port: int) -> http.client.HTTPSConnection:
    # As the kubelet: HTTPS without verifying the certificate.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=3, context=context)


def _probe(port: int, path: str) -> int | None:
    connection = _unverified(port)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def _queue_depth(port: int, path: str) -> int | None:
    """
    The queue depth the readiness endpoint reports.
    """
    connection = _unverified(port)
    try:
        connection.request("GET", path)
        depth = json.loads(connection.getresponse().read())["queue"]["depth"]
    except (OSError, ValueError, KeyError):
        return None
    finally:
        connection.close()
    return int(depth)


def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.is_file() else 0


def _until(condition: Any, timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.1)
    return None


def run(spec: dict[str, Any]) -> dict[str, Any]:
    report: dict[str, Any] = {"containers": {}}
    redis = None
    if spec.get("redis"):
        redis = RedisServer(password=spec["redis"]["password"], port=spec["redis"]["port"]).start()
    server = None
    if spec.get("processor_port"):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", spec["processor_port"]), _Processor)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        *init, main = spec["containers"]
        for container in init:
            running = Running(container["name"], container["argv"])
            code = running.wait(60)
            report["containers"][container["name"]] = {"exit": code, "output": running.text()}
            if code != 0:
                return report
        gateway = Running(main["name"], main["argv"])
        try:
            return _serve(spec, gateway, report)
        finally:
            if gateway.process.poll() is None:
                gateway.process.kill()
                gateway.process.wait()
    finally:
        if server is not None:
            server.shutdown()
        if redis is not None:
            redis.stop()


def _serve(spec: dict[str, Any], gateway: Running, report: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    report["containers"][gateway.name] = result
    pid = gateway.pid()
    probes = spec["probes"]
    result["live after"] = _until(lambda: _probe(probes["port"], probes["live"]) == 200, 30)
    result["ready after"] = _until(lambda: _probe(probes["port"], probes["ready"]) == 200, 30)
    webhook = spec["webhook"]
    if result["ready after"] is not None:
        result["webhook"] = _post(webhook)
        try:
            accepted = int(json.loads(result["webhook"]["body"]).get("accepted", 1))
        except (KeyError, ValueError):
            accepted = 1
        sink = spec.get("delivered_file")
        # Every accepted alert: written to the file sink, or received.
        if sink:
            result["delivered after"] = _until(lambda: _lines(Path(sink)) >= accepted, 15)
        else:
            result["delivered after"] = _until(lambda: len(_Processor.received) >= accepted, 15)
            result["deliveries"] = [r["path"] for r in _Processor.received]
        # And the gateway has recorded it: nothing left in its queue.
        result["drained after"] = _until(lambda: _queue_depth(probes["port"], probes["ready"]) == 0, 15)
    stopped = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    # What a sender still routed here meets while the gateway stops.
    time.sleep(1)
    result["webhook while stopping"] = _post(webhook)
    result["ready while stopping"] = _probe(probes["port"], probes["ready"])
    result["exit"] = gateway.wait(spec["stop_within"] + 5)
    result["stopped after"] = time.monotonic() - stopped
    result["output"] = gateway.text()
    return report


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    report = run(spec)
    Path(sys.argv[2]).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
