"""
Tests for C{alertgateway send-test} (L{alertgateway.cli.send},
L{alertgateway.cli.target}, L{alertgateway.cli.credentials},
L{alertgateway.cli.https}): the sample and the request carrying it, each
authentication scheme accepted by the gateway's own webhook resources
(through C{StubTreq}), credentials read from a configuration as the
gateway reads them, and the client side of HTTPS.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import URI, Agent, ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from alertgateway import cli
from alertgateway.cli import EXIT_FAILED, EXIT_INVALID, EXIT_OK, build_parser, main, sample_payload, send_sample
from alertgateway.cli._common import CommandError
from alertgateway.cli.credentials import Bearer
from alertgateway.cli.https import ClientTLS
from alertgateway.cli.target import SendTest, listener_url, prepare
from alertgateway.config import parse_config
from alertgateway.core.model import Alert
from alertgateway.sources import PARSERS
from alertgateway.testing import GatewayReactor
from alertgateway.web.site import GatewaySite
from tests.integration._certs import Authority, write_pem
from tests.unit._http import NOW, make_service

URL = "http://gateway.test/webhook/prometheus"
STAMP = "X-Grafana-Alerting-Timestamp"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"send-test standard secret, 32 B").decode()


class RecordingResource(Resource):
    """
    A webhook stand-in that records each request and answers with a fixed
    status and body.
    """

    isLeaf = True

    def __init__(self, code: int = 202, body: bytes = b'{"status":"accepted","requestId":"req-42"}') -> None:
        super().__init__()
        self.code = code
        self.body = body
        self.requests: list[tuple[bytes, str, dict[bytes, list[bytes]], bytes]] = []

    def render_POST(self, request: Request) -> bytes:
        headers = {name.lower(): list(values) for name, values in request.requestHeaders.getAllRawHeaders()}
        assert request.content is not None
        self.requests.append((request.method, request.uri.decode(), headers, request.content.read()))
        request.setResponseCode(self.code)
        request.setHeader(b"Content-Type", b"application/problem+json" if self.code >= 400 else b"application/json")
        request.setHeader(b"X-Request-ID", b"req-42")
        return self.body


def stub_treq(site: GatewaySite) -> StubTreq:
    """
    A StubTreq whose requests go through C{site} (the gateway's requests,
    with their bounded bodies and ids), where StubTreq would make a plain
    Site around the resource.
    """
    stub = StubTreq(site.resource)
    stub._agent._serverFactory = site
    return stub


def clock_at_now() -> Clock:
    clock = Clock()
    clock.advance(NOW)
    return clock


def sample_test(credentials: Any = None, source: str = "alertmanager", url: str = URL) -> SendTest:
    return SendTest(url, source, credentials, 5.0)


def options(*argv: str) -> Any:
    return build_parser().parse_args(["send-test", *argv])


class _EndpointFactory:
    def __init__(self, reactor: MemoryReactorClock) -> None:
        self._reactor = reactor

    def endpointForURI(self, uri: URI) -> TCP4ClientEndpoint:
        return TCP4ClientEndpoint(self._reactor, uri.host.decode(), uri.port)


def memory_client(reactor: MemoryReactorClock) -> HTTPClient:
    """
    A treq client whose connections wait in C{reactor.tcpClients}, for the
    test to complete or fail.
    """
    return HTTPClient(Agent.usingEndpointFactory(reactor, _EndpointFactory(reactor)))


class SendSampleTests(SynchronousTestCase):
    """
    The request send-test makes, and what it prints of the answer.
    """

    def _send(self, test: SendTest, code: int = 202) -> tuple[int, RecordingResource, str]:
        resource = RecordingResource(code=code)
        out = io.StringIO()
        result = self.successResultOf(ensureDeferred(send_sample(StubTreq(resource), test, out, clock=clock_at_now())))
        return result, resource, out.getvalue()

    def test_request(self) -> None:
        """
        One JSON POST goes to the URL, with the credentials' headers and
        the command's user agent.
        """
        test = prepare(options(URL, "--token", "t0k"), io.StringIO())
        assert test is not None
        _result, resource, _out = self._send(test)
        [(method, uri, headers, _body)] = resource.requests
        self.assertEqual((method, uri), (b"POST", "/webhook/prometheus"))
        self.assertEqual(headers[b"authorization"], [b"Bearer t0k"])
        self.assertEqual(headers[b"content-type"], [b"application/json"])
        self.assertEqual(headers[b"user-agent"], [b"alertgateway-send-test"])

    def test_no_credentials(self) -> None:
        """
        Without credentials no Authorization header is sent.
        """
        _result, resource, _out = self._send(sample_test())
        self.assertNotIn(b"authorization", resource.requests[0][2])

    def test_body_is_valid_for_source(self) -> None:
        """
        The body sent is one valid alert for the chosen source's parser,
        dated by the injected clock.
        """
        for source in ("alertmanager", "grafana"):
            with self.subTest(source=source):
                _result, resource, _out = self._send(sample_test(source=source))
                payload = json.loads(resource.requests[0][3])
                (alert,) = PARSERS[source](payload, "now").outcomes
                assert isinstance(alert, Alert), alert
                self.assertEqual(alert.starts_at, "2026-11-26T03:50:00Z")
                self.assertEqual(alert.labels["alertname"], "AlertGatewayTest")

    def test_output(self) -> None:
        """
        The status, the content type, the request id and the body of the
        answer are printed; a 2xx answer is success.
        """
        result, _resource, out = self._send(sample_test())
        self.assertEqual(result, EXIT_OK)
        self.assertEqual(
            out.splitlines(),
            [
                "HTTP 202",
                "Content-Type: application/json",
                "X-Request-ID: req-42",
                '{"status":"accepted","requestId":"req-42"}',
            ],
        )

    def test_refused(self) -> None:
        """
        An answer outside 2xx is printed and is a failure.
        """
        result, _resource, out = self._send(sample_test(), code=401)
        self.assertEqual(result, EXIT_FAILED)
        self.assertEqual(out.splitlines()[:2], ["HTTP 401", "Content-Type: application/problem+json"])

    def _unanswered(self) -> tuple[MemoryReactorClock, Deferred[int], io.StringIO]:
        reactor = MemoryReactorClock()
        reactor.advance(NOW)
        out = io.StringIO()
        sent = ensureDeferred(send_sample(memory_client(reactor), sample_test(), out, clock=reactor))
        self.assertNoResult(sent)
        return reactor, sent, out

    def test_connection_refused(self) -> None:
        """
        A connection that fails is reported as an error, in one line, and
        is a failure.
        """
        reactor, sent, out = self._unanswered()
        _host, _port, factory, _timeout, _bind = reactor.tcpClients[0]
        factory.clientConnectionFailed(reactor.connectors[0], Failure(ConnectionRefusedError()))
        self.assertEqual(self.successResultOf(sent), EXIT_FAILED)
        self.assertTrue(out.getvalue().startswith("error: ConnectionRefusedError: "), out.getvalue())
        self.assertEqual(len(out.getvalue().splitlines()), 1)

    def test_timeout(self) -> None:
        """
        Without an answer, the request is abandoned after the timeout on the
        injected clock, reported as an error and a failure.
        """
        reactor, sent, out = self._unanswered()
        reactor.advance(4.9)
        self.assertNoResult(sent)
        reactor.advance(0.1)
        self.assertEqual(self.successResultOf(sent), EXIT_FAILED)
        self.assertTrue(out.getvalue().startswith("error: "), out.getvalue())

    def test_tls_failure_described(self) -> None:
        """
        A TLS handshake the client refused is reported by OpenSSL's reason,
        not as the list of failures twisted.web wraps it in.
        """
        from OpenSSL import SSL

        from alertgateway.cli.send import _describe

        error = ResponseNeverReceived([Failure(SSL.Error([("SSL routines", "", "certificate verify failed")]))])
        self.assertEqual(_describe(error), "TLS: certificate verify failed")


class SamplePayloadTests(SynchronousTestCase):
    def test_formats(self) -> None:
        """
        The Alertmanager sample is a version 4 webhook, the Grafana one a
        unified alerting (version "1") webhook.
        """
        self.assertEqual(sample_payload("alertmanager")["version"], "4")
        grafana = sample_payload("grafana")
        self.assertEqual(grafana["version"], "1")
        self.assertEqual(grafana["orgId"], 1)

    def test_time(self) -> None:
        """
        The sample alert starts at the given time, in whole UTC seconds.
        """
        payload = sample_payload("alertmanager", datetime(2026, 11, 26, 3, 49, 49, 999, tzinfo=UTC))
        self.assertEqual(payload["alerts"][0]["startsAt"], "2026-11-26T03:49:49Z")


# One endpoint per scheme: what the documentation shows, with secrets of
# the tests' own.
GATEWAY = """
webhook:
  auth: {token: gateway-token}
  endpoints:
    - {path: /webhook/prometheus}
    - {path: /webhook/basic, source: alertmanager, auth: {type: basic, username: am, password: 'p:w'}}
    - path: /webhook/key
      source: alertmanager
      auth: {type: api_key, header: X-Gateway-Key, tokens: [key-1, key-0]}
    - path: /webhook/grafana
      auth:
        type: hmac
        secret_file: {secret_file}
        timestamp_header: X-Grafana-Alerting-Timestamp
    - {path: /webhook/grafana-plain, source: grafana, auth: {type: hmac, secret: plain-secret}}
    - path: /webhook/standard
      source: alertmanager
      auth: {type: hmac, scheme: standard, secret_env: STANDARD_SECRET}
    - {path: /webhook/open, source: alertmanager, auth_required: false}
