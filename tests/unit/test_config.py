"""
Tests for L{alertgateway.config}: the gateway's YAML configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from alertgateway.config import (
    AuthConfig,
    ConfigError,
    EndpointConfig,
    GatewayConfig,
    MetricsConfig,
    SecurityConfig,
    ServiceConfig,
    load_config,
    parse_config,
    warnings_for,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PLAN_CONFIG = FIXTURES / "plan-config.yaml"


def _plan_text(tls_enabled: bool) -> str:
    text = PLAN_CONFIG.read_text(encoding="utf-8")
    assert text.count("tls_enabled: true") == 1
    return text.replace("tls_enabled: true", f"tls_enabled: {'true' if tls_enabled else 'false'}")


def _problems(text: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """
    The problems of an invalid configuration, as check-config prints them.
    """
    try:
        parse_config(text, {} if environ is None else environ)
    except ConfigError as e:
        # The exception's text is the same list, one per line.
        assert str(e) == "\n".join(str(p) for p in e.problems)
        return [str(p) for p in e.problems]
    raise AssertionError("the configuration was accepted")


def _valid(text: str, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    return parse_config(text, {} if environ is None else environ)


class PlanConfigTests(SynchronousTestCase):
    """
    The example configuration of section 1.2 of the work plan, verbatim.
    """

    def test_loads_without_tls(self) -> None:
        """
        With C{tls_enabled: false} the plan's configuration loads as
        written, every value read, and the two endpoints get their source
        from their well-known paths.
        """
        config = _valid(_plan_text(tls_enabled=False))
        self.assertEqual(config.service.name, "gateway-service")
        self.assertEqual((config.service.host, config.service.port), ("0.0.0.0", 8080))
        self.assertEqual(
            config.webhook.endpoints,
            (
                EndpointConfig(path="/webhook/prometheus", source="alertmanager", auth_required=True, rate_limit=1000),
                EndpointConfig(path="/webhook/grafana", source="grafana", auth_required=True, rate_limit=500),
            ),
        )
        self.assertEqual(
            config.security,
            SecurityConfig(
                tls_enabled=False, cert_file="/etc/certs/tls.crt", key_file="/etc/certs/tls.key", allowed_ips=()
            ),
        )
        self.assertEqual((config.rate_limiting.global_limit, config.rate_limiting.burst_size), (10000, 100))
        self.assertEqual(config.circuit_breaker.failure_threshold, 5)
        self.assertEqual(config.circuit_breaker.recovery_timeout, 30.0)
        self.assertEqual(config.circuit_breaker.half_open_requests, 3)
        self.assertEqual(config.alert_processor.endpoint, "http://alert-processor:8081")
        self.assertEqual(config.alert_processor.timeout, 5.0)
        self.assertEqual(config.alert_processor.max_retries, 3)
        self.assertEqual(config.metrics, MetricsConfig(enabled=True, port=9090, path="/metrics"))
        self.assertEqual((config.logging.level, config.logging.format), ("info", "json"))

    def test_tls_files_missing(self) -> None:
        """
        As written (C{tls_enabled: true}) and without the certificate files,
        the file is refused with one problem per missing file, each naming
        its key and the file.
        """
        error = self.assertRaises(ConfigError, load_config, str(PLAN_CONFIG), {})
        self.assertEqual(
            [str(p) for p in error.problems],
            [
                "security.cert_file: file not found: /etc/certs/tls.crt",
                "security.key_file: file not found: /etc/certs/tls.key",
            ],
        )


class TLSTests(SynchronousTestCase):
    def _files(self) -> tuple[str, str]:
        folder = Path(self.mktemp())
        folder.mkdir()
        cert, key = folder / "tls:1.crt", folder / "tls=1.key"
        cert.write_text("cert")
        key.write_text("key")
        return str(cert), str(key)

    def test_files_present(self) -> None:
        """
        With both files present, TLS is accepted and the webhook listener is
        an C{ssl:} description whose file names are escaped for Twisted's
        endpoint syntax.
        """
        cert, key = self._files()
        config = _valid(f"security: {{tls_enabled: true, cert_file: '{cert}', key_file: '{key}'}}")
        escaped_cert = cert.replace(":", "\\:").replace("=", "\\=")
        escaped_key = key.replace(":", "\\:").replace("=", "\\=")
        self.assertEqual(
            config.webhook_listeners(),
            (f"ssl:8080:interface=0.0.0.0:privateKey={escaped_key}:certKey={escaped_cert}",),
        )

    def test_one_file_missing(self) -> None:
        """
        Only the file that is missing is reported.
        """
        cert, _key = self._files()
        problems = _problems(f"security: {{tls_enabled: true, cert_file: '{cert}', key_file: /nonexistent/k.pem}}")
        self.assertEqual(problems, ["security.key_file: file not found: /nonexistent/k.pem"])

    def test_files_not_given(self) -> None:
        """
        TLS without certificate and key names both keys as required.
        """
        self.assertEqual(
            _problems("security: {tls_enabled: true}"),
            [
                "security.cert_file: is required when tls_enabled is true",
                "security.key_file: is required when tls_enabled is true",
            ],
        )

    def test_tls_ignored_with_listen(self) -> None:
        """
        With C{service.listen}, the files are not checked (the listen
        descriptions say how to listen) and a warning says TLS settings are
        ignored.
        """
        config = _valid("service: {listen: ['tcp:8443']}\nsecurity: {tls_enabled: true}")
        self.assertEqual(config.webhook_listeners(), ("tcp:8443",))
        self.assertIn(
            "security.tls_enabled is ignored because service.listen is set: use ssl: descriptions there for TLS",
            warnings_for(config),
        )


class KeyTests(SynchronousTestCase):
    def test_empty_file(self) -> None:
        """
        An empty file is the default configuration.
        """
        self.assertEqual(_valid(""), GatewayConfig())

    def test_misspelt_key(self) -> None:
        """
        A misspelt key is refused by its full path, listing the known keys.
        """
        problems = _problems(
            """
