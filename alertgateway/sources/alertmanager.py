"""
Prometheus Alertmanager's webhook payload, version 4.
"""

from __future__ import annotations

from alertgateway.sources._common import (
    FieldError,
    ParseResult,
    PayloadError,
    read_alert,
    read_alert_list,
    require_object,
)

__all__ = ["parse"]

_GROUP_KEYS = ("receiver", "groupKey", "externalURL", "groupLabels")


def parse(payload: object, received_at: str) -> ParseResult:
    """
    Turn a decoded Alertmanager webhook body into alerts.

    @raise PayloadError: If the body is not a version 4 webhook at all.
    """
    body = require_object(payload)
    version = body.get("version")
    if version is not None and version != "4":
        raise PayloadError([FieldError("/version", f'unsupported webhook version {version!r}; expected "4"')])
    alerts = read_alert_list(body)
    group = {key: body[key] for key in _GROUP_KEYS if key in body}
    return ParseResult(
        tuple(
            read_alert(
                item,
                f"/alerts/{index}",
                source="alertmanager",
                received_at=received_at,
                default_status=body.get("status"),
                group=group,
            )
            for index, item in enumerate(alerts)
        )
    )
