"""
Tests for L{alertgateway.config}: the gateway's YAML configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import attrs
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.config import (
    AuthConfig,
    AuthType,
    ConfigError,
    CorrelationConfig,
    DedupConfig,
    DeliveryMode,
    EndpointConfig,
    EnvironmentConfig,
    EscalationConfig,
    GatewayConfig,
    LimitsConfig,
    LogFormat,
    MetricsConfig,
    QueueBackend,
    RateLimitingConfig,
    RedisFailure,
    SecurityConfig,
    ServiceConfig,
    SignatureScheme,
    SQLiteSync,
    StateBackend,
    StateConfig,
    StormConfig,
    WebhookConfig,
    load_config,
    parse_config,
    warnings_for,
)
from alertgateway.tls import TLSFiles
from tests.integration._certs import Authority, write_pem

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
        cert, key = _tls_files(self, "tls:1.crt", "tls=1.key")
        return cert, key

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
        An empty file is the default configuration, the state kept in the
        SQLite queue's database.
        """
        self.assertEqual(_valid(""), GatewayConfig(state=StateConfig(backend=StateBackend.SQLITE)))

    def test_state_follows_the_queue(self) -> None:
        """
        Unset, state.backend is sqlite with the SQLite queue and memory with
        the others; sqlite with another queue is refused, saying why.
        """
        self.assertEqual(_valid("queue: {backend: memory}\n").state.backend, StateBackend.MEMORY)
        self.assertEqual(_valid("queue: {backend: redis}\n").state.backend, StateBackend.MEMORY)
        self.assertEqual(_valid("state: {backend: redis}\n").state.backend, StateBackend.REDIS)
        problems = _problems("queue: {backend: memory}\nstate: {backend: sqlite}\n")
        self.assertEqual(
            problems,
            [
                "state.backend: sqlite keeps the state in the queue's database, so it needs queue.backend: sqlite"
                " (not memory); or use state.backend: memory"
            ],
        )

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
            "webhook.endpoints[1].sorce: unknown key (known keys: add_headers, allowed_ips, auth, auth_required,"
            " delivery, path, rate_limit, reject_status, source)",
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

    def test_access_log_exclude(self) -> None:
        """
        logging.access_log_exclude defaults to the probe and metrics paths,
        may be emptied, and refuses what is not a plain path, naming it.
        """
        self.assertEqual(
            _valid("").logging.access_log_exclude, ("/health", "/health/live", "/health/ready", "/metrics")
        )
        self.assertEqual(_valid("logging: {access_log_exclude: []}").logging.access_log_exclude, ())
        self.assertEqual(
            _problems("logging: {access_log_exclude: [/health, 'metrics']}"),
            ["logging.access_log_exclude: 'metrics' must start with /"],
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
  auth: {type: digest}
security: {tls_enabled: true, cert_file: /nonexistent/c, key_file: /nonexistent/k}
logging: {lvel: debug}
"""
        )
        self.assertEqual(
            problems,
            [
                "service.port: must be a port number between 0 and 65535",
                "webhook.auth.type: must be one of bearer, basic, api_key, hmac, none",
                "logging.lvel: unknown key (known keys: access_log, access_log_exclude, format, level)",
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
                "logging.lvel: unknown key (known keys: access_log, access_log_exclude, format, level)",
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
security: {allowed_ips: [10.0.0.0/8, 10.0.0.0/33]}
alert_processor: {endpoint: "ftp://x", max_retries: -1}
metrics: {path: metrics}
logging: {level: verbose, format: xml}
"""
            ),
            [
                "service.max_body_bytes: must be greater than 0",
                "webhook.endpoints[0].rate_limit: must be greater than 0",
                "security.allowed_ips: '10.0.0.0/33' is not an IP address, CIDR network or host name",
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
        Addresses and networks of both families, and host names, are
        accepted.
        """
        config = _valid("security: {allowed_ips: [10.0.0.1, 192.168.0.0/16, '::1', 'fd00::/8', am.example]}")
        self.assertEqual(config.security.allowed_ips, ("10.0.0.1", "192.168.0.0/16", "::1", "fd00::/8", "am.example"))

    def test_closed_sets(self) -> None:
        """
        Keys taking one of a few words refuse any other, naming the words in
        the order the documentation gives them; a value that is not a string
        is refused as such.
        """
        self.assertEqual(
            _problems(
                """
webhook: {endpoints: [{path: /webhook/grafana, delivery: later}], auth: {type: digest, scheme: svix}}
queue: {backend: disk, synchronous: "off"}
state: {backend: etcd, redis: {on_failure: retry}}
logging: {format: xml}
"""
            ),
            [
                "webhook.endpoints[0].delivery: must be one of async, sync",
                "webhook.auth.type: must be one of bearer, basic, api_key, hmac, none",
                "webhook.auth.scheme: must be one of grafana, standard",
                "queue.backend: must be one of sqlite, memory, redis",
                "queue.synchronous: must be one of full, normal",
                "state.backend: must be one of sqlite, memory, redis",
                "state.redis.on_failure: must be one of fail_open, fail_closed",
                "logging.format: must be one of json, text",
            ],
        )
        self.assertEqual(
            _problems("queue: {backend: 1, synchronous: null}\nstate: {redis: {on_failure: true}}"),
            [
                "queue.backend: must be a string",
                "queue.synchronous: must be a string",
                "state.redis.on_failure: must be a string",
            ],
        )

    def test_closed_set_values(self) -> None:
        """
        A word of a closed set is read as the member of its enum, which
        compares equal to the word and prints as it, so that code and
        output written for strings see no difference.
        """
        config = _valid(
            """
webhook: {endpoints: [{path: /webhook/grafana, delivery: sync}], auth: {type: hmac, scheme: standard}}
queue: {backend: redis, synchronous: normal}
state: {backend: redis, redis: {on_failure: fail_closed}}
logging: {format: text}
"""
        )
        values = [
            (config.webhook.endpoints[0].delivery, DeliveryMode.SYNC),
            (config.webhook.auth.type, AuthType.HMAC),
            (config.webhook.auth.scheme, SignatureScheme.STANDARD),
            (config.queue.backend, QueueBackend.REDIS),
            (config.queue.synchronous, SQLiteSync.NORMAL),
            (config.state.backend, StateBackend.REDIS),
            (config.state.redis.on_failure, RedisFailure.FAIL_CLOSED),
            (config.logging.format, LogFormat.TEXT),
        ]
        for value, member in values:
            with self.subTest(member=member):
                self.assertIs(value, member)
                self.assertEqual(value, member.value)
                self.assertEqual(f"{value}", member.value)
                self.assertEqual(str(value), member.value)


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
        self.assertEqual(config.webhook_listeners(), ("tcp:8081:interface=127.0.0.1:backlog=1024",))
        self.assertEqual(config.metrics_listeners(), ("tcp:9091:interface=127.0.0.1",))
        self.assertFalse(config.metrics_on_webhook_port())

    def test_ipv6_host_escaped(self) -> None:
        """
        Colons in an IPv6 interface are escaped for the description syntax.
        """
        config = _valid("service: {host: '::1'}\nmetrics: {host: '::'}")
        self.assertEqual(config.webhook_listeners(), ("tcp:8080:interface=\\:\\:1:backlog=1024",))
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


def _tls_files(case: SynchronousTestCase, *names: str) -> list[str]:
    """
    Write usable TLS material (the configuration loads it as the listener
    would) and return the paths: a name with "key" gets the server key, one
    with "ca" or "chain" the authority's certificate, any other the server
    certificate.
    """
    folder = Path(case.mktemp())
    folder.mkdir()
    authority = Authority("test-ca")
    server = authority.server()
    paths = []
    contents = [server.cert_pem, server.key_pem]
    for index, name in enumerate(names):
        content = contents[index] if index < len(contents) else authority.cert_pem
        paths.append(str(write_pem(folder / name, content)))
    return paths


def _secret_file(case: SynchronousTestCase, text: str) -> str:
    path = Path(case.mktemp())
    path.write_text(text, encoding="utf-8")
    return str(path)


STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class EdgeKeysTests(SynchronousTestCase):
    """
    The keys issue 3 adds: each loads, and each has its documented default.
    """

    def test_every_key(self) -> None:
        """
        A file using every new key loads, each value where it belongs.
        """
        cert, key, chain, ca = _tls_files(self, "tls.crt", "tls.key", "chain.pem", "ca.pem")
        config = _valid(
            f"""
service:
  max_concurrent_requests: 50
  probe_listen: ['tcp:8081:interface=127.0.0.1']
  gzip_min_bytes: 0
webhook:
  forward_headers: [X-Scope-OrgID, traceparent]
  auth:
    type: hmac
    scheme: grafana
    secrets: [s1]
    signature_header: X-Sig
    timestamp_header: X-Time
    tolerance: 2m
  endpoints:
    - path: /webhook/prometheus
      reject_status: 503
      allowed_ips: [192.0.2.0/24, am.example]
      add_headers: {{X-Tenant: team-a}}
      auth:
        type: basic
        username: am
        password: pw
        users: [{{username: am2, password: pw2}}]
    - path: /webhook/grafana
      auth: {{type: api_key, header: X-Key, tokens: [k1]}}
    - path: /hooks/svix
      source: grafana
      auth: {{type: hmac, scheme: standard, secret: {STANDARD_SECRET}}}
security:
  tls_enabled: true
  cert_file: {cert}
  key_file: {key}
  chain_file: {chain}
  client_ca_file: {ca}
  require_client_cert: true
  allowed_client_names: [alertmanager.monitoring.svc, 'spiffe://cluster/ns/monitoring/sa/am']
  cert_reload_interval: 1m
  allowed_ips: [10.0.0.0/8, grafana.example]
  trusted_proxies: [10.1.0.0/16, 'fd00::/8']
  resolve_interval: 10m
rate_limiting:
  enabled: false
  per_client_limit: 30
  reject_status: 503
  max_tracked_clients: 500
limits:
  max_alerts_per_request: 10
  max_labels_per_alert: 20
  max_label_name_length: 30
  max_label_value_length: 40
  max_annotation_bytes: 50
  max_json_depth: 6
"""
        )
        service = config.service
        self.assertEqual(
            (service.max_concurrent_requests, service.probe_listen, service.gzip_min_bytes),
            (50, ("tcp:8081:interface=127.0.0.1",), 0),
        )
        webhook = config.webhook
        self.assertEqual(webhook.forward_headers, ("X-Scope-OrgID", "traceparent"))
        self.assertEqual(
            webhook.auth,
            AuthConfig(
                type=AuthType.HMAC,
                scheme=SignatureScheme.GRAFANA,
                secrets=("s1",),
                signature_header="X-Sig",
                timestamp_header="X-Time",
                tolerance=120.0,
            ),
        )
        prometheus, grafana, svix = webhook.endpoints
        self.assertEqual(prometheus.reject_status, 503)
        self.assertEqual(prometheus.allowed_ips, ("192.0.2.0/24", "am.example"))
        self.assertEqual(prometheus.add_headers, {"X-Tenant": "team-a"})
        assert prometheus.auth is not None
        self.assertEqual(prometheus.auth.basic_users, (("am", "pw"), ("am2", "pw2")))
        self.assertEqual(grafana.auth, AuthConfig(type=AuthType.API_KEY, header="X-Key", tokens=("k1",)))
        assert svix.auth is not None
        self.assertEqual((svix.auth.scheme, svix.auth.signing_secrets), ("standard", (STANDARD_SECRET,)))
        security = config.security
        self.assertEqual(
            security,
            SecurityConfig(
                tls_enabled=True,
                cert_file=cert,
                key_file=key,
                chain_file=chain,
                client_ca_file=ca,
                require_client_cert=True,
                allowed_client_names=("alertmanager.monitoring.svc", "spiffe://cluster/ns/monitoring/sa/am"),
                cert_reload_interval=60.0,
                allowed_ips=("10.0.0.0/8", "grafana.example"),
                trusted_proxies=("10.1.0.0/16", "fd00::/8"),
                resolve_interval=600.0,
            ),
        )
        self.assertEqual(
            config.rate_limiting,
            RateLimitingConfig(enabled=False, per_client_limit=30, reject_status=503, max_tracked_clients=500),
        )
        self.assertEqual(config.limits, LimitsConfig(10, 20, 30, 40, 50, 6))
        self.assertEqual(warnings_for(config), [])

    def test_defaults(self) -> None:
        """
        Without the new keys, every one has its documented default: no
        extra listeners, headers, proxies or client limit; 429; the
        sanitisation limits of the README.
        """
        config = _valid("")
        service = config.service
        self.assertEqual(
            (service.max_concurrent_requests, service.probe_listen, service.gzip_min_bytes), (1000, (), 1024)
        )
        self.assertEqual(config.webhook.forward_headers, ())
        self.assertEqual(
            config.webhook.auth,
            AuthConfig(
                type=AuthType.BEARER,
                header="X-API-Key",
                scheme=SignatureScheme.GRAFANA,
                signature_header="X-Grafana-Alerting-Signature",
                timestamp_header=None,
                tolerance=300.0,
            ),
        )
        for endpoint in config.webhook.endpoints:
            self.assertEqual(
                (endpoint.auth, endpoint.allowed_ips, endpoint.reject_status, endpoint.add_headers),
                (None, (), None, {}),
            )
        self.assertEqual(
            config.security,
            SecurityConfig(
                chain_file=None,
                client_ca_file=None,
                require_client_cert=False,
                allowed_client_names=(),
                cert_reload_interval=30.0,
                allowed_ips=(),
                trusted_proxies=(),
                resolve_interval=300.0,
            ),
        )
        self.assertEqual(
            config.rate_limiting,
            RateLimitingConfig(
                enabled=True,
                global_limit=10000,
                burst_size=100,
                per_client_limit=None,
                reject_status=None,
                max_tracked_clients=100_000,
            ),
        )
        self.assertEqual(config.limits, LimitsConfig(1000, 128, 256, 4096, 65536, 32))

    def test_auth_for(self) -> None:
        """
        An endpoint's own auth replaces webhook.auth entirely (nothing is
        merged from it); an endpoint without one uses webhook.auth.
        """
        config = _valid(
            """
