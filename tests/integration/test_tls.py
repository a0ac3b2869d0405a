"""
The running plugin over TLS (BR-WH-021), with a CA and certificates the
test makes: HTTPS webhooks, the TLS 1.2 floor, mutual TLS refusing a
missing, untrusted or unlisted client certificate, a certificate rotated on
disk served without a restart, the plaintext probe listener beside TLS, and
unusable certificate files at start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from OpenSSL import SSL, crypto
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import ResponseNeverReceived
from zope.interface import implementer

from tests.integration._certs import Authority, Issued, client_creator, https_client, write_pem
from tests.integration.harness import (
    GatewayProcess,
    StubProcessor,
    distinct,
    fixture,
    http_client,
    json_headers,
    reactor,
    sleep,
)

TOKEN = "tls-itest-token-61c0"
AM_NAME = "alertmanager.monitoring.svc"
SPIFFE_ID = "spiffe://cluster.example/ns/monitoring/sa/alertmanager"


@implementer(IHandshakeListener)
class _Handshake(Protocol):
    """
    Connect, complete the TLS handshake, note the server's certificate and
    hang up.
    """

    def __init__(self) -> None:
        self.done: Deferred[crypto.X509] = Deferred()
        self.closed: Deferred[None] = Deferred()

    def handshakeCompleted(self) -> None:
        transport: Any = self.transport
        self.done.callback(transport.getPeerCertificate())
        transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done.called:
            self.done.errback(reason)
        self.closed.callback(None)


async def handshake(port: int, creator: IOpenSSLClientConnectionCreator) -> crypto.X509:
    """
    The certificate the gateway shows a new connection on C{port}.

    @raise SSL.Error: If the handshake fails.
    """
    protocol = _Handshake()
    endpoint = wrapClientTLS(creator, TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5))
    await connectProtocol(endpoint, protocol)
    try:
        return await protocol.done
    finally:
        # Only return once the socket is gone: trial checks the reactor.
        await protocol.closed.addTimeout(5, reactor)


@implementer(IOpenSSLClientConnectionCreator)
class _ContextClient:
    """
    A client made from a raw pyOpenSSL context, for what Twisted's client
    options will not do (offer TLS 1.1).
    """

    def __init__(self, context: SSL.Context) -> None:
        self._context = context

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self._context, None)


def _tls11_only() -> SSL.Context | None:
    """
    A client context offering only TLS 1.1, or C{None} if the local
    OpenSSL will not even send such a ClientHello.
    """
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_1_VERSION)
    context.set_max_proto_version(SSL.TLS1_1_VERSION)
    # OpenSSL 3 offers TLS 1.0/1.1 only at security level 0.
    context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    connection = SSL.Connection(context, None)
    connection.set_connect_state()
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        pass
    except SSL.Error:
        return None
    hello = connection.bio_read(65536)
    # After the record (5 bytes) and handshake (4 bytes) headers comes
    # the version the client offers: 3.2 is TLS 1.1.
    return context if hello[9:11] == b"\x03\x02" else None


async def refusal(client: HTTPClient, url: str, headers: Any = None) -> str:
    """
    POST to C{url} expecting the connection to be refused during or right
    after the handshake; what the client saw, as text.
    """
    try:
        response = await client.post(url, data=fixture("alertmanager-firing.json"), headers=headers)
    except Exception as e:
        reasons = getattr(e, "reasons", None) or [Failure(e)]
        return " | ".join(str(reason.value) for reason in reasons)
    body = await response.content()
    raise AssertionError(f"expected the TLS connection to be refused, got HTTP {response.code}: {body!r}")


class _TLSGatewayTestCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        self.ca = Authority("itest root")
        self.server = self.ca.server("gateway-1")
        self.cert_file = write_pem(self.directory / "tls.crt", self.server.cert_pem)
        self.key_file = write_pem(self.directory / "tls.key", self.server.key_pem)
        self.ca_file = write_pem(self.directory / "client-ca.crt", self.ca.cert_pem)

    async def start(
        self, security: dict[str, Any] | None = None, service: dict[str, Any] | None = None
    ) -> tuple[GatewayProcess, StubProcessor]:
        """
        A stub processor and a gateway serving HTTPS on an ephemeral
        loopback port with this test's certificate, both stopped at the
        end of the test.
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = GatewayProcess(
            {
                # Without service.listen: TLS comes from security.*.
                "service": {"listen": [], "host": "127.0.0.1", "port": 0, **(service or {})},
                "security": {
                    "tls_enabled": True,
                    "cert_file": str(self.cert_file),
                    "key_file": str(self.key_file),
                    **(security or {}),
                },
                "alert_processor": {"endpoint": url},
                "webhook": {"auth": {"token": TOKEN}},
            }
        )
        await gateway.start()
        self.addCleanup(gateway.stop)
        return gateway, stub

    def https(self, client: Issued | None = None) -> HTTPClient:
        return https_client(reactor, [self.ca.cert_pem], client)


