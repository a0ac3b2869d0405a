# -*- test-case-name: tests.unit.test_sources -*-
"""
Parsers from each sender's webhook body to L{alertgateway.core.model.Alert}s.

A parser is a pure function C{parse(payload, received_at) -> ParseResult}:
it never touches the network or any state, and judges each alert of a batch
on its own.
"""

from __future__ import annotations

from typing import Protocol

from alertgateway.sources import alertmanager, grafana
from alertgateway.sources._fields import FieldError, ParseResult, PayloadError, Rejection
from alertgateway.sources.limits import Limits

__all__ = ["PARSERS", "FieldError", "Limits", "ParseResult", "Parser", "PayloadError", "Rejection"]


class Parser(Protocol):
    def __call__(self, payload: object, received_at: str, limits: Limits = ..., /) -> ParseResult: ...


PARSERS: dict[str, Parser] = {
    "alertmanager": alertmanager.parse,
    "grafana": grafana.parse,
}