webhook:
  endpoints:
    - path: /webhook/prometheus
    - path: /hooks/other
      sorce: grafana
"""
        )
        self.assertEqual(
            problems[0],
            "webhook.endpoints[1].sorce: unknown key (known keys: auth_required, path, rate_limit, source)",
        )

    def test_unknown_section(self) -> None:
        """
        An unknown top-level section is refused by name.
        """
        problems = _problems("webhooks: {}")
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("webhooks: unknown key (known keys: alert_processor, "), problems[0])

    def test_path_must_start_with_slash(self) -> None:
        """
        An endpoint path without a leading slash is refused at its index.
        """
        problems = _problems(
            """
webhook:
  endpoints:
    - path: /webhook/prometheus
    - path: webhook/grafana
"""
        )
        self.assertEqual(problems, ["webhook.endpoints[1].path: must start with /"])

    def test_path_plain(self) -> None:
        """
        Query strings, fragments and empty segments are not paths.
        """
        for path in ("/a?b=1", "/a#b", "/a//b"):
            with self.subTest(path=path):
                self.assertEqual(
                    _problems(f"webhook: {{endpoints: [{{path: '{path}', source: grafana}}]}}"),
                    ["webhook.endpoints[0].path: must be a plain path without query, fragment or empty segments"],
                )

    def test_path_required(self) -> None:
        """
        An endpoint without a path is refused.
        """
        self.assertEqual(
            _problems("webhook: {endpoints: [{source: grafana}]}"), ["webhook.endpoints[0].path: is required"]
        )

    def test_every_problem_at_once(self) -> None:
        """
        Problems of several sections are all reported together in one pass,
        in section order.  Checks across sections are skipped for sections
        that could not be read (here service and webhook), rather than run
        on guesses.
        """
        problems = _problems(
            """
