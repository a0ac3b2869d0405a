# -*- test-case-name: tests.unit.test_sources -*-
"""
Prometheus Alertmanager's webhook payload, version 4.
"""

from __future__ import annotations

from alertgateway.sources._fields import (
    DEFAULT_LIMITS,
    FieldError,
    ParseResult,
    PayloadError,
    read_alerts,
    require_object,
)
from alertgateway.sources.limits import Limits

__all__ = ["parse"]

_GROUP_KEYS = ("receiver", "groupKey", "externalURL", "groupLabels")


def parse(payload: object, received_at: str, limits: Limits = DEFAULT_LIMITS) -> ParseResult:
    """
    Turn a decoded Alertmanager webhook body into alerts.

    @raise PayloadError: If the body is not a version 4 webhook at all.
    """
    body = require_object(payload)
    version = body.get("version")
    if version is not None and version != "4":
        # Quoted short: the sender chose it, and it could be anything.
        raise PayloadError([FieldError("/version", f'unsupported webhook version {repr(version)[:64]}; expected "4"')])
    return read_alerts(body, source="alertmanager", received_at=received_at, group_keys=_GROUP_KEYS, limits=limits)
