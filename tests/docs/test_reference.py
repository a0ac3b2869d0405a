"""
The reference tables against the code they describe: the metrics of
docs/observability.md, the problem types of docs/http-api.md and the alert
rules of docs/observability.md.
"""

from __future__ import annotations

import ast
import inspect
import re
from typing import Any

import yaml
from prometheus_client import Counter
from prometheus_client.metrics import MetricWrapperBase
from twisted.trial.unittest import TestCase

from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.observability.tallies import Spread, Tally
from alertgateway.web import problems
from tests.docs._markdown import REPO, tables


def _table(page: str, first: str) -> list[list[str]]:
    """
    The rows (header excluded) of the table of C{page} whose first header
    cell is C{first}.
    """
    (table,) = [t for t in tables(page) if t[0][0] == first]
    return table[1:]


def _codes(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def exported_metrics() -> dict[str, tuple[str, ...]]:
    """
    Every metric the gateway exports, by the name Prometheus sees (a
    counter's with C{_total}), with its label names.
    """
    metrics = GatewayMetrics()
    found: dict[str, tuple[str, ...]] = {}
    groups = (metrics, metrics.http, metrics.webhooks, metrics.decisions, metrics.delivery, metrics.redis)
    for value in (value for group in groups for value in vars(group).values()):
        if isinstance(value, MetricWrapperBase):
            name = value._name + ("_total" if isinstance(value, Counter) else "")
            labels: tuple[str, ...] = value._labelnames
            found[name] = labels
        elif isinstance(value, Tally | Spread):
            found[value.name + ("_total" if isinstance(value, Tally) else "")] = value.labelnames
    return found


def problem_types() -> dict[str, set[int] | None]:
    """
    Every problem kind C{alertgateway.web.problems} constructs, with its
    status (C{None} when the caller chooses it).
    """
    tree = ast.parse(inspect.getsource(problems))
    found: dict[str, set[int] | None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Problem":
            status, kind = node.args[0], node.args[1]
            assert isinstance(kind, ast.Constant) and isinstance(kind.value, str)
            code = status.value if isinstance(status, ast.Constant) else None
            found[kind.value] = {code} if isinstance(code, int) else None
    return found


class MetricsTableTests(TestCase):
    """
    The metrics table of docs/observability.md.
    """

    def test_every_metric_documented_with_its_labels(self) -> None:
        """
        The table lists exactly the metrics the gateway exports, each with
        its label names.
        """
        documented = {_codes(row[0])[0]: tuple(_codes(row[1])) for row in _table("docs/observability.md", "metric")}
        self.assertEqual(documented, exported_metrics())


class ProblemTableTests(TestCase):
    """
    The problem table of docs/http-api.md.
    """

    def test_every_problem_documented_with_its_status(self) -> None:
        """
        The table lists exactly the problem kinds the gateway sends, each
        with its status (a kind whose status the caller chooses with every
        status its row names).
        """
        documented: dict[str, set[int]] = {}
        for row in _table("docs/http-api.md", "status"):
            (kind,) = _codes(row[1])
            documented[kind] = {int(code) for code in re.findall(r"\d{3}", row[0])}
        constructed = problem_types()
        self.assertEqual(sorted(documented), sorted(constructed))
        for kind, status in constructed.items():
            if status is not None:
                self.assertEqual(documented[kind], status, kind)


class AlertRulesTableTests(TestCase):
    """
    The alert rules table of docs/observability.md.
    """

    def test_every_alert_documented(self) -> None:
        """
        The table lists exactly the alerts of the PrometheusRule, each with
        its severity, linking to its runbook section.
        """
        document: dict[str, Any] = yaml.safe_load((REPO / "deploy/monitoring/prometheusrule.yaml").read_text())
        rules = {
            rule["alert"]: rule["labels"]["severity"]
            for group in document["spec"]["groups"]
            for rule in group["rules"]
            if "alert" in rule
        }
        documented = {}
        for row in _table("docs/observability.md", "alert"):
            link = re.fullmatch(r"\[(\w+)\]\(operations\.md#(\w+)\)", row[0])
            assert link is not None, row[0]
            self.assertEqual(link.group(2), link.group(1).lower())
            documented[link.group(1)] = row[1]
        self.assertEqual(documented, rules)
