"""
The access log written without a twisted.logger event: the same lines as
the event gave, in the log's buffer, out in time and at the stop.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.observability.access import NAMESPACE, AccessLog, Fields, access_log, json_line, text_line
from alertgateway.observability.logs import FLUSH_DELAY, LineBuffer, make_logs, make_observer
from tests.unit._http import AUTH, PROMETHEUS, Connection, alert, body, make_config, make_service, stop

# Requests as the site hands them over: the plain, and the awkward (quotes,
# backslashes, control and non-ASCII characters where a client chooses,
# times that round up, a zero duration).
REQUESTS: list[dict[str, Any]] = [
    {
        "when": 1795665000.123456,
        "remote": "127.0.0.1",
        "method": "POST",
        "path": "/webhook/prometheus",
        "status": 202,
        "sent": 312,
        "duration_ms": 0.417,
        "request_id": "0f" * 16,
        "endpoint": "/webhook/prometheus",
        "user_agent": "Alertmanager/0.25.0",
    },
    {
        "when": 1795665001.9999996,
        "remote": "::1",
        "method": "GET",
        "path": '/a"b\\c\x01\u00e9\u2603',
        "status": 404,
        "sent": 0,
        "duration_ms": 0.0,
        "request_id": "req-1",
        "endpoint": "unmatched",
        "user_agent": 'curl "8"\t\\ \u00ff',
    },
    {
        "when": 1795665002.5,
        "remote": "-",
        "method": "-",
        "path": "-",
        "status": 499,
        "sent": 0,
        "duration_ms": 2000.0,
        "request_id": "r",
        "endpoint": "/webhook/grafana",
        "user_agent": "",
    },
]


def fields(request: dict[str, Any]) -> Fields:
    """
    C{request}'s fields, as the site gives them.
    """
    keys = ("remote", "method", "path", "status", "sent", "duration_ms", "request_id", "endpoint", "user_agent")
    found: Fields = tuple(request[key] for key in keys)
    return found


def as_event(request: dict[str, Any]) -> dict[str, Any]:
    """
    The twisted.logger event the site emitted for C{request} before it
    wrote access lines itself.
    """
    return {
        "log_level": LogLevel.info,
        "log_namespace": NAMESPACE,
        "log_time": request["when"],
        "log_format": "{method} {path} {status} {bytes}B {duration_ms}ms {requestId}",
        "log_type": "access",
        "remote": request["remote"],
        "method": request["method"],
        "path": request["path"],
        "status": request["status"],
        "bytes": request["sent"],
        "duration_ms": request["duration_ms"],
        "requestId": request["request_id"],
        "endpoint": request["endpoint"],
        "user_agent": request["user_agent"],
    }


class LineTests(SynchronousTestCase):
    """
    Each format's access line is, character for character, what the log's
    observer wrote for the access event.
    """

    def check(self, fmt: str) -> None:
        before, after = io.StringIO(), io.StringIO()
        observer = make_observer(before, fmt, "info")
        log = AccessLog(LineBuffer(after), json_line() if fmt == "json" else text_line())
        for request in REQUESTS:
            observer(as_event(request))
            log.request(request["when"], fields(request))
        self.assertEqual(after.getvalue(), before.getvalue())
        self.assertEqual(len(after.getvalue().splitlines()), len(REQUESTS))

    def test_json(self) -> None:
        """
        logging.format json: the same keys in the same order, the same
        escaping, the same time stamp.
        """
        self.check("json")
        line = json_line()(REQUESTS[1]["when"], fields(REQUESTS[1]))
        self.assertEqual(json.loads(line)["path"], REQUESTS[1]["path"])

    def test_text(self) -> None:
        """
        logging.format text: time, [alertgateway.access#info] and the
        message, as twisted.logger's text observer wrote them.
        """
        self.check("text")


class ChoiceTests(SynchronousTestCase):
    """
    Which access log a logging configuration gets.
    """

    def test_levels(self) -> None:
        """
        At info or debug access lines are written; at warn or above (where
        the event was filtered out) there is no access log at all.
        """
        for level, expected in (("debug", True), ("info", True), ("warn", False), ("error", False)):
            logs = make_logs(io.StringIO(), "json", level)
            self.assertEqual(access_log(logs) is not None, expected, level)

    def test_format(self) -> None:
        """
        The access log writes the configured format into the logs' buffer.
        """
        for fmt, start in (("json", '{"time":"'), ("text", "20")):
            stream = io.StringIO()
            log = access_log(make_logs(stream, fmt, "info"))
            assert log is not None
            log.request(REQUESTS[0]["when"], fields(REQUESTS[0]))
            self.assertTrue(stream.getvalue().startswith(start), fmt)


class ServiceTests(SynchronousTestCase):
    """
    The gateway's access lines wait in its log buffer: out within
    FLUSH_DELAY, in order with the other lines, and all of them at the stop.
    """

    def test_flushed_on_timer(self) -> None:
        """
        A request's access line reaches the stream FLUSH_DELAY later, on
        the gateway's clock, without any other line pushing it.
        """
        service, reactor, stream = make_service(make_config("logging:\n  access_log_exclude: []\n"))
        service.startService()
        self.addCleanup(stop, self, service)
        reactor.advance(FLUSH_DELAY)
        written = stream.getvalue()
        Connection(service.site).request("GET", "/health/live")
        self.assertEqual(stream.getvalue(), written)
        reactor.advance(FLUSH_DELAY)
        [line] = stream.getvalue()[len(written) :].splitlines()
        self.assertEqual(json.loads(line)["path"], "/health/live")

    def test_in_order_with_warnings(self) -> None:
        """
        A warning (here a security refusal) is written at once, after the
        access lines that came before it.
        """
        service, _, stream = make_service()
        Connection(service.site).request("POST", PROMETHEUS, headers=AUTH, body=body(alert("A")))
        globalLogPublisher.addObserver(service.log_observer)
        self.addCleanup(globalLogPublisher.removeObserver, service.log_observer)
        Connection(service.site).request("POST", PROMETHEUS, body=body(alert("B")))

        def kinds() -> list[tuple[str | None, str]]:
            return [(r.get("type"), r["level"]) for r in map(json.loads, stream.getvalue().splitlines())]

        # The refusal is logged before its request's answer (and access
        # line), which waits.
        self.assertEqual(kinds(), [("access", "info"), (None, "warn")])
        service.gateway.log_buffer.flush()
        self.assertEqual(kinds(), [("access", "info"), (None, "warn"), ("access", "info")])

    def test_flushed_on_stop(self) -> None:
        """
        At the end of the drain what waits is written, and lines after it
        (twistd's last words) are written at once: no reactor turns any
        more to flush them.  Started again, lines wait again.
        """
        service, reactor, stream = make_service()
        service.startService()
        Connection(service.site).request("POST", PROMETHEUS, headers=AUTH, body=body(alert("A")))
        stop(self, service)
        buffer = service.gateway.log_buffer
        self.assertEqual(buffer.waiting, 0)
        self.assertIn('"type":"access"', stream.getvalue())
        buffer.write("last\n")
        self.assertTrue(stream.getvalue().endswith("last\n"))
        service.startService()
        self.addCleanup(stop, self, service)
        buffer.write("later\n")
        self.assertFalse(stream.getvalue().endswith("later\n"))
        reactor.advance(FLUSH_DELAY)
        self.assertTrue(stream.getvalue().endswith("later\n"))
