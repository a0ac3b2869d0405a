"""
The command line against the running plugin (C{alertgateway send-test}
with every authentication scheme, over HTTPS with client certificates;
C{alertgateway queue} on the Redis queue) and the embedded file sink
(C{alert_processor.endpoint: file:PATH}).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.integration._certs import Authority, write_pem
from tests.integration.harness import (
    Answer,
    Completed,
    GatewayProcess,
    StubProcessor,
    am_fingerprint,
    fixture,
    fixture_json,
    http_client,
    json_headers,
    run,
    sleep,
    source_env,
    venv_script,
)
from tests.redis_server import RedisServer

TOKEN = "cli-token-93ab"


class SendTestTests(TestCase):
    timeout = 60

    async def test_send_test_posts_a_sample_and_prints_the_answer(self) -> None:
        """
        `alertgateway send-test URL --token T` against the running plugin
        exits 0, prints the 202 answer with its request id, and its sample
        alert reaches the processor; Grafana format too.  With a wrong
        token it prints the 401 and exits non-zero.

        Both formats' samples carry the same labels, so deduplication is
        off: each send-test is to reach the processor.
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = GatewayProcess(
            {
                "alert_processor": {"endpoint": url},
                "webhook": {"auth": {"token": TOKEN}},
                "dedup": {"enabled": False},
            }
        )
        await gateway.start()
        self.addCleanup(gateway.stop)
        command = venv_script("alertgateway")

        sent = await run(
            [command, "send-test", gateway.url + "/webhook/prometheus", "--token", TOKEN], env=source_env()
        )
        self.assertEqual(sent.code, 0, sent.output)
        self.assertIn("202", sent.out)
        answer = json.loads(sent.out[sent.out.index("{") :])
        self.assertEqual(answer["status"], "accepted")
        self.assertEqual([a["status"] for a in answer["alerts"]], ["new"])
        await stub.wait_for(1)
        self.assertEqual(stub.received[0].headers["x-request-id"], answer["requestId"])
        self.assertEqual(stub.received[0].body["source"], "alertmanager")

        sent = await run(
            [command, "send-test", gateway.url + "/v1/webhook/grafana", "--source", "grafana", "--token", TOKEN],
            env=source_env(),
        )
        self.assertEqual(sent.code, 0, sent.output)
        await stub.wait_for(2)
        self.assertEqual(stub.received[1].body["source"], "grafana")

        refused = await run(
            [command, "send-test", gateway.url + "/webhook/prometheus", "--token", "not-" + TOKEN], env=source_env()
        )
        self.assertNotEqual(refused.code, 0, refused.output)
        self.assertIn("401", refused.out)
        self.assertEqual(len(stub.attempts), 2)


# Every authentication scheme of docs/security.md, one endpoint each, with
# secrets in a file and in the environment as the documentation keeps them.
SCHEMES = {
    "/webhook/prometheus": {"type": "bearer", "token_env": "ITEST_TOKEN"},
    "/webhook/basic": {"type": "basic", "users": [{"username": "alertmanager", "password_file": "basic-password"}]},
    "/webhook/key": {"type": "api_key", "header": "X-API-Key", "token_file": "api-keys"},
    "/webhook/grafana": {
        "type": "hmac",
        "scheme": "grafana",
        "secret_env": "ITEST_GRAFANA_SECRET",
        "signature_header": "X-Grafana-Alerting-Signature",
        "timestamp_header": "X-Grafana-Alerting-Timestamp",
        "tolerance": "5m",
    },
    "/webhook/standard": {"type": "hmac", "scheme": "standard", "secret_file": "standard-secret"},
}
STANDARD_SECRET = "whsec_" + base64.b64encode(b"integration standard secret 32B!").decode()
SECRETS_ENV = {"ITEST_TOKEN": TOKEN, "ITEST_GRAFANA_SECRET": "grafana-hmac-4e1f"}
# The same credentials given on the command line.
EXPLICIT = {
    "/webhook/prometheus": ["--token", TOKEN],
    "/webhook/basic": ["--basic", "alertmanager:basic:pass-7d"],
    "/webhook/key": ["--api-key", "X-API-Key:api-key-new"],
    "/webhook/grafana": [
        "--grafana-secret",
        "grafana-hmac-4e1f",
        "--timestamp-header",
        "X-Grafana-Alerting-Timestamp",
    ],
    "/webhook/standard": ["--standard-secret", STANDARD_SECRET],
}


