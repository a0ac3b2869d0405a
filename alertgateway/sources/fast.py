# -*- test-case-name: tests.unit.test_fast_sources -*-
"""
The fast path for Alertmanager-shaped JSON bodies: decoded and validated
in one typed pass, in C, straight from the body's bytes.

It takes only what it can judge exactly as the careful path does (the
standard C{json} module, the depth walk and the field readers of
L{alertgateway.sources._fields}): a body with anything unusual in it, a
refusal of any kind, a key the schema does not name, a value of another
type, decodes to C{None}, and the caller then takes the careful path,
which words every refusal with its pointer.  So the fast path changes how
fast a valid body is read, never what any body is answered.

The schema bounds the nesting (body, alerts, alert, labels: four levels),
so no depth walk is needed; a key it does not name is not skipped but
refused (to the careful path), so nothing unread can hide a number JSON
cannot round-trip or nesting past C{limits.max_json_depth}.

An alert repeated byte for byte (Alertmanager resends an unchanged alert
exactly, every C{repeat_interval} and on each group change) is validated
once: L{RawAlerts} remembers what its bytes validated to.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Annotated

import attrs
import msgspec

from alertgateway.core.model import FIRING, RESOLVED, Alert, fingerprint
from alertgateway.sources._fields import (
    _ANNOTATION_CONTROLS,
    _LABEL_CONTROLS,
    _UNSAFE,
    FieldError,
    ParseResult,
    clean_annotation,
    clean_json,
    clean_label_value,
    read_timestamp,
)
from alertgateway.sources.limits import Limits

__all__ = ["Checked", "FastDecoder", "RawAlerts", "check_alert"]

# The deepest the schema nests: body, alerts, alert, labels.  A smaller
# limits.max_json_depth would refuse a valid body: the careful path says so.
SCHEMA_DEPTH = 4

# What RawAlerts keeps at most, per endpoint: entries, and the bytes of
# the alerts they were decoded from (what they hold is of that order).
# Documented in docs/architecture.md.
RAW_CACHE_ENTRIES = 4096
RAW_CACHE_BYTES = 4 * 1024 * 1024

_STATUSES = (FIRING, RESOLVED)
# Label names (LABEL_NAME's syntax) joined by commas.  Stricter than
# LABEL_NAME, whose $ also takes a name ending in a newline: such a name is
# left to the careful path.
_LABEL_NAMES = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*(?:,[a-zA-Z_][a-zA-Z0-9_]*)*\Z")


class _Alert(msgspec.Struct, forbid_unknown_fields=True):
    """
    One alert as Alertmanager sends it; the names, lengths and sizes the
    limits set are checked after, a few C calls per alert.
    """

    labels: dict[str, str]
    status: str | msgspec.UnsetType = msgspec.UNSET
    annotations: dict[str, str] | None = None
    starts_at: str | None = msgspec.field(default=None, name="startsAt")
    ends_at: str | None = msgspec.field(default=None, name="endsAt")
    generator_url: str | None = msgspec.field(default=None, name="generatorURL")
    fingerprint: str | None = None


# Ignored by the careful path whatever they hold, so typed narrowly: a
# number JSON cannot round-trip, or deep nesting, is left to it to refuse.
_Ignored = dict[str, str] | None


class _Body(msgspec.Struct, forbid_unknown_fields=True):
    """
    An Alertmanager webhook body, version 4; each alert kept as its bytes.
    """

    alerts: list[msgspec.Raw]
    version: str | None = None
    status: str | None = None
    receiver: str | msgspec.UnsetType | None = msgspec.UNSET
    group_key: str | msgspec.UnsetType | None = msgspec.field(default=msgspec.UNSET, name="groupKey")
    external_url: str | msgspec.UnsetType | None = msgspec.field(default=msgspec.UNSET, name="externalURL")
    group_labels: dict[str, str] | msgspec.UnsetType | None = msgspec.field(default=msgspec.UNSET, name="groupLabels")
    common_labels: _Ignored = msgspec.field(default=None, name="commonLabels")
    common_annotations: _Ignored = msgspec.field(default=None, name="commonAnnotations")
    truncated_alerts: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = msgspec.field(
        default=None, name="truncatedAlerts"
    )


_body_decoder = msgspec.json.Decoder(_Body)
_alert_decoder = msgspec.json.Decoder(_Alert)


@attrs.frozen
class Checked:
    """
    What one alert's bytes validated to: an L{Alert} but for what the
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
    a digest, and nothing can collide.  An entry counts twice its alert's
    bytes: the key, and the strings it was decoded to.
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
        size = 2 * len(key)
        if size > self.max_bytes:
            return
        self._entries[key] = checked
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            dropped, _ = self._entries.popitem(last=False)
            self.bytes -= 2 * len(dropped)

    def clear(self) -> None:
        self._entries.clear()
        self.times.clear()
        self.bytes = 0


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _time(value: str | None, times: dict[str, None], errors: list[FieldError]) -> str | None:
    """
    L{read_timestamp}, remembering in C{times} the values it found to be
    valid times.
    """
    if value in times:
        return value
    checked = read_timestamp(value, "", errors)
    if checked is not None:
        if len(times) >= RAW_CACHE_ENTRIES:
            times.clear()
        times[checked] = None
    return checked


