# -*- test-case-name: tests.unit.test_web_senders -*-
"""
Who sent a request, as the rate buckets count it: the identity its
credentials were authenticated as, or else the name in the client
certificate its TLS connection presented (checked against
C{security.client_ca_file} during the handshake), or else nobody, and its
tokens come from the buckets kept for requests without credentials.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID
from twisted.web.http import Request

__all__ = ["certificate_identity"]

# A name is a bucket's key: a certificate naming something longer is still
# one sender, not a way to make keys of any size.
_MAX_NAME = 256


def _name(certificate: x509.Certificate) -> str | None:
    """
    The name the certificate is known by: its first URI (a SPIFFE ID) or
    DNS subject alternative name, else its subject's common name.
    """
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        # A malformed extension names nobody; the subject may.
        names = None
    if names is not None:
        for kind in (x509.UniformResourceIdentifier, x509.DNSName):
            values = names.get_values_for_type(kind)
            if values:
                return str(values[0])
    common = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else None


def certificate_identity(request: Request) -> str | None:
    """
    C{cert:} and the name of the client certificate the request's
    connection presented, if it presented one.
    """
    # Asked of the transport rather than of ISSLTransport: the TLS wrapper
    # of the SO_REUSEPORT listener has the method but not the interface.
    peer_certificate = getattr(request.transport, "getPeerCertificate", None)
    presented = peer_certificate() if peer_certificate is not None else None
    if presented is None:
        return None
    try:
        name = _name(presented.to_cryptography())
    except ValueError:
        return None
    return None if name is None else "cert:" + name[:_MAX_NAME]
