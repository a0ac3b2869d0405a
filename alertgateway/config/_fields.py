# -*- test-case-name: tests.unit.test_config -*-
"""
Checks of single values that several configuration sections share.

Each is given as a field's C{check} metadata (see
L{alertgateway.config._schema}): it takes the value read and returns what
is wrong with it, phrased to follow the key path, or C{None}.
"""

from __future__ import annotations

import ipaddress
import re

from alertgateway.delivery.headers import HOP_BY_HOP

__all__ = [
    "addresses_or_hosts",
    "header_name",
    "header_token",
    "not_negative",
    "plain_path",
    "plain_paths",
    "port_number",
    "positive",
    "rejection_status",
]


def positive(value: float) -> str | None:
    """
    Refuse zero and negative numbers: counts, sizes and timeouts.
    """
    return None if value > 0 else "must be greater than 0"


def not_negative(value: float) -> str | None:
    """
    Refuse negative numbers, where zero means "none" or "at once".
    """
    return None if value >= 0 else "must not be negative"


def port_number(value: int) -> str | None:
    """
    Refuse what is not a TCP port (0 lets the system choose one).
    """
    return None if 0 <= value <= 65535 else "must be a port number between 0 and 65535"


def plain_path(value: str) -> str | None:
    """
    Refuse a URL path that requests could never match exactly.
    """
    if not value.startswith("/"):
        return "must start with /"
    if "?" in value or "#" in value or "//" in value:
        return "must be a plain path without query, fragment or empty segments"
    return None


def plain_paths(values: tuple[str, ...]) -> str | None:
    """
    Refuse the first path of a list that L{plain_path} refuses.
    """
    for value in values:
        message = plain_path(value)
        if message is not None:
            return f"{value!r} {message}"
    return None


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# The last label is never all digits (RFC 1123 2.1, RFC 3696 2): such a
# "name" is a mistyped address (10.0.0.256), which would otherwise be sent
# to DNS and allow nothing, or something unexpected.
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$)({_LABEL}\.)*(?![0-9]+\.?$){_LABEL}\.?$")


def addresses_or_hosts(values: tuple[str, ...]) -> str | None:
    """
    Refuse the first entry of an allow list that is not an IP address, a
    CIDR network or a host name.
    """
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            if not _HOSTNAME.match(value):
                return f"{value!r} is not an IP address, CIDR network or host name"
    return None


def rejection_status(value: int) -> str | None:
    """
    Refuse a status for requests over a rate limit other than 429 (Too
    Many Requests) and 503 (Service Unavailable).
    """
    return None if value in (429, 503) else "must be 429 or 503"


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def header_token(name: str) -> str | None:
    """
    Refuse what cannot be an HTTP header name (RFC 9110 5.1).
    """
    return None if name and set(name) <= _TOKEN_CHARS else f"{name!r} is not a valid header name"


def header_name(name: str) -> str | None:
    """
    Refuse a header name the gateway never sends on: hop-by-hop ones and
    those it sets itself.
    """
    message = header_token(name)
    if message is not None:
        return message
    if name.lower() in HOP_BY_HOP:
        return f"{name} is hop-by-hop or set by the gateway itself and is never forwarded"
    return None
