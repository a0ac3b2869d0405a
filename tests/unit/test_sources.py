"""
Tests for L{alertgateway.sources}: from each sender's webhook body to
alerts, judging each alert of a batch on its own.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.model import Alert, fingerprint
from alertgateway.sources import PARSERS, FieldError, ParseResult, PayloadError, Rejection, alertmanager, grafana
from alertgateway.sources.limits import Limits

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RECEIVED = "2026-11-26T03:50:00.000Z"


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _alertmanager_body(*alerts: object) -> dict[str, Any]:
    body: dict[str, Any] = _fixture("alertmanager-firing.json")
    body["alerts"] = list(alerts)
    return body


def _good_alert(**changes: object) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "status": "firing",
        "labels": {"alertname": "DiskFull", "instance": "node-1"},
        "annotations": {"summary": "disk full"},
        "startsAt": "2026-11-26T03:49:49Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "0000000000000000",
    }
    alert.update(changes)
    return alert


def _accepted(result: ParseResult) -> list[Alert]:
    return list(result.accepted)


class AlertmanagerFixtureTests(SynchronousTestCase):
    def test_firing(self) -> None:
        """
        A real Alertmanager body becomes one alert per entry, every field
        carried over, Go's zero end time read as unset, and the group the
        alerts came in kept in their extras.
        """
        result = alertmanager.parse(_fixture("alertmanager-firing.json"), RECEIVED)
        alerts = _accepted(result)
        self.assertEqual(len(result.outcomes), 2)
        self.assertEqual(len(alerts), 2)
        first, second = alerts
        self.assertEqual(first.fingerprint, "704fae8241e05a07")
        self.assertEqual(second.fingerprint, "995194533ae82003")
        self.assertEqual(first.source, "alertmanager")
        self.assertEqual(first.status, "firing")
        self.assertEqual(
            dict(first.labels),
            {
                "alertname": "KubePodCrashLooping",
                "container": "api",
                "job": "kube-state-metrics",
                "namespace": "payments",
                "pod": "api-7d9f8b-9hj2m",
                "severity": "critical",
            },
        )
        self.assertEqual(dict(first.annotations), {"summary": "Pod payments/api-7d9f8b-9hj2m is crash looping"})
        self.assertEqual(first.starts_at, "2026-11-26T03:49:49Z")
        self.assertIsNone(first.ends_at)
        self.assertEqual(first.generator_url, "")
        self.assertEqual(
            second.generator_url, "http://prometheus:9090/graph?g0.expr=kube_pod_container_status_restarts_total"
        )
        self.assertEqual(first.received_at, RECEIVED)
        self.assertEqual(
            dict(first.extras),
            {
                "senderFingerprint": "704fae8241e05a07",
                "group": {
                    "receiver": "gw",
                    "groupKey": '{}:{alertname="KubePodCrashLooping", namespace="payments"}',
                    "externalURL": "http://vm:19094",
                    "groupLabels": {"alertname": "KubePodCrashLooping", "namespace": "payments"},
                },
            },
        )

    def test_firing_and_resolved(self) -> None:
        """
        Each alert keeps its own status; a resolved alert keeps its end
        time.
        """
        alerts = _accepted(alertmanager.parse(_fixture("alertmanager-firing-and-resolved.json"), RECEIVED))
        self.assertEqual([a.status for a in alerts], ["firing", "resolved"])
        self.assertEqual([a.ends_at for a in alerts], [None, "2026-11-26T03:49:49Z"])
        self.assertEqual([a.fingerprint for a in alerts], ["704fae8241e05a07", "995194533ae82003"])

    def test_fingerprint_computed(self) -> None:
        """
        The fingerprint is computed from the labels, not copied from the
        sender: the sender's goes to the extras.
        """
        (alert,) = _accepted(alertmanager.parse(_alertmanager_body(_good_alert()), RECEIVED))
        self.assertEqual(alert.fingerprint, fingerprint({"alertname": "DiskFull", "instance": "node-1"}))
        self.assertEqual(alert.extras["senderFingerprint"], "0000000000000000")

    def test_registry(self) -> None:
        """
        The parsers are registered under the configuration's source names.
        """
        self.assertEqual(PARSERS, {"alertmanager": alertmanager.parse, "grafana": grafana.parse})


class GrafanaFixtureTests(SynchronousTestCase):
    def test_unified(self) -> None:
        """
        Grafana's unified alerting body is read like Alertmanager's, with
        Grafana's own fields in the extras and its group (org and title
        included) kept.
        """
        (alert,) = _accepted(grafana.parse(_fixture("grafana-unified.json"), RECEIVED))
        self.assertEqual(alert.source, "grafana")
        self.assertEqual(alert.status, "firing")
        self.assertEqual(alert.labels["alertname"], "HighRequestLatency")
        self.assertEqual(alert.fingerprint, fingerprint(alert.labels))
        self.assertEqual(alert.starts_at, "2026-11-26T03:40:00Z")
        self.assertIsNone(alert.ends_at)
        self.assertEqual(alert.generator_url, "https://grafana.example.com/alerting/grafana/ddz3k9/view?orgId=1")
        self.assertEqual(alert.annotations["summary"], "p99 latency of cart above 800ms")
        self.assertEqual(alert.extras["values"], {"B": 0.912, "C": 1})
        self.assertEqual(alert.extras["senderFingerprint"], "4a2f0c0e9b7d1c55")
        for key in ("silenceURL", "dashboardURL", "panelURL", "valueString"):
            self.assertIn(key, alert.extras)
        group = alert.extras["group"]
        self.assertEqual(group["orgId"], 1)
        self.assertEqual(group["receiver"], "kubernaut-gateway")
        self.assertEqual(group["title"], "[FIRING:1] HighRequestLatency Checkout (checkout cart warning)")
        self.assertNotIn("fingerprint", alert.extras)

    def test_legacy(self) -> None:
        """
        A legacy Grafana alert is one alert whose labels are its tags plus
        C{alertname} from C{ruleName}; title and message are annotations,
        the rule URL is the generator URL and the rest goes to the extras.
        """
        result = grafana.parse(_fixture("grafana-legacy.json"), RECEIVED)
        self.assertEqual(len(result.outcomes), 1)
        (alert,) = _accepted(result)
        self.assertEqual(
            dict(alert.labels), {"alertname": "Disk usage high", "severity": "critical", "namespace": "infra"}
        )
        self.assertEqual(alert.fingerprint, fingerprint(alert.labels))
        self.assertEqual(alert.status, "firing")
        self.assertEqual(
            dict(alert.annotations), {"title": "[Alerting] Disk usage high", "message": "Disk usage on /var above 90%"}
        )
        self.assertEqual(
            alert.generator_url, "https://grafana.example.com/d/node/node-exporter?tab=alert&viewPanel=2&orgId=1"
        )
        self.assertIsNone(alert.starts_at)
        self.assertIsNone(alert.ends_at)
        self.assertEqual(alert.received_at, RECEIVED)
        self.assertEqual(set(alert.extras), {"ruleId", "orgId", "dashboardId", "panelId", "evalMatches", "state"})
        self.assertEqual(alert.extras["ruleId"], 17)


class GrafanaLegacyTests(SynchronousTestCase):
    def _legacy(self, **changes: object) -> dict[str, Any]:
        body: dict[str, Any] = _fixture("grafana-legacy.json")
        body.update(changes)
        return body

    def _one(self, body: dict[str, Any]) -> Alert | Rejection:
        (outcome,) = grafana.parse(body, RECEIVED).outcomes
        return outcome

    def test_rule_name_wins(self) -> None:
        """
        A tag called C{alertname} does not override C{ruleName}.
        """
        outcome = self._one(self._legacy(tags={"alertname": "from-tag", "team": "x"}))
        assert isinstance(outcome, Alert)
        self.assertEqual(dict(outcome.labels), {"alertname": "Disk usage high", "team": "x"})

    def test_states(self) -> None:
        """
        C{alerting} and C{no_data} are firing, C{ok} is resolved.
        """
        for state, status in (("alerting", "firing"), ("no_data", "firing"), ("ok", "resolved")):
            with self.subTest(state=state):
                outcome = self._one(self._legacy(state=state))
                assert isinstance(outcome, Alert)
                self.assertEqual(outcome.status, status)

    def test_bad_state(self) -> None:
        """
        Other states (C{pending}, C{paused}) and a missing state are refused
        at C{/state}.
        """
        for state in ("pending", "paused", None, 1):
            with self.subTest(state=state):
                self.assertEqual(
                    self._one(self._legacy(state=state)),
                    Rejection((FieldError("/state", "must be alerting, no_data or ok"),)),
                )

    def test_bad_fields(self) -> None:
        """
        Every bad field of a legacy alert is reported with its pointer.
        """
        outcome = self._one(self._legacy(ruleName=" ", tags={"a/b": 1}, ruleUrl=3, title=[], message=None))
        self.assertEqual(
            outcome,
            Rejection(
                (
                    FieldError("/ruleName", "must be a non-empty string"),
                    FieldError("/tags/a~1b", "must be a string"),
                    FieldError("/ruleUrl", "must be a string"),
                    FieldError("/title", "must be a string"),
                )
            ),
        )

    def test_minimal(self) -> None:
        """
        C{ruleName} and C{state} are enough; tags, URL and texts are
        optional.
        """
        outcome = self._one({"ruleName": "R", "state": "ok"})
        assert isinstance(outcome, Alert)
        self.assertEqual(dict(outcome.labels), {"alertname": "R"})
        self.assertEqual(dict(outcome.annotations), {})
        self.assertEqual(outcome.generator_url, "")
        self.assertEqual(dict(outcome.extras), {"state": "ok"})

    def test_detected_by_other_keys(self) -> None:
        """
        A body with C{ruleId} or C{evalMatches} but no C{ruleName} is taken
        as legacy and refused for the missing name, not as an unknown body.
        """
        for key, value in (("ruleId", 1), ("evalMatches", [])):
            with self.subTest(key=key):
                self.assertEqual(
                    self._one({key: value, "state": "ok"}),
                    Rejection((FieldError("/ruleName", "must be a non-empty string"),)),
                )

    def test_unpaired_surrogate(self) -> None:
        """
        A rule name JSON spells with an unpaired surrogate is refused rather
        than crashing the fingerprint.
        """
        body = json.loads('{"ruleName": "disk \\ud800", "state": "alerting"}')
        self.assertEqual(
            self._one(body),
            Rejection((FieldError("/ruleName", "must be valid Unicode text (it contains an unpaired surrogate)"),)),
        )

    def test_neither(self) -> None:
        """
        A body that is neither unified nor legacy is a payload error.
        """
        error = self.assertRaises(PayloadError, grafana.parse, {"title": "x"}, RECEIVED)
        self.assertEqual(
            error.errors,
            (FieldError("/alerts", "is required (unified alerting), or ruleName/state for a legacy Grafana alert"),),
        )


class AlertValidationTests(SynchronousTestCase):
    def _outcomes(self, *alerts: object) -> tuple[Alert | Rejection, ...]:
        return alertmanager.parse(_alertmanager_body(*alerts), RECEIVED).outcomes

    def _errors(self, alert: object) -> tuple[FieldError, ...]:
        (outcome,) = self._outcomes(alert)
        assert isinstance(outcome, Rejection), outcome
        return outcome.errors

    def test_batch(self) -> None:
        """
        Each alert of a batch is judged on its own: one outcome per alert in
        body order, the valid ones accepted, the invalid one refused with
        pointers into its own index.
        """
        result = alertmanager.parse(
            _alertmanager_body(_good_alert(), _good_alert(labels={}), _good_alert(status="resolved")), RECEIVED
        )
        self.assertEqual([type(o) for o in result.outcomes], [Alert, Rejection, Alert])
        self.assertEqual(result.outcomes[1], Rejection((FieldError("/alerts/1/labels", "must not be empty"),)))
        self.assertEqual([a.status for a in result.accepted], ["firing", "resolved"])

    def test_labels_missing(self) -> None:
        """
        An alert without labels is refused at its labels.
        """
        alert = _good_alert()
        del alert["labels"]
        self.assertEqual(self._errors(alert), (FieldError("/alerts/0/labels", "must be an object of string values"),))

    def test_labels_not_strings(self) -> None:
        """
        A label value that is not a string is refused at that label, its
        name escaped as RFC 6901 says; an empty name is refused too.
        """
        self.assertEqual(
            self._errors(_good_alert(labels={"alertname": "A", "a/b~c": 1, " ": "x"})),
            (
                FieldError("/alerts/0/labels/a~1b~0c", "must be a string"),
                FieldError("/alerts/0/labels/ ", "label and annotation names must not be empty"),
            ),
        )

    def test_labels_not_object(self) -> None:
        """
        Labels given as a list are refused.
        """
        self.assertEqual(
            self._errors(_good_alert(labels=["alertname=A"])),
            (FieldError("/alerts/0/labels", "must be an object of string values"),),
        )

    def test_unpaired_surrogate(self) -> None:
        """
        Text JSON spells with an unpaired surrogate cannot be encoded, so the
        fingerprint could not be computed: such labels and annotations are
        refused at their pointer, which spells the surrogate as an escape so
        that the answer itself can be encoded.
        """
        alert = json.loads(
            '{"status": "firing", "labels": {"alertname": "A", "x": "\\udc00"},'
            ' "annotations": {"\\ud800": "v"}, "generatorURL": "\\ud800"}'
        )
        message = "must be valid Unicode text (it contains an unpaired surrogate)"
        self.assertEqual(
            self._errors(alert),
            (
                FieldError("/alerts/0/labels/x", message),
                FieldError("/alerts/0/annotations/\\ud800", message),
                FieldError("/alerts/0/generatorURL", message),
            ),
        )

    def test_surrogate_in_name_of_bad_value(self) -> None:
        """
        A pointer to a label whose name holds an unpaired surrogate is still
        encodable, whatever is wrong with the label.
        """
        errors = self._errors(json.loads('{"status": "firing", "labels": {"a\\ud800/b": 1}}'))
        self.assertEqual(errors, (FieldError("/alerts/0/labels/a\\ud800~1b", "must be a string"),))
        errors[0].pointer.encode("utf-8")

    def test_unicode(self) -> None:
        """
        Ordinary non-ASCII text is accepted as it is.
        """
        (alert,) = self._outcomes(_good_alert(labels={"alertname": "Überhitzung", "zone": "東京"}))
        assert isinstance(alert, Alert)
        self.assertEqual(alert.labels["zone"], "東京")
        self.assertEqual(alert.fingerprint, fingerprint({"alertname": "Überhitzung", "zone": "東京"}))

    def test_status(self) -> None:
        """
        A status other than firing or resolved is refused at the alert's
        status.
        """
        for status in ("FIRING", "pending", None, 1):
            with self.subTest(status=status):
                self.assertEqual(
                    self._errors(_good_alert(status=status)),
                    (FieldError("/alerts/0/status", "must be firing or resolved"),),
                )

    def test_status_from_group(self) -> None:
        """
        An alert without a status takes the body's status.
        """
        alert = _good_alert()
        del alert["status"]
        body = _alertmanager_body(alert)
        body["status"] = "resolved"
        (outcome,) = alertmanager.parse(body, RECEIVED).outcomes
        assert isinstance(outcome, Alert)
        self.assertEqual(outcome.status, "resolved")

    def test_timestamps(self) -> None:
        """
        RFC 3339 timestamps are kept as the sender wrote them, Go's
        nanoseconds and numeric offsets included.
        """
        for value in (
            "2026-11-26T03:49:49Z",
            "2026-11-26T03:49:49.123456789Z",
            "2026-11-26T03:49:49.5+02:00",
            "2026-11-26t03:49:49z",
        ):
            with self.subTest(value=value):
                (alert,) = self._outcomes(_good_alert(startsAt=value, endsAt=value))
                assert isinstance(alert, Alert)
                self.assertEqual((alert.starts_at, alert.ends_at), (value, value))

    def test_unset_timestamps(self) -> None:
        """
        Go's zero time, an empty string, null and absence all mean unset.
        """
        for value in ("0001-01-01T00:00:00Z", "", None):
            with self.subTest(value=value):
                (alert,) = self._outcomes(_good_alert(startsAt=value, endsAt=value))
                assert isinstance(alert, Alert)
                self.assertEqual((alert.starts_at, alert.ends_at), (None, None))
        bare = _good_alert()
        del bare["startsAt"], bare["endsAt"]
        (alert,) = self._outcomes(bare)
        assert isinstance(alert, Alert)
        self.assertIsNone(alert.starts_at)

    def test_bad_timestamps(self) -> None:
        """
        Times that are not RFC 3339 (no zone, impossible dates, other
        formats, numbers) are refused at their pointer.
        """
        message = "must be an RFC 3339 timestamp, e.g. 2026-11-26T03:49:49Z"
        for value in (
            "2026-11-26T03:49:49",
            "2026-02-30T03:49:49Z",
            "2026-11-26T25:00:00Z",
            "26/11/2026 03:49",
            "2026-11-26T03:49:49Z\n",
            1764128989,
        ):
            with self.subTest(value=value):
                self.assertEqual(
                    self._errors(_good_alert(startsAt=value)), (FieldError("/alerts/0/startsAt", message),)
                )
        self.assertEqual(self._errors(_good_alert(endsAt="soon")), (FieldError("/alerts/0/endsAt", message),))

    def test_every_error_of_an_alert(self) -> None:
        """
        All the problems of one alert are reported, not only the first.
        """
        self.assertEqual(
            self._errors(
                _good_alert(status="x", labels={}, annotations="a", startsAt="now", endsAt="later", generatorURL=1)
            ),
            (
                FieldError("/alerts/0/status", "must be firing or resolved"),
                FieldError("/alerts/0/labels", "must not be empty"),
                FieldError("/alerts/0/annotations", "must be an object of string values"),
                FieldError("/alerts/0/startsAt", "must be an RFC 3339 timestamp, e.g. 2026-11-26T03:49:49Z"),
                FieldError("/alerts/0/endsAt", "must be an RFC 3339 timestamp, e.g. 2026-11-26T03:49:49Z"),
                FieldError("/alerts/0/generatorURL", "must be a string"),
            ),
        )

    def test_optional_fields(self) -> None:
        """
        Annotations and the generator URL may be absent or null.
        """
        (alert,) = self._outcomes({"status": "firing", "labels": {"a": "b"}, "annotations": None})
        assert isinstance(alert, Alert)
        self.assertEqual((dict(alert.annotations), alert.generator_url), ({}, ""))
        self.assertNotIn("senderFingerprint", alert.extras)

    def test_not_an_object(self) -> None:
        """
        An alert that is not an object is refused at its index.
        """
        outcomes = self._outcomes(_good_alert(), "alert", None)
        self.assertEqual(
            outcomes[1:],
            (
                Rejection((FieldError("/alerts/1", "must be an object"),)),
                Rejection((FieldError("/alerts/2", "must be an object"),)),
            ),
        )

    def test_extras(self) -> None:
        """
        Fields beyond the common ones travel in the extras; a sender
        fingerprint that is not a string is not taken as one.
        """
        (alert,) = self._outcomes(_good_alert(fingerprint=7, custom={"k": "v"}))
        assert isinstance(alert, Alert)
        self.assertEqual(alert.extras["custom"], {"k": "v"})
        self.assertNotIn("senderFingerprint", alert.extras)

    def test_no_group(self) -> None:
        """
        A body with no group fields adds no group to the extras.
        """
        (outcome,) = alertmanager.parse({"alerts": [_good_alert()]}, RECEIVED).outcomes
        assert isinstance(outcome, Alert)
        self.assertNotIn("group", outcome.extras)

    def test_input_not_changed(self) -> None:
        """
        Parsing leaves the decoded body as it was.
        """
        body = _fixture("grafana-unified.json")
        before = copy.deepcopy(body)
        grafana.parse(body, RECEIVED)
        self.assertEqual(body, before)


class PayloadErrorTests(SynchronousTestCase):
    def test_not_an_object(self) -> None:
        """
        A body that is not a JSON object is refused as a whole, by either
        parser, at the root pointer.
        """
        bodies: list[object] = [[], "x", None, 4]
        for parse in (alertmanager.parse, grafana.parse):
            for body in bodies:
                with self.subTest(parse=parse, body=body):
                    error = self.assertRaises(PayloadError, parse, body, RECEIVED)
                    self.assertEqual(error.errors, (FieldError("", "the body must be a JSON object"),))

    def test_alerts_missing_or_empty(self) -> None:
        """
        A body without alerts, with alerts that are not an array, or with
        none, is refused at C{/alerts}.
        """
        cases: list[tuple[dict[str, Any], str]] = [
            ({"version": "4"}, "must be an array of alerts"),
            ({"version": "4", "alerts": {}}, "must be an array of alerts"),
            ({"version": "4", "alerts": []}, "must contain at least one alert"),
        ]
        for body, message in cases:
            with self.subTest(body=body):
                error = self.assertRaises(PayloadError, alertmanager.parse, body, RECEIVED)
                self.assertEqual(error.errors, (FieldError("/alerts", message),))
        error = self.assertRaises(PayloadError, grafana.parse, {"alerts": []}, RECEIVED)
        self.assertEqual(error.errors, (FieldError("/alerts", "must contain at least one alert"),))

    def test_version(self) -> None:
        """
        An Alertmanager body of another version (Grafana's unified "1"
        included, or the number 4) is refused at C{/version}; a body without
        a version is read as version 4.
        """
        for version, shown in (("3", "'3'"), ("1", "'1'"), (4, "4")):
            with self.subTest(version=version):
                body = _alertmanager_body(_good_alert())
                body["version"] = version
                error = self.assertRaises(PayloadError, alertmanager.parse, body, RECEIVED)
                self.assertEqual(
                    error.errors, (FieldError("/version", f'unsupported webhook version {shown}; expected "4"'),)
                )
        body = _alertmanager_body(_good_alert())
        del body["version"]
        self.assertEqual(len(alertmanager.parse(body, RECEIVED).accepted), 1)

    def test_str(self) -> None:
        """
        A payload error reads as its pointers and messages.
        """
        error = PayloadError([FieldError("/alerts", "must be an array"), FieldError("/version", "bad")])
        self.assertEqual(str(error), "/alerts: must be an array; /version: bad")

    def test_field_error_json(self) -> None:
        """
        A field error becomes the problem document's C{errors} entry.
        """
        self.assertEqual(
            FieldError("/alerts/1/labels", "must not be empty").to_json(),
            {"pointer": "/alerts/1/labels", "message": "must not be empty"},
        )


def _outcome_of(alert: object, limits: Limits | None = None) -> Alert | Rejection:
    body = _alertmanager_body(alert)
    result = alertmanager.parse(body, RECEIVED) if limits is None else alertmanager.parse(body, RECEIVED, limits)
    (outcome,) = result.outcomes
    return outcome


class LabelSanitisationTests(SynchronousTestCase):
    """
    Labels follow Prometheus's name syntax and the configured limits; their
    values lose control characters.
    """

    def test_label_names(self) -> None:
        """
        Names matching C{[a-zA-Z_][a-zA-Z0-9_]*} are accepted; any other is
        refused at its own pointer.
        """
        (alert,) = _accepted(
            alertmanager.parse(_alertmanager_body(_good_alert(labels={"_x": "1", "a1": "2", "A_b": "3"})), RECEIVED)
        )
        self.assertEqual(set(alert.labels), {"_x", "a1", "A_b"})
        message = "label names must match [a-zA-Z_][a-zA-Z0-9_]*"
        for name in ("1a", "a-b", "a.b", "\u00e4", "a b", "a/b"):
            with self.subTest(name=name):
                self.assertEqual(
                    _outcome_of(_good_alert(labels={"alertname": "A", name: "v"})),
                    Rejection((FieldError(f"/alerts/0/labels/{name.replace('/', '~1')}", message),)),
                )

    def test_label_count(self) -> None:
        """
        More labels than C{max_labels_per_alert} refuses the alert at its
        labels; exactly as many is fine.
        """
        limits = Limits(max_labels_per_alert=2)
        self.assertIsInstance(_outcome_of(_good_alert(labels={"a": "1", "b": "2"}), limits), Alert)
        self.assertEqual(
            _outcome_of(_good_alert(labels={"a": "1", "b": "2", "c": "3"}), limits),
            Rejection((FieldError("/alerts/0/labels", "has 3 labels; at most 2 are allowed"),)),
        )

    def test_default_limits(self) -> None:
        """
        Without limits given, the documented defaults apply: 128 labels.
        """
        labels = {f"l{i}": "v" for i in range(128)}
        self.assertIsInstance(_outcome_of(_good_alert(labels=labels)), Alert)
        labels["l128"] = "v"
        self.assertIsInstance(_outcome_of(_good_alert(labels=labels)), Rejection)

    def test_name_and_value_length(self) -> None:
        """
        Names and values longer than their limits (in characters) are
        refused at their pointer.
        """
        limits = Limits(max_label_name_length=5, max_label_value_length=3)
        self.assertIsInstance(_outcome_of(_good_alert(labels={"abcde": "\u00e4\u00f6\u00fc"}), limits), Alert)
        self.assertEqual(
            _outcome_of(_good_alert(labels={"abcdef": "v", "ok": "abcd"}), limits),
            Rejection(
                (
                    FieldError("/alerts/0/labels/abcdef", "label names are at most 5 characters"),
                    FieldError("/alerts/0/labels/ok", "label values are at most 3 characters"),
                )
            ),
        )

    def test_control_characters(self) -> None:
        """
        Every control character (C0, DEL and C1, tab and newline included)
        is stripped from label values, and the fingerprint is that of the
        clean labels.
        """
        outcome = _outcome_of(_good_alert(labels={"alertname": "Disk\x00Full\n", "x": "a\tb\r\x1b[1m\x7f\x85c"}))
        assert isinstance(outcome, Alert)
        self.assertEqual(dict(outcome.labels), {"alertname": "DiskFull", "x": "ab[1mc"})
        self.assertEqual(outcome.fingerprint, fingerprint({"alertname": "DiskFull", "x": "ab[1mc"}))


class AnnotationSanitisationTests(SynchronousTestCase):
    def test_control_characters(self) -> None:
        """
        Annotation values keep tab, newline and carriage return (used for
        layout) and lose every other control character.
        """
        outcome = _outcome_of(_good_alert(annotations={"description": "line 1\r\nline 2\tend\x00\x1b[31m\x9b"}))
        assert isinstance(outcome, Alert)
        self.assertEqual(dict(outcome.annotations), {"description": "line 1\r\nline 2\tend[31m"})

    def test_control_characters_in_names(self) -> None:
        """
        An annotation name with a control character is refused at its
        pointer; other names are free text.
        """
        self.assertEqual(
            _outcome_of(_good_alert(annotations={"sum\nmary": "x", "runbook url": "y"})),
            Rejection(
                (FieldError("/alerts/0/annotations/sum\nmary", "annotation names must not contain control characters"),)
            ),
        )
        outcome = _outcome_of(_good_alert(annotations={"runbook url": "y", "__dashboardUid__": "z"}))
        self.assertIsInstance(outcome, Alert)

    def test_size(self) -> None:
        """
        Names and values together, in UTF-8 bytes after cleaning, may not
        exceed C{max_annotation_bytes}.
        """
        limits = Limits(max_annotation_bytes=10)
        for given in ({"s": "123456789"}, {"s": "\u00e4\u00e4\u00e4\u00e4"}, {"s": "12345678\x00\x01\x02"}):
            with self.subTest(given=given):
                self.assertIsInstance(_outcome_of(_good_alert(annotations=given), limits), Alert)
        for given, size in (
            ({"s": "1234567890"}, 11),
            ({"s": "123456", "t": "xyz"}, 7 + 4),
            ({"s": "\u00e4" * 5}, 11),
        ):
            with self.subTest(given=given):
                self.assertEqual(
                    _outcome_of(_good_alert(annotations=given), limits),
                    Rejection((FieldError("/alerts/0/annotations", f"annotations total {size} bytes; at most 10"),)),
                )


class BatchLimitTests(SynchronousTestCase):
    def test_max_alerts(self) -> None:
        """
        Alerts past C{max_alerts_per_request} are each rejected at their own
        pointer; the alerts before them are judged as usual and the valid
        ones accepted.
        """
        limits = Limits(max_alerts_per_request=2)
        body = _alertmanager_body(_good_alert(), _good_alert(labels={}), _good_alert(), _good_alert())
        result = alertmanager.parse(body, RECEIVED, limits)
        self.assertEqual(
            result.outcomes[1:],
            (
                Rejection((FieldError("/alerts/1/labels", "must not be empty"),)),
                Rejection((FieldError("/alerts/2", "at most 2 alerts per request"),)),
                Rejection((FieldError("/alerts/3", "at most 2 alerts per request"),)),
            ),
        )
        self.assertEqual(len(result.accepted), 1)

    def test_grafana_unified(self) -> None:
        """
        Grafana's unified bodies get the same limits through the registry.
        """
        body = _fixture("grafana-unified.json")
        body["alerts"] = body["alerts"] * 3
        result = PARSERS["grafana"](body, RECEIVED, Limits(max_alerts_per_request=1, max_labels_per_alert=64))
        self.assertEqual([type(o) for o in result.outcomes], [Alert, Rejection, Rejection])
        self.assertEqual(result.outcomes[2], Rejection((FieldError("/alerts/2", "at most 1 alerts per request"),)))
        result = PARSERS["grafana"](body, RECEIVED, Limits(max_labels_per_alert=1))
        self.assertEqual(result.accepted, ())

    def test_limits_through_registry(self) -> None:
        """
        The registered Alertmanager parser takes limits as its third
        argument.
        """
        body = _alertmanager_body(_good_alert(), _good_alert())
        result = PARSERS["alertmanager"](body, RECEIVED, Limits(max_alerts_per_request=1))
        self.assertEqual([type(o) for o in result.outcomes], [Alert, Rejection])


class LegacySanitisationTests(SynchronousTestCase):
    """
    Legacy Grafana alerts: free-text tags made label names, the rule name
    and texts cleaned and limited like any label and annotation.
    """

    def _one(self, limits: Limits | None = None, **changes: object) -> Alert | Rejection:
        body: dict[str, Any] = _fixture("grafana-legacy.json")
        body.update(changes)
        result = grafana.parse(body, RECEIVED) if limits is None else grafana.parse(body, RECEIVED, limits)
        (outcome,) = result.outcomes
        return outcome

    def test_tag_names(self) -> None:
        """
        Characters a label name may not hold become C{_}, a leading digit
        gets a C{_} before it, and a blank name is dropped.
        """
        outcome = self._one(tags={"service name": "a", "1st": "b", "team-a.b": "c", "ok_name": "d", " ": "e"})
        assert isinstance(outcome, Alert)
        self.assertEqual(
            dict(outcome.labels),
            {"service_name": "a", "_1st": "b", "team_a_b": "c", "ok_name": "d", "alertname": "Disk usage high"},
        )

    def test_tag_pointers(self) -> None:
        """
        A refused tag is pointed at by its name in the body, not the label
        name it would have become.
        """
        outcome = self._one(Limits(max_label_name_length=5), tags={"service name": 1, "long name": "x"})
        self.assertEqual(
            outcome,
            Rejection(
                (
                    FieldError("/tags/service name", "must be a string"),
                    FieldError("/tags/long name", "label names are at most 5 characters"),
                )
            ),
        )

    def test_tag_count(self) -> None:
        """
        The tags with C{alertname} added may not exceed the label limit.
        """
        self.assertIsInstance(self._one(Limits(max_labels_per_alert=3), tags={"a": "1", "b": "2"}), Alert)
        self.assertIsInstance(self._one(Limits(max_labels_per_alert=2), tags={"a": "1", "alertname": "x"}), Alert)
        self.assertEqual(
            self._one(Limits(max_labels_per_alert=2), tags={"a": "1", "b": "2"}),
            Rejection((FieldError("/tags", "with alertname makes more than 2 labels"),)),
        )

    def test_rule_name(self) -> None:
        """
        The rule name, as the alertname label's value, loses its control
        characters and is held to the value length; one made only of
        control characters is empty.
        """
        outcome = self._one(ruleName="Disk\x00 usage\n", tags={})
        assert isinstance(outcome, Alert)
        self.assertEqual(dict(outcome.labels), {"alertname": "Disk usage"})
        self.assertEqual(outcome.fingerprint, fingerprint({"alertname": "Disk usage"}))
        self.assertEqual(
            self._one(ruleName="\x07\x1b"), Rejection((FieldError("/ruleName", "must be a non-empty string"),))
        )
        self.assertEqual(
            self._one(Limits(max_label_value_length=4), ruleName="Disk usage", tags={}),
            Rejection((FieldError("/ruleName", "is a label value; those are at most 4 characters"),)),
        )

    def test_texts(self) -> None:
        """
        Title and message lose control characters other than tab and line
        breaks, and together may not exceed the annotation bytes; the
        pointer is the text that went over.
        """
        outcome = self._one(title="T\x1b[1m", message="a\n\tb\x00")
        assert isinstance(outcome, Alert)
        self.assertEqual(dict(outcome.annotations), {"title": "T[1m", "message": "a\n\tb"})
        limits = Limits(max_annotation_bytes=20)
        self.assertIsInstance(self._one(limits, title="0123456789abcde", message=None), Alert)
        self.assertEqual(
            self._one(limits, title="0123456789", message="0123"),
            Rejection((FieldError("/message", "annotations total 26 bytes; at most 20"),)),
        )
        self.assertEqual(
            self._one(limits, title="0123456789abcdef", message="x"),
            Rejection((FieldError("/title", "annotations total 21 bytes; at most 20"),)),
        )


# Every bidirectional formatting character: embeddings and overrides
# (U+202A to U+202E), isolates (U+2066 to U+2069), marks (U+200E, U+200F, U+061C).
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


class HostileTextTests(SynchronousTestCase):
    """
    Bidirectional formatting characters are stripped wherever text is
    cleaned, and unpaired surrogates refused (labels, annotations) or
    stripped (what is kept as sent: the group, the extras).
    """

    def test_bidi_in_labels_and_annotations(self) -> None:
        """
        Label values, annotation values and generatorURL lose every bidi
        control (U+202E would show "gpj.exe" as "exe.jpg"); the
        fingerprint is of the cleaned labels. An annotation name holding
        one is refused, like one holding a control character.
        """
        outcome = _outcome_of(
            _good_alert(
                labels={"alertname": "Disk\u202eFull", "file": f"a{BIDI}b"},
                annotations={"summary": f"x{BIDI}y\nz"},
                generatorURL="http://prometheus/\u202egraph",
            )
        )
        assert isinstance(outcome, Alert)
        self.assertEqual(dict(outcome.labels), {"alertname": "DiskFull", "file": "ab"})
        self.assertEqual(outcome.fingerprint, fingerprint({"alertname": "DiskFull", "file": "ab"}))
        self.assertEqual(dict(outcome.annotations), {"summary": "xy\nz"})
        self.assertEqual(outcome.generator_url, "http://prometheus/graph")
        refused = _outcome_of(_good_alert(annotations={"sum\u202emary": "x"}))
        self.assertEqual(
            refused,
            Rejection(
                (
                    FieldError(
                        "/alerts/0/annotations/sum\u202emary", "annotation names must not contain control characters"
                    ),
                )
            ),
        )

    def test_group_and_extras_cleaned(self) -> None:
        """
        The group members kept as sent (receiver, groupKey, groupLabels,
        externalURL) and an alert's other members lose unpaired surrogates,
        bidi and control characters, keys included, at any depth; what
        remains encodes as UTF-8.
        """
        body = _alertmanager_body(_good_alert(fingerprint="ab\ud800cd", extra={"k\u202e": ["v\udfff\x00", 1]}))
        body.update(
            receiver="team-\ud800x\u202e", groupLabels={"alertname": "D\u2066isk"}, externalURL="http://am\x1b/"
        )
        [alert] = _accepted(alertmanager.parse(body, RECEIVED))
        group = alert.extras["group"]
        self.assertEqual(
            (group["receiver"], group["groupLabels"], group["externalURL"]),
            ("team-x", {"alertname": "Disk"}, "http://am/"),
        )
        self.assertEqual((alert.extras["senderFingerprint"], alert.extras["extra"]), ("abcd", {"k": ["v", 1]}))
        json.dumps(alert.to_json(), ensure_ascii=False).encode("utf-8")

    def test_grafana(self) -> None:
        """
        Grafana's unified group (title, orgId) and legacy extras
        (evalMatches) and ruleUrl are cleaned the same way.
        """
        unified = _fixture("grafana-unified.json")
        unified["title"] = "[FIRING:1] \u202eDisk\ud800"
        [alert] = _accepted(grafana.parse(unified, RECEIVED))
        self.assertEqual(alert.extras["group"]["title"], "[FIRING:1] Disk")
        legacy = {
            "ruleName": "Disk\u202e",
            "state": "alerting",
            "ruleUrl": "http://grafana/\u2067d",
            "evalMatches": [{"metric": "m\ud800\u200f", "tags": {"t\u202a": "v"}}],
        }
        [alert] = _accepted(grafana.parse(legacy, RECEIVED))
        self.assertEqual(alert.labels["alertname"], "Disk")
        self.assertEqual(alert.generator_url, "http://grafana/d")
        self.assertEqual(alert.extras["evalMatches"], [{"metric": "m", "tags": {"t": "v"}}])
