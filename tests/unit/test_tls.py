"""
L{alertgateway.tls}: the server's TLS context, mutual TLS, client name
checks and certificate reloading.

Certificates are made by the test (L{tests.integration._certs}); handshakes
run between Twisted's real TLS protocol on both sides over an in-memory
connection (C{twisted.test.iosim}), so no socket and no global reactor is
involved but every byte is real TLS.
"""

from __future__ import annotations

# Not "from contextlib import suppress": trial reads a module's "suppress"
# as its warning filters.
import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
from OpenSSL import SSL, crypto
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from alertgateway.tls import (
    DEFAULT_TLS12_CIPHERS,
    LOG_BURST,
    LOG_INTERVAL,
    ReloadingServerTLS,
    TLSFiles,
    TLSFilesError,
    cipher_problem,
    client_name_allowed,
    weak_ciphers,
)
from tests.integration._certs import Authority, Issued, client_creator, write_pem

# The address the server side sees the in-memory client connect from.
CLIENT_ADDRESS = IPv4Address("TCP", "198.51.100.7", 50123)
SPIFFE_ID = "spiffe://cluster.example/ns/monitoring/sa/alertmanager"


@implementer(IHandshakeListener)
class _Peer(Protocol):
    """
    One side of a test connection: notes the handshake, the data and how
    the connection ended.
    """

    def __init__(self) -> None:
        self.completed = False
        self.received = b""
        self.lost: Failure | None = None
        self.peer_certificate: crypto.X509 | None = None
        self.cipher: str | None = None

    def handshakeCompleted(self) -> None:
        self.completed = True
        # Read now: the TLS connection is gone once the connection is lost.
        transport: Any = self.transport
        self.peer_certificate = transport.getPeerCertificate()
        self.cipher = transport.getHandle().get_cipher_name()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = reason


class _One(Factory):
    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: Any) -> Protocol:
        return self._protocol


def _ssl_error(failure: Failure | None) -> str:
    if failure is None or not failure.check(SSL.Error):
        return ""
    return str(failure.value)


@attrs.frozen
class Outcome:
    """
    How one in-memory TLS connection went.

    @ivar accepted: The server completed the handshake and got the
        client's first bytes.
    @ivar server_error: The OpenSSL error the server side failed with.
    @ivar client_error: The OpenSSL error the client side failed with (for
        a refusal, the alert the server sent).
    @ivar served: The certificate the client was shown.
    @ivar client_certificate: The certificate the server was shown.
    @ivar cipher: The cipher the client negotiated.
    """

    accepted: bool
    server_error: str
    client_error: str
    served: crypto.X509 | None
    client_certificate: crypto.X509 | None
    cipher: str | None = None

    @property
    def served_serial(self) -> int | None:
        return self.served.get_serial_number() if self.served is not None else None


def connect(server_tls: ReloadingServerTLS, client: IOpenSSLClientConnectionCreator) -> Outcome:
    """
    Run a TLS connection between Twisted's client and server TLS
    protocols in memory: handshake, then one write from the client (under
    TLS 1.3 the server judges the client's certificate only after the
    client considers the handshake done, so only data shows a refusal).
    """
    server, client_side = _Peer(), _Peer()
    # The TLS layer batches small writes with a callLater; on this clock
    # (advanced by the pump), not the global reactor.
    clock = Clock()
    server_factory = TLSMemoryBIOFactory(server_tls, False, _One(server), clock=clock)
    server_protocol = server_factory.buildProtocol(CLIENT_ADDRESS)
    client_protocol = TLSMemoryBIOFactory(client, True, _One(client_side), clock=clock).buildProtocol(None)
    assert server_protocol is not None and client_protocol is not None
    pump = iosim.connect(
        server_protocol,
        iosim.FakeTransport(server_protocol, isServer=True, peerAddress=CLIENT_ADDRESS),
        client_protocol,
        iosim.FakeTransport(client_protocol, isServer=False),
        clock=clock,
    )
    pump.flush()
    if client_side.completed and client_side.lost is None:
        client_protocol.write(b"ping")
        pump.flush()
    outcome = Outcome(
        accepted=server.completed and server.received == b"ping",
        server_error=_ssl_error(server.lost),
        client_error=_ssl_error(client_side.lost),
        served=client_side.peer_certificate,
        client_certificate=server.peer_certificate,
        cipher=client_side.cipher,
    )
    if client_side.lost is None:
        client_protocol.loseConnection()
        pump.flush()
    return outcome


