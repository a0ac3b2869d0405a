"""
What the configuration lets the gateway show, and to whom: the alert
status API's authentication beside the endpoints', the Alert Processor's
credential kept out of its URL and out of everything printed, its name in
place of its URL, and the warning for Grafana signatures that never
expire.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from alertgateway.cli import EXIT_INVALID, EXIT_OK, check_config
from alertgateway.config import ConfigError, GatewayConfig, parse_config, warnings_for

SECRET = "Bearer proc-s3cret-9f1d"
PASSWORD = "pa55-w0rd-77"


def _problems(text: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """
    The problems of an invalid configuration, as check-config prints them.
    """
    try:
        parse_config(text, {} if environ is None else environ)
    except ConfigError as e:
        return [str(p) for p in e.problems]
    raise AssertionError("the configuration was accepted")


def _valid(text: str, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    return parse_config(text, {} if environ is None else environ)


def _check(case: SynchronousTestCase, text: str, environ: Mapping[str, str]) -> tuple[int, str]:
    """
    Run check-config on C{text}; its exit code and all it printed.
    """
    path = Path(case.mktemp())
    path.write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = check_config(str(path), out, err, environ)
    return code, out.getvalue() + err.getvalue()


class StatusAuthTests(SynchronousTestCase):
    """
    The status API is guarded by webhook.auth; it must not be open while
    endpoints require credentials.
    """

    def test_open_status_api_beside_guarded_endpoints(self) -> None:
        """
        webhook.auth of type none while endpoints require credentials of
        their own is refused, naming the endpoints and the status API.
        """
        self.assertEqual(
            _problems(
                "webhook:\n  auth: {type: none}\n  endpoints:\n"
                "    - {path: /webhook/prometheus, auth: {type: bearer, token: t}}\n"
                "    - {path: /webhook/grafana, auth: {type: hmac, secret: s,"
                " timestamp_header: X-Grafana-Alerting-Timestamp}}\n"
            ),
            [
                "webhook.auth.type: is none, which would open the alert status API (/v1/alerts) to anyone while"
                " /webhook/prometheus, /webhook/grafana require credentials: give webhook.auth the credentials"
                " of those who may read it"
            ],
        )

    def test_open_everywhere_is_only_warned_about(self) -> None:
        """
        When the endpoints are as open as the status API (their auth is
        webhook.auth, or none, or not required), nothing is refused.
        """
        for endpoints in (
            "[{path: /webhook/prometheus}]",
            "[{path: /webhook/prometheus, auth: {type: none}}]",
            "[{path: /webhook/prometheus, auth_required: false, auth: {type: bearer, token: t}}]",
        ):
            with self.subTest(endpoints=endpoints):
                _valid(f"webhook: {{auth: {{type: none}}, endpoints: {endpoints}}}")

    def test_credentials_shared_with_status_api(self) -> None:
        """
        With credentials in webhook.auth, endpoints may have their own.
        """
        _valid(
            "webhook:\n  auth: {token: reader}\n  endpoints:\n"
            "    - {path: /webhook/prometheus, auth: {type: api_key, tokens: [k]}}\n"
        )


class ProcessorURLTests(SynchronousTestCase):
    """
    alert_processor.endpoint never carries a secret.
    """

    def test_credentials_in_the_url_are_refused(self) -> None:
        """
        A URL with user:password@ (or a user alone) is refused, and the
        problem never quotes the URL or the password.
        """
        for url in (f"http://svc:{PASSWORD}@proc:8081", f"https://{PASSWORD}@proc", f"http://a:{PASSWORD}@[::1]:1"):
            with self.subTest(url=url):
                problems = _problems(f"alert_processor: {{endpoint: '{url}'}}")
                self.assertEqual(
                    problems,
                    [
                        "alert_processor.endpoint: must not carry credentials (user:password@): give the"
                        " processor's credential as alert_processor.auth_secret_file or auth_secret_env,"
                        " sent in auth_header"
                    ],
                )
                self.assertNotIn(PASSWORD, "\n".join(problems))

    def test_query_and_fragment_are_refused(self) -> None:
        """
        A query (where a token could hide) or fragment is refused: the
        delivery path is appended to the URL.
        """
        for url in ("http://proc:8081/?token=abc", "http://proc:8081/#x"):
            with self.subTest(url=url):
                [problem] = _problems(f"alert_processor: {{endpoint: '{url}'}}")
                self.assertEqual(
                    problem,
                    "alert_processor.endpoint: must not have a query or fragment:"
                    " the gateway appends /api/v1/alerts to it",
                )
                self.assertNotIn("abc", problem)

    def test_host_required(self) -> None:
        """
        A URL without a host is refused.
        """
        self.assertEqual(
            _problems("alert_processor: {endpoint: 'http:///api'}"),
            ["alert_processor.endpoint: must name a host, e.g. http://alert-processor:8081"],
        )

    def test_plain_urls(self) -> None:
        """
        URLs with a host, port and path prefix are accepted as before.
        """
        for url in ("http://alert-processor:8081", "https://proc.example/base/", "http://[::1]:8081"):
            with self.subTest(url=url):
                self.assertEqual(_valid(f"alert_processor: {{endpoint: '{url}'}}").alert_processor.endpoint, url)


class ProcessorCredentialTests(SynchronousTestCase):
    """
    The processor's credential comes from auth_secret, auth_secret_file or
    auth_secret_env, and is sent in auth_header.
    """

    def test_defaults(self) -> None:
        """
        No credential, the Authorization header, the name alert-processor.
        """
        processor = _valid("").alert_processor
        self.assertEqual(
            (processor.auth_secret, processor.auth_header, processor.name), (None, "Authorization", "alert-processor")
        )

    def test_from_env_and_file(self) -> None:
        """
        auth_secret_env wins over auth_secret_file (its first line), which
        wins over auth_secret; the secret is never in the repr.
        """
        path = Path(self.mktemp())
        path.write_text(f"  {SECRET}  \nignored\n", encoding="utf-8")
        from_file = _valid(f"alert_processor: {{auth_secret: other, auth_secret_file: {path}}}").alert_processor
        self.assertEqual(from_file.auth_secret, SECRET)
        self.assertNotIn(SECRET, repr(from_file))
        from_env = _valid(
            f"alert_processor: {{auth_secret_file: {path}, auth_secret_env: PROC_AUTH, auth_header: X-Proc-Key}}",
            {"PROC_AUTH": "key-from-env"},
        ).alert_processor
        self.assertEqual((from_env.auth_header, from_env.auth_secret), ("X-Proc-Key", "key-from-env"))

    def test_missing_sources_are_named(self) -> None:
        """
        An unset variable or unreadable file is a problem naming its key.
        """
        self.assertEqual(
            _problems("alert_processor: {auth_secret_env: PROC_AUTH, auth_secret_file: /nonexistent/proc}"),
            [
                "alert_processor.auth_secret_file: cannot read /nonexistent/proc: FileNotFoundError",
                "alert_processor.auth_secret_env: environment variable PROC_AUTH is not set",
            ],
        )

    def test_header_must_be_sendable(self) -> None:
        """
        auth_header must be a header name the gateway does not set itself.
        """
        self.assertEqual(
            _problems("alert_processor: {auth_header: Content-Type}"),
            [
                "alert_processor.auth_header: Content-Type is hop-by-hop or set by the gateway itself"
                " and is never forwarded"
            ],
        )
        self.assertEqual(
            _problems("alert_processor: {auth_header: 'X Key'}"),
            ["alert_processor.auth_header: 'X Key' is not a valid header name"],
        )

    def test_one_line(self) -> None:
        """
        A secret spanning lines could not be one header value.
        """
        self.assertEqual(
            _problems('alert_processor: {auth_secret: "a\\nb"}'), ["alert_processor.auth_secret: must be one line"]
        )

    def test_name(self) -> None:
        """
        The name is a short label value: letters, digits, '.', '_', '-'.
        """
        self.assertEqual(_valid("alert_processor: {name: proc-eu.1}").alert_processor.name, "proc-eu.1")
        for name in ("", "http://proc:8081", "-x", "x" * 64):
            with self.subTest(name=name):
                self.assertEqual(
                    _problems(f"alert_processor: {{name: '{name}'}}"),
                    [
                        "alert_processor.name: must be 1 to 63 letters, digits, '.', '_' or '-', starting with a"
                        " letter or digit"
                    ],
                )

    def test_check_config_never_prints_the_secret(self) -> None:
        """
        check-config names the processor and where its credential goes,
        never the credential; refusing a URL with a password, it does not
        print the password either.
        """
        code, printed = _check(
            self,
            "alert_processor: {endpoint: 'http://proc:8081', name: proc-eu, auth_secret_env: PROC_AUTH}\n",
            {"PROC_AUTH": SECRET},
        )
        self.assertEqual(code, EXIT_OK, printed)
        self.assertIn("  alert processor: proc-eu at http://proc:8081, Authorization from its auth_secret\n", printed)
        self.assertNotIn(SECRET, printed)
        code, printed = _check(self, f"alert_processor: {{endpoint: 'http://u:{PASSWORD}@proc:8081'}}\n", {})
        self.assertEqual(code, EXIT_INVALID)
        self.assertNotIn(PASSWORD, printed)

    def test_secret_for_a_file_is_warned_about(self) -> None:
        """
        A credential beside a file: endpoint is never sent, and check-config
        says so.
        """
        config = _valid("alert_processor: {endpoint: 'file:alerts.jsonl', auth_secret: x}")
        self.assertIn(
            "alert_processor.auth_secret is set but the endpoint is a file: it is never sent", warnings_for(config)
        )


class UnstampedSignatureTests(SynchronousTestCase):
    """
    Grafana signatures without timestamp_header never expire: warned about.
    """

    WARNING = (
        "{key} checks Grafana signatures without timestamp_header: a signed webhook never expires and can be"
        " replayed once the replay window is over; set timestamp_header (X-Grafana-Alerting-Timestamp) on both sides"
    )

    def test_shared_and_per_endpoint(self) -> None:
        """
        webhook.auth (once, when an endpoint uses it) and each endpoint's
        own hmac auth of scheme grafana without a timestamp are named.
        """
        config = _valid(
            "webhook:\n  auth: {type: hmac, secret: s}\n  endpoints:\n"
            "    - {path: /webhook/prometheus}\n"
            "    - {path: /webhook/alertmanager}\n"
            "    - {path: /webhook/grafana, auth: {type: hmac, secret: g}}\n"
        )
        self.assertEqual(
            warnings_for(config),
            [self.WARNING.format(key="webhook.auth"), self.WARNING.format(key="webhook.endpoints[2].auth")],
        )

    def test_not_warned(self) -> None:
        """
        A timestamp header, the Standard Webhooks scheme (always stamped),
        an unused webhook.auth or an endpoint not requiring auth are not
        warned about.
        """
        for webhook in (
            "{auth: {type: hmac, secret: s, timestamp_header: X-Grafana-Alerting-Timestamp}}",
            "{auth: {type: hmac, scheme: standard, secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}}",
            "{auth: {type: hmac, secret: s}, endpoints: [{path: /webhook/grafana, auth: {token: t}}]}",
            "{endpoints: [{path: /webhook/grafana, auth_required: false, auth: {type: hmac, secret: s}}]}",
        ):
            with self.subTest(webhook=webhook):
                self.assertEqual(
                    [w for w in warnings_for(_valid(f"webhook: {webhook}")) if "timestamp_header" in w], []
                )
