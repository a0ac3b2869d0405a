# -*- test-case-name: tests.unit.test_cli_send -*-
"""
HTTPS for C{alertgateway send-test}: which certificate authorities it
trusts (C{--cacert}, else the system's) and the client certificate it shows
to a gateway that asks for one (C{--cert}, C{--key}).

The gateway's certificate is checked against the URL's host name or IP
address, as any sender checks it.
"""

from __future__ import annotations

from pathlib import Path

from OpenSSL import crypto
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from alertgateway.cli._common import CommandError

__all__ = ["ClientTLS", "TLSFileError"]

_BEGIN = b"-----BEGIN CERTIFICATE-----"


class TLSFileError(CommandError):
    """
    A certificate or key file cannot be used; the message names it.
    """


def _read(path: str, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TLSFileError(f"{option} {path}: cannot read it ({e.strerror or type(e).__name__})") from None


def _certificates(path: str) -> list[Certificate]:
    pem = _read(path, "--cacert")
    # A bundle: every certificate in the file is trusted.
    blocks = [_BEGIN + block for block in pem.split(_BEGIN)[1:]]
    try:
        found = [Certificate.loadPEM(block) for block in blocks]
    except (crypto.Error, ValueError):
        found = []
    if not found:
        raise TLSFileError(f"--cacert {path}: no PEM certificate in it")
    return found


@implementer(IPolicyForHTTPS)
class ClientTLS:
    """
    The TLS a C{send-test} connection speaks.

    @param cacert: A PEM file of the certificate authorities to trust
        instead of the system's.
    @param cert: A PEM file holding the client certificate, and its key
        unless C{key} is given.
    @raise TLSFileError: If a file cannot be read or holds no usable
        certificate or key.
    """

    def __init__(self, cacert: str | None = None, cert: str | None = None, key: str | None = None) -> None:
        self._trust: IOpenSSLTrustRoot = (
            trustRootFromCertificates(_certificates(cacert)) if cacert is not None else platformTrust()
        )
        self._client: PrivateCertificate | None = None
        if key is not None and cert is None:
            raise TLSFileError("--key needs --cert")
        if cert is not None:
            pem = _read(cert, "--cert") + b"\n" + (_read(key, "--key") if key is not None else b"")
            try:
                self._client = PrivateCertificate.loadPEM(pem)
            except (crypto.Error, ValueError):
                raise TLSFileError(
                    f"--cert {cert}{f' --key {key}' if key else ''}: not a PEM certificate with its private key"
                ) from None

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        creator: IOpenSSLClientConnectionCreator = optionsForClientTLS(
            hostname.decode("ascii"), trustRoot=self._trust, clientCertificate=self._client
        )
        return creator