@implementer(IOpenSSLClientConnectionCreator)
class _ContextClient:
    """
    A client with a hand-made pyOpenSSL context (for what Twisted's
    client options refuse to do, such as offering TLS 1.1).
    """

    def __init__(self, context: SSL.Context) -> None:
        self._context = context

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self._context, None)


def _legacy_context(version: int) -> SSL.Context:
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(version)
    context.set_max_proto_version(version)
    # OpenSSL 3 allows TLS 1.0 and 1.1 only at security level 0.
    context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    return context


def _client_hello_version(context: SSL.Context) -> int | None:
    """
    The highest version a client context offers in its ClientHello, or
    C{None} if this OpenSSL will not even start such a handshake.
    """
    connection = SSL.Connection(context, None)
    connection.set_connect_state()
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        pass
    except SSL.Error:
        return None
    hello = connection.bio_read(65536)
    # Record header (5 bytes), handshake header (4), then client_version.
    return int.from_bytes(hello[9:11], "big")


@implementer(ILogObserver)
class _Collector:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.events: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        if event.get("log_namespace") == self.namespace:
            self.events.append(event)


@contextmanager
def captured(namespace: str) -> Iterator[list[LogEvent]]:
    """
    The log events of C{namespace} emitted inside the block.
    """
    collector = _Collector(namespace)
    globalLogPublisher.addObserver(collector)
    try:
        yield collector.events
    finally:
        globalLogPublisher.removeObserver(collector)


class _TLSTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir(parents=True)
        self.ca = Authority("test root")
        self.server = self.ca.server("gateway-1")
        self.cert_file = write_pem(self.directory / "tls.crt", self.server.cert_pem)
        self.key_file = write_pem(self.directory / "tls.key", self.server.key_pem)
        self.ca_file = write_pem(self.directory / "ca.crt", self.ca.cert_pem)

    def files(self, **options: Any) -> TLSFiles:
        return TLSFiles(cert_file=str(self.cert_file), key_file=str(self.key_file), **options)

    def mtls(self, **options: Any) -> TLSFiles:
        return self.files(client_ca_file=str(self.ca_file), **options)

    def client(self, certificate: Issued | None = None) -> IOpenSSLClientConnectionCreator:
        return client_creator([self.ca.cert_pem], "localhost", certificate)