service: {port: 99999}
webhook:
  endpoints:
    - path: /custom
  auth: {type: basic}
security: {tls_enabled: true, cert_file: /nonexistent/c, key_file: /nonexistent/k}
logging: {lvel: debug}
"""
        )
        self.assertEqual(
            problems,
            [
                "service.port: must be a port number between 0 and 65535",
                "webhook.auth.type: must be one of bearer, none",
                "logging.lvel: unknown key (known keys: format, level)",
            ],
        )

    def test_cross_checks_with_other_problems(self) -> None:
        """
        A problem in one section does not hide the missing TLS files or a
        missing endpoint source found in others.
        """
        problems = _problems(
            """
logging: {lvel: debug}
webhook: {endpoints: [{path: /custom}]}
security: {tls_enabled: true, cert_file: /nonexistent/c, key_file: /nonexistent/k}
"""
        )
        self.assertEqual(
            problems,
            [
                "logging.lvel: unknown key (known keys: format, level)",
                "webhook.endpoints[0].source: is required for /custom (one of alertmanager, grafana)",
                "security.cert_file: file not found: /nonexistent/c",
                "security.key_file: file not found: /nonexistent/k",
            ],
        )

    def test_duplicate_keys(self) -> None:
        """
        A key given twice in one mapping is refused by path with both lines:
        YAML would otherwise keep the last silently.
        """
        problems = _problems(
            """service:
  port: 8080
  port: 8081
webhook:
  endpoints:
    - path: /webhook/grafana
      path: /webhook/prometheus
"""
        )
        self.assertEqual(
            problems,
            [
                "service.port: is given twice (lines 2 and 3)",
                "webhook.endpoints[0].path: is given twice (lines 6 and 7)",
            ],
        )

    def test_anchors_and_merge_keys(self) -> None:
        """
        Anchors, aliases and merge keys are not duplicates: a key that
        overrides a merged one is intended.
        """
        config = _valid(
            """
webhook:
  endpoints:
    - &base {path: /webhook/grafana, rate_limit: 10}
    - <<: *base
      path: /hooks/grafana
      source: grafana
"""
        )
        self.assertEqual(
            [(e.path, e.rate_limit) for e in config.webhook.endpoints],
            [("/webhook/grafana", 10), ("/hooks/grafana", 10)],
        )

    def test_recursive_alias(self) -> None:
        """
        A self-referencing alias is reported, not looped over.
        """
        self.assertEqual(_problems("service: {listen: &a [*a]}"), ["service.listen[0]: must be a string"])

    def test_invalid_yaml(self) -> None:
        """
        A syntax error is one line naming the file, the position and the
        error, not PyYAML's multi-line excerpt.
        """
        error = self.assertRaises(ConfigError, parse_config, "service:\n  port: [8080\n", {}, "gw.yaml")
        self.assertEqual(len(error.problems), 1)
        message = str(error.problems[0])
        self.assertNotIn("\n", message)
        self.assertTrue(message.startswith("gw.yaml: line 3, column 1: not valid YAML: "), message)

    def test_invalid_characters(self) -> None:
        """
        Characters YAML refuses are reported on one line.
        """
        error = self.assertRaises(ConfigError, parse_config, "service: \x00", {}, "gw.yaml")
        message = str(error.problems[0])
        self.assertNotIn("\n", message)
        self.assertTrue(message.startswith("gw.yaml: not valid YAML: unacceptable character"), message)

    def test_unsafe_tags(self) -> None:
        """
        Python object tags are refused (the file is loaded safely).
        """
        error = self.assertRaises(ConfigError, parse_config, "service: !!python/object/apply:os.getpid []", {})
        self.assertIn("could not determine a constructor", str(error))

    def test_nested_too_deeply(self) -> None:
        """
        A document nested beyond the parser's recursion is reported, not a
        crash.
        """
        text = "[" * 100_000 + "]" * 100_000
        error = self.assertRaises(ConfigError, parse_config, text, {}, "deep.yaml")
        self.assertEqual([str(p) for p in error.problems], ["deep.yaml: not valid YAML: nested too deeply"])

    def test_top_level_not_mapping(self) -> None:
        """
        A document that is not a mapping is refused.
        """
        error = self.assertRaises(ConfigError, parse_config, "- a\n- b\n", {}, "gw.yaml")
        self.assertEqual(str(error), "gw.yaml: the top level must be a mapping")

    def test_several_documents(self) -> None:
        """
        A stream of several YAML documents is refused rather than one of
        them silently used.
        """
        error = self.assertRaises(ConfigError, parse_config, "service: {}\n---\nlogging: {}\n", {})
        self.assertIn("expected a single document", str(error))


class DurationTests(SynchronousTestCase):
    def test_units(self) -> None:
        """
        Duration keys accept the plan's units and bare numbers of seconds.
        """
        config = _valid(
            """