webhook:
  auth: {tokens: [t1]}
  endpoints:
    - {path: /webhook/prometheus, auth: {type: api_key, tokens: [k1]}}
    - {path: /webhook/grafana}
"""
        )
        own, shared = config.webhook.endpoints
        self.assertEqual(config.webhook.auth_for(own), AuthConfig(type=AuthType.API_KEY, tokens=("k1",)))
        self.assertIs(config.webhook.auth_for(shared), config.webhook.auth)
        self.assertEqual(WebhookConfig().auth_for(EndpointConfig(path="/x")), AuthConfig())

    def test_hashable(self) -> None:
        """
        Configuration objects stay hashable although an endpoint holds a
        mapping of headers.
        """
        endpoint = _valid("webhook: {endpoints: [{path: /webhook/grafana, add_headers: {X-A: b}}]}").webhook.endpoints[
            0
        ]
        self.assertEqual(hash(endpoint), hash(attrs.evolve(endpoint, add_headers={"X-A": "b"})))
        self.assertIsInstance(hash(_valid("")), int)

    def test_tls_files(self) -> None:
        """
        The TLS files and mutual TLS settings are handed on together when
        TLS is on, and not at all when it is off.
        """
        cert, key, ca = _tls_files(self, "c.pem", "k.pem", "ca.pem")
        text = (
            f"security: {{tls_enabled: true, cert_file: {cert}, key_file: {key}, client_ca_file: {ca},"
            " allowed_client_names: [am.example], require_client_cert: true}"
        )
        self.assertEqual(
            _valid(text).security.tls_files(),
            TLSFiles(
                cert_file=cert,
                key_file=key,
                chain_file=None,
                client_ca_file=ca,
                require_client_cert=True,
                allowed_client_names=("am.example",),
            ),
        )
        self.assertIsNone(_valid("").security.tls_files())
        self.assertIsNone(SecurityConfig(tls_enabled=True, cert_file=cert).tls_files())


class EdgeValidationTests(SynchronousTestCase):
    """
    The checks on the new keys, each message naming its key.
    """

    def test_reject_status(self) -> None:
        """
        Only 429 and 503 may answer a request over a rate limit, globally
        or per endpoint.
        """
        self.assertEqual(
            _problems(
                "rate_limiting: {reject_status: 500}\n"
                "webhook: {endpoints: [{path: /webhook/grafana, reject_status: 404}]}"
            ),
            [
                "webhook.endpoints[0].reject_status: must be 429 or 503",
                "rate_limiting.reject_status: must be 429 or 503",
            ],
        )
        self.assertEqual(
            _valid("webhook: {endpoints: [{path: /webhook/prometheus, reject_status: 503}]}")
            .webhook.endpoints[0]
            .reject_status,
            503,
        )

    def test_forward_headers_refused(self) -> None:
        """
        The sender's credentials, hop-by-hop headers, those the gateway
        sets itself and malformed names are never forwarded.
        """
        credential = "carries the sender's credentials and is never forwarded"
        hop = "is hop-by-hop or set by the gateway itself and is never forwarded"
        cases = {
            "Authorization": f"Authorization {credential}",
            "cookie": f"cookie {credential}",
            "X-API-Key": f"X-API-Key {credential}",
            "Connection": f"Connection {hop}",
            "Transfer-Encoding": f"Transfer-Encoding {hop}",
            "Proxy-Authorization": f"Proxy-Authorization {hop}",
            "Host": f"Host {hop}",
            "X-Request-ID": f"X-Request-ID {hop}",
            "X Scope": "'X Scope' is not a valid header name",
            "": "'' is not a valid header name",
        }
        for name, message in cases.items():
            with self.subTest(name=name):
                self.assertEqual(
                    _problems(f"webhook: {{forward_headers: [X-Scope-OrgID, '{name}']}}"),
                    [f"webhook.forward_headers: {message}"],
                )

    def test_forward_api_key_header(self) -> None:
        """
        The header an api_key endpoint reads its key from is a credential
        too, whatever it is called, for webhook.auth and endpoints alike.
        """
        self.assertEqual(
            _problems(
                """
