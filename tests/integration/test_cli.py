"""
The command line against the running plugin (C{alertgateway send-test})
and the embedded file sink (C{alert_processor.endpoint: file:PATH}).
"""

from __future__ import annotations

import json
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    GatewayProcess,
    StubProcessor,
    am_fingerprint,
    fixture,
    fixture_json,
    http_client,
    json_headers,
    run,
    source_env,
    venv_script,
)

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