class SendTestSchemesTests(TestCase):
    timeout = 120

    async def test_every_scheme_from_the_configuration_and_given(self) -> None:
        """
        For an endpoint of each documented scheme (bearer, Basic, API key,
        Grafana HMAC with a timestamp, Standard Webhooks), `send-test
        --config FILE --endpoint PATH` sends the endpoint's own credentials,
        read from its files and environment as the gateway reads them, and
        the same credentials given as options work too: exit 0, the sample
        reaches the processor in the endpoint's format.  With no
        credentials each endpoint answers 401 and send-test exits 1.
        """
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = GatewayProcess(
            {
                "alert_processor": {"endpoint": url},
                "webhook": {
                    "endpoints": [
                        {"path": path, "source": "grafana" if "grafana" in path else "alertmanager", "auth": auth}
                        for path, auth in SCHEMES.items()
                    ]
                },
            },
            env=SECRETS_ENV,
        )
        (gateway.directory / "basic-password").write_text("basic:pass-7d\n")
        # The key being rotated in first: what a sender configured from
        # this file sends.
        (gateway.directory / "api-keys").write_text("api-key-new\napi-key-old\n")
        (gateway.directory / "standard-secret").write_text(STANDARD_SECRET + "\n")
        await gateway.start()
        self.addCleanup(gateway.stop)
        command = venv_script("alertgateway")
        config = str(gateway.config_path)
        sent = 0
        for path in SCHEMES:
            for how in (["--config", config, "--endpoint", path, gateway.url], [gateway.url + path, *EXPLICIT[path]]):
                done = await run([command, "send-test", *how], env=source_env(SECRETS_ENV), cwd=str(gateway.directory))
                self.assertEqual(done.code, 0, (how, done.output))
                self.assertTrue(done.out.startswith("HTTP 202\n"), done.output)
                sent += 1
                await stub.wait_for(sent)
                self.assertEqual(stub.received[-1].body["source"], "grafana" if "grafana" in path else "alertmanager")
            refused = await run([command, "send-test", gateway.url + path], env=source_env())
            self.assertEqual(refused.code, 1, refused.output)
            self.assertTrue(refused.out.startswith("HTTP 401\n"), refused.output)
        self.assertEqual(len(stub.attempts), sent)


class SendTestTLSTests(TestCase):
    timeout = 120

    async def test_https_and_client_certificates(self) -> None:
        """
        Against a gateway serving TLS with a private CA and requiring a
        client certificate: send-test with --cacert, --cert and --key gets
        202 and its sample reaches the processor (with --config too); without
        a client certificate, or trusting only the system's authorities, it
        exits 1 with one error line naming the TLS failure, no traceback.
        """
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        ca = Authority("send-test itest root")
        server = ca.server("gateway")
        client = ca.issue("alertmanager", dns=["alertmanager.monitoring.svc"], client=True)
        files = {
            name: str(write_pem(directory / name, pem))
            for name, pem in [
                ("tls.crt", server.cert_pem),
                ("tls.key", server.key_pem),
                ("ca.crt", ca.cert_pem),
                ("client.crt", client.cert_pem),
                ("client.key", client.key_pem),
            ]
        }
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        gateway = GatewayProcess(
            {
                "service": {"listen": [], "host": "127.0.0.1", "port": 0},
                "security": {
                    "tls_enabled": True,
                    "cert_file": files["tls.crt"],
                    "key_file": files["tls.key"],
                    "client_ca_file": files["ca.crt"],
                    "require_client_cert": True,
                },
                "alert_processor": {"endpoint": url},
                "webhook": {"auth": {"token": TOKEN}},
            }
        )
        await gateway.start()
        self.addCleanup(gateway.stop)
        command = venv_script("alertgateway")
        webhook = gateway.https_url + "/webhook/prometheus"
        trusted = ["--cacert", files["ca.crt"]]
        certificate = ["--cert", files["client.crt"], "--key", files["client.key"]]
        for how in (
            [webhook, "--token", TOKEN, *trusted, *certificate],
            [webhook, "--config", str(gateway.config_path), *trusted, *certificate],
        ):
            done = await run([command, "send-test", *how], env=source_env())
            self.assertEqual(done.code, 0, done.output)
            self.assertTrue(done.out.startswith("HTTP 202\n"), done.output)
        await stub.wait_for(2)
        for how, reason in [
            ([webhook, "--token", TOKEN, *trusted], "certificate required"),
            ([webhook, "--token", TOKEN, *certificate], "certificate verify failed"),
        ]:
            refused = await run([command, "send-test", *how], env=source_env())
            self.assertEqual(refused.code, 1, refused.output)
            self.assertEqual(len(refused.out.splitlines()), 1, refused.output)
            self.assertTrue(refused.out.startswith("error: "), refused.output)
            self.assertIn(reason, refused.out)
            self.assertNotIn("Traceback", refused.output)
        self.assertEqual(len(stub.attempts), 2)


