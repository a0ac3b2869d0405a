# -*- test-case-name: tests.unit.test_sources -*-
"""
Parsers from each sender's webhook body to L{alertgateway.core.model.Alert}s.

A parser is a pure function C{parse(payload, received_at) -> ParseResult}:
it never touches the network or any state, and judges each alert of a batch
on its own.  A decoder is the fast path before it for JSON bodies: the same
result straight from the bytes for a valid body, and a memo of the alerts
whose bytes it has validated, so that a repeated alert costs a lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from alertgateway.sources import alertmanager, grafana
from alertgateway.sources._fields import FieldError, ParseResult, PayloadError, Rejection
from alertgateway.sources.fast import FastDecoder
from alertgateway.sources.limits import Limits

__all__ = [
    "DECODERS",
    "PARSERS",
    "Decoder",
    "FieldError",
    "Limits",
    "ParseResult",
    "Parser",
    "PayloadError",
    "Rejection",
]


class Parser(Protocol):
    def __call__(self, payload: object, received_at: str, limits: Limits = ..., /) -> ParseResult: ...


PARSERS: dict[str, Parser] = {
    "alertmanager": alertmanager.parse,
    "grafana": grafana.parse,
}


class Decoder(Protocol):
    """
    The fast path of a sender's JSON bodies: the result straight from the
    body's bytes, or C{None} when the parser is to judge the decoded body
    (only it words refusals).
    """

    def __call__(self, raw: bytes, received_at: str, limits: Limits, /) -> ParseResult | None: ...


# A new decoder per endpoint: each keeps its own cache of raw alerts.
DECODERS: dict[str, Callable[[], Decoder]] = {
    "alertmanager": FastDecoder,
    "grafana": lambda: FastDecoder("grafana"),
}
