# -*- test-case-name: tests.unit.test_logs -*-
"""
Log observers for C{logging.format} C{json} (one object per line) and
C{text}, filtered at C{logging.level}.

Both write to a L{LineBuffer}, which holds lines on their way to the
stream: written together, at the latest L{FLUSH_DELAY} after the first, at
once for a warning or worse, and bounded in size.  The access log
(L{alertgateway.observability.access}) writes its lines to the same buffer
without going through twisted.logger, so they stay in order with the rest.
Nothing here ever sees request bodies or credentials: only what events
carry.

What a client chooses (a path, a User-Agent) is logged L{clip}ped by
whoever logs it, so a text log is bounded too; the JSON observer also clips
every other string field, in case an event carries one that was not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import IO, Any, cast

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import ILogObserver, LogEvent, Logger, LogLevel, formatEvent, textFileLogObserver
from zope.interface import implementer

from alertgateway.core.timefmt import Stamper

__all__ = [
    "ACCESS_FIELDS",
    "FLUSH_DELAY",
    "FLUSH_SIZE",
    "MAX_BUFFERED_CHARS",
    "MAX_FIELD_CHARS",
    "MAX_LOGGED_CHARS",
    "JSONLineObserver",
    "LevelFilter",
    "LineBuffer",
    "Logs",
    "clip",
    "make_logs",
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
# ...or as soon as this much waits, so that one write stays small.
FLUSH_SIZE = 64 * 1024
# The most that waits for a stream that does not take it (closed, or a full
# non-blocking pipe); lines past it are dropped, and counted.
MAX_BUFFERED_CHARS = 1024 * 1024

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


_log = Logger()

# A line formatted only when written: its formatter, then what it formats
# (the access log's: the time and the request's fields).  Formatting a few
# hundred lines in one go, when they are written, costs half of what it
# costs one at a time among the work of each request.
Later = tuple[Callable[[float, tuple[Any, ...]], str], float, tuple[Any, ...]]


class LineBuffer:
    """
    Lines on their way to C{stream}, written together.

    @param clock: With one, lines wait at most L{FLUSH_DELAY} (or until
        L{FLUSH_SIZE} characters wait); without, each is written at once.
    @ivar dropped: Lines dropped since the last report, because
        L{MAX_BUFFERED_CHARS} were waiting for a stream that did not take
        them.
    """

    # Text, for twisted.logger's file observer (which asks).
    encoding = "utf-8"

    def __init__(self, stream: IO[str], clock: IReactorTime | None = None, max_chars: int = MAX_BUFFERED_CHARS) -> None:
        self._stream = stream
        self._clock = clock
        self._max_chars = max_chars
        self._lines: list[str | Later] = []
        self._size = 0
        self._due: IDelayedCall | None = None
        self.dropped = 0

    def write(self, text: str) -> None:
        """
        Write C{text} (whole lines) soon.
        """
        self.add(text, len(text))

    def add(self, line: str | Later, size: int) -> None:
        """
        Write C{line} soon: text, or a line to format then, about C{size}
        characters long.
        """
        if self._size + size > self._max_chars:
            self.dropped += 1
            return
        self._lines.append(line)
        self._size += size
        clock = self._clock
        if clock is None or self._size >= FLUSH_SIZE:
            self.flush()
        elif self._due is None:
            self._due = clock.callLater(FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        """
        Write what waits, now.  If the stream refuses it, it waits for the
        next flush (up to the bound).
        """
        due, self._due = self._due, None
        if due is not None and due.active():
            due.cancel()
        # Taken before anything else: a line added meanwhile (by a thread's
        # log event) goes to the next write, not lost between the two.
        lines, self._lines = self._lines, []
        if lines:
            size, self._size = self._size, 0
            text = "".join([line if line.__class__ is str else _format(line) for line in lines])
            try:
                self._stream.write(text)
            except (OSError, ValueError):
                # Kept whole, ahead of what came since, and tried again later.
                self._lines[:0] = [text]
                self._size += size
                if self._clock is not None:
                    self._due = self._clock.callLater(FLUSH_DELAY, self.flush)
                return
        try:
            self._stream.flush()
        except (OSError, ValueError):
            return
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            _log.warn("{dropped} log lines were dropped: the log stream did not take them", dropped=dropped)

    @property
    def waiting(self) -> int:
        """
        Characters waiting to be written.
        """
        return self._size

    def direct(self) -> None:
        """
        From now on write each line at once: nothing is left to flush them
        later (the service stopped).
        """
        self._clock = None
        self.flush()

    def buffered(self, clock: IReactorTime) -> None:
        """
        From now on write lines together again, flushed by C{clock}.
        """
        self._clock = clock


def _format(line: str | Later) -> str:
    assert not isinstance(line, str)
    render, when, fields = line
    return render(when, fields)


@implementer(ILogObserver)
class JSONLineObserver:
    """
    Write each event as one JSON object per line.

    @param out: A stream, or the L{LineBuffer} in front of one.
    @param clock: For a stream without a buffer: with a clock, info and
        debug lines are flushed together within L{FLUSH_DELAY}; warnings
        and worse are flushed at once, with whatever waited.  Without,
        every line is flushed at once.
    """

    def __init__(self, out: IO[str] | LineBuffer, clock: IReactorTime | None = None) -> None:
        self._out = out if isinstance(out, LineBuffer) else LineBuffer(out, clock)
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
        out = self._out
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
        if level >= LogLevel.warn:
            out.flush()


@attrs.frozen
class Logs:
    """
    The logging of one gateway.

    @ivar observer: What twisted.logger events go to.
    @ivar buffer: Where lines wait on their way to the stream, the access
        log's too.
    @ivar access_enabled: Whether access lines pass C{logging.level}.
    """

    observer: ILogObserver
    buffer: LineBuffer
    format: str
    access_enabled: bool


def make_logs(stream: IO[str], fmt: str, level: str, clock: IReactorTime | None = None) -> Logs:
    """
    Build the logging for a configuration: C{fmt} C{json} or C{text}, at
    C{level}.
    """
    buffer = LineBuffer(stream, clock)
    # The text observer flushes after every line, as it always did; access
    # lines waiting in the buffer go with it.
    # (The text observer only calls write and flush, which a buffer has.)
    inner: ILogObserver = JSONLineObserver(buffer) if fmt == "json" else textFileLogObserver(cast("IO[str]", buffer))
    threshold = _LEVELS[level]
    return Logs(LevelFilter(inner, threshold), buffer, fmt, LogLevel.info >= threshold)


def make_observer(stream: IO[str], fmt: str, level: str, clock: IReactorTime | None = None) -> ILogObserver:
    """
    Build the observer for a logging configuration.
    """
    return make_logs(stream, fmt, level, clock).observer


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
