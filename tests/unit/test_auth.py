"""
Bearer token authentication.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from alertgateway.guards.auth import BearerAuthenticator
from alertgateway.web.problems import Problem


class BearerAuthenticatorTests(SynchronousTestCase):
    """
    L{BearerAuthenticator.check} passes a configured token and raises a 401
    problem with a Bearer challenge for everything else.
    """

    def setUp(self) -> None:
        self.auth = BearerAuthenticator(["current", "next-t\u00f6ken"])

    def refusal(self, header: bytes | None) -> Problem:
        with self.assertRaises(Problem) as caught:
            self.auth.check(header)
        problem = caught.exception
        assert isinstance(problem, Problem)
        self.assertEqual(problem.status, 401)
        return problem

    def test_each_configured_token(self) -> None:
        """
        Every configured token passes (rotation), non-ASCII ones compared as
        UTF-8, the scheme in any case, surrounding spaces ignored.
        """
        for header in (b"Bearer current", "Bearer next-t\u00f6ken".encode(), b"bearer current", b"  BEARER  current "):
            self.auth.check(header)

    def test_missing(self) -> None:
        """
        No header: a challenge without an error code (RFC 6750 section 3.1).
        """
        problem = self.refusal(None)
        self.assertEqual(problem.headers, {"WWW-Authenticate": 'Bearer realm="alertgateway"'})

    def test_malformed(self) -> None:
        """
        Another scheme, or Bearer without a token, is invalid_request.
        """
        for header in (b"Basic Y3VycmVudDo=", b"Bearer", b"Bearer   ", b"current", b""):
            problem = self.refusal(header)
            self.assertEqual(
                problem.headers["WWW-Authenticate"], 'Bearer realm="alertgateway", error="invalid_request"', header
            )

    def test_wrong_token(self) -> None:
        """
        An unknown token, a prefix or an extension of a real one is
        invalid_token, and the problem does not repeat it.
        """
        for header in (b"Bearer guess", b"Bearer curren", b"Bearer currentX", b"Bearer CURRENT"):
            problem = self.refusal(header)
            self.assertEqual(
                problem.headers["WWW-Authenticate"], 'Bearer realm="alertgateway", error="invalid_token"', header
            )
            self.assertNotIn(header[len("Bearer ") :].decode(), problem.detail)

    def test_no_tokens(self) -> None:
        """
        With no token configured nothing passes.
        """
        with self.assertRaises(Problem):
            BearerAuthenticator([]).check(b"Bearer anything")