class ContextTests(_TLSTestCase):
    def test_serves_the_configured_certificate(self) -> None:
        """
        A client trusting the CA completes a handshake for C{localhost} and
        is shown the certificate from cert_file; without client_ca_file no
        client certificate is asked for.
        """
        outcome = connect(ReloadingServerTLS(self.files()), self.client(self.ca.issue("c", client=True)))
        self.assertTrue(outcome.accepted, outcome)
        self.assertEqual(outcome.served_serial, self.server.serial)
        self.assertIsNone(outcome.client_certificate)

    def test_untrusting_client_refuses(self) -> None:
        """
        The handshake is real: a client that trusts another CA refuses the
        gateway's certificate.
        """
        other = Authority("other root")
        outcome = connect(ReloadingServerTLS(self.files()), client_creator([other.cert_pem], "localhost"))
        self.assertFalse(outcome.accepted)
        self.assertIn("certificate verify failed", outcome.client_error)

    def test_chain_file_completes_the_chain(self) -> None:
        """
        With a certificate issued by an intermediate, chain_file sends the
        intermediate so a client trusting only the root can verify.
        """
        intermediate = Authority("test intermediate", parent=self.ca)
        leaf = intermediate.server("gateway-chained")
        write_pem(self.cert_file, leaf.cert_pem)
        write_pem(self.key_file, leaf.key_pem)
        chain = write_pem(self.directory / "chain.crt", intermediate.cert_pem)
        outcome = connect(ReloadingServerTLS(self.files(chain_file=str(chain))), self.client())
        self.assertTrue(outcome.accepted, outcome)
        self.assertEqual(outcome.served_serial, leaf.serial)

    def test_without_chain_file_the_intermediate_is_missing(self) -> None:
        """
        The same leaf without chain_file fails verification at the client,
        so the chain test above proves chain_file is what sends it.
        """
        intermediate = Authority("test intermediate", parent=self.ca)
        leaf = intermediate.server("gateway-chained")
        write_pem(self.cert_file, leaf.cert_pem)
        write_pem(self.key_file, leaf.key_pem)
        outcome = connect(ReloadingServerTLS(self.files()), self.client())
        self.assertFalse(outcome.accepted)
        self.assertIn("certificate verify failed", outcome.client_error)

    def test_tls_1_2_is_the_minimum(self) -> None:
        """
        A client offering only TLS 1.1 is refused with a protocol version
        alert, even where OpenSSL's security level would allow TLS 1.1 (a
        distribution may configure it so); the same client limited to
        TLS 1.2 is accepted.
        """
        legacy = _legacy_context(SSL.TLS1_1_VERSION)
        if _client_hello_version(legacy) != 0x0302:
            raise self.skipTest("this OpenSSL will not let a client offer TLS 1.1")
        tls = ReloadingServerTLS(self.files())
        # OpenSSL 3's default level 1 refuses TLS 1.1 by itself; level 0
        # leaves the configured minimum as the only thing refusing it.
        tls.context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        refused = connect(tls, _ContextClient(legacy))
        self.assertFalse(refused.accepted)
        self.assertIn("unsupported protocol", refused.server_error)
        self.assertIn("protocol version", refused.client_error)
        accepted = connect(tls, _ContextClient(_legacy_context(SSL.TLS1_2_VERSION)))
        self.assertTrue(accepted.accepted, accepted)

    def test_session_resumption_with_client_certificate(self) -> None:
        """
        A client that presented a certificate and offers its session on the
        next connection completes that handshake (OpenSSL refuses it unless
        the server sets a session id context), under TLS 1.2 and 1.3.
        """
        tls = ReloadingServerTLS(self.mtls(require_client_cert=True))
        certificate = self.ca.issue("resumer", dns=["resumer.example"], client=True)
        for version in (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION):
            context = SSL.Context(SSL.TLS_CLIENT_METHOD)
            context.set_max_proto_version(version)
            context.use_certificate(certificate.x509())
            context.use_privatekey(crypto.load_privatekey(crypto.FILETYPE_PEM, certificate.key_pem))
            context.set_session_cache_mode(SSL.SESS_CACHE_CLIENT)
            first = SSL.Connection(context, None)
            self.assertIsNone(_memory_handshake(tls, first), version)
            session = first.get_session()
            assert session is not None
            second = SSL.Connection(context, None)
            second.set_session(session)
            self.assertIsNone(_memory_handshake(tls, second), version)


def _memory_handshake(tls: ReloadingServerTLS, client: SSL.Connection) -> str | None:
    """
    Handshake a bare pyOpenSSL client with a server connection of C{tls}
    through memory BIOs, then let the client read what followed (TLS 1.3
    session tickets).

    @return: The server's error, if it failed.
    """
    server = tls.serverConnectionForTLS(None)
    server.set_accept_state()
    client.set_connect_state()
    for _ in range(20):
        try:
            server.do_handshake()
        except SSL.WantReadError:
            pass
        except SSL.Error as e:
            return str(e) or "handshake failed"
        with contextlib.suppress(SSL.WantReadError):
            client.do_handshake()
        moved = False
        for source, target in ((client, server), (server, client)):
            try:
                target.bio_write(source.bio_read(65536))
                moved = True
            except SSL.WantReadError:
                pass
        if not moved:
            break
    with contextlib.suppress(SSL.WantReadError):
        client.recv(1)
    return None