class HTTPSTests(_TLSGatewayTestCase):
    async def test_webhook_over_https(self) -> None:
        """
        A client trusting the test CA posts a webhook over HTTPS (the
        certificate verified for 127.0.0.1): 202 and the alerts reach the
        processor; the health probe answers over HTTPS too, and the port
        speaks no plaintext HTTP.
        """
        gateway, stub = await self.start()
        client = self.https()
        response = await client.post(
            gateway.https_url + "/webhook/prometheus",
            data=fixture("alertmanager-firing.json"),
            headers=json_headers(TOKEN, "tls-1"),
        )
        body = json.loads(await response.content())
        self.assertEqual((response.code, body["accepted"]), (202, 2), body)
        await stub.wait_for(2)
        self.assertEqual({r.headers["x-request-id"] for r in stub.received}, {"tls-1"})
        ready = await client.get(gateway.https_url + "/health/ready")
        await ready.content()
        self.assertEqual(ready.code, 200)
        with self.assertRaises(ResponseNeverReceived):
            await http_client().get(f"http://127.0.0.1:{gateway.ports['webhook']}/health/ready")

    async def test_certificate_from_another_ca_is_not_trusted(self) -> None:
        """
        The handshake is real: a client trusting only another CA refuses
        the gateway's certificate.
        """
        gateway, _ = await self.start()
        other = Authority("other root")
        with self.assertRaises(SSL.Error):
            await handshake(gateway.ports["webhook"], client_creator([other.cert_pem]))
        served = await handshake(gateway.ports["webhook"], client_creator([self.ca.cert_pem]))
        self.assertEqual(served.get_serial_number(), self.server.serial)

    async def test_tls_1_1_is_refused(self) -> None:
        """
        A client that offers only TLS 1.1 is refused with a protocol version
        alert.
        """
        context = _tls11_only()
        if context is None:
            raise self.skipTest("the local OpenSSL will not let a client offer TLS 1.1")
        gateway, _ = await self.start()
        try:
            await handshake(gateway.ports["webhook"], _ContextClient(context))
        except SSL.Error as e:
            self.assertIn("protocol version", str(e))
        else:
            self.fail("a TLS 1.1 handshake succeeded")


class MutualTLSTests(_TLSGatewayTestCase):
    async def test_client_certificates(self) -> None:
        """
        With require_client_cert and allowed_client_names, a client with no
        certificate, with one from another CA, or with one naming neither
        allowed identity is refused at the TLS layer (the last with a
        security log event naming the reason and client address); clients
        whose certificate names the allowed DNS name or the allowed SPIFFE
        ID post webhooks, whose alerts reach the processor.
        """
        gateway, stub = await self.start(
            {
                "client_ca_file": str(self.ca_file),
                "require_client_cert": True,
                "allowed_client_names": [AM_NAME, SPIFFE_ID],
            }
        )
        url = gateway.https_url + "/webhook/prometheus"
        headers = json_headers(TOKEN)

        missing = await refusal(self.https(), url, headers)
        self.assertIn("certificate required", missing)

        intruder = Authority("other root").issue("intruder", dns=[AM_NAME], client=True)
        untrusted = await refusal(self.https(intruder), url, headers)
        self.assertIn("unknown ca", untrusted)
        await gateway.wait_for_event(
            lambda e: e.get("reason") == "client_certificate" and e.get("subject") == "intruder"
        )

        grafana = self.ca.issue("grafana", dns=["grafana.monitoring.svc"], uris=[SPIFFE_ID + "-x"], client=True)
        await refusal(self.https(grafana), url, headers)
        event = json.loads(
            await gateway.wait_for_event(lambda e: e.get("reason") == "client_name" and e.get("subject") == "grafana")
        )
        self.assertEqual(
            (event["level"], event["logger"], event["client"]), ("warn", "alertgateway.security", "127.0.0.1")
        )

        for number, listed in enumerate(
            [
                self.ca.issue("am-dns", dns=[AM_NAME], client=True),
                self.ca.issue("am-spiffe", uris=[SPIFFE_ID], client=True),
            ]
        ):
            # Alerts of each client's own, so that both are forwarded.
            response = await self.https(listed).post(
                url,
                data=distinct("alertmanager-firing.json", f"mtls-{number}"),
                headers=json_headers(TOKEN, f"mtls-{number}"),
            )
            await response.content()
            self.assertEqual(response.code, 202, listed.certificate.subject)
        await stub.wait_for(4)
        self.assertEqual({r.headers["x-request-id"] for r in stub.received}, {"mtls-0", "mtls-1"})