def _one_alert(name: str) -> bytes:
    """
    An Alertmanager webhook of one alert named C{name}.
    """
    labels = {"alertname": name, "namespace": "itest"}
    alert = {
        "status": "firing",
        "labels": labels,
        "startsAt": "2026-11-26T04:00:00Z",
        "fingerprint": am_fingerprint(labels),
    }
    return json.dumps({"version": "4", "status": "firing", "alerts": [alert]}).encode()


class QueueCommandTests(TestCase):
    timeout = 120

    async def queue(self, gateway: GatewayProcess, *args: str, config: Path | None = None) -> Completed:
        return await run(
            [venv_script("alertgateway"), "queue", *args, "--config", str(config or gateway.config_path)],
            env=source_env(),
            cwd=str(gateway.directory),
        )

    async def dead_letters(self, gateway: GatewayProcess, count: int) -> None:
        """
        Wait (5 s at most) until the gateway has made C{count} dead letters.
        """
        for _ in range(50):
            if await gateway.sample("gateway_dead_letters_total") == count:
                return
            await sleep(0.1)
        self.fail(f"not {count} dead letters within 5 s")

    async def test_list_retry_purge_on_the_redis_queue(self) -> None:
        """
        Against a running gateway on Redis whose processor refused two
        alerts for good (400) and holds a third: `queue list` shows the two
        dead letters with alert name, dedup key, attempts, age and last
        error; `--state pending` the one in delivery; `queue retry` puts the
        dead letters back, and the running gateway delivers them with their
        first idempotency keys; `queue purge ID` drops a dead letter for
        good.  With Redis unreachable, or a SQLite queue whose database is
        not there, the command prints one line and exits 1, no traceback.
        """
        server = RedisServer().start()
        self.addCleanup(server.stop)
        stub = StubProcessor()
        url = await stub.start()
        self.addCleanup(stub.stop)
        redis = {"url": server.url, "timeout": "1s", "connect_timeout": "500ms"}
        gateway = GatewayProcess(
            {
                "alert_processor": {"endpoint": url},
                "webhook": {"auth": {"token": TOKEN}},
                "state": {"backend": "redis", "redis": redis},
                "queue": {"backend": "redis", "redis": {"partitions": 4}},
            }
        )
        await gateway.start()
        self.addCleanup(gateway.stop)
        client = http_client()
        stub.answers = [Answer(400), Answer(400)]
        for name in ("RefusedOne", "RefusedTwo"):
            response = await client.post(
                gateway.url + "/webhook/prometheus", data=_one_alert(name), headers=json_headers(TOKEN)
            )
            self.assertEqual(response.code, 202, await response.content())
        await stub.wait_until(lambda: len(stub.attempts) == 2)
        await self.dead_letters(gateway, 2)
        stub.hold = True
        response = await client.post(
            gateway.url + "/webhook/prometheus", data=_one_alert("Held"), headers=json_headers(TOKEN)
        )
        self.assertEqual(response.code, 202, await response.content())
        await stub.wait_held(1)

        listed = await self.queue(gateway, "list")
        self.assertEqual((listed.code, listed.err), (0, "2 item(s)\n"), listed.output)
        header, *rows = [line.split(None, 6) for line in listed.out.splitlines()]
        self.assertEqual(header, ["ID", "STATE", "ALERTNAME", "KEY", "ATTEMPTS", "AGE", "LAST ERROR"])
        self.assertEqual(sorted(row[2] for row in rows), ["RefusedOne", "RefusedTwo"])
        for row in rows:
            self.assertEqual(row[1], "dead")
            self.assertEqual(row[3], am_fingerprint({"alertname": row[2], "namespace": "itest"}))
            self.assertIn("400", row[6])
        pending = await self.queue(gateway, "list", "--state", "pending", "--json")
        [held] = [json.loads(line) for line in pending.out.splitlines()]
        self.assertEqual((held["state"], held["alertname"], held["attempts"]), ("pending", "Held", 1))

        stub.release()
        retried = await self.queue(gateway, "retry")
        self.assertEqual(retried.code, 0, retried.output)
        # The gateway's own database too, where alerts wait while Redis
        # cannot be reached.
        self.assertEqual(
            retried.out.splitlines(),
            [
                "2 dead letter(s) back in the Redis queue",
                "0 dead letter(s) in the fallback queue var/queue.db marked for another try",
            ],
        )
        await stub.wait_for(3)
        first_keys = {r.body["labels"]["alertname"]: r.headers["idempotency-key"] for r in stub.attempts[:2]}
        delivered = {r.body["labels"]["alertname"]: r.headers["idempotency-key"] for r in stub.received}
        self.assertEqual({name: delivered[name] for name in first_keys}, first_keys)

        stub.answers = [Answer(400)]
        response = await client.post(
            gateway.url + "/webhook/prometheus", data=_one_alert("Dropped"), headers=json_headers(TOKEN)
        )
        self.assertEqual(response.code, 202, await response.content())
        await self.dead_letters(gateway, 3)
        listed = await self.queue(gateway, "list", "--json")
        [dropped] = [json.loads(line) for line in listed.out.splitlines()]
        purged = await self.queue(gateway, "purge", dropped["id"])
        self.assertEqual((purged.code, purged.out), (0, "1 dead item(s) in the Redis queue dropped\n"), purged.output)
        self.assertEqual((await self.queue(gateway, "list", "--state", "all")).err, "0 item(s)\n")

        server.kill()
        down = await self.queue(gateway, "list")
        self.assertEqual(down.code, 1, down.output)
        self.assertEqual(
            down.err, f"cannot reach Redis at redis://127.0.0.1:{server.port}/0 within 1.5s (state.redis)\n"
        )
        sqlite = gateway.directory / "sqlite.yaml"
        sqlite.write_text(f"queue: {{backend: sqlite, path: {gateway.directory / 'nowhere' / 'queue.db'}}}\n")
        missing = await self.queue(gateway, "list", config=sqlite)
        self.assertEqual(missing.code, 1, missing.output)
        self.assertEqual(len(missing.err.splitlines()), 1, missing.output)
        self.assertTrue(missing.err.startswith("no queue database at "), missing.output)
        for done in (down, missing):
            self.assertNotIn("Traceback", done.output)


