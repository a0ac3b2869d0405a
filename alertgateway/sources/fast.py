# -*- test-case-name: tests.unit.test_fast_sources -*-
"""
The fast path for Alertmanager-shaped JSON bodies (Alertmanager's, and
Grafana's unified alerting): decoded and validated in one typed pass, in C,
straight from the body's bytes.

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
cannot round-trip or nesting past C{limits.max_json_depth}.  The keys a
Grafana alert has beyond Alertmanager's are kept in its extras as sent,
so they are read as plain JSON values, one level deep at most.

An alert repeated byte for byte is validated once:
L{alertgateway.sources.rawalerts.RawAlerts} remembers what its bytes
validated to.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, cast

import msgspec

from alertgateway.core.model import FIRING, RESOLVED, Alert, fingerprint
from alertgateway.sources._fields import (
    ALERT_KEYS,
    ANNOTATION_CONTROLS,
    LABEL_CONTROLS,
    UNSAFE_TEXT,
    FieldError,
    ParseResult,
    clean_annotation,
    clean_json,
    clean_label_value,
    read_timestamp,
)
from alertgateway.sources.limits import Limits
from alertgateway.sources.rawalerts import RAW_CACHE_ENTRIES, Checked, RawAlerts

__all__ = ["FastDecoder", "check_alert", "check_grafana_alert"]

# The deepest the schema nests: body, alerts, alert, labels.  A smaller
# limits.max_json_depth would refuse a valid body: the careful path says so.
SCHEMA_DEPTH = 4

_STATUSES = (FIRING, RESOLVED)
# Label names (LABEL_NAME's syntax) joined by commas.
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
_Count = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


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
    truncated_alerts: _Count | None = msgspec.field(default=None, name="truncatedAlerts")

    def usable(self) -> bool:
        """
        Whether the careful path would read its alerts (a version other
        than 4 it refuses as a whole).
        """
        return self.version is None or self.version == "4"

    def group(self) -> list[tuple[str, object]]:
        """
        The keys the alerts' group is kept by, in the careful path's order,
        and their values (C{UNSET} if absent).
        """
        return [
            ("receiver", self.receiver),
            ("groupKey", self.group_key),
            ("externalURL", self.external_url),
            ("groupLabels", self.group_labels),
        ]


class _GrafanaBody(_Body, forbid_unknown_fields=True):
    """
    A Grafana unified alerting body: Alertmanager's shape, any version, and
    the organisation and title kept with the group.
    """

    org_id: _Count | str | msgspec.UnsetType | None = msgspec.field(default=msgspec.UNSET, name="orgId")
    title: str | msgspec.UnsetType | None = msgspec.UNSET
    state: str | None = None
    message: str | None = None

    def usable(self) -> bool:
        return True

    def group(self) -> list[tuple[str, object]]:
        return [*super().group(), ("orgId", self.org_id), ("title", self.title)]


# A value of a key Grafana's alerts have beyond Alertmanager's (values,
# valueString, silenceURL, ...): kept in the extras as sent, so read as
# plain JSON, but one level deep at most (the schema's depth).  msgspec
# refuses a number beyond a double or an int64, where the careful path's
# json refuses 1e999 too and takes big integers.
_Scalar = str | int | float | bool | None
_Value = _Scalar | dict[str, _Scalar] | list[_Scalar]

_body_decoder = msgspec.json.Decoder(_Body)
_alert_decoder = msgspec.json.Decoder(_Alert)
_grafana_body_decoder = msgspec.json.Decoder(_GrafanaBody)
_grafana_alert_decoder = msgspec.json.Decoder(dict[str, _Value])


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


# "2026-01-01T00:00:00.123456789+01:00" is 35 characters.
_MAX_REMEMBERED_TIME = 40


def _time(value: str | None, times: dict[str, None], errors: list[FieldError]) -> str | None:
    """
    L{read_timestamp}, remembering in C{times} the values it found to be
    valid times.
    """
    if value in times:
        return value
    checked = read_timestamp(value, "", errors)
    # Only times of a usual length are remembered: a fraction may have any
    # number of digits, and a sender choosing them must not fill memory.
    if checked is not None and len(checked) <= _MAX_REMEMBERED_TIME:
        if len(times) >= RAW_CACHE_ENTRIES:
            times.clear()
        times[checked] = None
    return checked


def check_alert(raw: bytes, limits: Limits, times: dict[str, None]) -> Checked | None:
    """
    Decode and validate one Alertmanager alert, or C{None} if the careful
    path is to judge it: every rule of
    L{alertgateway.sources._fields.read_alert} either holds here or sends
    it there.
    """
    try:
        alert = _alert_decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    extras = {} if alert.fingerprint is None else {"senderFingerprint": clean_json(alert.fingerprint)}
    return _checked(alert, extras, limits, times)


def check_grafana_alert(raw: bytes, limits: Limits, times: dict[str, None]) -> Checked | None:
    """
    Decode and validate one Grafana unified alert: Alertmanager's fields
    and rules, and what else it has kept in its extras, in its order.
    """
    try:
        item = _grafana_alert_decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    status = item.get("status", msgspec.UNSET)
    labels, annotations = item.get("labels"), item.get("annotations")
    if annotations is None:
        annotations = {}
    starts_at, ends_at, url = item.get("startsAt"), item.get("endsAt"), item.get("generatorURL")
    if not (status is msgspec.UNSET or isinstance(status, str)):
        return None
    if not (isinstance(labels, dict) and isinstance(annotations, dict)):
        return None
    if not (_optional_text(starts_at) and _optional_text(ends_at) and _optional_text(url)):
        return None
    # Strings, as far as the checks below go: join refuses anything else.
    label_map, annotation_map = cast("dict[str, str]", labels), cast("dict[str, str]", annotations)
    try:
        "".join(label_map.values())
        "".join(annotation_map.values())
    except TypeError:
        return None
    extras: dict[str, object] = clean_json({key: value for key, value in item.items() if key not in ALERT_KEYS})
    sender = item.get("fingerprint")
    if isinstance(sender, str):
        extras["senderFingerprint"] = clean_json(sender)
    fields = _Alert(
        label_map,
        status,
        annotation_map,
        cast("str | None", starts_at),
        cast("str | None", ends_at),
        cast("str | None", url),
    )
    return _checked(fields, extras, limits, times)


def _optional_text(value: object) -> bool:
    return value is None or isinstance(value, str)


def _checked(alert: _Alert, extras: dict[str, object], limits: Limits, times: dict[str, None]) -> Checked | None:
    """
    Validate an alert's fields, every value of its labels and annotations
    a string already.
    """
    if alert.status is not msgspec.UNSET and alert.status not in _STATUSES:
        return None
    labels = alert.labels
    if not labels or len(labels) > limits.max_labels_per_alert:
        return None
    # One match for every name: a regex per name (msgspec's pattern
    # constraint) costs six times as much.  ASCII: one byte a character.
    names = ",".join(labels)
    # A comma inside one name would pass for two names: the commas must be
    # exactly the separators.
    if (
        not _LABEL_NAMES.match(names)
        or names.count(",") != len(labels) - 1
        or max(map(len, labels)) > limits.max_label_name_length
    ):
        return None
    if max(map(len, labels.values())) > limits.max_label_value_length:
        return None
    values = "".join(labels.values())
    if LABEL_CONTROLS.search(values):
        labels = {name: clean_label_value(value) for name, value in labels.items()}
        values = "".join(labels.values())
    if len(names) - len(labels) + 1 + _utf8_length(values) > limits.max_label_bytes:
        return None
    annotations = alert.annotations or {}
    if annotations:
        names = "".join(annotations)
        # A blank name, or one with control characters, is refused.
        if not all(map(str.strip, annotations)) or LABEL_CONTROLS.search(names):
            return None
        texts = "".join(annotations.values())
        if ANNOTATION_CONTROLS.search(texts):
            annotations = {name: clean_annotation(text) for name, text in annotations.items()}
            texts = "".join(annotations.values())
        if _utf8_length(names) + _utf8_length(texts) > limits.max_annotation_bytes:
            return None
    errors: list[FieldError] = []
    starts_at = _time(alert.starts_at, times, errors)
    ends_at = _time(alert.ends_at, times, errors)
    if errors:
        return None
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


_Check = Callable[[bytes, Limits, dict[str, None]], Checked | None]
_SHAPES: dict[str, tuple[msgspec.json.Decoder[Any], _Check]] = {
    "alertmanager": (_body_decoder, check_alert),
    "grafana": (_grafana_body_decoder, check_grafana_alert),
}


class FastDecoder:
    """
    Decode a JSON body of the Alertmanager shape for one endpoint, or tell
    the caller to take the careful path (C{None}).

    @param source: The sender format: C{alertmanager}, or C{grafana} (its
        unified alerting; a legacy body goes the careful way).
    """

    def __init__(self, source: str = "alertmanager", cache: RawAlerts | None = None) -> None:
        self.source = source
        self.cache = cache if cache is not None else RawAlerts()
        self._limits: Limits | None = None
        self._body, self._check = _SHAPES[source]

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
            body: _Body = self._body.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            return None
        if not body.usable():
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
                checked = self._check(key, limits, cache.times)
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
        group = {key: value for key, value in body.group() if value is not msgspec.UNSET}
        texts = [value for value in group.values() if isinstance(value, str)]
        labels = body.group_labels
        if isinstance(labels, dict):
            texts.extend(labels)
            texts.extend(labels.values())
        # One search over all of its text: nothing to clean, nearly always.
        if UNSAFE_TEXT.search("".join(texts)):
            return {key: clean_json(value) for key, value in group.items()}
        return group
