"""
Tests for L{alertgateway.cli}: C{check-config} and the sending behind
C{send-test}, over in-memory HTTP.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import URI, Agent
from twisted.web.resource import Resource
from twisted.web.server import Request

from alertgateway import cli
from alertgateway.cli import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    build_parser,
    check_config,
    main,
    sample_payload,
    send_sample,
)
from alertgateway.core.model import Alert
from alertgateway.sources import PARSERS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]
# 2026-11-26T03:49:49Z, the time of the fixtures.
NOW = 1795664989.0
URL = "http://gateway.test/webhook/prometheus"


class RecordingResource(Resource):
    """
    A webhook stand-in that records each request and answers with a fixed
    status and body.
    """

    isLeaf = True

    def __init__(self, code: int = 202, body: bytes = b'{"status":"accepted"}') -> None:
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


def post_sample(client: Any, source: str, token: str | None, out: io.StringIO, clock: Any = None) -> Deferred[int]:
    if clock is None:
        clock = Clock()
        clock.advance(NOW)
    return ensureDeferred(send_sample(client, URL, source, token, 5.0, out, clock=clock))


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
    def _send(
        self, source: str = "alertmanager", token: str | None = "t0k", code: int = 202
    ) -> tuple[int, RecordingResource, str]:
        resource = RecordingResource(code=code, body=b'{"status":"accepted","requestId":"req-42"}')
        out = io.StringIO()
        result = self.successResultOf(post_sample(StubTreq(resource), source, token, out))
        return result, resource, out.getvalue()

    def test_request(self) -> None:
        """
        One JSON POST goes to the URL, with the bearer token and the
        command's user agent.
        """
        _result, resource, _out = self._send()
        self.assertEqual(len(resource.requests), 1)
        method, uri, headers, _body = resource.requests[0]
        self.assertEqual((method, uri), (b"POST", "/webhook/prometheus"))
        self.assertEqual(headers[b"authorization"], [b"Bearer t0k"])
        self.assertEqual(headers[b"content-type"], [b"application/json"])
        self.assertEqual(headers[b"user-agent"], [b"alertgateway-send-test"])

    def test_no_token(self) -> None:
        """
        Without a token no Authorization header is sent.
        """
        _result, resource, _out = self._send(token=None)
        self.assertNotIn(b"authorization", resource.requests[0][2])

    def test_body_is_valid_for_source(self) -> None:
        """
        The body sent is one valid alert for the chosen source's parser,
        dated by the injected clock.
        """
        for source in ("alertmanager", "grafana"):
            with self.subTest(source=source):
                _result, resource, _out = self._send(source=source)
                payload = json.loads(resource.requests[0][3])
                (alert,) = PARSERS[source](payload, "now").outcomes
                assert isinstance(alert, Alert), alert
                self.assertEqual(alert.starts_at, "2026-11-26T03:49:49Z")
                self.assertEqual(alert.labels["alertname"], "AlertGatewayTest")

    def test_output(self) -> None:
        """
        The status, the content type, the request id and the body of the
        answer are printed; a 2xx answer is success.
        """
        result, _resource, out = self._send()
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
        result, _resource, out = self._send(code=401)
        self.assertEqual(result, EXIT_FAILED)
        self.assertEqual(out.splitlines()[:2], ["HTTP 401", "Content-Type: application/problem+json"])
        self.assertIn('{"status":"accepted","requestId":"req-42"}', out)

    def test_connection_refused(self) -> None:
        """
        A connection that fails is reported as an error and is a failure.
        """
        reactor = MemoryReactorClock()
        out = io.StringIO()
        sent = post_sample(memory_client(reactor), "alertmanager", None, out, clock=reactor)
        self.assertNoResult(sent)
        _host, _port, factory, _timeout, _bind = reactor.tcpClients[0]
        factory.clientConnectionFailed(reactor.connectors[0], Failure(ConnectionRefusedError()))
        self.assertEqual(self.successResultOf(sent), EXIT_FAILED)
        self.assertTrue(out.getvalue().startswith("error: ConnectionRefusedError: "), out.getvalue())

    def test_timeout(self) -> None:
        """
        Without an answer, the request is abandoned after the timeout on the
        injected clock, reported as an error and a failure.
        """
        reactor = MemoryReactorClock()
        out = io.StringIO()
        sent = post_sample(memory_client(reactor), "grafana", None, out, clock=reactor)
        reactor.advance(4.9)
        self.assertNoResult(sent)
        reactor.advance(0.1)
        self.assertEqual(self.successResultOf(sent), EXIT_FAILED)
        self.assertTrue(out.getvalue().startswith("error: "), out.getvalue())


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


class CheckConfigTests(SynchronousTestCase):
    def _write(self, text: str) -> str:
        path = Path(self.mktemp())
        path.write_text(text, encoding="utf-8")
        return str(path)

    def _check(self, path: str, environ: dict[str, str] | None = None) -> tuple[int, list[str], list[str]]:
        out, err = io.StringIO(), io.StringIO()
        code = check_config(path, out, err, {} if environ is None else environ)
        return code, out.getvalue().splitlines(), err.getvalue().splitlines()

    def test_plan_config(self) -> None:
        """
        The plan's configuration with TLS off passes with a summary of what
        the gateway would do, warnings included, and nothing on stderr.
        """
        text = (FIXTURES / "plan-config.yaml").read_text(encoding="utf-8")
        path = self._write(text.replace("tls_enabled: true", "tls_enabled: false"))
        code, out, err = self._check(path)
        self.assertEqual(code, EXIT_OK)
        self.assertEqual(err, [])
        self.assertEqual(
            out,
            [
                f"{path}: OK",
                "  webhook listeners: tcp:8080:interface=0.0.0.0:backlog=1024",
                "  endpoint /webhook/prometheus (and /v1/webhook/prometheus): alertmanager, auth required (bearer)",
                "  endpoint /webhook/grafana (and /v1/webhook/grafana): grafana, auth required (bearer)",
                "  alert processor: http://alert-processor:8081",
                "  queue: sqlite",
                "  state: sqlite",
                "  metrics: /metrics on tcp:9090:interface=0.0.0.0",
                "  warning: /webhook/prometheus, /webhook/grafana require authentication but no token is configured"
                " (webhook.auth.token, webhook.auth.tokens or WEBHOOK_AUTH_TOKEN): every request will get 401",
            ],
        )

    def test_replica_config(self) -> None:
        """
        The example configuration of a replica on Redis passes; the summary
        names the backends, the shared port and where Redis is, never its
        password.
        """
        code, out, err = self._check(
            str(REPO / "etc" / "alertgateway-replica.yaml"), {"WEBHOOK_TOKEN": "t", "REDIS_PASSWORD": "hunter2"}
        )
        self.assertEqual((code, err), (EXIT_OK, []))
        self.assertIn(
            "  webhook listeners: tcp:8080:interface=0.0.0.0:backlog=1024 (SO_REUSEPORT, shared with other processes)",
            out,
        )
        self.assertIn("  queue: redis", out)
        self.assertIn("  redis: redis://redis:6379/0 (prefix 'alertgateway:', on failure fail_open)", out)
        self.assertNotIn("hunter2", "\n".join(out))

    def test_plan_config_with_tls(self) -> None:
        """
        The plan's configuration as written fails, naming both missing TLS
        files, one line each, key path first.
        """
        code, out, err = self._check(str(FIXTURES / "plan-config.yaml"))
        self.assertEqual(code, EXIT_INVALID)
        self.assertEqual(out, [])
        self.assertEqual(
            err,
            [
                "security.cert_file: file not found: /etc/certs/tls.crt",
                "security.key_file: file not found: /etc/certs/tls.key",
            ],
        )

    def test_summary_variants(self) -> None:
        """
        The summary says when an endpoint needs no authentication, when
        metrics share the webhook port, and says nothing of disabled
        metrics.
        """
        path = self._write(
            "webhook: {endpoints: [{path: /webhook/grafana, auth_required: false}]}\nmetrics: {port: 8080}"
        )
        _code, out, _err = self._check(path, {"WEBHOOK_AUTH_TOKEN": "x"})
        self.assertIn("  endpoint /webhook/grafana (and /v1/webhook/grafana): grafana, no auth", out)
        self.assertIn("  metrics: /metrics on webhook port", out)
        self.assertFalse(any("warning" in line for line in out), out)
        _code, out, _err = self._check(self._write("metrics: {enabled: false}"))
        self.assertFalse(any(line.startswith("  metrics:") for line in out), out)
        self.assertFalse(any(line.startswith("  probe listeners:") for line in out), out)

    def test_summary_edge(self) -> None:
        """
        The summary names the kind of authentication each endpoint uses
        (its own, or webhook.auth) and the plaintext probe listeners.
        """
        path = self._write(
            """
