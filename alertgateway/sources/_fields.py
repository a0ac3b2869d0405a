# -*- test-case-name: tests.unit.test_sources,tests.unit.test_problems -*-
"""
What every sender parser shares: the result types and field readers that
record a JSON pointer for everything they refuse.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from alertgateway.core.model import FIRING, RESOLVED, Alert, fingerprint
from alertgateway.sources.limits import Limits

DEFAULT_LIMITS = Limits()

__all__ = ["FieldError", "ParseResult", "PayloadError", "Rejection", "is_text", "read_alert"]

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# Go's zero time: Alertmanager writes it for an end time that is not set.
_ZERO_TIME = "0001-01-01T00:00:00Z"
_STATUSES = (FIRING, RESOLVED)


@attrs.frozen
class FieldError:
    """
    One refused part of a payload.

    @ivar pointer: RFC 6901 JSON pointer into the request body.
    """

    pointer: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"pointer": self.pointer, "message": self.message}


@attrs.frozen
class Rejection:
    """
    An alert of a batch that was refused, and why.
    """

    errors: tuple[FieldError, ...]


@attrs.frozen
class ParseResult:
    """
    One outcome per alert in the body, in body order.
    """

    outcomes: tuple[Alert | Rejection, ...]

    @property
    def accepted(self) -> tuple[Alert, ...]:
        return tuple(o for o in self.outcomes if isinstance(o, Alert))


class PayloadError(Exception):
    """
    The body as a whole is unusable (not the expected shape), so no alert in
    it can be judged on its own.
    """

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.pointer}: {e.message}" for e in errors))
        self.errors = tuple(errors)


# Keys longer than this are cut in pointers: a refused name of 100 kB must
# not be echoed whole.
MAX_POINTER_KEY = 128
# Errors kept per refused alert, and listed in one answer before the other
# refused alerts keep only their first: an answer must not be many times
# the size of a body of many small faults.
MAX_ERRORS_PER_ALERT = 10
MAX_LISTED_ERRORS = 100


def escape_pointer(token: str) -> str:
    """
    Escape a key for a JSON pointer (RFC 6901), spelling an unpaired
    surrogate as C{\\udXXX} so that the pointer can still be sent as UTF-8,
    and cutting it to L{MAX_POINTER_KEY} characters.
    """
    token = token[:MAX_POINTER_KEY].encode("utf-8", "backslashreplace").decode("utf-8")
    return token.replace("~", "~0").replace("/", "~1")


def bounded(outcomes: Sequence[Alert | Rejection]) -> tuple[Alert | Rejection, ...]:
    """
    The outcomes with at most L{MAX_ERRORS_PER_ALERT} errors per refused
    alert; once L{MAX_LISTED_ERRORS} are listed, each further refused alert
    keeps only its first.
    """
    budget = MAX_LISTED_ERRORS
    kept: list[Alert | Rejection] = []
    for outcome in outcomes:
        if isinstance(outcome, Rejection) and len(outcome.errors) > 1:
            keep = max(1, min(len(outcome.errors), MAX_ERRORS_PER_ALERT, budget))
            budget -= keep
            outcome = Rejection(outcome.errors[:keep]) if keep < len(outcome.errors) else outcome
        kept.append(outcome)
    return tuple(kept)


def is_text(value: str) -> bool:
    """
    Whether C{value} is encodable Unicode.  JSON can spell an unpaired
    surrogate (C{"\\ud800"}), which Python decodes but cannot encode as
    UTF-8, so the fingerprint could not be computed from it.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_NOT_TEXT = "must be valid Unicode text (it contains an unpaired surrogate)"


def read_timestamp(value: object, pointer: str, errors: list[FieldError]) -> str | None:
    """
    Accept an RFC 3339 timestamp; Go's zero time and absence mean unset.
    """
    if value is None or value == "" or value == _ZERO_TIME:
        return None
    if isinstance(value, str) and _RFC3339.match(value):
        try:
            # Python takes at most microseconds; Go sends nanoseconds.
            datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value.replace("z", "Z")))
        except ValueError:
            pass
        else:
            return value
    errors.append(FieldError(pointer, "must be an RFC 3339 timestamp, e.g. 2026-11-26T03:49:49Z"))
    return None