webhook:
  auth: {type: api_key, header: X-Token, tokens: [k]}
  forward_headers: [traceparent, x-token, X-Other]
  endpoints:
    - {path: /webhook/grafana, auth: {type: api_key, header: X-Other, tokens: [k]}}
"""
            ),
            [
                "webhook.forward_headers[1]: x-token carries the sender's credentials (webhook.auth.header)"
                " and is never forwarded",
                "webhook.forward_headers[2]: X-Other carries the sender's credentials"
                " (webhook.endpoints[0].auth.header) and is never forwarded",
            ],
        )
        self.assertEqual(
            _valid("webhook: {forward_headers: [X-Token], auth: {tokens: [t]}}").webhook.forward_headers, ("X-Token",)
        )

    def test_add_headers(self) -> None:
        """
        Static headers must have valid names that are not hop-by-hop, and
        one-line string values.
        """
        where = "webhook.endpoints[0].add_headers"
        never = "is hop-by-hop or set by the gateway itself and is never forwarded"
        cases = {
            "{Connection: close}": f"{where}: Connection {never}",
            "{Content-Length: '1'}": f"{where}: Content-Length {never}",
            "{'X Bad': v}": f"{where}: 'X Bad' is not a valid header name",
            '{X-Multi: "a\\r\\nX-Injected: b"}': f"{where}: the value of X-Multi must be one line",
            "{X-Count: 3}": f"{where}.X-Count: must be a string",
            "{1: a}": f"{where}.1: must be named by a string (quote the name)",
            "[X-A]": f"{where}: must be a mapping of strings",
        }
        for value, message in cases.items():
            with self.subTest(value=value):
                self.assertEqual(
                    _problems(f"webhook: {{endpoints: [{{path: /webhook/grafana, add_headers: {value}}}]}}"), [message]
                )

    def test_allowed_ips_hostnames(self) -> None:
        """
        Host names are accepted in allow lists (global and per endpoint);
        things that are neither an address nor a name are refused, a
        mistyped dotted quad included.
        """
        config = _valid(
            "security: {allowed_ips: [am.example., a-b.c0.example, localhost]}\n"
            "webhook: {endpoints: [{path: /webhook/grafana, allowed_ips: [10.0.0.1, grafana.example]}]}"
        )
        self.assertEqual(config.security.allowed_ips, ("am.example.", "a-b.c0.example", "localhost"))
        self.assertEqual(config.webhook.endpoints[0].allowed_ips, ("10.0.0.1", "grafana.example"))
        for value in ("10.0.0.256", "1.2.3", "-a.example", "a-.example", "under_score.example", "a..example", "x" * 64):
            with self.subTest(value=value):
                self.assertEqual(
                    _problems(f"security: {{allowed_ips: ['{value}']}}"),
                    [f"security.allowed_ips: '{value}' is not an IP address, CIDR network or host name"],
                )
        self.assertEqual(
            _problems("webhook: {endpoints: [{path: /webhook/grafana, allowed_ips: ['a b']}]}"),
            ["webhook.endpoints[0].allowed_ips: 'a b' is not an IP address, CIDR network or host name"],
        )

    def test_trusted_proxies(self) -> None:
        """
        Trusted proxies must be addresses or networks: a name could be made
        to resolve to anyone.
        """
        self.assertEqual(
            _valid("security: {trusted_proxies: [10.0.0.1, 'fd00::/8']}").security.trusted_proxies,
            ("10.0.0.1", "fd00::/8"),
        )
        self.assertEqual(
            _problems("security: {trusted_proxies: [10.0.0.0/8, proxy.example]}"),
            ["security.trusted_proxies: 'proxy.example' is not an IP address or CIDR network"],
        )

    def test_forwarded_header(self) -> None:
        """
        security.forwarded_header says which header the trusted proxies
        write: X-Forwarded-For unless set to forwarded; nothing else.
        """
        self.assertEqual(_valid("").security.forwarded_header, "x-forwarded-for")
        self.assertEqual(_valid("security: {forwarded_header: forwarded}").security.forwarded_header, "forwarded")
        self.assertEqual(
            _problems("security: {forwarded_header: both}"),
            ["security.forwarded_header: must be one of x-forwarded-for, forwarded"],
        )

    def test_auth_choices(self) -> None:
        """
        The auth type and signature scheme are among those offered, and
        header names are header names.
        """
        self.assertEqual(
            _problems("webhook: {auth: {type: digest, scheme: svix, header: 'X Key', signature_header: ''}}"),
            [
                "webhook.auth.type: must be one of bearer, basic, api_key, hmac, none",
                "webhook.auth.header: 'X Key' is not a valid header name",
                "webhook.auth.scheme: must be one of grafana, standard",
                "webhook.auth.signature_header: '' is not a valid header name",
            ],
        )
        self.assertEqual(
            _problems("webhook: {auth: {timestamp_header: 'X:Time', tolerance: 0}}"),
            [
                "webhook.auth.timestamp_header: 'X:Time' is not a valid header name",
                "webhook.auth.tolerance: must be greater than 0",
            ],
        )

    def test_unknown_auth_key(self) -> None:
        """
        A misspelt auth key is refused with the auth keys listed.
        """
        (problem,) = _problems("webhook: {auth: {tokne: x}}")
        self.assertEqual(
            problem,
            "webhook.auth.tokne: unknown key (known keys: header, password, password_env, password_file, scheme,"
            " secret, secret_env, secret_file, secrets, signature_header, timestamp_header, token, token_env,"
            " token_file, tokens, tolerance, type, username, users)",
        )

    def test_standard_secrets(self) -> None:
        """
        Standard Webhooks secrets must be C{whsec_} and base64 of a
        non-empty key, reported at the key they came from and never quoted;
        Grafana secrets may be any text.
        """
        message = "a Standard Webhooks secret is 'whsec_' followed by base64"
        bad_file = _secret_file(self, f"{STANDARD_SECRET}\nwhsec_???\n")
        cases = {
            "secret: MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw": "secret",
            "secret: whsec_": "secret",
            f"secrets: [{STANDARD_SECRET}, 'whsec_not base64']": "secrets",
            f"secret_file: {bad_file}": "secret_file",
            "secret_env: GW_SECRET": "secret_env",
        }
        for text, key in cases.items():
            with self.subTest(text=text):
                problems = _problems(
                    f"webhook: {{auth: {{type: hmac, scheme: standard, {text}}}}}", {"GW_SECRET": "plain-text"}
                )
                self.assertEqual(problems, [f"webhook.auth.{key}: {message}"])
                for secret in ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "not base64", "???", "plain-text"):
                    self.assertNotIn(secret, problems[0])
        config = _valid(f"webhook: {{auth: {{type: hmac, scheme: standard, secrets: [{STANDARD_SECRET}]}}}}")
        self.assertEqual(config.webhook.auth.signing_secrets, (STANDARD_SECRET,))
        config = _valid("webhook: {auth: {type: hmac, secret: 'any text at all'}}")
        self.assertEqual(config.webhook.auth.signing_secrets, ("any text at all",))

    def test_mutual_tls_needs_ca(self) -> None:
        """
        Requiring or naming client certificates needs a CA to verify them.
        """
        cert, key = _tls_files(self, "c.pem", "k.pem")
        base = f"security: {{tls_enabled: true, cert_file: {cert}, key_file: {key}, "
        self.assertEqual(
            _problems(base + "require_client_cert: true}"),
            ["security.require_client_cert: needs security.client_ca_file to verify client certificates"],
        )
        self.assertEqual(
            _problems(base + "allowed_client_names: [am.example]}"),
            ["security.allowed_client_names: needs security.client_ca_file to verify client certificates"],
        )

    def test_tls_files_exist(self) -> None:
        """
        The chain and client CA files, when given, must exist.
        """
        cert, key = _tls_files(self, "c.pem", "k.pem")
        self.assertEqual(
            _problems(
                f"security: {{tls_enabled: true, cert_file: {cert}, key_file: {key},"
                " chain_file: /nonexistent/chain.pem, client_ca_file: /nonexistent/ca.pem}"
            ),
            [
                "security.chain_file: file not found: /nonexistent/chain.pem",
                "security.client_ca_file: file not found: /nonexistent/ca.pem",
            ],
        )

    def test_probe_listen(self) -> None:
        """
        Probe listeners are checked like the webhook's.
        """
        (problem,) = _problems("service: {probe_listen: ['tcp:8081', 'tcp:http']}")
        self.assertTrue(
            problem.startswith("service.probe_listen[1]: 'tcp:http' is not a valid Twisted endpoint description ("),
            problem,
        )

    def test_numbers(self) -> None:
        """
        Counts and limits must be positive (the gzip threshold may be 0),
        intervals positive durations.
        """
        self.assertEqual(
            _problems(
                """