circuit_breaker: {recovery_timeout: 5m}
alert_processor: {timeout: 250ms}
service: {idle_timeout: 1h, shutdown_grace: 0}
"""
        )
        self.assertEqual(config.circuit_breaker.recovery_timeout, 300.0)
        self.assertEqual(config.alert_processor.timeout, 0.25)
        self.assertEqual(config.service.idle_timeout, 3600.0)
        self.assertEqual(config.service.shutdown_grace, 0.0)
        self.assertEqual(_valid("alert_processor: {timeout: 7}").alert_processor.timeout, 7.0)

    def test_bad_durations(self) -> None:
        """
        A duration that cannot be read, or is zero where it must be
        positive, is refused by key.
        """
        self.assertEqual(
            _problems("circuit_breaker: {recovery_timeout: 5 minutes}\nalert_processor: {timeout: 0s}"),
            [
                "circuit_breaker.recovery_timeout: must be a duration like 5s, 250ms or 5m",
                "alert_processor.timeout: must be greater than 0",
            ],
        )
        self.assertEqual(_problems("service: {shutdown_grace: -1}"), ["service.shutdown_grace: must not be negative"])
        self.assertEqual(
            _problems("alert_processor: {timeout: .inf}"),
            ["alert_processor.timeout: must be a finite number of seconds"],
        )


class TypeTests(SynchronousTestCase):
    def test_wrong_types(self) -> None:
        """
        Values of the wrong type are refused by key: a boolean is not a
        port, a string is not a boolean, a float is not a byte count, a
        string is not a list.
        """
        self.assertEqual(
            _problems(
                """
service: {port: true, max_body_bytes: 1.5}
webhook: {endpoints: [{path: /webhook/grafana, auth_required: "yes"}]}
security: {allowed_ips: 10.0.0.0/8}
metrics: {enabled: 1}
"""
            ),
            [
                "service.port: must be an integer",
                "service.max_body_bytes: must be an integer",
                "webhook.endpoints[0].auth_required: must be true or false",
                "security.allowed_ips: must be a list",
                "metrics.enabled: must be true or false",
            ],
        )

    def test_sections_must_be_mappings(self) -> None:
        """
        A section that is not a mapping, or endpoints that are not a list,
        are refused by key.
        """
        self.assertEqual(
            _problems("service: [8080]\nwebhook: {endpoints: {path: /x}}"),
            ["service: must be a mapping", "webhook.endpoints: must be a list"],
        )

    def test_value_checks(self) -> None:
        """
        Values of the right type but outside their range are refused.
        """
        self.assertEqual(
            _problems(
                """
