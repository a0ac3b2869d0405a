# -*- test-case-name: tests.unit.test_access -*-
"""
The access log: one line per request, written straight into the log's
L{LineBuffer} in the format of the other lines (C{json} or C{text}).

A twisted.logger event per request (a dict, the publisher, the level
filter, then the observer sifting it back into a JSON object) cost about
25 µs of the 200 a duplicate single-alert webhook costs.  Here the line is
formatted at once from the request's fields, with the time stamp computed
once a second, and waits in the buffer with the rest of the log: it comes
out exactly as the event did, in the same place, in the same order.  It is
formatted only when the buffer writes it, with the few hundred others that
waited: in one go that costs half as much per line.
"""

from __future__ import annotations

from collections.abc import Callable
from json.encoder import encode_basestring_ascii

from twisted.logger import formatTime

from alertgateway.core.timefmt import Stamper
from alertgateway.observability.logs import LineBuffer, Logs

__all__ = ["NAMESPACE", "AccessLog", "Fields", "access_log", "json_line", "text_line"]

# What the access lines' "logger" (or text "[namespace#level]") says.
NAMESPACE = "alertgateway.access"
# About what a JSON access line takes besides its path and User-Agent.
_OTHER_CHARS = 300


# What the site gives for one request: remote address, method, path
# (clipped), status, bytes sent, duration in ms, request id, endpoint and
# User-Agent (clipped).  A plain tuple: built per request, it costs next to
# nothing.
Fields = tuple[str, str, str, int, int, float, str, str, str]
# Formats one line: the time it was answered (seconds since the epoch), and
# its fields.
Line = Callable[[float, Fields], str]


class AccessLog:
    """
    Write access lines to C{buffer}, formatted by C{line}.
    """

    def __init__(self, buffer: LineBuffer, line: Line) -> None:
        self._add = buffer.add
        self._line = line

    def request(self, when: float, fields: Fields) -> None:
        """
        One request answered at C{when}: its line is formatted when the
        buffer writes it.
        """
        # Its size: the two fields of any length, and the rest.
        self._add((self._line, when, fields), len(fields[2]) + len(fields[8]) + _OTHER_CHARS)


def access_log(logs: Logs) -> AccessLog | None:
    """
    The access log writing with C{logs}, or C{None} if C{logging.level}
    leaves out its lines (they are at info).
    """
    if not logs.access_enabled:
        return None
    return AccessLog(logs.buffer, json_line() if logs.format == "json" else text_line())


def json_line() -> Line:
    """
    What L{alertgateway.observability.logs.JSONLineObserver} writes for an
    access event: the same keys in the same order, the same escaping.
    """
    stamp = Stamper("+00:00")
    text = encode_basestring_ascii
    head = f'","level":"info","logger":"{NAMESPACE}","type":"access","remote":'

    def line(when: float, fields: Fields) -> str:
        remote, method, path, status, sent, duration_ms, request_id, endpoint, user_agent = fields
        return (
            f'{{"time":"{stamp(when)}{head}{text(remote)},"method":{text(method)},"path":{text(path)},'
            f'"status":{status:d},"bytes":{sent:d},"duration_ms":{duration_ms!r},"requestId":{text(request_id)},'
            f'"endpoint":{text(endpoint)},"user_agent":{text(user_agent)}}}\n'
        )

    return line


def text_line() -> Line:
    """
    What twisted.logger's text observer writes for an access event:
    C{<time> [alertgateway.access#info] <method> <path> <status> <bytes>B
    <duration>ms <request id>}.
    """
    stamp = _Seconds(formatTime)
    system = f"[{NAMESPACE}#info]"

    def line(when: float, fields: Fields) -> str:
        _, method, path, status, sent, duration_ms, request_id, _, _ = fields
        text = f"{method} {path} {status} {sent}B {duration_ms}ms {request_id}".replace("\n", "\n\t")
        return f"{stamp(when)} {system} {text}\n"

    return line


class _Seconds:
    """
    A time format to the second, computed once a second.
    """

    def __init__(self, format_time: Callable[[float], str]) -> None:
        self._format = format_time
        self._second: int | None = None
        self._text = ""

    def __call__(self, when: float) -> str:
        second = int(when)
        # As datetime rounds: to the microsecond, which may be the next
        # second.
        if round((when - second) * 1_000_000) >= 1_000_000:
            second += 1
        if second != self._second:
            self._second = second
            self._text = self._format(second)
        return self._text
