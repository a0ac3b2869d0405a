# -*- test-case-name: tests.unit.test_timefmt -*-
"""
The one place times are formatted: RFC 3339 to the millisecond, fast: the date and time are
formatted once a second, for the lines and alerts stamped many times in
each (access log, received alerts).  The result is what
C{datetime.isoformat(timespec="milliseconds")} gives for the same time.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["Stamper", "rfc3339"]


class Stamper:
    """
    Format seconds since the epoch, ending in C{suffix} (C{Z} or
    C{+00:00}).
    """

    def __init__(self, suffix: str) -> None:
        self._suffix = suffix
        self._second: int | None = None
        self._prefix = ""

    def __call__(self, seconds: float) -> str:
        whole = int(seconds)
        # Rounded to the microsecond first, as datetime does.
        micros = round((seconds - whole) * 1_000_000)
        if micros >= 1_000_000 or whole < 0:
            return (
                datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", self._suffix)
            )
        if whole != self._second:
            self._second = whole
            self._prefix = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{micros // 1000:03d}{self._suffix}"


_utc = Stamper("Z")


def rfc3339(seconds: float) -> str:
    """
    C{seconds} since the epoch as RFC 3339 in UTC with a C{Z}, to the
    millisecond: how the gateway writes every time it sends.
    """
    return _utc(seconds)
