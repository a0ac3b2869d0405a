# -*- test-case-name: tests.unit.test_model -*-
"""
The alert value object every sender's payload is turned into, and its
fingerprint.

The fingerprint is Alertmanager's own (C{model.LabelSet.Fingerprint} in
prometheus/common): 64-bit FNV-1a over the labels sorted by name, each fed as
name, byte 0xFF, value, byte 0xFF, printed as 16 lowercase hex digits.  Using
the same function means an alert keeps its identity from Prometheus through
Alertmanager to the processor.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from itertools import chain
from types import MappingProxyType
from typing import Any

import attrs

__all__ = ["FIRING", "RESOLVED", "Alert", "fingerprint"]

FIRING = "firing"
RESOLVED = "resolved"

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = 0xFFFFFFFFFFFFFFFF


# Label sets whose fingerprint is remembered.  Keyed by a 16-byte digest,
# not by the labels: a cache keyed by label tuples kept up to 65,536 whole
# label sets alive (0.5 MB each at the parser's limits) after their alerts
# were gone.  About 200 bytes an entry: 3 MB in all.
FINGERPRINT_CACHE_SIZE = 16384
_cache: OrderedDict[bytes, str] = OrderedDict()


def fingerprint(labels: Mapping[str, str]) -> str:
    """
    Compute Alertmanager's fingerprint of a label set.
    """
    pairs = sorted(labels.items())
    # The bytes FNV-1a hashes: each name and value, each followed by 0xFF.
    # Made in C, from the pairs joined by NUL, where no name or value holds
    # a NUL of its own (the parsers strip them): UTF-8 has no 0xFF byte,
    # so each NUL, and nothing else, becomes one.
    text = "\x00".join(chain.from_iterable(pairs))
    if pairs and text.count("\x00") == 2 * len(pairs) - 1:
        data = text.encode("utf-8").replace(b"\x00", b"\xff") + b"\xff"
    else:
        data = b"".join(name.encode("utf-8") + b"\xff" + value.encode("utf-8") + b"\xff" for name, value in pairs)
    # FNV-1a runs byte by byte in Python; senders repeat the same label
    # sets (duplicates, reminders, HA copies), so they are hashed once.  A
    # 128-bit BLAKE2 digest (in C) tells them apart: equal digests of
    # different label sets are not a practical concern.
    key = hashlib.blake2b(data, digest_size=16).digest()
    known = _cache.get(key)
    if known is not None:
        _cache.move_to_end(key)
        return known
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _MASK
    value = _cache[key] = f"{h:016x}"
    if len(_cache) > FINGERPRINT_CACHE_SIZE:
        _cache.popitem(last=False)
    return value


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@attrs.frozen
class Alert:
    """
    One alert occurrence as the gateway understands it, whatever sent it.

    @ivar fingerprint: Alertmanager's fingerprint of C{labels}.
    @ivar source: The sender format, C{alertmanager} or C{grafana}.
    @ivar status: C{firing} or C{resolved}.
    @ivar starts_at: RFC 3339 start time as the sender gave it, or C{None}.
    @ivar ends_at: RFC 3339 end time, or C{None} when the sender left it unset.
    @ivar received_at: RFC 3339 time the gateway received it.
    @ivar extras: What the sender said beyond the common fields (Grafana's
        C{values}, the sender's own C{fingerprint}, the group it came in).
    """

    fingerprint: str
    source: str
    status: str
    labels: Mapping[str, str] = attrs.field(converter=_frozen_mapping)
    annotations: Mapping[str, str] = attrs.field(converter=_frozen_mapping)
    starts_at: str | None
    ends_at: str | None
    generator_url: str
    received_at: str
    extras: Mapping[str, Any] = attrs.field(converter=_frozen_mapping, factory=dict)
    # What core.keys derives from the alert (its dedup key, its group id),
    # kept so that a decision computes each once however often it asks
    # (which keys to hold, then the ruling).  Not part of its value.
    derived: dict[tuple[object, ...], str] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    @property
    def idempotency_key(self) -> str:
        """
        A key that is the same for every delivery of this occurrence (the
        same fingerprint, start and status) so the processor can drop
        redeliveries.

        Without a start time (legacy Grafana sends none) the receipt time
        stands in for it: otherwise an alert that fires, resolves and fires
        again would repeat its first key and the processor would drop the
        second firing as a redelivery.
        """
        seed = f"{self.fingerprint}\x00{self.starts_at or self.received_at}\x00{self.status}"
        return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]

    def to_json(self) -> dict[str, Any]:
        """
        The JSON object sent to the Alert Processor.
        """
        return {
            "fingerprint": self.fingerprint,
            "source": self.source,
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "generatorURL": self.generator_url,
            "receivedAt": self.received_at,
            "extras": dict(self.extras),
        }
