"""
Certificates made by the tests themselves: a CA (and intermediates) that
issues server and client certificates with DNS, IP and URI subject
alternative names, written to PEM files for the gateway and wrapped as
Twisted client TLS options for the tests' own clients.

EC P-256 keys keep generation in the milliseconds, so every test can have
fresh certificates and no key material lives in the repository.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto
from treq.client import HTTPClient
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

__all__ = [
    "Authority",
    "Issued",
    "TrustingPolicy",
    "client_creator",
    "https_client",
    "write_pem",
]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "alertgateway tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@attrs.frozen
class Issued:
    """
    A certificate with its private key.
    """

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    def x509(self) -> crypto.X509:
        """
        The certificate as pyOpenSSL sees it (what a verify callback gets).
        """
        return crypto.X509.from_cryptography(self.certificate)

    def private_certificate(self) -> ssl.PrivateCertificate:
        """
        Certificate and key as Twisted's client-certificate type.
        """
        loaded: ssl.PrivateCertificate = ssl.PrivateCertificate.loadPEM(self.cert_pem + self.key_pem)
        return loaded


class Authority:
    """
    A certificate authority: a self-signed root, or with C{parent} an
    intermediate the parent signed.
    """

    issued: Issued

    def __init__(self, name: str, parent: Authority | None = None) -> None:
        self.name = name
        self.parent = parent
        key = _new_key()
        now = datetime.now(UTC)
        issuer_name = parent.issued.certificate.subject if parent is not None else _name(name)
        signing_key = parent.issued.key if parent is not None else key
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None if parent is None else 0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        if parent is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.issued.key.public_key()), critical=False
            )
        self.issued = Issued(builder.sign(signing_key, hashes.SHA256()), key)

    @property
    def cert_pem(self) -> bytes:
        return self.issued.cert_pem

    def issue(
        self,
        common_name: str,
        *,
        dns: Sequence[str] = (),
        uris: Sequence[str] = (),
        ips: Sequence[str] = (),
        client: bool = False,
    ) -> Issued:
        """
        A leaf certificate for a server (default) or, with C{client}, a
        client, naming C{dns}, C{uris} and C{ips} in its subject
        alternative names.
        """
        key = _new_key()
        now = datetime.now(UTC)
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.UniformResourceIdentifier(u) for u in uris]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.issued.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.issued.key.public_key()), critical=False
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return Issued(builder.sign(self.issued.key, hashes.SHA256()), key)

    def server(self, common_name: str = "gateway") -> Issued:
        """
        A server certificate for the gateway on loopback: C{localhost} and
        C{127.0.0.1}.
        """
        return self.issue(common_name, dns=["localhost"], ips=["127.0.0.1"])


def write_pem(path: Path, *parts: bytes) -> Path:
    """
    Write PEM blocks to C{path} by renaming a finished file over it, as
    cert-manager's volume updates do, so a reader never sees half a file.
    """
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(b"".join(parts))
    partial.replace(path)
    return path


def client_creator(
    trust: Sequence[bytes], hostname: str = "127.0.0.1", client: Issued | None = None
) -> IOpenSSLClientConnectionCreator:
    """
    Client TLS options that trust only the PEM certificates in C{trust},
    verify C{hostname} and present C{client} if given.
    """
    roots = [ssl.Certificate.loadPEM(pem) for pem in trust]
    creator: IOpenSSLClientConnectionCreator = ssl.optionsForClientTLS(
        hostname,
        trustRoot=ssl.trustRootFromCertificates(roots),
        clientCertificate=client.private_certificate() if client is not None else None,
    )
    return creator


@implementer(IPolicyForHTTPS)
class TrustingPolicy:
    """
    An HTTPS policy for C{Agent}: trust the test CA (only), optionally
    present a client certificate.
    """

    def __init__(self, trust: Sequence[bytes], client: Issued | None = None) -> None:
        self._trust = list(trust)
        self._client = client

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        return client_creator(self._trust, hostname.decode("ascii"), self._client)


def https_client(reactor: object, trust: Sequence[bytes], client: Issued | None = None) -> HTTPClient:
    """
    A treq client over HTTPS without persistent connections (so nothing
    outlives the test) that trusts C{trust} and presents C{client}.
    """
    pool = HTTPConnectionPool(reactor, persistent=False)
    return HTTPClient(Agent(reactor, contextFactory=TrustingPolicy(trust, client), pool=pool))