def check_alert(raw: bytes, limits: Limits, times: dict[str, None]) -> Checked | None:
    """
    Decode and validate one alert, or C{None} if the careful path is to
    judge it: every rule of L{alertgateway.sources._fields.read_alert}
    either holds here or sends it there.
    """
    try:
        alert = _alert_decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    if alert.status is not msgspec.UNSET and alert.status not in _STATUSES:
        return None
    labels = alert.labels
    if not labels or len(labels) > limits.max_labels_per_alert:
        return None
    # One match for every name: a regex per name (msgspec's pattern
    # constraint) costs six times as much.  ASCII: one byte a character.
    names = ",".join(labels)
    if not _LABEL_NAMES.match(names) or max(map(len, labels)) > limits.max_label_name_length:
        return None
    if max(map(len, labels.values())) > limits.max_label_value_length:
        return None
    values = "".join(labels.values())
    if _LABEL_CONTROLS.search(values):
        labels = {name: clean_label_value(value) for name, value in labels.items()}
        values = "".join(labels.values())
    if len(names) - len(labels) + 1 + _utf8_length(values) > limits.max_label_bytes:
        return None
    annotations = alert.annotations or {}
    if annotations:
        names = "".join(annotations)
        # A blank name, or one with control characters, is refused.
        if not all(map(str.strip, annotations)) or _LABEL_CONTROLS.search(names):
            return None
        texts = "".join(annotations.values())
        if _ANNOTATION_CONTROLS.search(texts):
            annotations = {name: clean_annotation(text) for name, text in annotations.items()}
            texts = "".join(annotations.values())
        if _utf8_length(names) + _utf8_length(texts) > limits.max_annotation_bytes:
            return None
    errors: list[FieldError] = []
    starts_at = _time(alert.starts_at, times, errors)
    ends_at = _time(alert.ends_at, times, errors)
    if errors:
        return None
    extras = {} if alert.fingerprint is None else {"senderFingerprint": clean_json(alert.fingerprint)}
    return Checked(
        status=None if alert.status is msgspec.UNSET else alert.status,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=clean_label_value(alert.generator_url) if alert.generator_url else "",
        fingerprint=fingerprint(labels),
        extras=extras,
    )


class FastDecoder:
    """
    Decode a JSON body of the Alertmanager shape for one endpoint, or tell
    the caller to take the careful path (C{None}).

    @param source: The sender format the alerts are stamped with.
    """

    def __init__(self, source: str = "alertmanager", cache: RawAlerts | None = None) -> None:
        self.source = source
        self.cache = cache if cache is not None else RawAlerts()
        self._limits: Limits | None = None

    def __call__(self, raw: bytes, received_at: str, limits: Limits, /) -> ParseResult | None:
        if limits.max_json_depth < SCHEMA_DEPTH:
            return None
        if limits is not self._limits:
            # What an alert validated to holds under the limits it was
            # checked with.
            if limits != self._limits:
                self.cache.clear()
            self._limits = limits
        try:
            body = _body_decoder.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            return None
        if body.version is not None and body.version != "4":
            return None
        items = body.alerts
        if not items or len(items) > limits.max_alerts_per_request:
            return None
        group = self._group(body)
        cache = self.cache
        outcomes: list[Alert] = []
        for item in items:
            key = bytes(item)
            checked = cache.get(key)
            if checked is None:
                checked = check_alert(key, limits, cache.times)
                if checked is None:
                    return None
                cache.put(key, checked)
            status = checked.status if checked.status is not None else body.status
            if status not in _STATUSES:
                return None
            extras: dict[str, object] = dict(checked.extras)
            if group:
                extras["group"] = dict(group)
            outcomes.append(
                Alert(
                    fingerprint=checked.fingerprint,
                    source=self.source,
                    status=status,
                    labels=checked.labels,
                    annotations=checked.annotations,
                    starts_at=checked.starts_at,
                    ends_at=checked.ends_at,
                    generator_url=checked.generator_url,
                    received_at=received_at,
                    extras=extras,
                )
            )
        return ParseResult(tuple(outcomes))

    @staticmethod
    def _group(body: _Body) -> dict[str, object]:
        """
        The group the alerts came in, as the careful path keeps it.
        """
        given = (
            ("receiver", body.receiver),
            ("groupKey", body.group_key),
            ("externalURL", body.external_url),
            ("groupLabels", body.group_labels),
        )
        group: dict[str, object] = {key: value for key, value in given if value is not msgspec.UNSET}
        texts = [value for value in group.values() if isinstance(value, str)]
        labels = body.group_labels
        if isinstance(labels, dict):
            texts.extend(labels)
            texts.extend(labels.values())
        # One search over all of its text: nothing to clean, nearly always.
        if _UNSAFE.search("".join(texts)):
            return {key: clean_json(value) for key, value in group.items()}
        return group