service: {max_body_bytes: 0}
webhook: {endpoints: [{path: /webhook/grafana, rate_limit: 0}]}
security: {allowed_ips: [10.0.0.0/8, not-an-ip]}
alert_processor: {endpoint: "ftp://x", max_retries: -1}
metrics: {path: metrics}
logging: {level: verbose, format: xml}
"""
            ),
            [
                "service.max_body_bytes: must be greater than 0",
                "webhook.endpoints[0].rate_limit: must be greater than 0",
                "security.allowed_ips: 'not-an-ip' is not an IP address or CIDR network",
                "alert_processor.endpoint: must be an http:// or https:// URL, or file:PATH",
                "alert_processor.max_retries: must not be negative",
                "metrics.path: must start with /",
                "logging.level: must be one of debug, info, warn, warning, error, critical",
                "logging.format: must be one of json, text",
            ],
        )

    def test_processor_endpoints(self) -> None:
        """
        The processor may be an http(s) URL or a file; C{file:} needs a
        path.
        """
        for endpoint in ("http://p:8081", "https://p", "file:var/a.jsonl"):
            with self.subTest(endpoint=endpoint):
                self.assertEqual(
                    _valid(f"alert_processor: {{endpoint: '{endpoint}'}}").alert_processor.endpoint, endpoint
                )
        self.assertEqual(
            _problems("alert_processor: {endpoint: 'file:'}"),
            ["alert_processor.endpoint: file: needs a path, e.g. file:var/alerts.jsonl"],
        )

    def test_allowed_ips(self) -> None:
        """
        Addresses and networks of both families are accepted.
        """
        config = _valid("security: {allowed_ips: [10.0.0.1, 192.168.0.0/16, '::1', 'fd00::/8']}")
        self.assertEqual(config.security.allowed_ips, ("10.0.0.1", "192.168.0.0/16", "::1", "fd00::/8"))


class EnvironmentTests(SynchronousTestCase):
    def test_token(self) -> None:
        """
        C{WEBHOOK_AUTH_TOKEN} replaces the file's token.
        """
        config = _valid("webhook: {auth: {token: from-file}}", {"WEBHOOK_AUTH_TOKEN": "from-env"})
        self.assertEqual(config.webhook.auth.token, "from-env")

    def test_token_without_sections(self) -> None:
        """
        The token applies without a C{webhook} section, and with an empty
        one (which YAML reads as null).
        """
        for text in ("", "webhook:\n", "webhook:\n  auth:\n"):
            with self.subTest(text=text):
                self.assertEqual(_valid(text, {"WEBHOOK_AUTH_TOKEN": "s3cret"}).webhook.auth.credentials, ("s3cret",))

    def test_token_with_bad_section(self) -> None:
        """
        A C{webhook} or C{auth} that is not a mapping is reported as such,
        not overwritten by the environment.
        """
        env = {"WEBHOOK_AUTH_TOKEN": "s3cret"}
        self.assertEqual(_problems("webhook: [1]", env), ["webhook: must be a mapping"])
        self.assertEqual(_problems("webhook: {auth: x}", env), ["webhook.auth: must be a mapping"])

    def test_port(self) -> None:
        """
        C{WEBHOOK_PORT} replaces the file's port, and an empty variable is
        ignored.
        """
        self.assertEqual(_valid("service: {port: 8080}", {"WEBHOOK_PORT": "9443"}).service.port, 9443)
        self.assertEqual(_valid("service:\n", {"WEBHOOK_PORT": "9443"}).service.port, 9443)
        self.assertEqual(_valid("service: {port: 8080}", {"WEBHOOK_PORT": ""}).service.port, 8080)

    def test_bad_port(self) -> None:
        """
        A C{WEBHOOK_PORT} that is not a port number is reported under the
        variable's name (the file is not where to look), along with the
        file's own problems.
        """
        self.assertEqual(
            _problems("logging: {level: loud}", {"WEBHOOK_PORT": "http"}),
            [
                "WEBHOOK_PORT: must be an integer, got 'http'",
                "logging.level: must be one of debug, info, warn, warning, error, critical",
            ],
        )
        self.assertEqual(
            _problems("", {"WEBHOOK_PORT": "70000"}),
            ["WEBHOOK_PORT: must be a port number between 0 and 65535, got '70000'"],
        )

    def test_port_with_bad_section(self) -> None:
        """
        A C{service} that is not a mapping is reported, not replaced.
        """
        self.assertEqual(_problems("service: 8080", {"WEBHOOK_PORT": "80"}), ["service: must be a mapping"])

    def test_process_environment(self) -> None:
        """
        Without an explicit environment the process's own is used.
        """
        self.patch(os, "environ", {"WEBHOOK_PORT": "1234"})
        self.assertEqual(parse_config("").service.port, 1234)


class EndpointTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        Without endpoints, the two well-known ones are served.
        """
        self.assertEqual(
            [(e.path, e.source, e.auth_required) for e in _valid("").webhook.endpoints],
            [("/webhook/prometheus", "alertmanager", True), ("/webhook/grafana", "grafana", True)],
        )

    def test_source_inferred(self) -> None:
        """
        The well-known paths get their source without being told, a
        trailing slash notwithstanding.
        """
        config = _valid(
            "webhook: {endpoints: [{path: /webhook/prometheus/}, {path: /webhook/grafana}, "
            "{path: /webhook/alertmanager}]}"
        )
        self.assertEqual(
            [(e.path, e.source) for e in config.webhook.endpoints],
            [
                ("/webhook/prometheus", "alertmanager"),
                ("/webhook/grafana", "grafana"),
                ("/webhook/alertmanager", "alertmanager"),
            ],
        )

    def test_explicit_source(self) -> None:
        """
        Another path takes the source it is given, and a well-known path
        may be given another source explicitly.
        """
        config = _valid(
            "webhook: {endpoints: [{path: /hooks/am, source: alertmanager}, "
            "{path: /webhook/grafana, source: alertmanager}]}"
        )
        self.assertEqual(
            [(e.path, e.source) for e in config.webhook.endpoints],
            [("/hooks/am", "alertmanager"), ("/webhook/grafana", "alertmanager")],
        )

    def test_source_required(self) -> None:
        """
        Another path without a source (or with a null one) is refused,
        naming the choices.
        """
        self.assertEqual(
            _problems("webhook: {endpoints: [{path: /hooks/a}, {path: /hooks/b, source: null}]}"),
            [
                "webhook.endpoints[0].source: is required for /hooks/a (one of alertmanager, grafana)",
                "webhook.endpoints[1].source: is required for /hooks/b (one of alertmanager, grafana)",
            ],
        )

    def test_unknown_source(self) -> None:
        """
        A source the gateway has no parser for is refused.
        """
        self.assertEqual(
            _problems("webhook: {endpoints: [{path: /hooks/a, source: datadog}]}"),
            ["webhook.endpoints[0].source: must be one of alertmanager, grafana"],
        )

    def test_duplicate_paths(self) -> None:
        """
        The same path twice, even spelt with a trailing slash or through its
        C{/v1} alias, is refused at the later endpoint.
        """
        for second in ("/webhook/grafana/", "/v1/webhook/grafana"):
            with self.subTest(second=second):
                self.assertEqual(
                    _problems(
                        f"webhook: {{endpoints: [{{path: /webhook/grafana}}, {{path: '{second}', source: grafana}}]}}"
                    ),
                    [f"webhook.endpoints[1].path: {second} is configured twice (counting /v1 aliases)"],
                )

    def test_reserved_paths(self) -> None:
        """
        An endpoint on a health check path is refused: the health resource
        would silently replace it.
        """
        self.assertEqual(
            _problems("webhook: {endpoints: [{path: /health/ready, source: grafana}]}"),
            ["webhook.endpoints[0].path: /health/ready is reserved for the health checks"],
        )

    def test_no_endpoints(self) -> None:
        """
        An empty endpoint list is refused: the gateway would accept nothing.
        """
        self.assertEqual(_problems("webhook: {endpoints: []}"), ["webhook.endpoints: must list at least one endpoint"])

    def test_metrics_path_on_webhook_port(self) -> None:
        """
        When metrics share the webhook port, their path must not be a
        webhook path (or its C{/v1} alias) or a health path; on their own
        port it may be anything.
        """
        self.assertEqual(
            _problems("service: {port: 9000}\nmetrics: {port: 9000, path: /v1/webhook/grafana}"),
            ["metrics.path: /v1/webhook/grafana is also a webhook path"],
        )
        self.assertEqual(
            _problems("service: {port: 9000}\nmetrics: {port: 9000, path: /health}"),
            ["metrics.path: /health is reserved for the health checks"],
        )
        self.assertEqual(_valid("metrics: {port: 9100, path: /webhook/grafana}").metrics.path, "/webhook/grafana")