service: {probe_listen: ['tcp:8081', 'tcp:8082']}
webhook:
  auth: {type: api_key, tokens: [k]}
  endpoints:
    - {path: /webhook/prometheus, auth: {type: basic, username: am, password: pw}}
    - {path: /webhook/grafana}
"""
        )
        code, out, _err = self._check(path)
        self.assertEqual(code, EXIT_OK)
        self.assertEqual(
            out[1:5],
            [
                "  webhook listeners: tcp:8080:interface=0.0.0.0:backlog=1024",
                "  probe listeners: tcp:8081, tcp:8082",
                "  endpoint /webhook/prometheus (and /v1/webhook/prometheus): alertmanager, auth required (basic)",
                "  endpoint /webhook/grafana (and /v1/webhook/grafana): grafana, auth required (api_key)",
            ],
        )

    def test_invalid(self) -> None:
        """
        An invalid file exits 2 with one line per problem, each starting
        with its key path, and no summary.
        """
        path = self._write(
            """
webhook:
  endpoints:
    - path: /webhook/prometheus
    - path: webhook/grafana
      sorce: grafana
"""
        )
        code, out, err = self._check(path)
        self.assertEqual(code, EXIT_INVALID)
        self.assertEqual(out, [])
        self.assertEqual(
            err,
            [
                "webhook.endpoints[1].sorce: unknown key (known keys: add_headers, allowed_ips, auth, auth_required,"
                " delivery, path, rate_limit, reject_status, source)",
                "webhook.endpoints[1].path: must start with /",
            ],
        )

    def test_environment(self) -> None:
        """
        The environment overrides apply, and a bad one is a problem line.
        """
        code, _out, err = self._check(self._write(""), {"WEBHOOK_PORT": "eighty"})
        self.assertEqual(code, EXIT_INVALID)
        self.assertEqual(err, ["WEBHOOK_PORT: must be an integer, got 'eighty'"])

    def test_invalid_yaml(self) -> None:
        """
        A syntax error is a single line.
        """
        code, _out, err = self._check(self._write("service: {port: 8080\n"))
        self.assertEqual(code, EXIT_INVALID)
        self.assertEqual(len(err), 1)
        self.assertIn("not valid YAML", err[0])

    def test_unreadable(self) -> None:
        """
        A file that cannot be read exits 2 naming it.
        """
        missing = self.mktemp()
        code, out, err = self._check(missing)
        self.assertEqual(code, EXIT_INVALID)
        self.assertEqual(out, [])
        self.assertEqual(len(err), 1)
        self.assertTrue(err[0].startswith(f"cannot read {missing}: "), err)


class MainTests(SynchronousTestCase):
    def test_check_config(self) -> None:
        """
        C{alertgateway check-config PATH} runs the check on the given
        streams and returns its exit code.
        """
        path = Path(self.mktemp())
        path.write_text("loging: {}\n")
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(main(["check-config", str(path)], out=out, err=err), EXIT_INVALID)
        self.assertIn("loging: unknown key", err.getvalue())
        self.assertEqual(out.getvalue(), "")

    def test_send_test_options(self) -> None:
        """
        C{send-test} takes a URL and defaults to the Alertmanager format, no
        token and a 10 second timeout; each can be chosen.
        """
        args = build_parser().parse_args(["send-test", URL])
        self.assertEqual(
            (args.command, args.url, args.source, args.token, args.timeout),
            ("send-test", URL, "alertmanager", None, 10.0),
        )
        args = build_parser().parse_args(["send-test", URL, "--source", "grafana", "--token", "t", "--timeout", "2.5"])
        self.assertEqual((args.source, args.token, args.timeout), ("grafana", "t", 2.5))

    def test_send_test_dispatch(self) -> None:
        """
        C{alertgateway send-test} hands its options to L{send_test} and
        returns its exit code; the console script exits with it.
        """
        calls: list[tuple[str, str, str | None, float]] = []

        def fake_send_test(url: str, source: str, token: str | None, timeout: float, out: IO[str]) -> int:
            calls.append((url, source, token, timeout))
            return EXIT_FAILED

        self.patch(cli.send, "send_test", fake_send_test)
        out = io.StringIO()
        self.assertEqual(main(["send-test", URL, "--token", "t"], out=out, err=io.StringIO()), EXIT_FAILED)
        self.assertEqual(calls, [(URL, "alertmanager", "t", 10.0)])
        self.patch(cli, "main", lambda: EXIT_INVALID)
        error = self.assertRaises(SystemExit, cli.entry_point)
        self.assertEqual(error.code, EXIT_INVALID)


class QueueCommandTests(SynchronousTestCase):
    """
    C{alertgateway queue list|retry|purge --config FILE} on the queue
    database the configuration names.
    """

    def setUp(self) -> None:
        from alertgateway.delivery.journal import SQLiteJournal
        from tests.unit._http import InlineExecutor
        from tests.unit._support import envelope

        directory = Path(self.mktemp())
        directory.mkdir()
        self.db = str(directory / "queue.db")
        self.config = directory / "gateway.yaml"
        self.config.write_text(
            f"webhook:\n  auth:\n    token: t\nalert_processor:\n  endpoint: file:x.jsonl\nqueue:\n  path: {self.db}\n"
        )
        journal = SQLiteJournal(self.db, InlineExecutor(), clock_seconds=lambda: NOW)
        self.successResultOf(journal.open())
        a, _b, c = self.successResultOf(journal.append([envelope("A"), envelope("B"), envelope("C")]))
        self.successResultOf(journal.bury(a, "HTTP 400: no such team", 1))
        self.successResultOf(journal.bury(c, "HTTP 422", 2))
        self.successResultOf(journal.close())

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli.main([*argv, "--config", str(self.config)], out, err)
        return code, out.getvalue(), err.getvalue()

    def test_list(self) -> None:
        """
        list shows dead letters by default (id, key, fingerprint, attempts,
        reason), pending ones or all on request, and --json one object per
        line.
        """
        code, out, err = self.run_cli("queue", "list")
        self.assertEqual(code, 0)
        lines = out.splitlines()
        self.assertEqual([line.split("\t")[0] for line in lines], ["1", "3"])
        self.assertIn("no such team", lines[0])
        self.assertEqual(lines[0].split("\t")[3], "1")
        self.assertEqual(err, "2 item(s)\n")
        code, out, _ = self.run_cli("queue", "list", "--state", "pending", "--json")
        [item] = [json.loads(line) for line in out.splitlines()]
        self.assertEqual((item["id"], item["body"]["labels"]["alertname"]), (2, "B"))
        self.assertEqual(len(self.run_cli("queue", "list", "--state", "all")[1].splitlines()), 3)

    def test_retry(self) -> None:
        """
        retry marks the given dead letters (or all) for another try.
        """
        self.assertEqual(self.run_cli("queue", "retry", "3")[1], "1 dead letter(s) marked for another try\n")
        self.assertEqual([line.split("\t")[0] for line in self.run_cli("queue", "list")[1].splitlines()], ["1"])
        self.assertEqual(self.run_cli("queue", "retry")[1], "1 dead letter(s) marked for another try\n")
        self.assertEqual(self.run_cli("queue", "list")[1], "")

    def test_purge(self) -> None:
        """
        purge drops dead letters (given ids, or all), or pending items with
        --state pending.
        """
        self.assertEqual(self.run_cli("queue", "purge", "1")[1], "1 dead item(s) dropped\n")
        self.assertEqual(self.run_cli("queue", "purge")[1], "1 dead item(s) dropped\n")
        self.assertEqual(self.run_cli("queue", "purge", "--state", "pending")[1], "1 pending item(s) dropped\n")
        self.assertEqual(self.run_cli("queue", "list", "--state", "all")[1], "")

    def test_memory_backend(self) -> None:
        """
        With queue.backend memory there is no database: the command says so
        and fails.
        """
        self.config.write_text(self.config.read_text() + "  backend: memory\n")
        code, _, err = self.run_cli("queue", "list")
        self.assertNotEqual(code, 0)
        self.assertIn("queue.backend is memory", err)

    def test_invalid_config(self) -> None:
        """
        An invalid configuration is reported, with the check-config exit
        status.
        """
        self.config.write_text("queue:\n  backend: tape\n")
        code, _, err = self.run_cli("queue", "list")
        self.assertEqual(code, cli.EXIT_INVALID)
        self.assertIn("backend", err)

    def test_config_required(self) -> None:
        """
        --config is required.
        """
        self.assertRaises(SystemExit, cli.main, ["queue", "list"], io.StringIO(), io.StringIO())