class FileSinkTests(TestCase):
    timeout = 60

    async def test_file_endpoint_writes_one_json_line_per_alert(self) -> None:
        """
        With alert_processor.endpoint `file:PATH` each accepted alert is
        appended to PATH as one JSON object per line, with fingerprint,
        status, source and the request id, and everything is on disk once
        the gateway has stopped.
        """
        directory = Path(self.mktemp()).resolve()
        path = directory / "sink" / "alerts.jsonl"
        gateway = GatewayProcess(
            {"alert_processor": {"endpoint": f"file:{path}"}, "webhook": {"auth": {"token": TOKEN}}}
        )
        await gateway.start()
        self.addCleanup(gateway.stop)
        client = http_client()
        posts = [
            ("/webhook/prometheus", "alertmanager-firing-and-resolved.json", "file-1"),
            ("/webhook/grafana", "grafana-unified.json", "file-2"),
        ]
        for endpoint, name, request_id in posts:
            response = await client.post(
                gateway.url + endpoint, data=fixture(name), headers=json_headers(TOKEN, request_id)
            )
            self.assertEqual(response.code, 202, await response.content())
        self.assertEqual(await gateway.stop(), 0, gateway.output())

        lines = path.read_text().splitlines()
        records = [json.loads(line) for line in lines]
        am = fixture_json("alertmanager-firing-and-resolved.json")["alerts"]
        expected = [(a["fingerprint"], a["status"], "alertmanager", "file-1") for a in am]
        unified = fixture_json("grafana-unified.json")["alerts"][0]
        expected.append((am_fingerprint(unified["labels"]), unified["status"], "grafana", "file-2"))
        self.assertEqual(
            sorted((r["fingerprint"], r["status"], r["source"], r["requestId"]) for r in records), sorted(expected)
        )
        grafana = [r for r in records if r["source"] == "grafana"]
        self.assertEqual(grafana[0]["labels"], unified["labels"])
