# -*- test-case-name: tests.unit.test_sources -*-
"""
Grafana's webhook payloads: unified alerting (C{version} "1", the
Alertmanager shape plus Grafana's extras) and legacy dashboard alerting
(C{ruleId}, C{evalMatches}, C{state}), told apart by their keys.

A legacy notification carries one alert.  Its labels are C{tags} (names
made Prometheus label names: other characters become C{_}) plus
C{alertname} set to C{ruleName} (C{ruleName} wins over a tag of that name);
C{title} and C{message} become annotations; state C{alerting} and
C{no_data} are firing, C{ok} is resolved.
"""

from __future__ import annotations

import re
from typing import Any

from alertgateway.core.model import FIRING, RESOLVED, Alert, fingerprint
from alertgateway.sources._fields import (
    DEFAULT_LIMITS,
    FieldError,
    ParseResult,
    PayloadError,
    Rejection,
    annotation_size,
    clean_annotation,
    clean_json,
    clean_label_value,
    is_text,
    read_alerts,
    read_optional_string,
    read_string_map,
    require_object,
)
from alertgateway.sources.limits import Limits

__all__ = ["parse"]

_GROUP_KEYS = ("receiver", "groupKey", "externalURL", "groupLabels", "orgId", "title")
_NOT_LABEL_CHAR = re.compile(r"[^a-zA-Z0-9_]")
_LEGACY_STATES = {"alerting": FIRING, "no_data": FIRING, "ok": RESOLVED}
_LEGACY_EXTRAS = ("ruleId", "orgId", "dashboardId", "panelId", "evalMatches", "imageUrl", "state")


def parse(payload: object, received_at: str, limits: Limits = DEFAULT_LIMITS) -> ParseResult:
    """
    Turn a decoded Grafana webhook body, unified or legacy, into alerts.

    @raise PayloadError: If the body is neither.
    """
    body = require_object(payload)
    if "alerts" in body:
        return read_alerts(body, source="grafana", received_at=received_at, group_keys=_GROUP_KEYS, limits=limits)
    if "ruleName" in body or "ruleId" in body or "evalMatches" in body:
        return ParseResult((_parse_legacy(body, received_at, limits),))
    raise PayloadError(
        [FieldError("/alerts", "is required (unified alerting), or ruleName/state for a legacy Grafana alert")]
    )


def _tag_name(name: str) -> str:
    # Legacy tags are free text; as labels they take Prometheus's syntax,
    # the way Prometheus relabelling sanitises names.
    clean = _NOT_LABEL_CHAR.sub("_", name)
    return clean if not clean[:1].isdigit() else "_" + clean


def _parse_legacy(body: dict[str, Any], received_at: str, limits: Limits) -> Alert | Rejection:
    errors: list[FieldError] = []
    raw_name = body.get("ruleName")
    # ruleName is the alertname label's value, sanitised like any other.
    rule_name = clean_label_value(raw_name) if isinstance(raw_name, str) else None
    if rule_name is None or not rule_name.strip():
        errors.append(FieldError("/ruleName", "must be a non-empty string"))
    elif not is_text(rule_name):
        errors.append(FieldError("/ruleName", "must be valid Unicode text (it contains an unpaired surrogate)"))
    elif len(rule_name) > limits.max_label_value_length:
        errors.append(
            FieldError("/ruleName", f"is a label value; those are at most {limits.max_label_value_length} characters")
        )
    state = body.get("state")
    status = _LEGACY_STATES.get(state) if isinstance(state, str) else None
    if status is None:
        errors.append(FieldError("/state", "must be alerting, no_data or ok"))
    raw_tags = body.get("tags")
    if isinstance(raw_tags, dict):
        # A blank tag name has nothing a label name could be made of.
        raw_tags = {k: v for k, v in raw_tags.items() if str(k).strip()}
    tags = read_string_map(
        raw_tags, "/tags", errors, required=False, limits=limits, labels=True, rename=lambda k: _tag_name(str(k))
    )
    if len(tags) + ("alertname" not in tags) > limits.max_labels_per_alert:
        errors.append(FieldError("/tags", f"with alertname makes more than {limits.max_labels_per_alert} labels"))
    generator_url = clean_label_value(read_optional_string(body.get("ruleUrl"), "/ruleUrl", errors))
    annotations: dict[str, str] = {}
    for key in ("title", "message"):
        text = clean_annotation(read_optional_string(body.get(key), f"/{key}", errors))
        if not text:
            continue
        before = sum(annotation_size(k, v) for k, v in annotations.items())
        annotations[key] = text
        size = before + annotation_size(key, text)
        # Reported once, at the text that went over.
        if before <= limits.max_annotation_bytes < size:
            errors.append(
                FieldError(f"/{key}", f"annotations total {size} bytes; at most {limits.max_annotation_bytes}")
            )
    if errors or status is None or rule_name is None:
        return Rejection(tuple(errors))
    labels = {**tags, "alertname": rule_name}
    return Alert(
        fingerprint=fingerprint(labels),
        source="grafana",
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=None,
        ends_at=None,
        generator_url=generator_url,
        received_at=received_at,
        extras={key: clean_json(body[key]) for key in _LEGACY_EXTRAS if key in body},
    )
