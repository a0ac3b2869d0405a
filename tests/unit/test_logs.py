"""
The log observers behind logging.format and logging.level.
"""

from __future__ import annotations

import io
import json

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.observability.logs import (
    FLUSH_DELAY,
    FLUSH_SIZE,
    MAX_FIELD_CHARS,
    MAX_LOGGED_CHARS,
    JSONLineObserver,
    LineBuffer,
    clip,
    make_observer,
)
from tests.unit._http import capture_events


def publisher_for(stream: io.StringIO, fmt: str, level: str) -> Logger:
    """
    A logger whose events go only to the observer built for C{fmt} and
    C{level}, writing to C{stream}.
    """
    publisher = LogPublisher(make_observer(stream, fmt, level))
    return Logger(namespace="alertgateway.test", observer=publisher)


class JSONObserverTests(SynchronousTestCase):
    """
    logging.format json: one object per line.
    """

    def setUp(self) -> None:
        self.stream = io.StringIO()
        self.log = publisher_for(self.stream, "json", "debug")

    def records(self) -> list[dict[str, object]]:
        lines = self.stream.getvalue().splitlines()
        return [json.loads(line) for line in lines]

    def test_message(self) -> None:
        """
        An ordinary event has time, level, logger and the formatted message,
        plus its scalar fields at the top level.
        """
        self.log.warn("Delivery of {fingerprint} failed", fingerprint="abc", attempt=2, ratio=0.5, flag=None)
        [record] = self.records()
        self.assertEqual(record["level"], "warn")
        self.assertEqual(record["logger"], "alertgateway.test")
        self.assertEqual(record["message"], "Delivery of abc failed")
        self.assertEqual((record["fingerprint"], record["attempt"], record["ratio"]), ("abc", 2, 0.5))
        self.assertIsNone(record["flag"])
        self.assertRegex(str(record["time"]), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")

    def test_one_line_per_event(self) -> None:
        """
        Newlines inside values stay escaped: each event is exactly one line.
        """
        self.log.info("first {text}", text="with\nnewline")
        self.log.info("second")
        self.assertEqual(len(self.stream.getvalue().splitlines()), 2)
        self.assertEqual([r["message"] for r in self.records()], ["first with\nnewline", "second"])

    def test_access(self) -> None:
        """
        An access event is typed access, without a message, its fields at
        the top level.
        """
        self.log.info("{method} {path}", log_type="access", method="POST", path="/webhook/prometheus", status=202)
        [record] = self.records()
        self.assertEqual(record["type"], "access")
        self.assertNotIn("message", record)
        self.assertEqual((record["method"], record["path"], record["status"]), ("POST", "/webhook/prometheus", 202))

    def test_no_machinery(self) -> None:
        """
        log_* keys, legacy machinery keys and non-scalar values (which could
        hold anything, request objects included) are left out; fields do not
        overwrite the record's own keys.
        """
        self.log.info("hello", labels={"a": "b"}, items=[1], system="-", time=1.0, logger="fake")
        [record] = self.records()
        self.assertEqual(set(record), {"time", "level", "logger", "message"})
        self.assertEqual((record["level"], record["logger"]), ("info", "alertgateway.test"))

    def test_failure(self) -> None:
        """
        A logged failure carries its traceback under error.
        """
        try:
            raise ValueError("boom")
        except ValueError:
            self.log.failure("It broke", Failure())
        [record] = self.records()
        self.assertEqual(record["level"], "critical")
        self.assertIn("ValueError: boom", str(record["error"]))

    def test_long_fields_clipped(self) -> None:
        """
        A string field of an ordinary event longer than MAX_FIELD_CHARS is
        cut there, with how many characters more it had: an event carrying
        what a client sent cannot make a line of any length.
        """
        self.log.warn("Refused {what}", what="x" * (MAX_FIELD_CHARS + 10), short="kept")
        [record] = self.records()
        self.assertEqual((record["what"], record["short"]), ("x" * MAX_FIELD_CHARS + "...[10 more]", "kept"))

    def test_bare_event(self) -> None:
        """
        An event without level or time (as legacy code may emit) is still
        written, as info.
        """
        stream = io.StringIO()
        JSONLineObserver(stream)({"log_format": "legacy {x}", "x": 1})
        record = json.loads(stream.getvalue())
        self.assertEqual((record["level"], record["message"], record["x"]), ("info", "legacy 1", 1))
        self.assertTrue(str(record["time"]).startswith("1970-01-01T00:00:00"))


class TextAndLevelTests(SynchronousTestCase):
    """
    logging.format text and logging.level.
    """

    def test_text(self) -> None:
        """
        Text lines carry the namespace, level and message, one per line.
        """
        stream = io.StringIO()
        log = publisher_for(stream, "text", "info")
        log.info("Listening on {port}", port=8080)
        [line] = stream.getvalue().splitlines()
        self.assertIn("[alertgateway.test#info] Listening on 8080", line)

    def test_level_filter(self) -> None:
        """
        Events below logging.level are dropped; warn and warning are the
        same level.
        """
        expected = {
            "debug": ["debug", "info", "warn", "error", "critical"],
            "info": ["info", "warn", "error", "critical"],
            "warn": ["warn", "error", "critical"],
            "warning": ["warn", "error", "critical"],
            "error": ["error", "critical"],
            "critical": ["critical"],
        }
        for level, kept in expected.items():
            stream = io.StringIO()
            log = publisher_for(stream, "json", level)
            for emitted in (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical):
                log.emit(emitted, "x")
            levels = [json.loads(line)["level"] for line in stream.getvalue().splitlines()]
            self.assertEqual(levels, kept, level)


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


class FlushTests(SynchronousTestCase):
    def test_coalesced(self) -> None:
        """
        With a clock, info lines are flushed together once FLUSH_DELAY has
        passed; a warning is flushed at once.
        """
        clock = Clock()
        stream = _CountingStream()
        observer = JSONLineObserver(stream, clock)
        for n in range(3):
            observer({"log_level": LogLevel.info, "log_format": "line {n}", "n": n, "log_time": 0.0})
        self.assertEqual((stream.flushes, len(stream.getvalue().splitlines())), (0, 0))
        clock.advance(FLUSH_DELAY)
        self.assertEqual((stream.flushes, len(stream.getvalue().splitlines())), (1, 3))
        observer({"log_level": LogLevel.info, "log_format": "waits", "log_time": 0.0})
        observer({"log_level": LogLevel.warn, "log_format": "careful", "log_time": 0.0})
        self.assertEqual((stream.flushes, len(stream.getvalue().splitlines())), (2, 5))
        self.assertEqual(clock.getDelayedCalls(), [])


class _RefusingStream(_CountingStream):
    """
    A stream that refuses what is written while C{refusing}.
    """

    refusing = True

    def write(self, text: str) -> int:
        if self.refusing:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return super().write(text)


class LineBufferTests(SynchronousTestCase):
    """
    L{LineBuffer}: lines written together, soon, and never more than a
    bound of them waiting.
    """

    def test_timer(self) -> None:
        """
        Lines wait for one write, at most FLUSH_DELAY after the first of
        them.
        """
        clock = Clock()
        stream = _CountingStream()
        buffer = LineBuffer(stream, clock)
        buffer.write("a\n")
        clock.advance(FLUSH_DELAY / 2)
        buffer.write("b\n")
        self.assertEqual((stream.getvalue(), buffer.waiting), ("", 4))
        clock.advance(FLUSH_DELAY / 2)
        self.assertEqual((stream.getvalue(), stream.flushes, buffer.waiting), ("a\nb\n", 1, 0))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_size(self) -> None:
        """
        Once FLUSH_SIZE characters wait they are written at once, without
        waiting for the timer, which is then called off.
        """
        clock = Clock()
        stream = _CountingStream()
        buffer = LineBuffer(stream, clock)
        buffer.write("x" * (FLUSH_SIZE - 2) + "\n")
        self.assertEqual(stream.getvalue(), "")
        buffer.write("y\n")
        self.assertEqual(len(stream.getvalue()), FLUSH_SIZE + 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_without_clock(self) -> None:
        """
        Without a clock every line is written and flushed at once.
        """
        stream = _CountingStream()
        buffer = LineBuffer(stream)
        buffer.write("a\n")
        self.assertEqual((stream.getvalue(), stream.flushes), ("a\n", 1))

    def test_direct_then_buffered(self) -> None:
        """
        C{direct()} (the service stopped) writes what waits and every line
        after at once; C{buffered()} (started again) makes them wait again.
        """
        clock = Clock()
        stream = _CountingStream()
        buffer = LineBuffer(stream, clock)
        buffer.write("a\n")
        buffer.direct()
        self.assertEqual(stream.getvalue(), "a\n")
        self.assertEqual(clock.getDelayedCalls(), [])
        buffer.write("b\n")
        self.assertEqual(stream.getvalue(), "a\nb\n")
        buffer.buffered(clock)
        buffer.write("c\n")
        self.assertEqual(stream.getvalue(), "a\nb\n")
        clock.advance(FLUSH_DELAY)
        self.assertEqual(stream.getvalue(), "a\nb\nc\n")

    def test_bound(self) -> None:
        """
        While the stream refuses what is written, lines wait up to the
        bound; past it they are dropped and counted.  Once the stream takes
        them again the waiting lines come out in order, followed by a
        warning saying how many were dropped.
        """
        clock = Clock()
        stream = _RefusingStream()
        buffer = LineBuffer(stream, clock, max_chars=10)
        warnings = capture_events(self, lambda e: e.get("log_level") == LogLevel.warn)
        for line in ("1234\n", "5678\n", "lost\n", "gone\n"):
            buffer.write(line)
        self.assertEqual((buffer.waiting, buffer.dropped), (10, 2))
        clock.advance(FLUSH_DELAY)
        self.assertEqual((stream.getvalue(), buffer.waiting, warnings), ("", 10, []))
        stream.refusing = False
        buffer.flush()
        self.assertEqual((stream.getvalue(), buffer.waiting, buffer.dropped), ("1234\n5678\n", 0, 0))
        [warning] = warnings
        self.assertEqual(warning["dropped"], 2)

    def test_flush_refused(self) -> None:
        """
        A stream whose flush fails keeps what it was given; nothing is lost
        or reported.
        """

        class _Unflushable(io.StringIO):
            def flush(self) -> None:
                raise ValueError("I/O operation on closed file")

        stream = _Unflushable()
        buffer = LineBuffer(stream)
        buffer.write("a\n")
        self.assertEqual((stream.getvalue(), buffer.waiting), ("a\n", 0))


class ClipTests(SynchronousTestCase):
    """
    L{clip}: what of a client's value a log line keeps.
    """

    def test_clip(self) -> None:
        """
        Values up to the limit are kept whole; longer ones are cut, saying
        how much more there was.
        """
        self.assertEqual(clip("a" * MAX_LOGGED_CHARS), "a" * MAX_LOGGED_CHARS)
        self.assertEqual(clip("a" * (MAX_LOGGED_CHARS + 1)), "a" * MAX_LOGGED_CHARS + "...[1 more]")
        self.assertEqual(clip("abcdef", 2), "ab...[4 more]")
