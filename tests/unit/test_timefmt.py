"""
The fast RFC 3339 stamps give what datetime gives.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.timefmt import Stamper


def _exact(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StamperTests(SynchronousTestCase):
    @given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
    def test_same_as_datetime(self, seconds: float) -> None:
        """
        Any time, cached second or not, is stamped exactly as
        datetime.isoformat(timespec="milliseconds") stamps it.
        """
        stamper = Stamper("Z")
        self.assertEqual(stamper(seconds), _exact(seconds))
        self.assertEqual(stamper(seconds), _exact(seconds))

    def test_rounding_up_to_the_next_second(self) -> None:
        """
        A time a hair below the next second rounds up as datetime does,
        into the next second.
        """
        stamper = Stamper("Z")
        stamper(1795665000.0)
        self.assertEqual(stamper(1795665000.9999997), _exact(1795665000.9999997))
