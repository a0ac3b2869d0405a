# -*- test-case-name: tests.unit.test_logs -*-
"""
Log observers for C{logging.format} C{json} (one object per line) and
C{text}, filtered at C{logging.level}.

Access-log events are emitted by L{alertgateway.web.site} with
C{log_type="access"}; their fields come out as top-level JSON keys.  Nothing
here ever sees request bodies or credentials: only what events carry.

What a client chooses (a path, a User-Agent) is logged L{clip}ped by
whoever logs it, so a text log is bounded too; the JSON observer also clips
every other string field, in case an event carries one that was not.
"""

from __future__ import annotations

import json
from typing import IO, Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent, textFileLogObserver
from zope.interface import implementer

from alertgateway.core.timefmt import Stamper

__all__ = [
    "ACCESS_FIELDS",
    "FLUSH_DELAY",
    "MAX_FIELD_CHARS",
    "MAX_LOGGED_CHARS",
    "JSONLineObserver",
    "LevelFilter",
    "clip",
    "make_observer",
]

_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}
# Info and debug lines reach the stream at most this late: under load one
# write carries hundreds of access lines instead of one each.
FLUSH_DELAY = 0.05

# What an access event (log_type "access") carries, in the order written.
ACCESS_FIELDS = (
    "remote",
    "method",
    "path",
    "status",
    "bytes",
    "duration_ms",
    "requestId",
    "endpoint",
    "user_agent",
)
# Keys of legacy (twisted.python.log) events that are machinery, not data.
_LEGACY_KEYS = frozenset({"message", "system", "isError", "time", "format", "why", "failure"})
# The most of one value a client chooses (a path, a User-Agent) that a log
# line keeps: without a bound, one client sending 16 kB headers made 15 MB
# of log a second.
MAX_LOGGED_CHARS = 256
# The most of any other string field of an event.
MAX_FIELD_CHARS = 2048


def clip(value: str, limit: int = MAX_LOGGED_CHARS) -> str:
    """
    C{value}, or its first C{limit} characters and how many more there
    were.
    """
    if len(value) <= limit:
        return value
    return f"{value[:limit]}...[{len(value) - limit} more]"


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


@implementer(ILogObserver)
class JSONLineObserver:
    """
    Write each event as one JSON object per line.

    @param clock: With one, info and debug lines are flushed together
        within L{FLUSH_DELAY} (one write for many requests under load);
        warnings and worse are flushed at once, with whatever waited.
        Without, every line is flushed at once.
    """

    def __init__(self, stream: IO[str], clock: IReactorTime | None = None) -> None:
        self._stream = stream
        self._clock = clock
        self._flush_pending = False
        self._time = Stamper("+00:00")

    def __call__(self, event: LogEvent) -> None:
        level = event.get("log_level", LogLevel.info)
        record: dict[str, Any] = {
            "time": self._time(event.get("log_time", 0.0)),
            "level": level.name,
            "logger": event.get("log_namespace", "-"),
        }
        if event.get("log_type") == "access":
            # The busiest line: its fields are known, no need to sift.
            record["type"] = "access"
            for key in ACCESS_FIELDS:
                record[key] = event.get(key)
        else:
            record["message"] = formatEvent(event)
            for key, value in event.items():
                if key.startswith("log_") or key in _LEGACY_KEYS or key in record or not _scalar(value):
                    continue
                record[key] = clip(value, MAX_FIELD_CHARS) if isinstance(value, str) else value
            failure = event.get("log_failure")
            if failure is not None:
                record["error"] = failure.getTraceback()
        self._stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        if self._clock is None or level >= LogLevel.warn:
            self._stream.flush()
        elif not self._flush_pending:
            self._flush_pending = True
            self._clock.callLater(FLUSH_DELAY, self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        self._stream.flush()


def make_observer(stream: IO[str], fmt: str, level: str, clock: IReactorTime | None = None) -> ILogObserver:
    """
    Build the observer for a logging configuration.
    """
    inner: ILogObserver = JSONLineObserver(stream, clock) if fmt == "json" else textFileLogObserver(stream)
    return LevelFilter(inner, _LEVELS[level])


@implementer(ILogObserver)
class LevelFilter:
    """
    Pass on events at C{level} or above.

    One level for every namespace: twisted.logger's FilteringLogObserver
    with a LogLevelFilterPredicate looks each event's namespace up level by
    level, a cost paid on every access-log line.
    """

    def __init__(self, inner: ILogObserver, level: LogLevel) -> None:
        self._inner = inner
        self._passed = frozenset(lv for lv in LogLevel.iterconstants() if lv >= level)

    def __call__(self, event: LogEvent) -> None:
        if event.get("log_level", LogLevel.info) in self._passed:
            self._inner(event)
