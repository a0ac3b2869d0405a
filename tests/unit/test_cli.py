"""
Tests for L{alertgateway.cli}: C{check-config} and the command line
itself (C{send-test} is in L{tests.unit.test_cli_send}, C{queue} in
L{tests.unit.test_cli_queue}).
"""

from __future__ import annotations

import io
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from alertgateway import cli
from alertgateway.cli import (
    EXIT_INVALID,
    EXIT_OK,
    check_config,
    main,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]
# 2026-11-26T03:49:49Z, the time of the fixtures.
NOW = 1795664989.0
URL = "http://gateway.test/webhook/prometheus"


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
                "  alert processor: alert-processor at http://alert-processor:8081",
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

    def test_exit_status(self) -> None:
        """
        The console script exits with main's status.
        """
        self.patch(cli, "main", lambda: EXIT_INVALID)
        error = self.assertRaises(SystemExit, cli.entry_point)
        self.assertEqual(error.code, EXIT_INVALID)
