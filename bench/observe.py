"""
``python -m bench.observe [json|text]``: what the access log and the metrics
cost per request, measured in process (no sockets, no wrk).

Two measurements, each with four gateways built from the same
configuration but for ``logging.access_log`` and ``metrics.enabled``:

- ``record``: the site's ``_record`` for one finished request (request
  metrics and access line), timed with ``timeit``;
- ``request``: a whole single-alert and a whole 50-alert webhook (duplicates)
  through a real ``GatewayService`` over an in-memory transport, the four
  gateways interleaved round by round in a new order each time, the best
  round kept: the machine is
  shared, and a slower round says more about the neighbours than about us.

The cost of one part is the time with it on minus the time with both off.
"""

from __future__ import annotations

import gc
import random
import sys
import time
import timeit
from typing import Any

from twisted.logger import globalLogBeginner, globalLogPublisher

from tests.unit._http import AUTH, PROMETHEUS, Connection, alert, body, make_config, make_service, request_bytes

VARIANTS = {
    "all on": (True, True),
    "access log off": (False, True),
    "metrics off": (True, False),
    "both off": (False, False),
}


def _gateway(fmt: str, access_log: bool, metrics: bool) -> tuple[Any, Any, Any]:
    config = make_config(
        f"logging:\n  format: {fmt}\n  access_log: {str(access_log).lower()}\n"
        f"metrics:\n  enabled: {str(metrics).lower()}\n"
        "rate_limiting:\n  enabled: false\n"
    )
    service, reactor, stream = make_service(config)
    service.startService()
    return service, reactor, stream


def record(fmt: str) -> dict[str, float]:
    """
    Microseconds per call of the site's C{_record}, by variant.
    """
    return {name: _record_cost(fmt, *switches) for name, switches in VARIANTS.items()}


def _record_cost(fmt: str, access_log: bool, metrics: bool) -> float:
    service, reactor, stream = _gateway(fmt, access_log, metrics)
    site = service.site
    seen: list[Any] = []
    log = site.log
    site.log = lambda request: (seen.append(request), log(request))  # type: ignore[method-assign]
    Connection(site).request("POST", PROMETHEUS, headers=AUTH, body=body(alert("A")))
    request = seen[-1]

    def thousand() -> None:
        for _ in range(1000):
            site._record(request, 202)
        reactor.advance(0.06)
        stream.seek(0)
        stream.truncate()

    # As under twistd: the gateway's observer is the one observer.
    globalLogPublisher.addObserver(service.log_observer)
    try:
        return min(timeit.repeat(thousand, number=5, repeat=9)) / 5000 * 1e6
    finally:
        globalLogPublisher.removeObserver(service.log_observer)


def requests(fmt: str, alerts: int, count: int, rounds: int = 40) -> dict[str, float]:
    """
    Microseconds per webhook of C{alerts} duplicate alerts, by variant.
    """
    gateways = {name: _gateway(fmt, *switches) for name, switches in VARIANTS.items()}
    data = request_bytes("POST", PROMETHEUS, headers=AUTH, body=body(*[alert(f"A{i}") for i in range(alerts)]))
    connections = {}
    for name, (service, _, _) in gateways.items():
        connection = connections[name] = Connection(service.site)
        for _ in range(50):
            connection.send(data)
            assert connection.transport.value().startswith(b"HTTP/1.1 202 "), connection.transport.value()[:200]
            connection.transport.clear()
    best = dict.fromkeys(gateways, float("inf"))
    order = list(gateways)
    for _ in range(rounds):
        # A new order each round: no variant always follows the same one.
        random.shuffle(order)
        for name in order:
            service, reactor, stream = gateways[name]
            connection = connections[name]
            # As under twistd: the gateway's observer is the one observer.
            globalLogPublisher.addObserver(service.log_observer)
            gc.collect()
            started = time.perf_counter()
            for _ in range(count):
                connection.send(data)
                connection.transport.clear()
            best[name] = min(best[name], (time.perf_counter() - started) / count * 1e6)
            globalLogPublisher.removeObserver(service.log_observer)
            reactor.advance(0.1)
            stream.seek(0)
            stream.truncate()
    return best


def _line(what: str, found: dict[str, float]) -> str:
    base, whole = found["both off"], found["all on"]
    access, metrics = found["metrics off"] - base, found["access log off"] - base
    return (
        f"{what}: "
        + ", ".join(f"{name} {us:.2f} µs" for name, us in found.items())
        + f" | access log {access:.2f} µs ({access / whole:.1%}), metrics {metrics:.2f} µs ({metrics / whole:.1%})"
    )


def main(argv: list[str]) -> None:
    fmt = argv[0] if argv else "json"
    # Events go where the test gateways' observers are, as under twistd,
    # not into twisted.logger's start-up buffer.
    globalLogBeginner.beginLoggingTo([], redirectStandardIO=False, discardBuffer=True)
    print(_line(f"record ({fmt})", record(fmt)))
    print(_line(f"1-alert webhook ({fmt})", requests(fmt, 1, 200)))
    print(_line(f"50-alert webhook ({fmt})", requests(fmt, 50, 20)))


if __name__ == "__main__":
    main(sys.argv[1:])