class ListenerTests(SynchronousTestCase):
    def test_plain(self) -> None:
        """
        By default the webhook listens on TCP at service.host:port and the
        metrics on their own port at the same host.
        """
        config = _valid("service: {host: 127.0.0.1, port: 8081}\nmetrics: {port: 9091}")
        self.assertEqual(config.webhook_listeners(), ("tcp:8081:interface=127.0.0.1",))
        self.assertEqual(config.metrics_listeners(), ("tcp:9091:interface=127.0.0.1",))
        self.assertFalse(config.metrics_on_webhook_port())

    def test_ipv6_host_escaped(self) -> None:
        """
        Colons in an IPv6 interface are escaped for the description syntax.
        """
        config = _valid("service: {host: '::1'}\nmetrics: {host: '::'}")
        self.assertEqual(config.webhook_listeners(), ("tcp:8080:interface=\\:\\:1",))
        self.assertEqual(config.metrics_listeners(), ("tcp:9090:interface=\\:\\:",))

    def test_listen_overrides(self) -> None:
        """
        C{listen} lists replace host and port, on either listener.
        """
        config = _valid(
            "service: {listen: ['tcp:0:interface=127.0.0.1', 'unix:/tmp/gw.sock']}\nmetrics: {listen: ['tcp:0']}"
        )
        self.assertEqual(config.webhook_listeners(), ("tcp:0:interface=127.0.0.1", "unix:/tmp/gw.sock"))
        self.assertEqual(config.metrics_listeners(), ("tcp:0",))

    def test_metrics_on_webhook_port(self) -> None:
        """
        Metrics on the webhook's port are served by the webhook listener:
        no listener of their own.
        """
        config = _valid("service: {port: 8080}\nmetrics: {port: 8080}")
        self.assertTrue(config.metrics_on_webhook_port())
        self.assertEqual(config.metrics_listeners(), ())

    def test_same_port_with_listen(self) -> None:
        """
        With a C{listen} override the ports are not compared: the metrics
        get their own listener.
        """
        config = _valid("service: {port: 9090, listen: ['tcp:8080']}")
        self.assertFalse(config.metrics_on_webhook_port())
        self.assertEqual(config.metrics_listeners(), ("tcp:9090:interface=0.0.0.0",))

    def test_metrics_disabled(self) -> None:
        """
        Disabled metrics have no listener, even on the webhook port.
        """
        for text in ("metrics: {enabled: false}", "metrics: {enabled: false, port: 8080}"):
            with self.subTest(text=text):
                config = _valid(text)
                self.assertEqual(config.metrics_listeners(), ())
                self.assertFalse(config.metrics_on_webhook_port())

    def test_invalid_descriptions(self) -> None:
        """
        Listen descriptions Twisted cannot parse are refused by index.
        """
        problems = _problems("service: {listen: ['tcp:8080', 'tcp:http']}\nmetrics: {listen: ['carrier-pigeon:1']}")
        self.assertEqual(len(problems), 2)
        self.assertTrue(
            problems[0].startswith("service.listen[1]: 'tcp:http' is not a valid Twisted endpoint description ("),
            problems[0],
        )
        self.assertTrue(
            problems[1].startswith(
                "metrics.listen[0]: 'carrier-pigeon:1' is not a valid Twisted endpoint description ("
            ),
            problems[1],
        )