# Prometheus's (pre-UTF-8) label name syntax, which Alertmanager 0.25 sends.
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")
# Bidirectional formatting characters (embeddings, overrides, isolates,
# marks): U+202E makes "gpj.exe" display as "exe.jpg" wherever the alert
# is shown.  Stripped with the controls.
_BIDI = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# Control characters are stripped from values; annotations keep tab and
# newline, which descriptions use for layout.
LABEL_CONTROLS = re.compile(rf"[\x00-\x1f\x7f-\x9f{_BIDI}]")
ANNOTATION_CONTROLS = re.compile(rf"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}]")
# What else of a sender's text is kept loses the same, and unpaired
# surrogates (which JSON can spell, and UTF-8 cannot encode).
UNSAFE_TEXT = re.compile(rf"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}\ud800-\udfff]")


def clean_label_value(value: str) -> str:
    """
    A label value without its control characters.
    """
    return LABEL_CONTROLS.sub("", value)


def clean_annotation(value: str) -> str:
    """
    An annotation value without its control characters other than tab,
    line feed and carriage return.
    """
    return ANNOTATION_CONTROLS.sub("", value)


def clean_json(value: object) -> Any:
    """
    A JSON value kept as sent (the group, the extras) with every string and
    key cleaned like an annotation, unpaired surrogates dropped too.
    """
    if isinstance(value, str):
        return UNSAFE_TEXT.sub("", value)
    if isinstance(value, dict):
        return {UNSAFE_TEXT.sub("", str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return value


def annotation_size(name: str, value: str) -> int:
    """
    What a label counts against C{limits.max_label_bytes}, or an annotation
    against C{limits.max_annotation_bytes}.
    """
    # ASCII (nearly always) is one byte a character: no need to encode.
    size = len(name) if name.isascii() else len(name.encode("utf-8"))
    return size + (len(value) if value.isascii() else len(value.encode("utf-8")))


def read_string_map(
    value: object,
    pointer: str,
    errors: list[FieldError],
    *,
    required: bool,
    limits: Limits = DEFAULT_LIMITS,
    labels: bool = False,
    rename: Callable[[str], str] | None = None,
) -> dict[str, str]:
    """
    Accept a JSON object of names to string values: labels (Prometheus
    name syntax, count, length and total size limits) or annotations
    (total size limit).  Control characters are stripped from values.

    @param rename: Turns each name into the one kept (and checked); the
        pointers still name the key as it is in the body.
    """
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        errors.append(FieldError(pointer, "must be an object of string values"))
        return {}
    if required and not value:
        errors.append(FieldError(pointer, "must not be empty"))
    if labels and len(value) > limits.max_labels_per_alert:
        errors.append(
            FieldError(pointer, f"has {len(value)} labels; at most {limits.max_labels_per_alert} are allowed")
        )
        return {}
    result = {}
    size = 0
    for given, item in value.items():
        name = given if rename is None else rename(given)
        problem = _name_value_problem(name, item, labels, limits)
        if problem is not None:
            # The pointer is spelled only for an error: most items have none.
            errors.append(FieldError(f"{pointer}/{escape_pointer(given)}", problem))
            continue
        assert isinstance(item, str)
        clean = clean_label_value(item) if labels else clean_annotation(item)
        size += annotation_size(name, clean)
        result[name] = clean
    if labels and size > limits.max_label_bytes:
        errors.append(FieldError(pointer, label_bytes_problem(size, limits)))
    if not labels and size > limits.max_annotation_bytes:
        errors.append(FieldError(pointer, f"annotations total {size} bytes; at most {limits.max_annotation_bytes}"))
    return result


def label_bytes_problem(size: int, limits: Limits) -> str:
    return f"labels total {size} bytes; at most {limits.max_label_bytes}"


def _name_value_problem(name: str, item: object, labels: bool, limits: Limits) -> str | None:
    """
    What is wrong with one label or annotation, if anything.
    """
    if not name.strip():
        return "label and annotation names must not be empty"
    if not isinstance(item, str):
        return "must be a string"
    if not (is_text(name) and is_text(item)):
        return _NOT_TEXT
    if labels and not LABEL_NAME.match(name):
        return "label names must match [a-zA-Z_][a-zA-Z0-9_]*"
    if not labels and LABEL_CONTROLS.search(name):
        return "annotation names must not contain control characters"
    if labels and len(name) > limits.max_label_name_length:
        return f"label names are at most {limits.max_label_name_length} characters"
    if labels and len(item) > limits.max_label_value_length:
        return f"label values are at most {limits.max_label_value_length} characters"
    return None


def read_optional_string(value: object, pointer: str, errors: list[FieldError]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        errors.append(FieldError(pointer, "must be a string"))
        return ""
    if not is_text(value):
        errors.append(FieldError(pointer, _NOT_TEXT))
        return ""
    return value


ALERT_KEYS = frozenset({"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"})


def read_alert(
    item: object,
    pointer: str,
    *,
    source: str,
    received_at: str,
    default_status: object,
    group: Mapping[str, Any],
    limits: Limits = DEFAULT_LIMITS,
) -> Alert | Rejection:
    """
    Read one Alertmanager-shaped alert object (Alertmanager v4 and Grafana
    unified alerting share this shape).
    """
    if not isinstance(item, dict):
        return Rejection((FieldError(pointer, "must be an object"),))
    errors: list[FieldError] = []
    status = item.get("status", default_status)
    if status not in _STATUSES:
        errors.append(FieldError(f"{pointer}/status", "must be firing or resolved"))
    labels = read_string_map(item.get("labels"), f"{pointer}/labels", errors, required=True, limits=limits, labels=True)
    annotations = read_string_map(
        item.get("annotations"), f"{pointer}/annotations", errors, required=False, limits=limits
    )
    starts_at = read_timestamp(item.get("startsAt"), f"{pointer}/startsAt", errors)
    ends_at = read_timestamp(item.get("endsAt"), f"{pointer}/endsAt", errors)
    generator_url = clean_label_value(read_optional_string(item.get("generatorURL"), f"{pointer}/generatorURL", errors))
    if errors:
        return Rejection(tuple(errors))
    extras: dict[str, Any] = clean_json({k: v for k, v in item.items() if k not in ALERT_KEYS})
    sender_fingerprint = item.get("fingerprint")
    if isinstance(sender_fingerprint, str):
        extras["senderFingerprint"] = clean_json(sender_fingerprint)
    if group:
        extras["group"] = dict(group)
    return Alert(
        fingerprint=fingerprint(labels),
        source=source,
        status=str(status),
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=generator_url,
        received_at=received_at,
        extras=extras,
    )


def read_alerts(
    body: Mapping[str, Any],
    *,
    source: str,
    received_at: str,
    group_keys: tuple[str, ...],
    limits: Limits,
) -> ParseResult:
    """
    Read every alert of an Alertmanager-shaped body, each on its own; those
    past C{limits.max_alerts_per_request} are rejected.
    """
    alerts = read_alert_list(body)
    group = {key: clean_json(body[key]) for key in group_keys if key in body}
    outcomes: list[Alert | Rejection] = []
    for index, item in enumerate(alerts):
        pointer = f"/alerts/{index}"
        if index >= limits.max_alerts_per_request:
            outcomes.append(
                Rejection((FieldError(pointer, f"at most {limits.max_alerts_per_request} alerts per request"),))
            )
            continue
        outcomes.append(
            read_alert(
                item,
                pointer,
                source=source,
                received_at=received_at,
                default_status=body.get("status"),
                group=group,
                limits=limits,
            )
        )
    return ParseResult(bounded(outcomes))


def read_alert_list(payload: Mapping[str, Any]) -> list[Any]:
    """
    Return the C{alerts} array of an Alertmanager-shaped body.

    @raise PayloadError: If it is missing, not an array or empty.
    """
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError([FieldError("/alerts", "must be an array of alerts")])
    if not alerts:
        raise PayloadError([FieldError("/alerts", "must contain at least one alert")])
    return alerts


def require_object(payload: object) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise PayloadError([FieldError("", "the body must be a JSON object")])
    return payload