service: {max_concurrent_requests: 0, gzip_min_bytes: -1}
security: {cert_reload_interval: 0, resolve_interval: 0s}
rate_limiting: {per_client_limit: 0, max_tracked_clients: 0}
limits:
  max_alerts_per_request: 0
  max_labels_per_alert: 0
  max_label_name_length: 0
  max_label_value_length: 0
  max_annotation_bytes: 0
  max_json_depth: 0
"""
            ),
            [
                "service.max_concurrent_requests: must be greater than 0",
                "service.gzip_min_bytes: must not be negative",
                "security.cert_reload_interval: must be greater than 0",
                "security.resolve_interval: must be greater than 0",
                "rate_limiting.per_client_limit: must be greater than 0",
                "rate_limiting.max_tracked_clients: must be greater than 0",
                "limits.max_alerts_per_request: must be greater than 0",
                "limits.max_labels_per_alert: must be greater than 0",
                "limits.max_label_name_length: must be greater than 0",
                "limits.max_label_value_length: must be greater than 0",
                "limits.max_annotation_bytes: must be greater than 0",
                "limits.max_json_depth: must be greater than 0",
            ],
        )


class SecretSourceTests(SynchronousTestCase):
    """
    Secrets read from files (one per line) and from the environment given
    to L{parse_config}, merged into the lists; failures named by key.
    """

    def test_token_file_and_env(self) -> None:
        """
        Tokens from C{token_file} (blank lines and surrounding blanks
        ignored) and C{token_env} join C{token} and C{tokens}, in that
        order.
        """
        path = _secret_file(self, "\n  t-file-1  \n\nt-file-2\n")
        config = _valid(
            f"webhook: {{auth: {{token: t0, tokens: [t1], token_file: {path}, token_env: GW_TOKEN}}}}",
            {"GW_TOKEN": " t-env \n"},
        )
        self.assertEqual(config.webhook.auth.credentials, ("t0", "t1", "t-file-1", "t-file-2", "t-env"))

    def test_api_key_from_file(self) -> None:
        """
        API keys come from the same keys as bearer tokens.
        """
        path = _secret_file(self, "k-file\n")
        config = _valid(f"webhook: {{auth: {{type: api_key, token_file: {path}}}}}")
        self.assertEqual(config.webhook.auth.credentials, ("k-file",))

    def test_secret_file_rotation(self) -> None:
        """
        A secret file holding the old and the new secret yields both.
        """
        path = _secret_file(self, "old\nnew\n")
        config = _valid(
            f"webhook: {{auth: {{type: hmac, secret: s0, secret_file: {path}, secret_env: GW_HMAC}}}}",
            {"GW_HMAC": "from-env"},
        )
        self.assertEqual(config.webhook.auth.signing_secrets, ("s0", "old", "new", "from-env"))

    def test_passwords(self) -> None:
        """
        A password from C{password_file} (its first line) or
        C{password_env}, for the main user and each of C{users}.
        """
        path = _secret_file(self, "pw-file\nignored\n")
        config = _valid(
            f"""