class WarningTests(SynchronousTestCase):
    def test_no_token(self) -> None:
        """
        Endpoints requiring bearer authentication without any token get a
        warning that every request will be refused.
        """
        self.assertEqual(
            warnings_for(_valid("")),
            [
                "/webhook/prometheus, /webhook/grafana require authentication but no token is configured"
                " (webhook.auth.token, webhook.auth.tokens or WEBHOOK_AUTH_TOKEN): every request will get 401"
            ],
        )

    def test_no_warning(self) -> None:
        """
        A token, or no endpoint requiring authentication, means no warning.
        """
        self.assertEqual(warnings_for(_valid("webhook: {auth: {tokens: [a, b]}}")), [])
        self.assertEqual(
            warnings_for(_valid("webhook: {endpoints: [{path: /webhook/grafana, auth_required: false}]}")), []
        )

    def test_auth_type_none(self) -> None:
        """
        Authentication switched off while endpoints require it is warned
        about: the endpoints accept anyone.
        """
        self.assertEqual(
            warnings_for(_valid("webhook: {endpoints: [{path: /webhook/grafana}], auth: {type: none}}")),
            [
                "webhook.auth.type is none, so /webhook/grafana accept requests without authentication"
                " although auth_required is true"
            ],
        )


class AuthConfigTests(SynchronousTestCase):
    def test_credentials(self) -> None:
        """
        The accepted tokens are C{token} then C{tokens}, empty ones dropped.
        """
        self.assertEqual(AuthConfig(token="a", tokens=("b", "", "c")).credentials, ("a", "b", "c"))
        self.assertEqual(AuthConfig(token="").credentials, ())

    def test_secrets_not_in_repr(self) -> None:
        """
        Tokens never appear in the configuration's repr (which may be
        logged), however deep.
        """
        config = _valid("webhook: {auth: {token: s3cret-one, tokens: [s3cret-two]}}")
        for text in (repr(config.webhook.auth), repr(config), str(config)):
            self.assertNotIn("s3cret", text)
        self.assertIn("bearer", repr(config.webhook.auth))


