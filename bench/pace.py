"""
Webhook senders written with Twisted, for what wrk cannot do.

``pace``: a constant rate (scenario d).  One new alert per request, each in
its own namespace (so its own correlation group: forwarded alone), numbered
by the label ``seq``; the send time of each is recorded.  Requests go out on
a pool of persistent connections, as Alertmanager sends them; when every
connection is busy another is opened (up to ``--max-connections``) and the
request waits for the first free one (counted ``late`` if that is more than
5 ms after its turn).  Afterwards the stub processor's arrival times
give the receipt-to-processor latency (arrival - send, same clock).

``feed``: a fixed number of batches, as fast as the gateway takes them
(scenario f).  Each alert is new; a batch refused with 503 or 429 (queue
full) is sent again half a second later, as Alertmanager would retry it,
and nothing is sent meanwhile: sooner than the gateway's Retry-After, so
its queue stays full, but without hammering it (every refused batch is
parsed before it is refused).

The HTTP/1.1 client is a small Protocol, not Agent: it costs a few tens of
microseconds per request, so the generator does not compete with the stub
processor for its CPU.  Results are printed as one JSON line.

    python -m bench.pace pace --url URL --token T --stub URL --rate 167 --duration 10
    python -m bench.pace feed --url URL --token T --batches 2000 --batch 50
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import reactor as _reactor
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure

from bench.stats import percentiles

reactor: Any = _reactor

_STARTED = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fingerprint(labels: dict[str, str]) -> str:
    """
    Alertmanager's fingerprint of a label set (FNV-1a 64).
    """
    h = 0xCBF29CE484222325
    for byte in b"".join(k.encode() + b"\xff" + labels[k].encode() + b"\xff" for k in sorted(labels)):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return format(h, "016x")


def alert(seq: int, alertname: str) -> dict[str, Any]:
    """
    A new firing alert, alone in its correlation group (namespace per seq).
    """
    labels = {
        "alertname": alertname,
        "container": "api",
        "job": "kube-state-metrics",
        "namespace": f"bench-{seq}",
        "pod": f"api-{seq}",
        "seq": str(seq),
        "severity": "critical",
    }
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {
            "runbook_url": f"https://runbooks.example.com/{alertname}",
            "summary": f"Pod bench-{seq}/api-{seq} is crash looping",
        },
        "startsAt": _STARTED,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=kube_pod_container_status_restarts_total%3E0&g0.tab=1",
        "fingerprint": fingerprint(labels),
    }


def body(alerts: list[dict[str, Any]]) -> bytes:
    """
    An Alertmanager v4 notification carrying ``alerts``.
    """
    first = alerts[0]["labels"]
    group = {"alertname": first["alertname"], "namespace": first["namespace"]}
    common = {k: v for k, v in first.items() if all(a["labels"].get(k) == v for a in alerts)}
    notification = {
        "receiver": "alertgateway",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{group["alertname"]}", namespace="{group["namespace"]}"}}',
        "truncatedAlerts": 0,
    }
    return json.dumps(notification, separators=(",", ":")).encode()


def request_bytes(url: str, token: str, payload: bytes) -> bytes:
    """
    One complete HTTP/1.1 POST, ready to write.
    """
    parts = urlsplit(url)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nUser-Agent: Alertmanager/0.25.0\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def _content_length(head: bytes) -> int:
    """
    The Content-Length of a lower-cased response head (0 without one).
    """
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length":
            return int(value)
    return 0


class Connection(Protocol):
    """
    One persistent connection: one request at a time, answers read by
    Content-Length.
    """

    def __init__(self, owner: Sender) -> None:
        self.owner = owner
        self.buffer = b""
        self.status = 0
        self.need: int | None = None
        self.tag: Any = None
        self.sent_at = 0.0

    def connectionMade(self) -> None:
        self.owner.idle(self)

    def send(self, data: bytes, tag: Any) -> None:
        assert self.transport is not None
        self.tag = tag
        self.sent_at = time.time()
        self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while self._answer_complete():
            pass

    def _answer_complete(self) -> bool:
        if self.need is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            head, self.buffer = self.buffer[:end].lower(), self.buffer[end + 4 :]
            self.status = int(head[9:12])
            self.need = _content_length(head)
        if len(self.buffer) < self.need:
            return False
        self.buffer, self.need = self.buffer[self.need :], None
        self.owner.answered(self, self.status, time.time())
        return True

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.owner.lost(self)


class _Factory(ClientFactory):
    noisy = False

    def __init__(self, owner: Sender) -> None:
        self.owner = owner

    def buildProtocol(self, addr: Any) -> Connection:
        return Connection(self.owner)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.owner.connect_failed(reason)


class Sender:
    """
    A pool of connections and what happened to the requests sent on them.
    """

    def __init__(self, url: str, connections: int, limit: int | None = None) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.wanted = connections
        self.limit = connections if limit is None else limit
        self.opened = 0
        self.most_opened = 0
        self.free: deque[Connection] = deque()
        self.busy: set[Connection] = set()
        self.latencies: list[float] = []
        self.codes: dict[int, int] = {}
        self.socket_errors = 0
        self.running = True
        self.on_idle: Callable[[], None] = lambda: None

    def connect(self, count: int | None = None) -> None:
        factory = _Factory(self)
        for _ in range(self.wanted if count is None else count):
            self.opened += 1
            self.most_opened = max(self.most_opened, self.opened)
            reactor.connectTCP(self.host, self.port, factory, timeout=10)

    def stop(self) -> None:
        if self.running:
            self.running = False
            reactor.callLater(0, reactor.stop)

    def idle(self, connection: Connection) -> None:
        self.free.append(connection)
        self.on_idle()

    def answered(self, connection: Connection, status: int, now: float) -> None:
        self.busy.discard(connection)
        self.latencies.append(now - connection.sent_at)
        self.codes[status] = self.codes.get(status, 0) + 1
        self.completed(connection.tag, status)
        self.idle(connection)

    def completed(self, tag: Any, status: int) -> None:
        """
        Called with each answer; for subclasses.
        """

    def lost(self, connection: Connection) -> None:
        if connection in self.busy:
            self.busy.discard(connection)
            self.socket_errors += 1
            self.completed(connection.tag, 0)
        if connection in self.free:
            self.free.remove(connection)
        self.opened -= 1
        if self.running:
            self.connect(1)

    def connect_failed(self, reason: Failure) -> None:
        self.opened -= 1
        self.socket_errors += 1

    def send(self, data: bytes, tag: Any) -> Connection | None:
        """
        Send on a free connection; None (nothing sent) if all are busy, in
        which case one more is opened while under ``limit``.
        """
        if not self.free:
            if self.opened < self.limit:
                self.connect(1)
            return None
        connection = self.free.popleft()
        self.busy.add(connection)
        connection.send(data, tag)
        return connection

    def ok(self) -> int:
        return sum(count for code, count in self.codes.items() if 200 <= code < 300)

    def failed(self) -> int:
        return self.socket_errors + sum(count for code, count in self.codes.items() if not 200 <= code < 300)


class Pacer(Sender):
    """
    Send ``total`` requests at ``rate`` per second, one new alert each.
    """

    def __init__(
        self, url: str, token: str, rate: float, total: int, first_seq: int, connections: int, limit: int
    ) -> None:
        super().__init__(url, connections, limit)
        self.url, self.token, self.rate, self.total = url, token, rate, total
        self.first_seq = first_seq
        self.sent_times: dict[int, float] = {}
        self.issued = 0
        self.late = 0
        self.started = 0.0
        self.last_sent = 0.0
        self.finished = 0
        self._next: Any = reactor.callLater(0, lambda: None)
        self.on_idle = self._pump

    def start(self) -> None:
        self.started = time.time() + 0.2
        self._next = reactor.callLater(0.2, self._pump)

    def _due(self, now: float) -> int:
        return min(self.total, int((now - self.started) * self.rate) + 1)

    def _pump(self) -> None:
        """
        Send every request whose time has come, then sleep until the next
        one's (or until a connection frees, if all are busy).
        """
        if not self.started or time.time() < self.started:
            return
        now = time.time()
        while self.issued < self._due(now):
            seq = self.first_seq + self.issued
            connection = self.send(request_bytes(self.url, self.token, body([alert(seq, "BenchPacedAlert")])), seq)
            if connection is None:
                return
            if now - (self.started + self.issued / self.rate) > 0.005:
                self.late += 1
            self.sent_times[seq] = self.last_sent = connection.sent_at
            self.issued += 1
        if self.issued < self.total and not self._next.active():
            next_at = self.started + self.issued / self.rate
            self._next = reactor.callLater(max(0.0, next_at - time.time()), self._pump)

    def completed(self, tag: Any, status: int) -> None:
        self.finished += 1
        if self.finished >= self.total:
            self.stop()


class Feeder(Sender):
    """
    Send ``batches`` bodies of ``batch`` new alerts each, retrying 503/429.
    """

    def __init__(self, url: str, token: str, batches: int, batch: int, connections: int, retry_delay: float) -> None:
        super().__init__(url, connections)
        self.url, self.token, self.batches, self.batch = url, token, batches, batch
        self.retry_delay = retry_delay
        self.resume: Any = None
        self.pending: deque[int] = deque(range(batches))
        self.accepted = 0
        self.retries = 0
        self.rejected = 0
        self.on_idle = self._pump

    def _pump(self) -> None:
        if self.resume is not None:
            return
        while self.pending and self.free:
            number = self.pending.popleft()
            alerts = [alert(number * self.batch + i, f"BenchFeed{i % 20:02d}") for i in range(self.batch)]
            self.send(request_bytes(self.url, self.token, body(alerts)), number)

    def completed(self, tag: Any, status: int) -> None:
        if 200 <= status < 300:
            self.accepted += 1
        elif status in (0, 429, 503):
            # Refused for now: send it again, and nothing at all until then.
            self.retries += 1
            self.pending.appendleft(tag)
            if self.resume is None:
                self.resume = reactor.callLater(self.retry_delay, self._resume)
            return
        else:
            self.rejected += 1
        if self.accepted + self.rejected >= self.batches:
            self.stop()

    def _resume(self) -> None:
        self.resume = None
        self._pump()


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 -- loopback URL of our own stub
        return json.loads(response.read())


def _arrivals(stub: str, first: int, last: int, expected: int, wait: float) -> dict[int, float]:
    """
    The stub's arrival times of seqs ``first..last``, once ``expected`` of
    them arrived or ``wait`` seconds passed.
    """
    deadline = time.time() + wait
    while True:
        found = _get_json(f"{stub}/arrivals?from={first}&to={last}")["arrivals"]
        if len(found) >= expected or time.time() > deadline:
            return {int(seq): at for seq, at in found.items()}
        time.sleep(0.2)


def _ms(values: list[float]) -> dict[str, float] | None:
    return percentiles([value * 1000.0 for value in values])


def run_pace(args: argparse.Namespace) -> dict[str, Any]:
    total = max(1, round(args.rate * args.duration))
    pacer = Pacer(args.url, args.token, args.rate, total, args.first_seq, args.connections, args.max_connections)
    cpu_before = time.process_time()
    pacer.connect()
    pacer.start()
    reactor.callLater(args.duration + 30, reactor.stop)
    reactor.run()
    elapsed = max(pacer.last_sent - pacer.started, 1e-9)
    cpu = time.process_time() - cpu_before
    wall = max(time.time() - pacer.started, 1e-9)
    ok = pacer.ok()
    last = args.first_seq + total - 1
    arrivals = _arrivals(args.stub, args.first_seq, last, ok, wait=30.0) if ok else {}
    receipt = [arrivals[seq] - sent for seq, sent in pacer.sent_times.items() if seq in arrivals]
    return {
        "mode": "pace",
        "rate": args.rate,
        "achieved_rate": (pacer.issued - 1) / elapsed if pacer.issued > 1 else 0.0,
        "ok_rate": ok / elapsed,
        "sent": pacer.issued,
        "ok": ok,
        "errors": pacer.failed(),
        "codes": {str(code): count for code, count in sorted(pacer.codes.items())},
        "late": pacer.late,
        "connections": pacer.most_opened,
        "generator_cpu": cpu / wall,
        "delivered": len(receipt),
        "missing": ok - len(receipt),
        "latency_ms": _ms(pacer.latencies),
        "receipt_to_processor_ms": _ms(receipt),
    }


def run_feed(args: argparse.Namespace) -> dict[str, Any]:
    feeder = Feeder(args.url, args.token, args.batches, args.batch, args.connections, args.retry_delay)
    started, cpu = time.time(), time.process_time()
    feeder.connect()
    reactor.callLater(args.timeout, reactor.stop)
    reactor.run()
    elapsed, cpu = time.time() - started, time.process_time() - cpu
    return {
        "mode": "feed",
        "batches": feeder.accepted,
        "alerts": feeder.accepted * args.batch,
        "elapsed": elapsed,
        "generator_cpu": cpu / elapsed,
        "retries": feeder.retries,
        "rejected": feeder.rejected,
        "errors": feeder.socket_errors,
        "codes": {str(code): count for code, count in sorted(feeder.codes.items())},
        "latency_ms": _ms(feeder.latencies),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Twisted webhook senders for the benchmark.")
    modes = parser.add_subparsers(dest="mode", required=True)
    pace = modes.add_parser("pace", help="a constant rate of new alerts")
    feed = modes.add_parser("feed", help="a fixed number of batches of new alerts")
    for mode in (pace, feed):
        mode.add_argument("--url", required=True, help="the webhook URL")
        mode.add_argument("--token", required=True)
    pace.add_argument("--stub", required=True, help="the stub processor's base URL")
    pace.add_argument("--rate", type=float, required=True)
    pace.add_argument("--duration", type=float, default=10.0)
    pace.add_argument("--first-seq", type=int, default=1)
    pace.add_argument("--connections", type=int, default=16, help="connections opened at start")
    pace.add_argument("--max-connections", type=int, default=512, help="more are opened while all are busy")
    feed.add_argument("--batches", type=int, required=True)
    feed.add_argument("--batch", type=int, default=50)
    feed.add_argument("--connections", type=int, default=4)
    feed.add_argument("--retry-delay", type=float, default=0.5, help="seconds before sending a refused batch again")
    feed.add_argument("--timeout", type=float, default=600.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run_pace(args) if args.mode == "pace" else run_feed(args)
    print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
