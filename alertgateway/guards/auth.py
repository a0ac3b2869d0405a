"""
Authentication of webhook senders.

Bearer tokens are compared in constant time against every configured token
(several at once while a token is being rotated), so neither the match nor
its position leaks through timing.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from alertgateway.web import problems

__all__ = ["BearerAuthenticator"]


class BearerAuthenticator:
    """
    Accept C{Authorization: Bearer <token>} for any of C{tokens}.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = [t.encode("utf-8") for t in tokens]

    def check(self, authorization: bytes | None) -> None:
        """
        @raise alertgateway.web.problems.Problem: 401 if the header is
            missing, not a bearer credential, or no configured token matches.
        """
        if authorization is None:
            raise problems.unauthorized("This endpoint requires a bearer token in the Authorization header.")
        scheme, _, credential = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not credential.strip():
            raise problems.unauthorized("The Authorization header must be 'Bearer <token>'.", error="invalid_request")
        given = credential.strip()
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(given, token)
        if not matched:
            raise problems.unauthorized("The bearer token is not valid.", error="invalid_token")
