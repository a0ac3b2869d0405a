# -*- test-case-name: tests.unit.test_sinks,tests.unit.test_config -*-
"""
Headers a forwarded alert never carries from its webhook.

The sinks drop them from what they send; the configuration refuses them
where it names headers to forward or add, so that an operator learns at
load time that they would have no effect.
"""

from __future__ import annotations

__all__ = ["HOP_BY_HOP"]

# Hop-by-hop headers (RFC 9110 7.6.1) concern one connection, not the
# alert; the others the forwarded request sets itself, and a second copy
# under another case would reach the wire beside it.  Lower case, as
# names are compared so.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "x-request-id",
        "idempotency-key",
    }
)