webhook:
  auth:
    type: basic
    username: am
    password_file: {path}
    users:
      - {{username: a, password_env: GW_A}}
      - {{username: b, password_file: {path}}}
      - {{username: c, password: inline}}
""",
            {"GW_A": "pw-env"},
        )
        self.assertEqual(
            config.webhook.auth.basic_users, (("am", "pw-file"), ("a", "pw-env"), ("b", "pw-file"), ("c", "inline"))
        )
        config = _valid("webhook: {auth: {type: basic, username: am, password_env: GW_P}}", {"GW_P": "p"})
        self.assertEqual(config.webhook.auth.basic_users, (("am", "p"),))

    def test_missing_sources(self) -> None:
        """
        A file that cannot be read, a file without a secret, or a variable
        that is unset or empty is one problem at its key; the password it
        should have given is not reported again.
        """
        empty = _secret_file(self, "\n \n")
        problems = _problems(
            f"""
webhook:
  auth:
    type: basic
    username: am
    password_file: /nonexistent/pw
    token_file: {empty}
    token_env: GW_UNSET
    secret_env: GW_EMPTY
    users: [{{username: a, password_env: GW_UNSET}}]
  endpoints:
    - path: /webhook/grafana
      auth: {{secret_file: /nonexistent/hmac}}