class MutualTLSTests(_TLSTestCase):
    def test_optional_client_certificate(self) -> None:
        """
        With client_ca_file alone a client may connect without a
        certificate, or with one the CA signed, which the server then sees.
        """
        tls = ReloadingServerTLS(self.mtls())
        anonymous = connect(tls, self.client())
        self.assertTrue(anonymous.accepted, anonymous)
        self.assertIsNone(anonymous.client_certificate)
        certificate = self.ca.issue("alertmanager", dns=["alertmanager.monitoring.svc"], client=True)
        known = connect(tls, self.client(certificate))
        self.assertTrue(known.accepted, known)
        assert known.client_certificate is not None
        self.assertEqual(known.client_certificate.get_serial_number(), certificate.serial)

    def test_require_client_cert_refuses_a_missing_certificate(self) -> None:
        """
        With require_client_cert a client without a certificate is refused
        (TLS 1.3 alert certificate_required) and one with a certificate the
        CA signed is accepted.
        """
        tls = ReloadingServerTLS(self.mtls(require_client_cert=True))
        missing = connect(tls, self.client())
        self.assertFalse(missing.accepted)
        self.assertIn("peer did not return a certificate", missing.server_error)
        self.assertIn("certificate required", missing.client_error)
        accepted = connect(tls, self.client(self.ca.issue("alertmanager", client=True)))
        self.assertTrue(accepted.accepted, accepted)

    def test_untrusted_client_certificate_is_refused_and_logged(self) -> None:
        """
        A certificate from another CA is refused (alert unknown_ca) even
        when client certificates are optional, and the refusal is one
        security warning with the reason and the client's address.
        """
        other = Authority("other root")
        tls = ReloadingServerTLS(self.mtls())
        with captured("alertgateway.security") as events:
            outcome = connect(tls, self.client(other.issue("intruder", dns=["intruder.example"], client=True)))
        self.assertFalse(outcome.accepted)
        self.assertIn("unknown ca", outcome.client_error)
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(event["reason"], "client_certificate")
        self.assertEqual(event["client"], CLIENT_ADDRESS.host)
        self.assertEqual(event["subject"], "intruder")

    def test_server_certificate_is_no_client_certificate(self) -> None:
        """
        A certificate of the right CA but issued for servers only (extended
        key usage serverAuth) is refused as a client certificate, and the
        security warning says why.
        """
        tls = ReloadingServerTLS(self.mtls(require_client_cert=True))
        with captured("alertgateway.security") as events:
            outcome = connect(tls, self.client(self.ca.server("borrowed")))
        self.assertFalse(outcome.accepted)
        [event] = events
        self.assertEqual(event["reason"], "client_certificate")
        self.assertEqual(event["error"], "it is not meant for client authentication")

    def test_allowed_client_names(self) -> None:
        """
        With allowed_client_names a certificate naming a listed DNS name or
        URI is accepted; one naming neither is refused, with one security
        warning (reason client_name, the client address).
        """
        tls = ReloadingServerTLS(
            self.mtls(require_client_cert=True, allowed_client_names=("alertmanager.monitoring.svc", SPIFFE_ID))
        )
        by_dns = self.ca.issue("am", dns=["alertmanager.monitoring.svc"], client=True)
        by_uri = self.ca.issue("am-spiffe", uris=[SPIFFE_ID], client=True)
        unlisted = self.ca.issue("grafana", dns=["grafana.monitoring.svc"], uris=[SPIFFE_ID + "-not"], client=True)
        self.assertTrue(connect(tls, self.client(by_dns)).accepted)
        self.assertTrue(connect(tls, self.client(by_uri)).accepted)
        with captured("alertgateway.security") as events:
            refused = connect(tls, self.client(unlisted))
        self.assertFalse(refused.accepted)
        self.assertIn("certificate verify failed", refused.server_error)
        [event] = events
        self.assertEqual(
            (event["reason"], event["client"], event["subject"]), ("client_name", "198.51.100.7", "grafana")
        )

    def test_hostile_subject_is_escaped_in_the_log(self) -> None:
        """
        A refused certificate's subject, chosen by the client, reaches the
        security warning with control and non-ASCII characters escaped, so
        it cannot forge log lines.
        """
        other = Authority("other root")
        hostile = other.issue("evil\nlevel=info msg=accepted\x1b[2J\u00e9", client=True)
        with captured("alertgateway.security") as events:
            connect(ReloadingServerTLS(self.mtls()), self.client(hostile))
        [event] = events
        self.assertEqual(event["subject"], "evil\\nlevel=info msg=accepted\\x1b[2J\\xe9")

    def test_allowed_client_names_require_a_certificate(self) -> None:
        """
        allowed_client_names without require_client_cert still refuses a
        client that presents no certificate: otherwise leaving the
        certificate out would get round the list.
        """
        tls = ReloadingServerTLS(self.mtls(allowed_client_names=("alertmanager.monitoring.svc",)))
        outcome = connect(tls, self.client())
        self.assertFalse(outcome.accepted)
        self.assertIn("peer did not return a certificate", outcome.server_error)


