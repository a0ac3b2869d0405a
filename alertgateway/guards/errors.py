# -*- test-case-name: tests.unit.test_auth -*-
"""
What the guards raise when a request may not pass: a L{Refused} with its
reason and, for credentials, the challenge to answer with.  The web layer
maps it to an RFC 9457 problem (401 or 403) and records it in the security
log; the guards know nothing of HTTP responses.
"""

from __future__ import annotations

import enum

__all__ = ["Reason", "Refused"]


class Reason(enum.Enum):
    """
    Why a request was refused at the edge, as the security log and
    C{gateway_security_rejections_total{reason}} say it.
    """

    ADDRESS = "address"
    RATE = "rate"
    CONCURRENCY = "concurrency"
    AUTH = "auth"
    SIGNATURE = "signature"
    SIZE = "size"
    CONTENT = "content"


class Refused(Exception):
    """
    A guard refused the request.

    @ivar detail: Says why, for the sender; never holds a credential.
    @ivar challenge: For credentials, the C{WWW-Authenticate} challenge of
        the endpoint's scheme.
    """

    def __init__(self, reason: Reason, detail: str, *, challenge: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.challenge = challenge
