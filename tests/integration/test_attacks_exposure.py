"""
What the running plugin lets a client see and cost, attacked over loopback
(bounded in count and time): the alert status API beside endpoints with
credentials of their own, the Alert Processor's credential, refused TLS
handshakes, long paths and User-Agents in the log, and a body of many
small faults.

Each test asserts what a real sender or reader experiences: the answer it
gets, and that a real webhook still goes through.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from tests.integration._certs import Authority, https_client, write_pem
from tests.integration.harness import (
    GatewayProcess,
    StubProcessor,
    distinct,
    http_client,
    json_headers,
    reactor,
    run,
    sleep,
    source_env,
    venv_script,
)

READER = "status-reader-token-51"
SENDER = "sender-token-7c"
PROCESSOR_SECRET = "Bearer proc-s3cret-e41a"
PASSWORD = "url-pa55word-93"


async def _answer(response: Any) -> tuple[int, Any]:
    content = await response.content()
    try:
        return response.code, json.loads(content)
    except ValueError:
        return response.code, content


class StatusAPITests(TestCase):
    timeout = 60

    async def test_never_open_beside_guarded_endpoints(self) -> None:
        """
        A gateway whose webhook.auth is none while its endpoints require
        tokens of their own does not start (nor passes check-config),
        rather than serve /v1/alerts to anyone. Configured with a reader
        token, /v1/alerts refuses a client without credentials and one
        with a sender's token (401), and answers the reader, while the
        sender's webhooks are accepted.
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        endpoint = {"path": "/webhook/prometheus", "auth": {"token": SENDER}}
        open_api = GatewayProcess(
            {"alert_processor": {"endpoint": url}, "webhook": {"auth": {"type": "none"}, "endpoints": [endpoint]}}
        )
        checked = await run([venv_script("alertgateway"), "check-config", str(open_api.config_path)], env=source_env())
        self.assertEqual(checked.code, 2, checked.output)
        self.assertIn("/v1/alerts", checked.err)
        with self.assertRaises(RuntimeError):
            await open_api.start()
        self.assertNotEqual(open_api.exit_code, 0)
        self.assertIn("webhook.auth.type: is none, which would open the alert status API", open_api.output())

        gateway = GatewayProcess(
            {"alert_processor": {"endpoint": url}, "webhook": {"auth": {"token": READER}, "endpoints": [endpoint]}}
        )
        await gateway.start()
        self.addCleanup(gateway.stop)
        client = http_client()
        posted = await client.post(
            gateway.url + "/webhook/prometheus",
            data=distinct("alertmanager-firing.json", "status-api"),
            headers=json_headers(SENDER),
        )
        self.assertEqual((await _answer(posted))[0], 202)
        for headers in (json_headers(), json_headers(SENDER)):
            code, body = await _answer(await client.get(gateway.url + "/v1/alerts", headers=headers))
            self.assertEqual((code, body["type"]), (401, "urn:alertgateway:problem:unauthorized"))
        code, body = await _answer(await client.get(gateway.url + "/v1/alerts", headers=json_headers(READER)))
        self.assertEqual((code, body["count"]), (200, 2))