class RotationTests(_TLSGatewayTestCase):
    async def test_rotated_certificate_served_without_restart(self) -> None:
        """
        With cert_reload_interval 1s, a certificate and key replaced on disk
        are shown to new connections within a few seconds by the same
        process; the reload is logged and counted in
        gateway_tls_reloads_total, and webhooks still work.
        """
        gateway, _ = await self.start({"cert_reload_interval": "1s"})
        port = gateway.ports["webhook"]
        trust = client_creator([self.ca.cert_pem])
        self.assertEqual((await handshake(port, trust)).get_serial_number(), self.server.serial)
        self.assertEqual(await gateway.sample("gateway_tls_reloads_total"), 0.0)

        rotated = self.ca.server("gateway-2")
        # The key first: a certificate replaced before its key would be a
        # mismatch the gateway must ride out anyway.
        write_pem(self.key_file, rotated.key_pem)
        write_pem(self.cert_file, rotated.cert_pem)
        deadline = reactor.seconds() + 10
        served = self.server.serial
        while served != rotated.serial and reactor.seconds() < deadline:
            await sleep(0.25)
            served = (await handshake(port, trust)).get_serial_number()
        self.assertEqual(served, rotated.serial, "the rotated certificate was not served")
        await gateway.wait_for_event(lambda e: str(e.get("message", "")).startswith("Reloaded the TLS certificate"))
        self.assertEqual(await gateway.sample("gateway_tls_reloads_total"), 1.0)
        self.assertIsNone(gateway.exit_code)

        response = await self.https().post(
            gateway.https_url + "/webhook/prometheus",
            data=fixture("alertmanager-firing.json"),
            headers=json_headers(TOKEN),
        )
        await response.content()
        self.assertEqual(response.code, 202)


class ProbeListenerTests(_TLSGatewayTestCase):
    async def test_plaintext_probes_beside_tls(self) -> None:
        """
        service.probe_listen opens a plaintext listener that answers
        /health, /health/live and /health/ready and nothing else: webhook
        paths and /metrics are 404 there, while the TLS listener keeps
        serving webhooks.
        """
        gateway, _ = await self.start(service={"probe_listen": ["tcp:0:interface=127.0.0.1"]})
        client = http_client()
        for path in ("/health", "/health/live", "/health/ready"):
            response = await client.get(gateway.probe_url + path)
            await response.content()
            self.assertEqual(response.code, 200, path)
        for method, path in (("POST", "/webhook/prometheus"), ("POST", "/v1/webhook/grafana"), ("GET", "/metrics")):
            response = await client.request(
                method, gateway.probe_url + path, data=fixture("alertmanager-firing.json"), headers=json_headers(TOKEN)
            )
            body = json.loads(await response.content())
            self.assertEqual((response.code, body["type"]), (404, "urn:alertgateway:problem:not-found"), path)
        self.assertEqual(len([e for e in gateway.lines if e.get("role") == "probe"]), 1)


class UnusableFilesTests(_TLSGatewayTestCase):
    async def test_broken_certificate_exits_non_zero(self) -> None:
        """
        A cert_file that is not a certificate stops the gateway before it
        listens, as the configuration is loaded: exit 1, the problem naming
        the option and the file, no traceback.
        """
        self.cert_file.write_bytes(b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
        gateway = GatewayProcess(
            {
                "service": {"listen": [], "host": "127.0.0.1", "port": 0},
                "security": {"tls_enabled": True, "cert_file": str(self.cert_file), "key_file": str(self.key_file)},
            }
        )
        with self.assertRaises(RuntimeError):
            await gateway.start()
        self.assertEqual(gateway.exit_code, 1, gateway.output())
        self.assertIn(f"security.cert_file {self.cert_file}", gateway.output())
        self.assertNotIn("Traceback", gateway.output())
        self.assertNotIn("webhook", gateway.ports)