def _tls12_client(ciphers: bytes, certificate: Issued | None = None) -> _ContextClient:
    """
    A TLS 1.2 client offering only C{ciphers}, with C{certificate}.
    """
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_max_proto_version(SSL.TLS1_2_VERSION)
    context.set_cipher_list(ciphers)
    if certificate is not None:
        context.use_certificate(certificate.x509())
        context.use_privatekey(crypto.load_privatekey(crypto.FILETYPE_PEM, certificate.key_pem))
    return _ContextClient(context)


def _client_without_certificate(version: int) -> _ContextClient:
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_max_proto_version(version)
    return _ContextClient(context)


class RefusalLogTests(_TLSTestCase):
    """
    Every refused handshake is one security warning with the client's
    address, and is counted; the warnings are paced.
    """

    def refusing(self, clock: Clock | None = None, **options: Any) -> tuple[ReloadingServerTLS, list[str]]:
        counted: list[str] = []
        return ReloadingServerTLS(self.mtls(**options), clock=clock, on_refused=counted.append), counted

    def test_missing_certificate_is_logged(self) -> None:
        """
        A client without a certificate, refused by require_client_cert
        under TLS 1.2 (handshake_failure) or 1.3 (certificate_required), is
        one warning with reason client_certificate and the client address,
        and one count.
        """
        tls, counted = self.refusing(require_client_cert=True)
        for version in (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION):
            with self.subTest(version=version), captured("alertgateway.security") as events:
                outcome = connect(tls, _client_without_certificate(version))
                self.assertFalse(outcome.accepted)
                [event] = events
                self.assertEqual(
                    (event["log_level"], event["reason"], event["client"], event["error"], event["suppressed"]),
                    (
                        LogLevel.warn,
                        "client_certificate",
                        CLIENT_ADDRESS.host,
                        "it presented no certificate, and one is required",
                        0,
                    ),
                )
        self.assertEqual(counted, ["client_certificate", "client_certificate"])

    def test_each_refusal_once(self) -> None:
        """
        A certificate of another CA, and one naming nobody allowed, are
        each one warning and one count (not another for the alert that
        follows).
        """
        tls, counted = self.refusing(require_client_cert=True, allowed_client_names=("am.example",))
        intruder = Authority("other root").issue("intruder", client=True)
        unlisted = self.ca.issue("grafana", dns=["grafana.example"], client=True)
        with captured("alertgateway.security") as events:
            self.assertFalse(connect(tls, self.client(intruder)).accepted)
            self.assertFalse(connect(tls, self.client(unlisted)).accepted)
        self.assertEqual(
            [(e["reason"], e["subject"]) for e in events],
            [("client_certificate", "intruder"), ("client_name", "grafana")],
        )
        self.assertEqual(counted, ["client_certificate", "client_name"])

    def test_other_handshake_failures(self) -> None:
        """
        A handshake refused for another reason (here, only CBC ciphers
        offered) is logged with reason handshake and the alert sent.
        """
        tls, counted = self.refusing()
        with captured("alertgateway.security") as events:
            outcome = connect(tls, _tls12_client(b"ECDHE-ECDSA-AES128-SHA"))
        self.assertFalse(outcome.accepted)
        [event] = events
        self.assertEqual(
            (event["reason"], event["error"], event["client"]), ("handshake", "handshake_failure", "198.51.100.7")
        )
        self.assertEqual(counted, ["handshake"])

    def test_accepted_handshakes_are_not_logged(self) -> None:
        """
        Nothing is logged or counted for a handshake that succeeds, with or
        without a client certificate, or for a client that closes cleanly.
        """
        tls, counted = self.refusing()
        with captured("alertgateway.security") as events:
            self.assertTrue(connect(tls, self.client()).accepted)
            self.assertTrue(connect(tls, self.client(self.ca.issue("am", client=True))).accepted)
        self.assertEqual((events, counted), ([], []))

    def test_paced(self) -> None:
        """
        At most LOG_BURST refusals are logged per LOG_INTERVAL; the first
        logged after says how many were not, and every one is counted.
        """
        clock = Clock()
        tls, counted = self.refusing(clock, require_client_cert=True)
        extra = 5
        with captured("alertgateway.security") as events:
            for _ in range(LOG_BURST + extra):
                connect(tls, _client_without_certificate(SSL.TLS1_3_VERSION))
            self.assertEqual(len(events), LOG_BURST)
            clock.advance(LOG_INTERVAL)
            connect(tls, _client_without_certificate(SSL.TLS1_3_VERSION))
        self.assertEqual(len(events), LOG_BURST + 1)
        self.assertEqual(events[-1]["suppressed"], extra)
        self.assertEqual(len(counted), LOG_BURST + extra + 1)