alert_processor: {endpoint: 'file:unused.jsonl'}
queue: {backend: memory}
"""
ENVIRON = {"STANDARD_SECRET": STANDARD_SECRET}


class SchemesTests(SynchronousTestCase):
    """
    send-test's credentials, given or read from the configuration, against
    the webhook resources of a gateway built from that configuration.
    """

    def setUp(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        secret = directory / "grafana-secret"
        # Two lines: the first is what a sender uses, the second a secret
        # being rotated out.
        secret.write_text("grafana-secret\nold-secret\n")
        self.config = directory / "gateway.yaml"
        self.config.write_text(GATEWAY.replace("{secret_file}", str(secret)))
        reactor = GatewayReactor()
        reactor.advance(NOW)
        self.reactor = reactor
        self.service, _, _ = make_service(parse_config(self.config.read_text(), ENVIRON), reactor=reactor)

    def send(self, *argv: str) -> tuple[int, dict[str, Any], SendTest]:
        """
        Run send-test's options against the gateway: its exit status, the
        gateway's answer, and what was sent.
        """
        test = prepare(options(*argv), io.StringIO(), ENVIRON)
        assert test is not None
        out = io.StringIO()
        stub = stub_treq(self.service.site)
        sent = ensureDeferred(send_sample(stub, test, out, clock=self.reactor))
        stub.flush()
        code = self.successResultOf(sent)
        text = out.getvalue()
        return code, json.loads(text[text.index("{") :]), test

    def test_explicit_credentials(self) -> None:
        """
        Each scheme's option makes credentials its endpoint accepts: 202,
        the sample's alert new.
        """
        for url, *given in [
            ("/webhook/prometheus", "--token", "gateway-token"),
            ("/webhook/basic", "--basic", "am:p:w"),
            ("/webhook/key", "--api-key", "X-Gateway-Key:key-0"),
            ("/webhook/grafana", "--grafana-secret", "old-secret", "--timestamp-header", STAMP),
            ("/webhook/grafana-plain", "--grafana-secret", "plain-secret", "--source", "grafana"),
            ("/webhook/standard", "--standard-secret", STANDARD_SECRET),
            ("/v1/webhook/open",),
        ]:
            with self.subTest(url=url):
                code, answer, _test = self.send("http://gateway.test" + url, *given)
                self.assertEqual((code, answer["status"]), (EXIT_OK, "accepted"), answer)
                self.assertEqual([a["status"] for a in answer["alerts"]], ["new"])

    def test_wrong_credentials(self) -> None:
        """
        Credentials the endpoint does not accept get its 401 problem, and
        send-test fails.
        """
        for url, *given in [
            ("/webhook/prometheus", "--token", "not-the-token"),
            ("/webhook/basic", "--basic", "am:wrong"),
            ("/webhook/key", "--token", "key-1"),
            ("/webhook/grafana", "--grafana-secret", "grafana-secret"),
            ("/webhook/standard", "--grafana-secret", "grafana-secret"),
        ]:
            with self.subTest(url=url):
                code, answer, _test = self.send("http://gateway.test" + url, *given)
                self.assertEqual((code, answer["status"]), (EXIT_FAILED, 401), answer)

    def test_from_configuration(self) -> None:
        """
        With --config, every endpoint is sent its own credentials (the
        first of each list, secrets from their file or variable) in its
        own sender format, named by --endpoint or by the URL's path, and
        accepts them.
        """
        expected = {
            "/webhook/prometheus": ("bearer token", "alertmanager"),
            "/webhook/basic": ("Basic (am)", "alertmanager"),
            "/webhook/key": ("API key in X-Gateway-Key", "alertmanager"),
            "/webhook/grafana": (
                "Grafana HMAC signature in X-Grafana-Alerting-Signature and X-Grafana-Alerting-Timestamp",
                "grafana",
            ),
            "/webhook/grafana-plain": ("Grafana HMAC signature in X-Grafana-Alerting-Signature", "grafana"),
            "/webhook/standard": ("Standard Webhooks signature", "alertmanager"),
            "/webhook/open": (None, "alertmanager"),
        }
        for path, (scheme, source) in expected.items():
            for argv in (
                ("http://gateway.test", "--endpoint", path),
                ("http://gateway.test/v1" + path,),
            ):
                with self.subTest(argv=argv):
                    code, answer, test = self.send(*argv, "--config", str(self.config))
                    self.assertEqual((code, answer["status"]), (EXIT_OK, "accepted"), answer)
                    self.assertEqual(test.url, "http://gateway.test" + ("" if len(argv) > 1 else "/v1") + path)
                    self.assertEqual(
                        (test.credentials.scheme if test.credentials is not None else None, test.source),
                        (scheme, source),
                    )

    def test_signatures_fresh(self) -> None:
        """
        Each signed sample has a new signature (and Standard Webhooks
        message id), so a second test is no replay.
        """
        for path in ("/webhook/grafana", "/webhook/standard"):
            with self.subTest(path=path):
                for _ in range(2):
                    code, answer, _ = self.send("--config", str(self.config), "--endpoint", path, "http://g.test")
                    self.assertEqual(code, EXIT_OK, answer)
                self.reactor.advance(1)


class PrepareTests(SynchronousTestCase):
    """
    What send-test makes of its options before sending anything.
    """

    def write(self, text: str) -> str:
        path = Path(self.mktemp())
        path.write_text(text)
        return str(path)

    def refusal(self, *argv: str, environ: dict[str, str] | None = None) -> str:
        error = self.assertRaises(CommandError, prepare, options(*argv), io.StringIO(), environ or {})
        return str(error)

    def test_options(self) -> None:
        """
        The defaults: the endpoint's sender format (else Alertmanager's), a
        10 second timeout, the system's authorities.
        """
        test = prepare(options(URL), io.StringIO())
        self.assertEqual(test, SendTest(URL, "alertmanager", None, 10.0, None))
        test = prepare(options(URL, "--source", "grafana", "--timeout", "2.5"), io.StringIO())
        assert test is not None
        self.assertEqual((test.source, test.timeout), ("grafana", 2.5))

    def test_usage_refused(self) -> None:
        """
        Options that cannot be followed are refused with one line saying
        what to do instead.
        """
        config = self.write("webhook: {auth: {token: t}}\n")
        for argv, message in [
            ((), "give the webhook's URL, or --config FILE and --endpoint PATH"),
            ((URL, "--endpoint", "/webhook/prometheus"), "--endpoint reads the endpoint from the configuration"),
            ((URL, "--config", config, "--token", "t"), "--config sends the endpoint's own credentials"),
            (("--config", config), "name the endpoint to test: --endpoint PATH, or its URL"),
            ((URL, "--config", config, "--endpoint", "/webhook/grafana"), "the URL is the gateway's address only"),
            (("http://g.test/webhook/nope", "--config", config), "/webhook/nope is not a webhook endpoint of"),
            (("ftp://g.test/webhook/prometheus",), "is not an http:// or https:// URL"),
            ((URL, "--basic", "nocolon"), "--basic takes USER:PASSWORD"),
            ((URL, "--api-key", ":key"), "--api-key takes HEADER:KEY"),
            ((URL, "--standard-secret", "s3cret"), "--standard-secret: a Standard Webhooks secret is 'whsec_'"),
        ]:
            with self.subTest(argv=argv):
                self.assertIn(message, self.refusal(*argv))
        self.assertIn("its endpoints: /webhook/prometheus, /webhook/grafana", self.refusal(URL + "x", "-c", config))

    def test_one_scheme(self) -> None:
        """
        Two explicit credentials are a usage error of the parser.
        """
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit):
            build_parser().parse_args(["send-test", URL, "--token", "t", "--basic", "a:b"])
        self.assertIn("argument --basic: not allowed with argument --token", stderr.getvalue())

    def test_no_credential_configured(self) -> None:
        """
        An endpoint whose authentication holds no credential is refused by
        send-test, naming the key, since the gateway refuses everything.
        """
        config = self.write("webhook:\n  endpoints:\n    - {path: /webhook/grafana, auth: {type: basic}}\n")
        self.assertEqual(
            self.refusal("http://g.test/webhook/grafana", "--config", config),
            "webhook.endpoints[0].auth has no credential for type basic: the gateway refuses every request",
        )

    def test_invalid_configuration(self) -> None:
        """
        A configuration with problems is reported as check-config reports
        it, and nothing is prepared.
        """
        err = io.StringIO()
        config = self.write("webhook: {auth: {token_env: NOT_SET}}\n")
        self.assertIsNone(prepare(options("--config", config, "--endpoint", "/webhook/prometheus"), err, {}))
        self.assertEqual(err.getvalue(), "webhook.auth.token_env: environment variable NOT_SET is not set\n")

    def test_listener(self) -> None:
        """
        Without a URL the sample goes to the gateway's listener as the
        configuration says: loopback for "every address", https with TLS,
        the interface it names; a port the system chooses cannot be told.
        """
        ca = Authority("listener root")
        server = ca.server()
        directory = Path(self.mktemp())
        directory.mkdir()
        cert = write_pem(directory / "tls.crt", server.cert_pem)
        key = write_pem(directory / "tls.key", server.key_pem)
        for text, url in [
            ("", "http://127.0.0.1:8080"),
            ("service: {host: '::', port: 8443}", "http://[::1]:8443"),
            ("service: {listen: ['tcp:port=9000:interface=10.0.0.7']}", "http://10.0.0.7:9000"),
            (f"security: {{tls_enabled: true, cert_file: {cert}, key_file: {key}}}", "https://127.0.0.1:8080"),
        ]:
            with self.subTest(text=text):
                self.assertEqual(listener_url(parse_config(text, {})), url)
        for text in ("service: {listen: ['tcp:0:interface=127.0.0.1']}", "service: {listen: ['unix:/run/gw.sock']}"):
            with self.subTest(text=text):
                with self.assertRaises(CommandError) as raised:
                    listener_url(parse_config(text, {}))
                self.assertIn("cannot tell the gateway's address from the listener", str(raised.exception))
        config = self.write("webhook: {auth: {token: t}}\n")
        test = prepare(options("--config", config, "--endpoint", "/webhook/grafana"), io.StringIO())
        assert test is not None
        self.assertEqual((test.url, test.source), ("http://127.0.0.1:8080/webhook/grafana", "grafana"))


@implementer(IHandshakeListener)
class _Handshaker(Protocol):
    done = False

    def handshakeCompleted(self) -> None:
        self.done = True


class ClientTLSTests(SynchronousTestCase):
    """
    The client side of HTTPS: trusted authorities and the client
    certificate.
    """

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.ca = Authority("send-test root")
        self.cacert = str(write_pem(self.directory / "ca.crt", Authority("other").cert_pem, self.ca.cert_pem))
        client = self.ca.issue("alertmanager", dns=["alertmanager.monitoring.svc"], client=True)
        self.cert = str(write_pem(self.directory / "client.crt", client.cert_pem))
        self.key = str(write_pem(self.directory / "client.key", client.key_pem))

    def handshake(self, tls: ClientTLS) -> bool:
        """
        Whether a handshake, in memory, with a server of this test's CA
        that requires a client certificate of it, completes.
        """
        server_certificate = self.ca.server("gateway").private_certificate()
        server_options = server_certificate.options(Certificate.loadPEM(self.ca.cert_pem))
        server_factory = TLSMemoryBIOFactory(server_options, False, Factory.forProtocol(_Handshaker))
        client_factory = TLSMemoryBIOFactory(
            tls.creatorForNetloc(b"127.0.0.1", 8443), True, Factory.forProtocol(_Handshaker)
        )
        client, server, pump = connectedServerAndClient(
            lambda: server_factory.buildProtocol(None), lambda: client_factory.buildProtocol(None)
        )
        pump.flush()
        # A refused handshake leaves no application protocol behind.
        return all(isinstance(p.wrappedProtocol, _Handshaker) and p.wrappedProtocol.done for p in (client, server))

    def test_authorities_and_client_certificate(self) -> None:
        """
        With the CA in --cacert (a bundle) and a client certificate of it,
        the handshake completes (the server's certificate checked against
        127.0.0.1); the same in one file with its key works too; without
        the client certificate, or trusting only the system's authorities,
        it does not.
        """
        self.assertTrue(self.handshake(ClientTLS(self.cacert, self.cert, self.key)))
        combined = write_pem(self.directory / "client.pem", Path(self.cert).read_bytes(), Path(self.key).read_bytes())
        self.assertTrue(self.handshake(ClientTLS(self.cacert, str(combined))))
        self.assertFalse(self.handshake(ClientTLS(self.cacert)))
        self.assertFalse(self.handshake(ClientTLS(None, self.cert, self.key)))

    def test_unusable_files(self) -> None:
        """
        A file that is missing or holds no usable certificate is refused by
        option and path.
        """
        missing = str(self.directory / "missing.pem")
        for arguments, message in [
            ({"cacert": missing}, f"--cacert {missing}: cannot read it (No such file or directory)"),
            ({"cacert": self.key}, f"--cacert {self.key}: no PEM certificate in it"),
            ({"cert": self.cert}, f"--cert {self.cert}: not a PEM certificate with its private key"),
            ({"cert": self.key, "key": self.key}, f"--cert {self.key} --key {self.key}: not a PEM certificate"),
            ({"key": self.key}, "--key needs --cert"),
        ]:
            with self.subTest(arguments=arguments):
                with self.assertRaises(CommandError) as raised:
                    ClientTLS(**arguments)
                self.assertTrue(str(raised.exception).startswith(message), str(raised.exception))

    def test_prepared(self) -> None:
        """
        --cacert, --cert and --key make the TLS of the request.
        """
        test = prepare(options(URL, "--cacert", self.cacert, "--cert", self.cert, "--key", self.key), io.StringIO())
        assert test is not None
        assert test.tls is not None
        self.assertTrue(self.handshake(test.tls))


class MainTests(SynchronousTestCase):
    """
    C{alertgateway send-test} on the command line.
    """

    def test_dispatch(self) -> None:
        """
        main hands what the options ask for to send_test, and returns its
        exit status.
        """
        calls: list[SendTest] = []

        def fake_send_test(test: SendTest, out: IO[str], err: IO[str]) -> int:
            calls.append(test)
            return EXIT_FAILED

        self.patch(cli.send, "send_test", fake_send_test)
        self.assertEqual(main(["send-test", URL, "--token", "t"], out=io.StringIO(), err=io.StringIO()), EXIT_FAILED)
        [test] = calls
        self.assertEqual((test.url, test.credentials), (URL, Bearer("t")))

    def test_refused(self) -> None:
        """
        Options that cannot be followed exit 2 with one line on stderr.
        """
        err = io.StringIO()
        self.assertEqual(main(["send-test"], io.StringIO(), err), EXIT_INVALID)
        self.assertEqual(
            err.getvalue(),
            "alertgateway send-test: give the webhook's URL, or --config FILE and --endpoint PATH\n",
        )
