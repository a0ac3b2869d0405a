"""
The gateway's own monitoring in C{deploy/monitoring/}: the alert rules pass
C{promtool check rules}, every alert has a runbook section in
C{docs/operations.md}, the Grafana dashboard's queries parse and its
ConfigMap holds the same JSON, and every metric the rules and the dashboard
name is one a running gateway (with the Redis backends, so the Redis series
exist) exports on C{/metrics}.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import TestCase

from tests.e2e._alertmanager import documented_alertmanager_config
from tests.integration.harness import (
    REPO,
    GatewayProcess,
    StubProcessor,
    fixture,
    http_client,
    json_headers,
    require_binary,
    run,
)
from tests.redis_server import RedisServer

MONITORING = REPO / "deploy" / "monitoring"
OPERATIONS = REPO / "docs" / "operations.md"
RUNBOOK = "https://github.com/alertgateway/alertgateway/blob/main/docs/operations.md"
TOKEN = "monitoring-test-token-51c9e2"
LIMITED = "/webhook/limited"

REQUIRED_ALERTS = {
    "AlertGatewayHighErrorRate",
    "AlertGatewayHighLatency",
    "AlertGatewayCircuitBreakerOpen",
    "AlertGatewayQueueBacklog",
    "AlertGatewayDeadLetters",
    "AlertGatewayRedisDown",
    "AlertGatewaySecurityRejectionsSpike",
}

# A gateway metric name in a PromQL expression (not the tail of a longer
# identifier such as a label value "alertgateway_…").
_METRIC = re.compile(r"(?<![A-Za-z0-9_:])gateway_[a-z_]+")
# What the TYPE of a family that has no sample yet (a labelled metric
# nothing has touched) lets it expose: the suffixes Prometheus sees.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def _rule_file() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    return document


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _rule_file()["spec"]["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads((MONITORING / "dashboard.json").read_text())
    return dashboard


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """
    Every panel, those inside (collapsed) rows included.
    """
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard_queries() -> list[str]:
    """
    Every PromQL expression of the dashboard: its panels' targets and its
    template variables' queries.
    """
    dashboard = _dashboard()
    queries = [
        target["expr"]
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def _as_promql(expr: str) -> str:
    """
    A dashboard expression with Grafana's variables replaced by what they
    stand for, so Prometheus's parser can check it.
    """
    return expr.replace("$__rate_interval", "5m").replace("$namespace", ".*")


def _metric_names(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in _METRIC.findall(expr)}


def github_anchor(heading: str) -> str:
    """
    The fragment GitHub gives a Markdown heading: lower case, punctuation
    other than hyphens and underscores removed, spaces made hyphens.
    """
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _headings(markdown: str) -> list[str]:
    """
    The headings of a Markdown document (not lines of fenced code blocks).
    """
    headings: list[str] = []
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.+)$", line)):
            headings.append(match.group(1).strip())
    return headings


async def _promtool_check_rules(test: TestCase, groups: dict[str, Any]) -> None:
    promtool = require_binary("promtool", "prometheus")
    path = Path(test.mktemp() + ".yaml")
    path.write_text(yaml.safe_dump(groups))
    done = await run([promtool, "check", "rules", str(path)])
    test.assertEqual(done.code, 0, done.output)


class RuleTests(TestCase):
    """
    The PrometheusRule and its runbook.
    """

    async def test_promtool_accepts_rules(self) -> None:
        """
        C{promtool check rules} accepts the PrometheusRule's C{spec} (its
        rule groups) as a Prometheus rule file.
        """
        await _promtool_check_rules(self, _rule_file()["spec"])

    async def test_alerts_fire(self) -> None:
        """
        C{promtool test rules}: given series as the gateway exports them,
        each alert fires after its C{for} with the labels it is routed by
        and not before; an open breaker that alternates with half-open
        counts as open; health checks answered 503 and a breaker that
        recovers raise nothing.  AlertGatewayDown fires per namespace:
        for one whose gateways are all down or gone while another's are
        up, not for one that still has a gateway up, and (without a
        namespace) when Prometheus has never seen a gateway.
        """
        promtool = require_binary("promtool", "prometheus")
        directory = Path(self.mktemp())
        directory.mkdir()
        # Expressions, durations and labels are tested here; promtool would
        # also want every annotation as rendered.
        spec = _rule_file()["spec"]
        for group in spec["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)
        (directory / "rules.yaml").write_text(yaml.safe_dump(spec))
        where = {"namespace": "kubernaut", "job": "alertgateway"}
        pod = {**where, "pod": "alertgateway-0"}

        def series(name: str, values: str, **labels: str) -> dict[str, str]:
            text = ", ".join(f'{k}="{v}"' for k, v in {**pod, **labels}.items())
            return {"series": f"{name}{{{text}}}", "values": values}

        def alert(at: str, name: str, *labels: dict[str, str]) -> dict[str, Any]:
            return {"eval_time": at, "alertname": name, "exp_alerts": [{"exp_labels": dict(x)} for x in labels]}

        webhook = {"endpoint": "/webhook/prometheus"}
        critical, warning = {"severity": "critical"}, {"severity": "warning"}
        target = {"target": "http://alert-processor:8081"}
        failing = [
            # 10 % of the webhooks answered 503, p95 in the 100 ms bucket.
            series("gateway_requests_total", "0+90x30", **webhook, code="202"),
            series("gateway_requests_total", "0+10x30", **webhook, code="503"),
            series("gateway_request_duration_seconds_bucket", "0+50x30", **webhook, le="0.05"),
            series("gateway_request_duration_seconds_bucket", "0+100x30", **webhook, le="0.1"),
            series("gateway_request_duration_seconds_bucket", "0+100x30", **webhook, le="+Inf"),
            series("gateway_circuit_breaker_state", "1 2 1 2 1 1 1 2 1 1 1 1 1", **target),
            series("gateway_queue_oldest_age_seconds", "0+60x30"),
            series("gateway_dead_letters_total", "0 0 0 1 1 1"),
            series("gateway_redis_up", "1 1 0 0 0 0 0"),
            series("gateway_security_rejections_total", "0+120x30", **webhook, reason="auth"),
            series("up", "1 1 0 0 0 0 0 0 0 0 0 0"),
        ]
        quiet = [
            # 2 % of the webhooks answered 503, and many 503 readiness probes.
            series("gateway_requests_total", "0+98x30", **webhook, code="202"),
            series("gateway_requests_total", "0+2x30", **webhook, code="503"),
            series("gateway_requests_total", "0+500x30", endpoint="/health/ready", code="503"),
            series("gateway_circuit_breaker_state", "0 1 2 0 1 2 0 1 2 0 0 0 0", **target),
            series("gateway_redis_up", "1 0 1 0 1 1 1"),
        ]
        tests = [
            {
                "interval": "1m",
                "input_series": failing,
                "alert_rule_test": [
                    alert("4m", "AlertGatewayHighErrorRate"),
                    alert("8m", "AlertGatewayHighErrorRate", {**where, **critical}),
                    alert("8m", "AlertGatewayHighLatency"),
                    alert("15m", "AlertGatewayHighLatency", {**where, **warning}),
                    alert("4m", "AlertGatewayCircuitBreakerOpen"),
                    alert("9m", "AlertGatewayCircuitBreakerOpen", {**pod, **target, **critical}),
                    alert("8m", "AlertGatewayQueueBacklog"),
                    alert("15m", "AlertGatewayQueueBacklog", {**pod, **critical}),
                    alert("2m", "AlertGatewayDeadLetters"),
                    alert("5m", "AlertGatewayDeadLetters", {**pod, **warning}),
                    alert("3m", "AlertGatewayRedisDown"),
                    alert("5m", "AlertGatewayRedisDown", {**pod, **critical}),
                    alert("8m", "AlertGatewaySecurityRejectionsSpike"),
                    alert("15m", "AlertGatewaySecurityRejectionsSpike", {**where, "reason": "auth", **warning}),
                    alert("5m", "AlertGatewayDown"),
                    alert("10m", "AlertGatewayDown", {**where, **critical}),
                ],
            },
            {
                "interval": "1m",
                "input_series": quiet,
                "alert_rule_test": [
                    alert("12m", name)
                    for name in ("AlertGatewayHighErrorRate", "AlertGatewayCircuitBreakerOpen", "AlertGatewayRedisDown")
                ],
            },
            {
                # One namespace healthy throughout; one of two pods down in
                # another (still served); every pod down in a third, and
                # the targets gone altogether in a fourth.
                "interval": "1m",
                "input_series": [
                    series("up", "1x30", namespace="kubernaut", pod="a"),
                    series("up", "1x30", namespace="half", pod="b"),
                    series("up", "1 1 0x28", namespace="half", pod="c"),
                    series("up", "1 1 0x28", namespace="kubernaut-dev", pod="d"),
                    series("up", "1 1 _x28", namespace="gone", pod="e"),
                ],
                "alert_rule_test": [
                    alert("5m", "AlertGatewayDown"),
                    alert("8m", "AlertGatewayDown", {"namespace": "kubernaut-dev", "job": "alertgateway", **critical}),
                    alert(
                        "13m",
                        "AlertGatewayDown",
                        {"namespace": "gone", "job": "alertgateway", **critical},
                        {"namespace": "kubernaut-dev", "job": "alertgateway", **critical},
                    ),
                ],
            },
            {
                # A Prometheus that has never scraped a gateway.
                "interval": "1m",
                "input_series": [{"series": 'up{job="other"}', "values": "1x10"}],
                "alert_rule_test": [alert("6m", "AlertGatewayDown", {"job": "alertgateway", **critical})],
            },
        ]
        (directory / "tests.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": tests}))
        done = await run([promtool, "test", "rules", "tests.yaml"], cwd=str(directory))
        self.assertEqual(done.code, 0, done.output)

    def test_rule_resource(self) -> None:
        """
        The file is one C{monitoring.coreos.com/v1} PrometheusRule named
        alertgateway with one group of that name.
        """
        document = _rule_file()
        self.assertEqual(document["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(document["kind"], "PrometheusRule")
        self.assertEqual(document["metadata"]["name"], "alertgateway")
        self.assertEqual([group["name"] for group in document["spec"]["groups"]], ["alertgateway"])

    def test_alerts_present_and_annotated(self) -> None:
        """
        Every alert of the issue is there, and every alert has a severity,
        a summary and a description.
        """
        alerts = _alerts()
        names = [alert["alert"] for alert in alerts]
        self.assertEqual(len(names), len(set(names)), names)
        self.assertLessEqual(REQUIRED_ALERTS, set(names))
        for alert in alerts:
            self.assertIn(alert["labels"]["severity"], {"critical", "warning", "info"}, alert["alert"])
            self.assertTrue(alert["annotations"]["summary"], alert["alert"])
            self.assertTrue(alert["annotations"]["description"], alert["alert"])

    def test_runbook_urls_lead_to_sections(self) -> None:
        """
        Every alert's C{runbook_url} is docs/operations.md with the anchor
        of a heading there, the heading being the alert's name.
        """
        anchors = {github_anchor(heading): heading for heading in _headings(OPERATIONS.read_text())}
        for alert in _alerts():
            url = alert["annotations"]["runbook_url"]
            self.assertEqual(url, f"{RUNBOOK}#{alert['alert'].lower()}")
            fragment = urlsplit(url).fragment
            self.assertIn(fragment, anchors, f"{alert['alert']}: no heading for #{fragment} in {OPERATIONS}")
            self.assertEqual(anchors[fragment], alert["alert"])

    def test_github_anchor(self) -> None:
        """
        Headings become GitHub's anchors: lower case, punctuation dropped,
        spaces made hyphens.
        """
        self.assertEqual(github_anchor("AlertGatewayHighErrorRate"), "alertgatewayhigherrorrate")
        self.assertEqual(github_anchor("Why 503, not 429"), "why-503-not-429")
        self.assertEqual(
            github_anchor("`max_alerts`, `send_resolved` and grouping"), "max_alerts-send_resolved-and-grouping"
        )


class OperationsDocTests(TestCase):
    """
    The configuration snippets of docs/operations.md.
    """

    def test_yaml_blocks_parse(self) -> None:
        """
        Every fenced YAML block of docs/operations.md is valid YAML.
        """
        blocks = re.findall(r"^```ya?ml\n(.*?)^```", OPERATIONS.read_text(), re.DOTALL | re.MULTILINE)
        self.assertGreater(len(blocks), 10)
        for block in blocks:
            self.assertIsInstance(yaml.safe_load(block), dict, block)

    def test_internal_links_resolve(self) -> None:
        """
        Every link to a section of docs/operations.md itself names a
        heading there.
        """
        text = OPERATIONS.read_text()
        anchors = {github_anchor(heading) for heading in _headings(text)}
        links = set(re.findall(r"\]\(#([^)]+)\)", text))
        self.assertTrue(links)
        self.assertEqual(sorted(links - anchors), [])

    async def test_documented_alertmanager_config_is_valid(self) -> None:
        """
        The whole alertmanager.yml the end-to-end tests take their receiver
        from (route included) passes C{amtool check-config}, given the
        token file it names.
        """
        amtool = require_binary("amtool", "prometheus-alertmanager")
        config = documented_alertmanager_config()
        (receiver,) = config["receivers"]
        (webhook,) = receiver["webhook_configs"]
        token = Path(self.mktemp())
        token.write_text(TOKEN + "\n")
        webhook["http_config"]["authorization"]["credentials_file"] = str(token)
        path = Path(self.mktemp() + ".yml")
        path.write_text(yaml.safe_dump(config))
        done = await run([amtool, "check-config", str(path)])
        self.assertEqual(done.code, 0, done.output)


class DashboardTests(TestCase):
    """
    The Grafana dashboard, its ConfigMap and the kustomization.
    """

    async def test_queries_parse(self) -> None:
        """
        Every query of the dashboard, with Grafana's variables substituted,
        is valid PromQL: C{promtool} accepts them as recording rules.
        """
        queries = _dashboard_queries()
        self.assertTrue(queries)
        rules = [{"record": f"dashboard:query{n}", "expr": _as_promql(q)} for n, q in enumerate(queries)]
        # label_values() is Grafana's, not PromQL: check the metric it names.
        rules = [
            r if not r["expr"].startswith("label_values(") else {**r, "expr": _label_values(r["expr"])} for r in rules
        ]
        await _promtool_check_rules(self, {"groups": [{"name": "dashboard", "rules": rules}]})

    def test_panels_use_datasource_variable(self) -> None:
        """
        The dashboard (schema 39 or later) has a prometheus datasource
        variable, and every panel and query uses it.
        """
        dashboard = _dashboard()
        self.assertGreaterEqual(dashboard["schemaVersion"], 39)
        (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
        self.assertEqual((variable["type"], variable["query"]), ("datasource", "prometheus"))
        expected = {"type": "prometheus", "uid": "${datasource}"}
        for panel in _panels(dashboard["panels"]):
            if panel["type"] == "row":
                continue
            self.assertEqual(panel["datasource"], expected, panel["title"])
            self.assertTrue(panel["targets"], panel["title"])
            for target in panel["targets"]:
                self.assertEqual(target["datasource"], expected, panel["title"])

    def test_configmap_holds_dashboard(self) -> None:
        """
        grafana-dashboard.yaml is the ConfigMap alertgateway-dashboard,
        labelled for Grafana's sidecar, whose alertgateway.json is
        dashboard.json (regenerate it with deploy/monitoring/sync-dashboard.py).
        """
        configmap = yaml.safe_load((MONITORING / "grafana-dashboard.yaml").read_text())
        self.assertEqual((configmap["apiVersion"], configmap["kind"]), ("v1", "ConfigMap"))
        self.assertEqual(configmap["metadata"]["name"], "alertgateway-dashboard")
        self.assertEqual(configmap["metadata"]["labels"]["grafana_dashboard"], "1")
        self.assertEqual(
            json.loads(configmap["data"]["alertgateway.json"]),
            _dashboard(),
            "grafana-dashboard.yaml is stale: run python3 deploy/monitoring/sync-dashboard.py",
        )

    def test_kustomization_lists_all(self) -> None:
        """
        The monitoring component applies the scrape configuration, the
        rules and the dashboard.
        """
        kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
        self.assertEqual(
            set(kustomization["resources"]), {"servicemonitor.yaml", "prometheusrule.yaml", "grafana-dashboard.yaml"}
        )


def _label_values(expr: str) -> str:
    """
    The metric selector of Grafana's C{label_values(selector, label)}.
    """
    match = re.fullmatch(r"label_values\((.+),\s*\w+\)", expr)
    assert match is not None, expr
    return match.group(1)


def _exported_names(exposition: str) -> tuple[set[str], set[str]]:
    """
    The sample names of a C{/metrics} exposition, and the names the
    families that have no sample yet would give theirs (by their TYPE).
    """
    samples: set[str] = set()
    declared: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        samples.update(sample.name for sample in family.samples)
        if not family.samples:
            declared.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return samples, declared


class ExportedMetricsTests(TestCase):
    """
    The rules and the dashboard against a running gateway's C{/metrics}.
    """

    timeout = 60

    async def test_every_metric_used_is_exported(self) -> None:
        """
        Every C{gateway_*} name in the alert rules and the dashboard is a
        sample name on a running gateway's /metrics: the real plugin with
        the Redis state and queue backends (so the Redis series exist),
        after an accepted webhook, its repeats (duplicates, an escalation),
        an unauthenticated one (a security rejection) and one over an
        endpoint's rate limit, so that the labelled series exist too.  A
        labelled family nothing touched yet (Redis errors and fallbacks, say)
        counts by its TYPE: a counter gives C{_total}, a histogram
        C{_bucket}, C{_sum}, C{_count}.  A histogram is used through its
        C{_bucket} series, and a counter through C{_total}.
        """
        redis = RedisServer().start()
        self.addCleanup(redis.stop)
        stub = StubProcessor()
        processor = await stub.start()
        self.addCleanup(stub.stop)
        gateway = GatewayProcess(
            {
                "alert_processor": {"endpoint": processor},
                "webhook": {
                    "auth": {"token": TOKEN},
                    "endpoints": [
                        {"path": "/webhook/prometheus", "source": "alertmanager", "reject_status": 503},
                        {"path": LIMITED, "source": "alertmanager", "rate_limit": 1, "reject_status": 429},
                    ],
                },
                "state": {
                    "backend": "redis",
                    "redis": {"url": redis.url, "key_prefix": f"itest-monitoring-{uuid.uuid4().hex[:8]}:"},
                },
                "queue": {"backend": "redis", "path": "var/queue.db"},
            }
        )
        await gateway.start()
        self.addCleanup(gateway.stop)

        client = http_client()
        body = fixture("alertmanager-firing.json")
        codes = []
        for _ in range(4):
            response = await client.post(gateway.url + "/webhook/prometheus", data=body, headers=json_headers(TOKEN))
            await response.content()
            codes.append(response.code)
        self.assertEqual(codes, [202] * 4)
        response = await client.post(gateway.url + "/webhook/prometheus", data=body, headers=json_headers())
        await response.content()
        self.assertEqual(response.code, 401)
        limited = []
        for _ in range(2):
            response = await client.post(gateway.url + LIMITED, data=body, headers=json_headers(TOKEN))
            await response.content()
            limited.append(response.code)
        self.assertEqual(limited[1], 429, limited)
        await stub.wait_for(1, timeout=10)

        response = await client.get(gateway.metrics_url)
        exposition = (await response.content()).decode()
        samples, declared = _exported_names(exposition)
        self.assertIn("gateway_redis_up", samples)
        self.assertIn("gateway_redis_latency_seconds_bucket", samples)
        self.assertIn("gateway_security_rejections_total", samples)
        self.assertIn("gateway_rate_limited_total", samples)

        for where, expressions in (
            ("prometheusrule.yaml", [rule["expr"] for rule in _rules()]),
            ("dashboard.json", _dashboard_queries()),
        ):
            used = _metric_names(expressions)
            self.assertTrue(used, where)
            unknown = sorted(used - samples - declared)
            self.assertEqual(unknown, [], f"{where} uses metrics the gateway does not export")
