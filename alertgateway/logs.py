"""
Log observers for C{logging.format} C{json} (one object per line) and
C{text}, filtered at C{logging.level}.

Access-log events are emitted by L{alertgateway.web.site} with
C{log_type="access"}; their fields come out as top-level JSON keys.  Nothing
here ever sees request bodies or credentials: only what events carry.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from zope.interface import implementer

__all__ = ["JSONLineObserver", "make_observer"]

_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}
# Keys of legacy (twisted.python.log) events that are machinery, not data.
_LEGACY_KEYS = frozenset({"message", "system", "isError", "time", "format", "why", "failure"})


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


@implementer(ILogObserver)
class JSONLineObserver:
    """
    Write each event as one JSON object per line.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def __call__(self, event: LogEvent) -> None:
        level = event.get("log_level", LogLevel.info)
        record: dict[str, Any] = {
            "time": datetime.fromtimestamp(event.get("log_time", 0.0), UTC).isoformat(timespec="milliseconds"),
            "level": level.name,
            "logger": event.get("log_namespace", "-"),
        }
        if event.get("log_type") == "access":
            record["type"] = "access"
        else:
            record["message"] = formatEvent(event)
        for key, value in event.items():
            if key.startswith("log_") or key in _LEGACY_KEYS or key in record or not _scalar(value):
                continue
            record[key] = value
        failure = event.get("log_failure")
        if failure is not None:
            record["error"] = failure.getTraceback()
        self._stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._stream.flush()


def make_observer(stream: IO[str], fmt: str, level: str) -> ILogObserver:
    """
    Build the observer for a logging configuration.
    """
    inner: ILogObserver = JSONLineObserver(stream) if fmt == "json" else textFileLogObserver(stream)
    return FilteringLogObserver(inner, [LogLevelFilterPredicate(defaultLogLevel=_LEVELS[level])])
