"""
Tests for L{alertgateway.web.senders}: the client certificate a request's
connection presented, as the identity its rate buckets are kept under.
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel, Request

from alertgateway.web.senders import certificate_identity
from tests.integration._certs import Authority
from tests.unit._http import presenting


def request_on(transport: StringTransport) -> Request:
    channel = HTTPChannel()
    channel.makeConnection(transport)
    return Request(channel)


class CertificateIdentityTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = Authority("senders root")

    def identity(self, common_name: str, *, dns: tuple[str, ...] = (), uris: tuple[str, ...] = ()) -> str | None:
        certificate = self.ca.issue(common_name, dns=dns, uris=uris, client=True).x509()
        return certificate_identity(request_on(presenting(certificate)()))

    def test_names(self) -> None:
        """
        A certificate is known by its first URI (a SPIFFE ID), else its
        first DNS name, else its common name.
        """
        spiffe = "spiffe://cluster.local/ns/monitoring/sa/alertmanager"
        self.assertEqual(self.identity("am", dns=("am.example",), uris=(spiffe,)), "cert:" + spiffe)
        self.assertEqual(self.identity("am", dns=("am.example", "b.example")), "cert:am.example")
        self.assertEqual(self.identity("alertmanager"), "cert:alertmanager")

    def test_bounded(self) -> None:
        """
        However long the name, the identity (a bucket's key) is bounded.
        """
        identity = self.identity("am", uris=("spiffe://cluster.local/" + "a" * 400,))
        assert identity is not None
        self.assertEqual(len(identity), len("cert:") + 256)

    def test_none(self) -> None:
        """
        Plain TCP, and TLS without a client certificate, name nobody.
        """
        self.assertIsNone(certificate_identity(request_on(StringTransport())))
        self.assertIsNone(certificate_identity(request_on(presenting(None)())))
