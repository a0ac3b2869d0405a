"""
Tests for L{alertgateway.cli}: C{check-config}, the queue and state
commands, and the command line itself (C{send-test} is in
L{tests.unit.test_cli_send}).
"""

from __future__ import annotations

import io
import json
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

    def test_exit_status(self) -> None:
        """
        The console script exits with main's status.
        """
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