""",
            {"GW_EMPTY": ""},
        )
        self.assertEqual(
            problems,
            [
                f"webhook.auth.token_file: {empty} holds no secret",
                "webhook.auth.token_env: environment variable GW_UNSET is not set",
                "webhook.auth.secret_env: environment variable GW_EMPTY is not set",
                "webhook.auth.password_file: cannot read /nonexistent/pw: FileNotFoundError",
                "webhook.auth.users[0].password_env: environment variable GW_UNSET is not set",
                "webhook.endpoints[0].auth.secret_file: cannot read /nonexistent/hmac: FileNotFoundError",
            ],
        )

    def test_not_utf8(self) -> None:
        """
        A secret file that is not UTF-8 is reported by the error's name,
        without its content.
        """
        path = Path(self.mktemp())
        path.write_bytes(b"s3cret\xff\n")
        self.assertEqual(
            _problems(f"webhook: {{auth: {{token_file: {path}}}}}"),
            [f"webhook.auth.token_file: cannot read {path}: UnicodeDecodeError"],
        )

    def test_passwords_required(self) -> None:
        """
        A user without any password source is refused.
        """
        self.assertEqual(
            _problems(
                "webhook: {auth: {type: basic, username: am, users: [{username: a}, {username: b, password: p}]}}"
            ),
            [
                "webhook.auth.users[0].password: is required (or password_file, password_env)",
                "webhook.auth.password: is required with username (or password_file, password_env)",
            ],
        )

    def test_endpoint_index(self) -> None:
        """
        An endpoint's secret problem names its index in the file, even when
        an earlier endpoint is itself refused.
        """
        self.assertEqual(
            _problems(
                "webhook: {endpoints: [{path: /custom}, {path: /webhook/grafana, auth: {token_file: /nonexistent}}]}"
            ),
            [
                "webhook.endpoints[1].auth.token_file: cannot read /nonexistent: FileNotFoundError",
                "webhook.endpoints[0].source: is required for /custom (one of alertmanager, grafana)",
            ],
        )

    def test_process_environment(self) -> None:
        """
        Without an explicit environment, C{*_env} reads the process's.
        """
        self.patch(os, "environ", {"GW_TOKEN": "from-process"})
        self.assertEqual(
            parse_config("webhook: {auth: {token_env: GW_TOKEN}}").webhook.auth.credentials, ("from-process",)
        )


class EdgeWarningTests(SynchronousTestCase):
    """
    L{warnings_for} on authentication per endpoint and mutual TLS.
    """

    def test_endpoint_auth_replaces_shared(self) -> None:
        """
        An endpoint with its own credentials is not warned about for
        webhook.auth having none.
        """
        config = _valid(
            "webhook: {endpoints: [{path: /webhook/grafana, auth: {tokens: [t]}}, {path: /webhook/prometheus}]}"
        )
        self.assertEqual(
            warnings_for(config),
            [
                "/webhook/prometheus require authentication but no token is configured"
                " (webhook.auth.token, webhook.auth.tokens or WEBHOOK_AUTH_TOKEN): every request will get 401"
            ],
        )

    def test_no_credentials_of_other_kinds(self) -> None:
        """
        Basic without users, api_key without keys and hmac without secrets
        are warned about, shared or per endpoint.
        """
        for kind in ("basic", "api_key", "hmac"):
            with self.subTest(kind=kind):
                # Signed with timestamps, so that only the credentials are warned about.
                auth = f"type: {kind}" + (", timestamp_header: X-Grafana-Alerting-Timestamp" if kind == "hmac" else "")
                config = _valid(
                    f"webhook: {{auth: {{{auth}}}, endpoints: [{{path: /webhook/prometheus}},"
                    f" {{path: /webhook/grafana, auth: {{{auth}}}}}]}}"
                )
                self.assertEqual(
                    warnings_for(config),
                    [
                        f"/webhook/prometheus require authentication but webhook.auth ({kind}) has no credentials:"
                        " every request will get 401",
                        f"webhook.endpoints[1].auth ({kind}) has no credentials: every request to /webhook/grafana"
                        " will get 401",
                    ],
                )

    def test_endpoint_auth_none(self) -> None:
        """
        An endpoint switching authentication off while requiring it is
        warned about; one not requiring it is not.
        """
        config = _valid(
            "webhook: {auth: {tokens: [t]}, endpoints: [{path: /webhook/grafana, auth: {type: none}},"
            " {path: /webhook/prometheus, auth_required: false, auth: {type: basic}}]}"
        )
        self.assertEqual(
            warnings_for(config),
            [
                "webhook.endpoints[0].auth.type is none, so /webhook/grafana accepts requests without authentication"
                " although auth_required is true"
            ],
        )

    def test_configured_credentials(self) -> None:
        """
        Credentials of every kind silence the warnings.
        """
        config = _valid(
            "webhook: {auth: {type: hmac, secret: s, timestamp_header: X-Grafana-Alerting-Timestamp}, endpoints: ["
            "{path: /webhook/grafana, auth: {type: basic, username: u, password: p}},"
            " {path: /webhook/prometheus, auth: {type: api_key, tokens: [k]}}, {path: /webhook/alertmanager}]}"
        )
        self.assertEqual(warnings_for(config), [])

    def test_mutual_tls_without_tls(self) -> None:
        """
        Client certificate settings without TLS do nothing, and say so.
        """
        config = _valid("webhook: {auth: {tokens: [t]}}\nsecurity: {require_client_cert: true}")
        self.assertEqual(
            warnings_for(config),
            ["security.tls_enabled is false, so no client certificate is asked for (mutual TLS is off)"],
        )

    def test_names_without_requiring(self) -> None:
        """
        Allowed client names alone make a certificate required (tls.py asks
        for one), so there is nothing to warn about.
        """
        cert, key, ca = _tls_files(self, "c.pem", "k.pem", "ca.pem")
        config = _valid(
            "webhook: {auth: {tokens: [t]}}\n"
            f"security: {{tls_enabled: true, cert_file: {cert}, key_file: {key}, client_ca_file: {ca},"
            " allowed_client_names: [am.example]}"
        )
        self.assertEqual(warnings_for(config), [])


class ForwardedCredentialTests(SynchronousTestCase):
    def test_signature_headers_never_forwarded(self) -> None:
        """
        Naming a signature or timestamp header (Grafana's, or Standard
        Webhooks') in forward_headers is refused by path: it is the sender's
        credential.
        """
        for auth, header in (
            ("{type: hmac, scheme: grafana, secret: s, timestamp_header: X-Ts}", "X-Ts"),
            ("{type: hmac, scheme: grafana, secret: s}", "X-Grafana-Alerting-Signature"),
            ("{type: hmac, scheme: standard, secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}", "webhook-signature"),
        ):
            with self.assertRaises(ConfigError) as caught:
                parse_config(f"webhook:\n  auth: {auth}\n  forward_headers: [traceparent, {header}]\n", {})
            self.assertEqual([str(p).split(":")[0] for p in caught.exception.problems], ["webhook.forward_headers[1]"])


class UnusableTLSFilesTests(SynchronousTestCase):
    def test_certificate_that_does_not_load(self) -> None:
        """
        A certificate file that exists but is not a certificate is refused at
        load time (as check-config would show), naming the key and file.
        """
        cert, key = _tls_files(self, "tls.crt", "tls.key")
        Path(cert).write_text("not a certificate")
        with self.assertRaises(ConfigError) as caught:
            parse_config(f"security: {{tls_enabled: true, cert_file: '{cert}', key_file: '{key}'}}", {})
        (problem,) = caught.exception.problems
        self.assertTrue(str(problem).startswith(f"security.cert_file {cert}"), str(problem))


class DecideConfigTests(SynchronousTestCase):
    """
    The dedup, escalation, correlation and storm sections.
    """

    def test_defaults(self) -> None:
        """
        Without the sections: dedup over a 5-minute window, 100000 tracked,
        expired every 5 s; escalation on, by the environment and env labels,
        production by default, no environment configured; groups by
        alertname and namespace; storms of more than 10 in a minute,
        updated every 30 s, closed after 5 quiet minutes, 100 listed.
        """
        config = _valid("")
        self.assertEqual(
            config.dedup,
            DedupConfig(enabled=True, window=300.0, ignore_labels=(), max_tracked=100_000, expire_interval=5.0),
        )
        self.assertEqual(
            config.escalation,
            EscalationConfig(
                enabled=True,
                environment_labels=("environment", "env"),
                default_environment="production",
                environments={},
            ),
        )
        self.assertEqual(
            config.correlation, CorrelationConfig(group_by=("alertname", "namespace"), use_sender_group=False)
        )
        self.assertEqual(
            config.storm,
            StormConfig(
                enabled=True, threshold=10, window=60.0, flush_interval=30.0, quiet_period=300.0, max_members_listed=100
            ),
        )

    def test_values_and_durations(self) -> None:
        """
        Every key is read, durations in any unit.
        """
        config = _valid(
            """
dedup:
  enabled: false
  window: 2m
  ignore_labels: [replica, prometheus_replica]
  max_tracked: 50
  expire_interval: 500ms
escalation:
  enabled: false
  environment_labels: [tier]
  default_environment: staging
  environments:
    production: {total: 7, window: 1h}
    qa: {namespaces: ["qa-*", qa], level: page, total: 2, within: 1, window: 90}
correlation: {group_by: [cluster], use_sender_group: true}
storm: {enabled: false, threshold: 3, window: 30s, flush_interval: 1m, quiet_period: 1h, max_members_listed: 5}
"""
        )
        self.assertEqual(
            config.dedup,
            DedupConfig(False, 120.0, ("replica", "prometheus_replica"), max_tracked=50, expire_interval=0.5),
        )
        self.assertEqual(
            config.escalation.environments,
            {
                "production": EnvironmentConfig(total=7, window=3600.0),
                "qa": EnvironmentConfig(namespaces=("qa-*", "qa"), level="page", total=2, within=1, window=90.0),
            },
        )
        self.assertEqual(
            (config.escalation.enabled, config.escalation.environment_labels, config.escalation.default_environment),
            (False, ("tier",), "staging"),
        )
        self.assertEqual(config.correlation, CorrelationConfig(("cluster",), True))
        self.assertEqual(config.storm, StormConfig(False, 3, 30.0, 60.0, 3600.0, 5))
        self.assertIsInstance(hash(config), int)

    def test_validation(self) -> None:
        """
        Numbers and durations that must be positive, and values of the wrong
        type, are refused by key, inside environments too.
        """
        self.assertEqual(
            _problems(
                """
dedup: {window: 0, max_tracked: 0, expire_interval: soon, ignore_labels: replica}
escalation:
  environment_labels: env
  environments:
    production: {total: 0, within: -1, window: 0s, level: 3, namespaces: prod-*}
correlation: {group_by: [1], use_sender_group: "yes"}
storm: {threshold: 0, window: -1, flush_interval: 0, quiet_period: 0, max_members_listed: 0}
"""
            ),
            [
                "dedup.window: must be greater than 0",
                "dedup.ignore_labels: must be a list",
                "dedup.max_tracked: must be greater than 0",
                "dedup.expire_interval: must be a duration like 5s, 250ms or 5m",
                "escalation.environment_labels: must be a list",
                "escalation.environments.production.namespaces: must be a list",
                "escalation.environments.production.level: must be a string",
                "escalation.environments.production.total: must be greater than 0",
                "escalation.environments.production.within: must be greater than 0",
                "escalation.environments.production.window: must be greater than 0",
                "correlation.group_by[0]: must be a string",
                "correlation.use_sender_group: must be true or false",
                "storm.threshold: must be greater than 0",
                "storm.window: must not be negative",
                "storm.flush_interval: must be greater than 0",
                "storm.quiet_period: must be greater than 0",
                "storm.max_members_listed: must be greater than 0",
            ],
        )

    def test_unknown_keys(self) -> None:
        """
        A misspelt key is refused wherever it is, in an environment
        included, naming the keys it could have meant.
        """
        self.assertEqual(
            _problems(
                """
dedup: {windw: 5m}
escalation: {environments: {production: {totl: 3}}}
correlation: {group: [a]}
storm: {treshold: 3}
"""
            ),
            [
                "dedup.windw: unknown key (known keys: enabled, expire_interval, ignore_labels, max_tracked, window)",
                "escalation.environments.production.totl: unknown key"
                " (known keys: level, namespaces, total, window, within)",
                "correlation.group: unknown key (known keys: group_by, use_sender_group)",
                "storm.treshold: unknown key"
                " (known keys: enabled, flush_interval, max_members_listed, quiet_period, threshold, window)",
            ],
        )

    def test_environments_shape(self) -> None:
        """
        environments must map names (strings, distinct ignoring case) to
        mappings; an empty environment takes every default.
        """
        self.assertEqual(
            _problems("escalation: {environments: [production]}"), ["escalation.environments: must be a mapping"]
        )
        self.assertEqual(
            _problems("escalation: {environments: {qa: 3, 1: {}}}"),
            [
                "escalation.environments.qa: must be a mapping",
                "escalation.environments.1: must be named by a string (quote the name)",
            ],
        )
        self.assertEqual(
            _problems("escalation: {environments: {QA: {}, qa: {}}}"),
            ["escalation.environments: 'QA' and 'qa' are the same environment (names ignore case)"],
        )
        self.assertEqual(
            _valid("escalation: {environments: {qa: }}").escalation.environments, {"qa": EnvironmentConfig()}
        )

    def test_status_path_reserved(self) -> None:
        """
        No endpoint or shared metrics path may take /v1/alerts, the alert
        status API: neither /v1/alerts itself nor /alerts, whose /v1 alias
        it is.
        """
        for path in ("/alerts", "/v1/alerts", "/v1/alerts/"):
            with self.subTest(path=path):
                self.assertEqual(
                    _problems(f"webhook: {{endpoints: [{{path: '{path}', source: grafana}}]}}"),
                    [f"webhook.endpoints[0].path: {path} is reserved for the alert status API"],
                )
        self.assertEqual(
            _problems("service: {port: 9000}\nmetrics: {port: 9000, path: /v1/alerts}"),
            ["metrics.path: /v1/alerts is reserved for the alert status API"],
        )
        self.assertEqual(
            _valid("webhook: {endpoints: [{path: /alerts/am, source: alertmanager}]}").webhook.endpoints[0].path,
            "/alerts/am",
        )


DOCS = Path(__file__).resolve().parents[2] / "docs"


class MinSpacingTests(SynchronousTestCase):
    def test_unreachable_within_rule_warned(self) -> None:
        """
        escalation.min_spacing (30 s by default, new in this change) counts
        at most one duplicate per 30 s, so a rule "within: 5, window: 1m"
        (reachable before the upgrade by an alert repeated every 10 s) can
        no longer be met: only "total" still escalates, and nothing says
        so.  Pins: check-config warns when (within - 1) * min_spacing
        exceeds a rule's window.
        """
        config = _valid(
            "webhook: {auth: {token: t}}\nescalation:\n  environments:\n    production: {within: 5, window: 1m}\n"
        )
        found = [w for w in warnings_for(config) if "min_spacing" in w]
        self.assertNotEqual(found, [], "no warning that the rule cannot be reached")


class FlushIntervalDocsTests(SynchronousTestCase):
    def test_flush_interval_does_not_claim_delivery_outcomes(self) -> None:
        """
        Delivery outcomes are never written by the SQLite state (commit
        46d99de: derived from the queue at restore; docs/delivery.md says
        "Not written at all: how a delivery went"), yet
        docs/configuration.md says state.flush_interval is how often "a
        delivery's outcome" is written.  Pins: the state.flush_interval row
        does not promise delivery outcomes.
        """
        rows = [
            line
            for line in (DOCS / "configuration.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| `state.flush_interval`")
        ]
        self.assertEqual(len(rows), 1)
        self.assertNotIn("outcome", rows[0])
