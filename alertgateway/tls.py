# -*- test-case-name: tests.unit.test_tls -*-
"""
TLS and mutual TLS for the webhook listener.

L{ReloadingServerTLS} is an C{IOpenSSLServerConnectionCreator}: every new
connection gets the current C{SSL.Context}, and L{ReloadingServerTLS.refresh}
(run by a LoopingCall) rebuilds the context when the certificate, key, chain
or client CA files change on disk, so a certificate rotated by cert-manager
is picked up without a restart.  A rotation caught half-written (a key that
does not match the certificate) keeps the previous context and is retried.

TLS 1.2 is the minimum, with ECDHE key exchange and AEAD ciphers only by
default (L{DEFAULT_TLS12_CIPHERS}; TLS 1.3 suites are all of that kind).
With C{client_ca_file} clients may present a
certificate signed by that CA; with C{require_client_cert} they must; with
C{allowed_client_names} they must too, and the certificate must also name
one of them in its subject alternative names: DNS names are matched by
service-identity (so C{*.example.com} patterns in the certificate work as
in RFC 6125), URIs (e.g. SPIFFE IDs) exactly.

A refused handshake (no client certificate, one of an unknown CA, one
naming nobody allowed, or any other fatal alert the server sends) is one
warning event in the C{alertgateway.security} namespace with the reason
and the client address, at most L{LOG_BURST} every L{LOG_INTERVAL}
seconds (the next event counts those left out; see
L{alertgateway.tls_log}); every refusal is counted through C{on_refused}.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.hazmat import DNS_ID, DNSPattern, verify_service_identity
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from alertgateway.tls_log import HandshakeRefusals, RefusalLog

__all__ = [
    "DEFAULT_TLS12_CIPHERS",
    "LOG_BURST",
    "LOG_INTERVAL",
    "ReloadingServerTLS",
    "TLSFiles",
    "TLSFilesError",
    "cipher_problem",
    "client_name_allowed",
    "weak_ciphers",
]

_log = Logger()

# Ties resumed sessions to this server; OpenSSL refuses to resume a session
# of a client that presented a certificate unless one is set, so without it
# every resuming client (curl, most TLS stacks) fails its second handshake.
_SESSION_ID_CONTEXT = b"alertgateway"
# Client-initiated TLS 1.2 renegotiation costs the server a handshake per
# request of the client's; pyOpenSSL has the flag but not its annotation.
_NO_RENEGOTIATION: int = getattr(SSL, "OP_NO_RENEGOTIATION", 0)
# TLS 1.2 with forward secrecy (ECDHE) and authenticated encryption (GCM,
# ChaCha20-Poly1305) only: no static RSA key exchange, no CBC, no SHA-1
# MACs.  Every TLS 1.2 client of the last decade offers one of these.
DEFAULT_TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
# Refused handshakes logged at most this many times per interval (seconds):
# a client retrying without a certificate, or a scanner, must not fill the
# log.  Every one is counted all the same.
LOG_BURST = 10
LOG_INTERVAL = 10.0
_AEAD = ("GCM", "CHACHA20", "CCM")


class TLSFilesError(Exception):
    """
    The TLS files cannot be used; the message names the file and why.
    """


@attrs.frozen
class TLSFiles:
    """
    What the TLS listener is built from: its files, the client
    certificates it asks for, and its TLS 1.2 ciphers (an OpenSSL cipher
    list).
    """

    cert_file: str
    key_file: str
    chain_file: str | None = None
    client_ca_file: str | None = None
    require_client_cert: bool = False
    allowed_client_names: tuple[str, ...] = ()
    ciphers: str = DEFAULT_TLS12_CIPHERS

    def paths(self) -> list[str]:
        return [p for p in (self.cert_file, self.key_file, self.chain_file, self.client_ca_file) if p]


def _sans(certificate: crypto.X509) -> x509.SubjectAlternativeName | None:
    try:
        extension = certificate.to_cryptography().extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (x509.ExtensionNotFound, ValueError):
        # A malformed extension names nobody.
        return None
    return extension.value


def _dns_patterns(names: x509.SubjectAlternativeName) -> list[DNSPattern]:
    patterns = []
    for name in names.get_values_for_type(x509.DNSName):
        try:
            patterns.append(DNSPattern.from_bytes(name.encode("utf-8")))
        except (CertificateError, ValueError, UnicodeError):
            # One unusable name must not hide the others.
            continue
    return patterns


def _is_uri(name: str) -> bool:
    # DNS names never contain a colon; every URI (spiffe://, urn:) does.
    return ":" in name


def client_name_allowed(certificate: crypto.X509, allowed: Sequence[str]) -> bool:
    """
    Whether the client certificate names one of C{allowed} in its subject
    alternative names: DNS names (wildcards in the certificate honoured)
    or URIs (compared exactly).
    """
    names = _sans(certificate)
    if names is None:
        return False
    uris = set(names.get_values_for_type(x509.UniformResourceIdentifier))
    patterns = _dns_patterns(names)
    for name in allowed:
        if _is_uri(name):
            if name in uris:
                return True
            continue
        if not patterns:
            continue
        try:
            verify_service_identity(patterns, obligatory_ids=[DNS_ID(name)], optional_ids=[])
        except (VerificationError, CertificateError, ValueError):
            # Not this name; the next one may match.
            continue
        return True
    return False


def _stamp(paths: Sequence[str]) -> tuple[tuple[str, str], ...]:
    # Contents, not mtime and size: a rotation that keeps both (cp -p, a
    # re-issued certificate of the same length within the mtime
    # granularity) must still be seen; the files are a few kilobytes.
    return tuple((path, hashlib.sha256(Path(path).read_bytes()).hexdigest()) for path in paths)


def _no_passphrase(max_length: int, verify: bool, extra: object) -> bytes:
    # OpenSSL's default would ask on the terminal, which would hang a
    # service; an encrypted key is refused instead.
    return b""


def _pem_certificates(path: str, key: str) -> list[crypto.X509]:
    data = Path(path).read_bytes()
    found = []
    for pem in _split_pem(data):
        try:
            found.append(crypto.load_certificate(crypto.FILETYPE_PEM, pem))
        except crypto.Error as e:
            raise TLSFilesError(f"security.{key} {path}: not a valid PEM certificate ({_reason(e)})") from None
    if not found:
        raise TLSFilesError(f"security.{key} {path}: no PEM certificate in it")
    return found


def _reason(error: Exception) -> str:
    if isinstance(error, SSL.Error | crypto.Error) and error.args and isinstance(error.args[0], list):
        reasons = [str(item[-1]) for item in error.args[0] if isinstance(item, tuple) and item]
        if reasons:
            return ", ".join(reasons)
    return str(error) or type(error).__name__


def _describe(certificate: crypto.X509) -> str:
    try:
        subject = certificate.get_subject().CN or "-"
    except Exception:
        return "?"
    # The subject is the client's choice: escape control and non-ASCII
    # characters so that it cannot forge log lines, and keep it short.
    return subject[:200].encode("unicode_escape").decode("ascii")


@implementer(IOpenSSLServerConnectionCreator)
class ReloadingServerTLS:
    """
    Server-side TLS whose certificate follows the files on disk.

    @param clock: Paces the log of refused handshakes (without one, each
        is logged).
    @param on_refused: Called with the reason of every refused handshake
        (the metrics).
    @raise TLSFilesError: If the files cannot be used at construction.
    """

    def __init__(
        self,
        files: TLSFiles,
        *,
        clock: IReactorTime | None = None,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.files = files
        requires = files.client_ca_file is not None and bool(files.require_client_cert or files.allowed_client_names)
        self._refusals = HandshakeRefusals(
            RefusalLog(clock, burst=LOG_BURST, interval=LOG_INTERVAL), on_refused, requires_certificate=requires
        )
        self._stamp = self._read_stamp()
        self.context = self._build()

    def _read_stamp(self) -> tuple[tuple[str, str], ...]:
        try:
            return _stamp(self.files.paths())
        except OSError as e:
            raise TLSFilesError(f"cannot read {e.filename}: {e.strerror or e}") from None

    def _verify(self, connection: SSL.Connection, certificate: crypto.X509, errno: int, depth: int, ok: int) -> bool:
        try:
            refusals = self._refusals
            if not ok:
                refusals.certificate_refused(
                    connection, "client_certificate", _describe(certificate), _verify_error(errno)
                )
                return False
            allowed = self.files.allowed_client_names
            if depth == 0 and allowed and not client_name_allowed(certificate, allowed):
                refusals.certificate_refused(
                    connection, "client_name", _describe(certificate), "names none of security.allowed_client_names"
                )
                return False
            return True
        except Exception:
            # pyOpenSSL would re-raise this out of the handshake, in the
            # middle of Twisted's TLS layer; refusing is the safe answer.
            _log.failure("Checking a client certificate failed; refusing it")
            return False

    def _build(self) -> SSL.Context:
        files = self.files
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | _NO_RENEGOTIATION)
        context.set_session_id(_SESSION_ID_CONTEXT)
        context.set_passwd_cb(_no_passphrase)
        context.set_info_callback(self._refusals.info)
        problem = cipher_problem(files.ciphers)
        if problem is not None:
            raise TLSFilesError(f"security.tls_ciphers: {problem}")
        context.set_cipher_list(files.ciphers.encode("ascii"))
        try:
            context.use_certificate_chain_file(files.cert_file)
        except SSL.Error as e:
            raise TLSFilesError(f"security.cert_file {files.cert_file}: not usable ({_reason(e)})") from None
        if files.chain_file:
            for certificate in _pem_certificates(files.chain_file, "chain_file"):
                context.add_extra_chain_cert(certificate)
        mismatch = TLSFilesError(
            f"security.key_file {files.key_file} does not match security.cert_file {files.cert_file}"
        )
        try:
            context.use_privatekey_file(files.key_file)
        except SSL.Error as e:
            # OpenSSL checks the key against the certificate while loading.
            if "key values mismatch" in _reason(e):
                raise mismatch from None
            raise TLSFilesError(f"security.key_file {files.key_file}: not usable ({_reason(e)})") from None
        try:
            context.check_privatekey()
        except SSL.Error:
            raise mismatch from None
        if files.client_ca_file:
            authorities = _pem_certificates(files.client_ca_file, "client_ca_file")
            try:
                context.load_verify_locations(files.client_ca_file)
            except SSL.Error as e:
                raise TLSFilesError(
                    f"security.client_ca_file {files.client_ca_file}: not usable ({_reason(e)})"
                ) from None
            mode = SSL.VERIFY_PEER
            # A list of allowed names means nothing if a client may simply
            # present no certificate at all.
            if files.require_client_cert or files.allowed_client_names:
                mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
            context.set_verify(mode, self._verify)
            for authority in authorities:
                context.add_client_ca(authority)
        return context

    def refresh(self) -> bool:
        """
        Rebuild the context if any file changed.

        @return: Whether a new context is now in use.
        """
        try:
            stamp = _stamp(self.files.paths())
        except OSError as e:
            _log.error("Cannot read the TLS files: {error}", error=f"{e.filename}: {e.strerror or e}")
            return False
        if stamp == self._stamp:
            return False
        try:
            context = self._build()
        except (OSError, TLSFilesError, SSL.Error, crypto.Error) as e:
            # Not remembering the stamp retries on the next check: the
            # rotation may just be half-written.  Nothing may escape: the
            # LoopingCall running this would stop for good.
            _log.error("Keeping the previous TLS certificate; the new files are not usable: {error}", error=str(e))
            return False
        self.context = context
        self._stamp = stamp
        _log.info("Reloaded the TLS certificate from {cert_file}", cert_file=self.files.cert_file)
        return True

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self.context, None)


def cipher_problem(ciphers: str) -> str | None:
    """
    What is wrong with an OpenSSL cipher list for TLS 1.2, if anything.
    """
    try:
        SSL.Context(SSL.TLS_SERVER_METHOD).set_cipher_list(ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError):
        return f"OpenSSL knows none of the ciphers in {ciphers[:200]!r}"
    return None


def weak_ciphers(ciphers: str) -> list[str]:
    """
    The TLS 1.2 ciphers an OpenSSL cipher list enables that lack forward
    secrecy (ECDHE) or authenticated encryption (AEAD).
    """
    if cipher_problem(ciphers) is not None:
        return []
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_cipher_list(ciphers.encode("ascii"))
    names = SSL.Connection(context, None).get_cipher_list()
    # TLS 1.3 suites (TLS_…) are all ephemeral and AEAD.
    return [
        name
        for name in names
        if not name.startswith("TLS_") and not (name.startswith("ECDHE-") and any(a in name for a in _AEAD))
    ]


# The X509_V_ERR codes a client certificate most often fails with.
_VERIFY_ERRORS = {
    2: "its issuer is not in security.client_ca_file",
    7: "its signature is invalid",
    9: "it is not yet valid",
    10: "it has expired",
    18: "it is self-signed",
    19: "its chain ends in an untrusted self-signed certificate",
    20: "its issuer is not in security.client_ca_file",
    21: "its issuer is not in security.client_ca_file",
    24: "it was issued by a certificate that is not a CA",
    26: "it is not meant for client authentication",
}


def _verify_error(errno: int) -> str:
    return _VERIFY_ERRORS.get(errno, f"it failed verification (X509 error {errno})")


def _split_pem(data: bytes) -> list[bytes]:
    begin = b"-----BEGIN CERTIFICATE-----"
    marker = b"-----END CERTIFICATE-----"
    parts = []
    for chunk in data.split(marker):
        if begin in chunk:
            parts.append(chunk[chunk.index(begin) :] + marker + b"\n")
    return parts
