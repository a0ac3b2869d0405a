"""
Grafana's webhook payloads: unified alerting (C{version} "1", the
Alertmanager shape plus Grafana's extras) and legacy dashboard alerting
(C{ruleId}, C{evalMatches}, C{state}), told apart by their keys.

A legacy notification carries one alert.  Its labels are C{tags} plus
C{alertname} set to C{ruleName} (C{ruleName} wins over a tag of that name);
C{title} and C{message} become annotations; state C{alerting} and
C{no_data} are firing, C{ok} is resolved.
"""

from __future__ import annotations

from typing import Any

from alertgateway.model import FIRING, RESOLVED, Alert, fingerprint
from alertgateway.sources._common import (
    FieldError,
    ParseResult,
    PayloadError,
    Rejection,
    is_text,
    read_alert,
    read_alert_list,
    read_optional_string,
    read_string_map,
    require_object,
)

__all__ = ["parse"]

_GROUP_KEYS = ("receiver", "groupKey", "externalURL", "groupLabels", "orgId", "title")
_LEGACY_STATES = {"alerting": FIRING, "no_data": FIRING, "ok": RESOLVED}
_LEGACY_EXTRAS = ("ruleId", "orgId", "dashboardId", "panelId", "evalMatches", "imageUrl", "state")


def parse(payload: object, received_at: str) -> ParseResult:
    """
    Turn a decoded Grafana webhook body, unified or legacy, into alerts.

    @raise PayloadError: If the body is neither.
    """
    body = require_object(payload)
    if "alerts" in body:
        return _parse_unified(body, received_at)
    if "ruleName" in body or "ruleId" in body or "evalMatches" in body:
        return ParseResult((_parse_legacy(body, received_at),))
    raise PayloadError(
        [FieldError("/alerts", "is required (unified alerting), or ruleName/state for a legacy Grafana alert")]
    )


def _parse_unified(body: dict[str, Any], received_at: str) -> ParseResult:
    alerts = read_alert_list(body)
    group = {key: body[key] for key in _GROUP_KEYS if key in body}
    return ParseResult(
        tuple(
            read_alert(
                item,
                f"/alerts/{index}",
                source="grafana",
                received_at=received_at,
                default_status=body.get("status"),
                group=group,
            )
            for index, item in enumerate(alerts)
        )
    )


def _parse_legacy(body: dict[str, Any], received_at: str) -> Alert | Rejection:
    errors: list[FieldError] = []
    rule_name = body.get("ruleName")
    if not isinstance(rule_name, str) or not rule_name.strip():
        errors.append(FieldError("/ruleName", "must be a non-empty string"))
    elif not is_text(rule_name):
        errors.append(FieldError("/ruleName", "must be valid Unicode text (it contains an unpaired surrogate)"))
    state = body.get("state")
    status = _LEGACY_STATES.get(state) if isinstance(state, str) else None
    if status is None:
        errors.append(FieldError("/state", "must be alerting, no_data or ok"))
    tags = read_string_map(body.get("tags"), "/tags", errors, required=False)
    generator_url = read_optional_string(body.get("ruleUrl"), "/ruleUrl", errors)
    annotations = {}
    for key in ("title", "message"):
        text = read_optional_string(body.get(key), f"/{key}", errors)
        if text:
            annotations[key] = text
    if errors or status is None or not isinstance(rule_name, str):
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
        extras={key: body[key] for key in _LEGACY_EXTRAS if key in body},
    )