class CipherTests(_TLSTestCase):
    """
    TLS 1.2 with forward secrecy and authenticated encryption only, unless
    security.tls_ciphers says otherwise.
    """

    def test_default_ciphers(self) -> None:
        """
        TLS 1.2 clients offering only CBC, SHA-1 MACs or no forward secrecy
        are refused; ECDHE with AES-GCM or ChaCha20-Poly1305 is accepted.
        """
        tls = ReloadingServerTLS(self.files())
        for refused in (b"ECDHE-ECDSA-AES128-SHA", b"ECDHE-ECDSA-AES256-SHA384", b"AES128-GCM-SHA256", b"AES128-SHA"):
            with self.subTest(ciphers=refused):
                self.assertFalse(connect(tls, _tls12_client(refused)).accepted)
        for accepted in (b"ECDHE-ECDSA-AES128-GCM-SHA256", b"ECDHE-ECDSA-CHACHA20-POLY1305"):
            with self.subTest(ciphers=accepted):
                outcome = connect(tls, _tls12_client(accepted))
                self.assertTrue(outcome.accepted, outcome)
                self.assertEqual(outcome.cipher, accepted.decode())
        self.assertTrue(connect(tls, self.client()).accepted)

    def test_configured_ciphers(self) -> None:
        """
        A cipher list of the operator's choice is served as given.
        """
        tls = ReloadingServerTLS(self.files(ciphers=DEFAULT_TLS12_CIPHERS + ":ECDHE-ECDSA-AES128-SHA"))
        outcome = connect(tls, _tls12_client(b"ECDHE-ECDSA-AES128-SHA"))
        self.assertTrue(outcome.accepted, outcome)

    def test_unknown_ciphers(self) -> None:
        """
        A list naming no cipher OpenSSL knows is refused, at load and by
        the configuration check; weak_ciphers names what lacks forward
        secrecy or AEAD.
        """
        self.assertIsNone(cipher_problem(DEFAULT_TLS12_CIPHERS))
        self.assertEqual(cipher_problem("NOPE-CIPHER"), "OpenSSL knows none of the ciphers in 'NOPE-CIPHER'")
        with self.assertRaises(TLSFilesError) as raised:
            ReloadingServerTLS(self.files(ciphers="NOPE-CIPHER"))
        self.assertIn("security.tls_ciphers", str(raised.exception))
        self.assertEqual(weak_ciphers(DEFAULT_TLS12_CIPHERS), [])
        self.assertEqual(
            weak_ciphers("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA:AES256-GCM-SHA384"),
            ["ECDHE-RSA-AES128-SHA", "AES256-GCM-SHA384"],
        )