class LoadConfigTests(SynchronousTestCase):
    def test_unreadable(self) -> None:
        """
        A file that cannot be read is one problem naming it.
        """
        missing = self.mktemp()
        error = self.assertRaises(ConfigError, load_config, missing, {})
        self.assertEqual(len(error.problems), 1)
        self.assertTrue(str(error.problems[0]).startswith(f"cannot read {missing}: "), str(error))

    def test_not_utf8(self) -> None:
        """
        A file that is not UTF-8 is reported as unreadable.
        """
        path = Path(self.mktemp())
        path.write_bytes(b"service: {name: \xff}\n")
        error = self.assertRaises(ConfigError, load_config, str(path), {})
        self.assertTrue(str(error).startswith(f"cannot read {path}: "), str(error))

    def test_origin_in_messages(self) -> None:
        """
        File-level messages name the file loaded.
        """
        path = Path(self.mktemp())
        path.write_text("[1]")
        error = self.assertRaises(ConfigError, load_config, str(path), {})
        self.assertEqual(str(error), f"{path}: the top level must be a mapping")

    def test_default_service_config(self) -> None:
        """
        The service defaults are those documented: all interfaces, port
        8080, 1 MiB bodies.
        """
        self.assertEqual(
            _valid("").service,
            ServiceConfig(name="alertgateway", host="0.0.0.0", port=8080, max_body_bytes=1024 * 1024),
        )