class ProcessorSecretTests(TestCase):
    timeout = 60

    async def test_credential_appears_nowhere(self) -> None:
        """
        The processor's credential, given in alert_processor.auth_secret_env,
        reaches the processor with every alert, and appears nowhere else:
        not in check-config's output, /health/ready, /metrics or the log.
        Neither does the processor's URL in /health/ready or /metrics (the
        target is alert_processor.name). A URL with user:password@ stops
        the gateway at start without printing the password.
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        address = url.removeprefix("http://")
        env = {"PROCESSOR_AUTH": PROCESSOR_SECRET}
        config = {"alert_processor": {"endpoint": url, "auth_secret_env": "PROCESSOR_AUTH", "name": "proc-main"}}
        gateway = GatewayProcess({**config, "webhook": {"auth": {"token": SENDER}}}, env=env)
        await gateway.start()
        self.addCleanup(gateway.stop)
        client = http_client()
        posted = await client.post(
            gateway.url + "/webhook/prometheus",
            data=distinct("alertmanager-firing.json", "processor-secret"),
            headers=json_headers(SENDER),
        )
        self.assertEqual((await _answer(posted))[0], 202)
        await stub.wait_for(2)
        self.assertEqual({r.headers["authorization"] for r in stub.received}, {PROCESSOR_SECRET})

        ready = await (await client.get(gateway.url + "/health/ready")).text()
        self.assertEqual(json.loads(ready)["circuitBreaker"]["target"], "proc-main")
        metrics = await (await client.get(gateway.metrics_url)).text()
        self.assertIn('gateway_circuit_breaker_state{target="proc-main"} 0.0', metrics)
        checked = await run(
            [venv_script("alertgateway"), "check-config", str(gateway.config_path)], env=source_env(env)
        )
        self.assertEqual(checked.code, 0, checked.output)
        secret = PROCESSOR_SECRET.split()[1]
        for where, text in (("ready", ready), ("metrics", metrics), ("check-config", checked.output)):
            self.assertNotIn(secret, text, where)
        for where, text in (("ready", ready), ("metrics", metrics)):
            self.assertNotIn(address, text, where)
        await gateway.stop()
        self.assertNotIn(secret, gateway.output())

        with_password = url.replace("http://", f"http://alertgateway:{PASSWORD}@")
        refused = GatewayProcess({"alert_processor": {"endpoint": with_password}})
        with self.assertRaises(RuntimeError):
            await refused.start()
        self.assertIn("alert_processor.endpoint: must not carry credentials", refused.output())
        self.assertNotIn(PASSWORD, refused.output())


class TLSRefusalTests(TestCase):
    timeout = 60

    async def test_client_without_certificate(self) -> None:
        """
        Against require_client_cert, a client without a certificate gets no
        HTTP answer (the handshake fails with certificate required); the
        refusal is one security warning naming the client's address and
        counted under endpoint="tls". Fifteen more in a row are all
        counted but at most 10 logged in the window. A client with a
        certificate still posts its webhook.
        """
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        ca = Authority("exposure root")
        server = ca.server("gateway")
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = GatewayProcess(
            {
                "service": {"listen": [], "host": "127.0.0.1", "port": 0},
                "security": {
                    "tls_enabled": True,
                    "cert_file": str(write_pem(directory / "tls.crt", server.cert_pem)),
                    "key_file": str(write_pem(directory / "tls.key", server.key_pem)),
                    "client_ca_file": str(write_pem(directory / "ca.crt", ca.cert_pem)),
                    "require_client_cert": True,
                },
                "alert_processor": {"endpoint": url},
                "webhook": {"auth": {"token": SENDER}},
            }
        )
        await gateway.start()
        self.addCleanup(gateway.stop)
        target = gateway.https_url + "/webhook/prometheus"

        def refusals() -> list[dict[str, Any]]:
            return [e for e in gateway.lines if e.get("reason") == "client_certificate"]

        anonymous = https_client(reactor, [ca.cert_pem])
        seen = await _refused(anonymous, target)
        self.assertIn("certificate required", seen)
        await gateway.wait_for_event(lambda e: e.get("reason") == "client_certificate")
        await sleep(0.3)
        [event] = refusals()
        self.assertEqual(
            (event["level"], event["logger"], event["client"]), ("warn", "alertgateway.security", "127.0.0.1")
        )
        self.assertEqual(event["error"], "it presented no certificate, and one is required")
        counted = {"endpoint": "tls", "reason": "client_certificate"}
        self.assertEqual(await gateway.sample("gateway_security_rejections_total", **counted), 1.0)

        for _ in range(15):
            await _refused(anonymous, target)
        self.assertEqual(await gateway.sample("gateway_security_rejections_total", **counted), 16.0)
        self.assertLessEqual(len(refusals()), 10)

        known = https_client(reactor, [ca.cert_pem], ca.issue("alertmanager", client=True))
        posted = await known.post(
            target, data=distinct("alertmanager-firing.json", "mtls-ok"), headers=json_headers(SENDER)
        )
        self.assertEqual((await _answer(posted))[0], 202)


async def _refused(client: Any, url: str) -> str:
    """
    POST expecting the TLS connection to be refused; what the client saw.
    """
    try:
        response = await client.post(url, data=b"{}", headers=json_headers(SENDER))
    except Exception as e:
        reasons = getattr(e, "reasons", None) or []
        return " | ".join(str(getattr(reason, "value", reason)) for reason in reasons) or str(e)
    await response.content()
    raise AssertionError(f"expected the TLS connection to be refused, got HTTP {response.code}")


class LogAndAnswerSizeTests(TestCase):
    timeout = 60

    async def test_long_fields_and_many_faults(self) -> None:
        """
        A request with a 5,000-character path and an 8,000-character
        User-Agent leaves an access line of under 1 kB, its path and
        User-Agent cut to 256 characters. A 1 MB body of 128,000 misnamed
        labels (which got a 12 MB answer) gets a 400 of 100 errors, the
        rest counted, in under 16 kB and well under a second; a real
        webhook right after is accepted.
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = GatewayProcess(
            {
                "alert_processor": {"endpoint": url},
                "webhook": {"auth": {"token": SENDER}},
                "service": {"max_body_bytes": 2_000_000},
            }
        )
        await gateway.start()
        self.addCleanup(gateway.stop)
        client = http_client()

        path = "/webhook/prometheus/" + "p" * 5000
        headers = json_headers(SENDER, "long-fields")
        headers[b"User-Agent"] = [b"u" * 8000]
        await (await client.get(gateway.url + path, headers=headers)).content()
        line = await gateway.wait_for_line(lambda text: '"requestId":"long-fields"' in text and '"access"' in text)
        self.assertLess(len(line), 1000)
        event = json.loads(line)
        self.assertEqual(event["path"], path[:256] + f"...[{len(path) - 256} more]")
        self.assertEqual(event["user_agent"], "u" * 256 + "...[7744 more]")

        one = b'{"status":"firing","labels":{' + b",".join(b'"%d":""' % i for i in range(128)) + b"}}"
        faults = b'{"alerts":[' + b",".join([one] * 1000) + b"]}"
        self.assertGreater(len(faults), 1_000_000)
        started = time.monotonic()
        response = await client.post(gateway.url + "/webhook/prometheus", data=faults, headers=json_headers(SENDER))
        content = await response.content()
        elapsed = time.monotonic() - started
        problem = json.loads(content)
        self.assertEqual((response.code, problem["type"]), (400, "urn:alertgateway:problem:invalid-payload"))
        self.assertEqual((len(problem["errors"]), problem["omittedErrors"]), (100, 990))
        self.assertLess(len(content), 16_000)
        self.assertLess(elapsed, 2.0)

        real = await client.post(
            gateway.url + "/webhook/prometheus",
            data=distinct("alertmanager-firing.json", "after-faults"),
            headers=json_headers(SENDER),
        )
        self.assertEqual((await _answer(real))[0], 202)
