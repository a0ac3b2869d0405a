# -*- test-case-name: tests.unit.test_fast_sources -*-
"""
What alerts' bytes validated to, for the fast path
(L{alertgateway.sources.fast}): an alert Alertmanager resends byte for
byte (every C{repeat_interval}, and in every notification of its group)
is validated once per endpoint.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs

__all__ = ["ENTRY_COST", "ENTRY_OVERHEAD", "RAW_CACHE_BYTES", "RAW_CACHE_ENTRIES", "Checked", "RawAlerts"]

# What RawAlerts keeps at most, per endpoint: entries, and bytes (each
# entry counting ENTRY_COST times its alert's).  Documented in
# docs/architecture.md.
RAW_CACHE_ENTRIES = 4096
RAW_CACHE_BYTES = 4 * 1024 * 1024
# What an entry holds, per byte of its alert: the key, and the dicts and
# strings it was decoded to.  Measured with tracemalloc: 2.1 kB for a
# 526-byte alert of six labels and two annotations.
ENTRY_COST = 4
# And what every entry holds whatever its size (the Checked, its dicts):
# 4,096 small alerts took 5.3 MB where 4 bytes a byte counted 4 MB.
ENTRY_OVERHEAD = 512


@attrs.frozen
class Checked:
    """
    What one alert's bytes validated to: an
    L{alertgateway.core.model.Alert} but for what the
    request adds (its receipt time, its group, the body's status when the
    alert has none).
    """

    status: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str | None
    ends_at: str | None
    generator_url: str
    fingerprint: str
    extras: dict[str, object]


class RawAlerts:
    """
    What recently seen alerts' bytes validated to, least recently used
    dropped first once there are more than C{max_entries} or they hold
    more than C{max_bytes}.

    Keyed by the bytes themselves: hashing them is four times cheaper than
    a digest, and nothing can collide.  An entry counts L{ENTRY_COST}
    times its alert's bytes.
    """

    def __init__(self, max_entries: int = RAW_CACHE_ENTRIES, max_bytes: int = RAW_CACHE_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[bytes, Checked] = OrderedDict()
        # Timestamps found valid, at most max_entries: the alerts one rule
        # evaluation raises share their start.
        self.times: dict[str, None] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Checked | None:
        checked = self._entries.get(key)
        if checked is not None:
            self._entries.move_to_end(key)
        return checked

    def put(self, key: bytes, checked: Checked) -> None:
        size = _cost(key)
        if size > self.max_bytes:
            return
        self._entries[key] = checked
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            dropped, _ = self._entries.popitem(last=False)
            self.bytes -= _cost(dropped)

    def clear(self) -> None:
        self._entries.clear()
        self.times.clear()
        self.bytes = 0


def _cost(key: bytes) -> int:
    return ENTRY_COST * len(key) + ENTRY_OVERHEAD