class BrokenFilesTests(_TLSTestCase):
    def test_unreadable_file(self) -> None:
        """
        A missing file is a TLSFilesError naming it.
        """
        self.key_file.unlink()
        error = self.assertRaises(TLSFilesError, ReloadingServerTLS, self.files())
        self.assertIn(str(self.key_file), str(error))

    def test_not_a_certificate(self) -> None:
        """
        A cert_file that is not PEM is a TLSFilesError naming the option
        and the file.
        """
        self.cert_file.write_bytes(b"not a certificate\n")
        error = self.assertRaises(TLSFilesError, ReloadingServerTLS, self.files())
        self.assertIn(f"security.cert_file {self.cert_file}", str(error))

    def test_key_of_another_certificate(self) -> None:
        """
        A key that does not belong to the certificate is refused, naming
        both files.
        """
        write_pem(self.key_file, self.ca.server("other").key_pem)
        error = self.assertRaises(TLSFilesError, ReloadingServerTLS, self.files())
        self.assertIn("does not match", str(error))
        self.assertIn(str(self.key_file), str(error))

    def test_encrypted_key_is_refused_without_prompting(self) -> None:
        """
        A passphrase-protected key is refused at once (OpenSSL's default
        would prompt on the terminal and hang a service).
        """
        from cryptography.hazmat.primitives import serialization

        encrypted = self.server.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
        write_pem(self.key_file, encrypted)
        error = self.assertRaises(TLSFilesError, ReloadingServerTLS, self.files())
        self.assertIn(f"security.key_file {self.key_file}", str(error))

    def test_chain_and_client_ca_must_hold_certificates(self) -> None:
        """
        A chain_file or client_ca_file without a certificate in it is
        refused, naming the option.
        """
        empty = write_pem(self.directory / "empty.pem", b"nothing here\n")
        for key in ("chain_file", "client_ca_file"):
            error = self.assertRaises(TLSFilesError, ReloadingServerTLS, self.files(**{key: str(empty)}))
            self.assertIn(f"security.{key} {empty}", str(error))


class RefreshTests(_TLSTestCase):
    def rotate(self, certificate: Issued) -> None:
        write_pem(self.cert_file, certificate.cert_pem)
        write_pem(self.key_file, certificate.key_pem)

    def test_unchanged_files_keep_the_context(self) -> None:
        """
        refresh() with nothing changed on disk returns False and keeps the
        very same context.
        """
        tls = ReloadingServerTLS(self.files())
        context = tls.context
        self.assertFalse(tls.refresh())
        self.assertIs(tls.context, context)

    def test_rotated_certificate_is_served_to_new_connections(self) -> None:
        """
        After a rotation on disk refresh() returns True, new connections
        get the new context and are shown the new certificate, while a
        connection made before keeps the old one; a second refresh() has
        nothing to do.
        """
        tls = ReloadingServerTLS(self.files())
        old = tls.serverConnectionForTLS(None)
        rotated = self.ca.server("gateway-2")
        self.rotate(rotated)
        self.assertTrue(tls.refresh())
        self.assertIsNot(old.get_context(), tls.context)
        self.assertIs(tls.serverConnectionForTLS(None).get_context(), tls.context)
        self.assertEqual(connect(tls, self.client()).served_serial, rotated.serial)
        self.assertFalse(tls.refresh())

    def test_rotation_keeping_the_modification_time(self) -> None:
        """
        A rotation that leaves the files' modification times as they were
        (a copy preserving them) is still picked up.
        """
        tls = ReloadingServerTLS(self.files())
        times = {path: os.stat(path) for path in (self.cert_file, self.key_file)}
        rotated = self.ca.server("gateway-2")
        self.rotate(rotated)
        for path, stat in times.items():
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        self.assertTrue(tls.refresh())
        self.assertEqual(connect(tls, self.client()).served_serial, rotated.serial)

    def test_half_written_rotation_keeps_the_old_certificate(self) -> None:
        """
        A new certificate whose key has not arrived yet is not used: the
        old context stays, an error is logged, and the next refresh() once
        the key is there picks the rotation up.
        """
        tls = ReloadingServerTLS(self.files())
        context = tls.context
        rotated = self.ca.server("gateway-2")
        write_pem(self.cert_file, rotated.cert_pem)
        with captured("alertgateway.tls") as events:
            self.assertFalse(tls.refresh())
        self.assertIs(tls.context, context)
        self.assertEqual(connect(tls, self.client()).served_serial, self.server.serial)
        self.assertEqual([e["log_level"] for e in events], [LogLevel.error])
        self.assertIn("does not match", events[0]["error"])
        write_pem(self.key_file, rotated.key_pem)
        self.assertTrue(tls.refresh())
        self.assertEqual(connect(tls, self.client()).served_serial, rotated.serial)

    def test_vanished_file_keeps_the_old_certificate(self) -> None:
        """
        A file missing at refresh time (mid-rotation) keeps the current
        context rather than failing new connections.
        """
        tls = ReloadingServerTLS(self.files())
        context = tls.context
        self.key_file.unlink()
        with captured("alertgateway.tls") as events:
            self.assertFalse(tls.refresh())
        self.assertIs(tls.context, context)
        self.assertEqual(len(events), 1)
        self.assertTrue(connect(tls, self.client()).accepted)

    def test_rotated_client_ca(self) -> None:
        """
        A new client_ca_file is picked up too: clients of the new CA are
        accepted after refresh(), those of the old one no longer.
        """
        tls = ReloadingServerTLS(self.mtls(require_client_cert=True))
        new_ca = Authority("new root")
        old_client = self.ca.issue("old", client=True)
        new_client = new_ca.issue("new", client=True)
        self.assertFalse(connect(tls, self.client(new_client)).accepted)
        write_pem(self.ca_file, new_ca.cert_pem)
        self.assertTrue(tls.refresh())
        self.assertTrue(connect(tls, self.client(new_client)).accepted)
        self.assertFalse(connect(tls, self.client(old_client)).accepted)


class ClientNameTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = Authority("names root")

    def allowed(self, allowed: tuple[str, ...], *, dns: tuple[str, ...] = (), uris: tuple[str, ...] = ()) -> bool:
        return client_name_allowed(self.ca.issue("client", dns=dns, uris=uris, client=True).x509(), allowed)

    def test_exact_dns_name(self) -> None:
        """
        A DNS name in the certificate matches the same allowed name, case
        aside; another name does not.
        """
        self.assertTrue(self.allowed(("alertmanager.monitoring.svc",), dns=("alertmanager.monitoring.svc",)))
        self.assertTrue(self.allowed(("Alertmanager.Monitoring.svc",), dns=("alertmanager.monitoring.svc",)))
        self.assertFalse(self.allowed(("grafana.monitoring.svc",), dns=("alertmanager.monitoring.svc",)))

    def test_any_of_several(self) -> None:
        """
        Any one allowed name suffices, in any position of either list.
        """
        self.assertTrue(
            self.allowed(("x.example", "b.example"), dns=("a.example", "b.example"), uris=("spiffe://t/x",))
        )

    def test_wildcard_in_the_certificate(self) -> None:
        """
        A C{*.monitoring.svc} certificate matches one label under it, not
        the bare domain and not two labels (RFC 6125 via service-identity).
        """
        dns = ("*.monitoring.svc",)
        self.assertTrue(self.allowed(("alertmanager.monitoring.svc",), dns=dns))
        self.assertFalse(self.allowed(("monitoring.svc",), dns=dns))
        self.assertFalse(self.allowed(("a.b.monitoring.svc",), dns=dns))

    def test_uri_exact(self) -> None:
        """
        A SPIFFE ID matches only exactly: not a prefix, not another path,
        and never through a DNS SAN equal to its host.
        """
        uris = (SPIFFE_ID,)
        self.assertTrue(self.allowed((SPIFFE_ID,), uris=uris))
        self.assertFalse(self.allowed(("spiffe://cluster.example/ns/monitoring",), uris=uris))
        self.assertFalse(self.allowed((SPIFFE_ID + "/x",), uris=uris))
        self.assertFalse(self.allowed(("spiffe://cluster.example",), dns=("cluster.example",)))
        self.assertFalse(self.allowed(("cluster.example",), uris=("spiffe://cluster.example",)))

    def test_non_hierarchical_uri(self) -> None:
        """
        URIs without C{//} (C{urn:}) are URIs too and match exactly.
        """
        urn = "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"
        self.assertTrue(self.allowed((urn,), uris=(urn,)))
        self.assertFalse(self.allowed(("urn:uuid:other",), uris=(urn,)))

    def test_no_subject_alternative_names(self) -> None:
        """
        A certificate without SANs names nobody (its CN is not consulted),
        and an empty allow list allows nobody.
        """
        self.assertFalse(self.allowed(("client",)))
        self.assertFalse(self.allowed((), dns=("a.example",)))

    def test_malformed_dns_name_beside_a_good_one(self) -> None:
        """
        A DNS SAN service-identity cannot use does not hide the certificate's
        other names.
        """
        self.assertTrue(self.allowed(("good.example",), dns=("*.*.bad.example", "good.example")))
