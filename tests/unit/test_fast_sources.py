"""
Tests for L{alertgateway.sources.fast}: the one-pass decoder of
Alertmanager bodies gives exactly what the careful path (JSON decode, depth
walk, field readers) gives, or leaves the body to it; and its memo of raw
alerts is bounded and invisible.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.model import Alert
from alertgateway.sources import DECODERS, PARSERS, ParseResult, Rejection
from alertgateway.sources.fast import FastDecoder, check_alert
from alertgateway.sources.limits import Limits
from alertgateway.sources.rawalerts import ENTRY_COST, ENTRY_OVERHEAD, RAW_CACHE_BYTES, RAW_CACHE_ENTRIES, RawAlerts
from alertgateway.web.bodies import check_depth, decode_body
from alertgateway.web.problems import Problem

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RECEIVED = "2026-11-26T03:50:00.000Z"
LIMITS = Limits()
SMALL = Limits(
    max_alerts_per_request=3,
    max_labels_per_alert=3,
    max_label_name_length=6,
    max_label_value_length=8,
    max_annotation_bytes=30,
    max_label_bytes=40,
)


def careful(raw: bytes, limits: Limits = LIMITS, source: str = "alertmanager") -> ParseResult | Exception:
    """
    What today's careful path makes of C{raw}: its result, or the refusal.
    """
    try:
        payload = decode_body("application/json", raw)
        check_depth(payload, limits.max_json_depth, raw)
        return PARSERS[source](payload, RECEIVED, limits)
    except Exception as e:
        return e


def as_text(result: ParseResult) -> list[str]:
    """
    Each outcome spelt out, key order included: what is forwarded.
    """
    return [
        json.dumps(o.to_json() if isinstance(o, Alert) else [e.to_json() for e in o.errors]) for o in result.outcomes
    ]


class Equivalence:
    """
    Checks fast == careful on bodies, counting how many took the fast path.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.case = case
        self.fast = 0
        self.total = 0

    def check(self, raw: bytes, limits: Limits = LIMITS, source: str = "alertmanager") -> ParseResult | None:
        decoder = FastDecoder(source)
        self.total += 1
        fast = decoder(raw, RECEIVED, limits)
        if fast is None:
            return None
        self.fast += 1
        expected = careful(raw, limits, source)
        self.case.assertIsInstance(expected, ParseResult, raw)
        assert isinstance(expected, ParseResult)
        self.case.assertEqual(fast.outcomes, expected.outcomes, raw)
        self.case.assertEqual(as_text(fast), as_text(expected), raw)
        # A second time, from the memo of raw alerts.
        again = decoder(raw, RECEIVED, limits)
        assert again is not None
        self.case.assertEqual(as_text(again), as_text(expected), raw)
        return fast


class FixtureTests(SynchronousTestCase):
    def test_fixtures(self) -> None:
        """
        The real Alertmanager bodies take the fast path, to the very alerts
        the careful path makes of them.
        """
        check = Equivalence(self)
        for name in ("alertmanager-firing.json", "alertmanager-firing-and-resolved.json"):
            raw = (FIXTURES / name).read_bytes()
            result = check.check(raw)
            self.assertIsNotNone(result, name)
        self.assertEqual(check.fast, 2)

    def test_grafana_fixtures(self) -> None:
        """
        A Grafana unified alerting body takes Grafana's fast path, its
        alerts' extras kept in their order; a legacy one is left to the
        parser, and so is either on Alertmanager's.
        """
        check = Equivalence(self)
        unified = (FIXTURES / "grafana-unified.json").read_bytes()
        result = check.check(unified, source="grafana")
        assert result is not None
        self.assertEqual(list(result.accepted[0].extras)[:3], ["silenceURL", "dashboardURL", "panelURL"])
        legacy = (FIXTURES / "grafana-legacy.json").read_bytes()
        self.assertIsNone(check.check(legacy, source="grafana"))
        self.assertIsNone(check.check(unified))
        self.assertEqual(set(DECODERS), {"alertmanager", "grafana"})
        self.assertEqual(DECODERS["grafana"]().source, "grafana")  # type: ignore[attr-defined]


# Pieces the generated bodies are made of: valid, unusual and invalid.
_NAMES = ["alertname", "instance", "job", "_x", "a1", "Zz", "abc\n", "1bad", "", " ", "a-b", "é", "toolong_name"]
_TEXTS = ["", "x", "disk full", "a\tb", "l1\nl2", "c\x01d", "\x7f", "\x85", "é", "中文", "😀", "\u202eexe", "q\"'\\/"]
_TIMES: list[object] = [
    "2026-11-26T03:49:49Z",
    "2026-11-26T03:49:49.123456789Z",
    "2026-11-26T03:49:49.1Z",
    "2026-11-26t03:49:49z",
    "2026-11-26 03:49:49+02:00",
    "2026-13-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "",
    None,
    "yesterday",
    5,
]
_STATUSES: list[object] = ["firing", "resolved", "FIRING", None, 3]
_MISSING = object()


def _pick(rng: random.Random, choices: list[Any], valid: int, weird: bool) -> Any:
    """
    One of C{choices} (or none): of the first C{valid} unless C{weird}.
    """
    if rng.random() < 0.15:
        return _MISSING
    return rng.choice(choices if weird else choices[:valid])


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_TEXTS) for _ in range(rng.randint(0, 3)))


def _mapping(rng: random.Random, names: list[str], weird: bool) -> dict[str, str]:
    return {rng.choice(names) if weird and rng.random() < 0.3 else rng.choice(_NAMES[:6]): _text(rng) for _ in range(4)}


def _alert(rng: random.Random) -> dict[str, Any]:
    weird = rng.random() < 0.2
    alert: dict[str, Any] = {
        "status": _pick(rng, _STATUSES, 2, weird),
        "labels": _mapping(rng, _NAMES, weird) if not weird or rng.random() < 0.9 else rng.choice([{}, None, "x"]),
        "annotations": _pick(
            rng, [_mapping(rng, [*_NAMES, "summary", "a\tb", "\u202e"], weird), None, {}, 1], 3, weird
        ),
        "startsAt": _pick(rng, _TIMES, 5, weird),
        "endsAt": _pick(rng, _TIMES, 10, weird),
        "generatorURL": _pick(rng, ["", "http://p/graph?g0.expr=up", "http://x/\x01y", None, 5], 4, weird),
        "fingerprint": _pick(rng, ["704fae8241e05a07", "a\u202eb", None, 7], 3, weird),
    }
    if weird and rng.random() < 0.2:
        alert["extra"] = rng.choice([1, "x", {"nested": [1, 2]}])
    return {k: v for k, v in alert.items() if v is not _MISSING}


def _body(rng: random.Random) -> dict[str, Any]:
    weird = rng.random() < 0.2
    body: dict[str, Any] = {
        "receiver": _pick(rng, ["gw", None, 1], 2, weird),
        "status": _pick(rng, _STATUSES, 2, weird),
        "alerts": [_alert(rng) for _ in range(rng.choice([0, 1, 1, 2, 3, 4] if weird else [1, 2, 3]))],
        "groupLabels": _pick(rng, [{"alertname": "A\x01"}, {}, None, ["x"]], 3, weird),
        "commonLabels": _pick(rng, [{"alertname": "A"}, {}, None, {"a": {"b": 1}}], 3, weird),
        "commonAnnotations": _pick(rng, [{"summary": "s"}, None], 2, weird),
        "externalURL": _pick(rng, ["http://am:9093", None], 2, weird),
        "version": _pick(rng, ["4", None, "3", 4], 2, weird),
        "groupKey": _pick(rng, ['{}:{alertname="A"}', None], 2, weird),
        "truncatedAlerts": _pick(rng, [0, 2, -1, 1.5, 10**30], 2, weird),
    }
    if weird and rng.random() < 0.2:
        body["extra"] = rng.choice([1, [1], {"x": "y"}])
    return {k: v for k, v in body.items() if v is not _MISSING}


# Text-level changes json.dumps cannot make: numbers JSON cannot
# round-trip, escapes, repeated keys, nesting past the limit.
_MUTATIONS = [
    lambda raw: raw.replace(b'"truncatedAlerts": 0', b'"truncatedAlerts": 1e999'),
    lambda raw: raw.replace(b'"truncatedAlerts": 0', b'"truncatedAlerts": NaN'),
    lambda raw: raw.replace(b'"truncatedAlerts": 0', b'"truncatedAlerts": ' + b"9" * 5000),
    lambda raw: raw.replace(b'"labels": {', b'"labels": {"alertname": "first", ', 1),
    lambda raw: raw.replace(b'"status": "firing"', b'"status": "firing", "status": "resolved"', 1),
    lambda raw: raw.replace(b'"receiver"', b'"x": ' + b"[" * 40 + b"]" * 40 + b', "receiver"', 1),
    lambda raw: raw.replace(b'"summary"', b'"summ\\u0000ary"', 1),
    lambda raw: raw.replace(b'"disk full"', b'"disk\\ud800full"', 1),
    lambda raw: raw.replace(b'"x"', b'"\\u00e9\\t"', 1),
    lambda raw: b"\xef\xbb\xbf" + raw,
    lambda raw: raw + b" \n",
]


class GrafanaTypeTests(SynchronousTestCase):
    def test_values_not_strings(self) -> None:
        """
        A Grafana alert whose labels or annotations hold other than strings
        is left to the careful path, which refuses it with its pointer.
        """
        for field in ({"labels": {"a": 1}}, {"labels": {"a": "b"}, "annotations": {"s": [1]}}):
            raw = json.dumps({"alerts": [{"status": "firing", **field}]}).encode()
            self.assertIsNone(FastDecoder("grafana")(raw, RECEIVED, LIMITS))
            refused = careful(raw, LIMITS, "grafana")
            assert isinstance(refused, ParseResult)
            self.assertEqual(refused.accepted, ())


class GeneratedBodyTests(SynchronousTestCase):
    def test_fast_equals_careful(self) -> None:
        """
        On thousands of generated bodies, valid and not, under the default
        limits and small ones: whatever the decoder takes, it makes into
        the very alerts (and the very JSON) the careful path makes; the
        rest it leaves to the careful path.
        """
        rng = random.Random(16)
        check = Equivalence(self)
        for round in range(3000):
            raw = json.dumps(_body(rng), ensure_ascii=rng.random() < 0.5).encode("utf-8")
            if round % 5 == 0:
                raw = rng.choice(_MUTATIONS)(raw)
            check.check(raw, SMALL if round % 3 == 0 else LIMITS)
        # Enough of them valid for the comparison to mean something.
        self.assertGreater(check.fast, 300)

    def test_grafana_fast_equals_careful(self) -> None:
        """
        Likewise for Grafana's unified alerting bodies, whose alerts keep
        what else they have (values, URLs, nested a level or more, numbers
        of every kind) in their extras, and whose body keeps its
        organisation and title with the group.
        """
        rng = random.Random(61)
        check = Equivalence(self)
        extras: list[Any] = [
            "https://grafana/d/x?orgId=1",
            {"B": 0.912, "C": 1},
            {"B": -0.0, "C": 1e308, "D": True, "E": None, "F": 10**30},
            ["a\x01", 1.5, None],
            "[ var='B' value=0.9 ]\u202e",
            {"nested": {"too": "deep"}},
            [[1]],
            {},
        ]
        for round in range(2000):
            body = _body(rng)
            for alert in body.get("alerts", []):
                if isinstance(alert, dict):
                    for key in rng.sample(["silenceURL", "values", "valueString", "panelURL", "x\x01"], 3):
                        alert[key] = rng.choice(extras[:6] if rng.random() < 0.8 else extras)
            for key, value in (
                ("orgId", rng.choice([1, "1", None, 1.5])),
                ("title", "[FIRING:1]"),
                ("state", "alerting"),
            ):
                if rng.random() < 0.7:
                    body[key] = value
            body.pop("version", None) if rng.random() < 0.5 else body.update(version="1")
            raw = json.dumps(body, ensure_ascii=rng.random() < 0.5).encode("utf-8")
            if round % 5 == 0:
                raw = rng.choice(_MUTATIONS)(raw)
            check.check(raw, SMALL if round % 3 == 0 else LIMITS, "grafana")
        self.assertGreater(check.fast, 100)

    def test_valid_variants_all_fast(self) -> None:
        """
        Valid bodies of every usual shape (any status, times with
        nanoseconds or offsets, missing optional fields, control
        characters to strip) all take the fast path.
        """
        rng = random.Random(4)
        check = Equivalence(self)
        for _ in range(500):
            alerts = []
            for _ in range(rng.randint(1, 5)):
                alert: dict[str, Any] = {
                    "status": rng.choice(["firing", "resolved"]),
                    "labels": {name: _text(rng) for name in rng.sample(_NAMES[:6], rng.randint(1, 6))},
                    "annotations": {"summary": _text(rng), "runbook": "x\ty"},
                    "startsAt": rng.choice(_TIMES[:5]),
                    "endsAt": rng.choice([*_TIMES[:5], _TIMES[7]]),
                    "generatorURL": rng.choice(["", "http://x/\x01y"]),
                    "fingerprint": "0123456789abcdef",
                }
                for key in rng.sample(["annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"], 2):
                    if rng.random() < 0.5:
                        del alert[key]
                alerts.append(alert)
            body = {"receiver": "gw", "status": "firing", "alerts": alerts, "version": "4", "groupKey": "k"}
            self.assertIsNotNone(check.check(json.dumps(body).encode("utf-8")), body)


class HostileTests(SynchronousTestCase):
    def _nested(self, depth: int) -> bytes:
        return b"[" * depth + b"]" * depth

    def test_deep_unknown_fields(self) -> None:
        """
        A key the schema does not name is not skipped but left to the
        careful path, however deep it nests: 100,000 levels (past the
        decoder's own recursion limit) in the body or in an alert, and 33
        levels (within it, past limits.max_json_depth); a Grafana alert's
        own keys take one level at most.  The careful path refuses each as
        today.
        """
        alert = b'{"labels": {"a": "b"}}'
        for depth in (33, 100_000):
            nested = self._nested(depth)
            for raw in (
                b'{"x": ' + nested + b', "alerts": [' + alert + b"]}",
                b'{"alerts": [' + alert + b"], " + b'"commonLabels": ' + nested + b"}",
                b'{"alerts": [{"labels": {"a": "b"}, "x": ' + nested + b"}]}",
                b'{"alerts": [{"labels": {"a": "b"}, "x": [' + nested + b"]}]}",
                b'{"alerts": [' + nested + b"]}",
            ):
                for source in ("alertmanager", "grafana"):
                    self.assertIsNone(FastDecoder(source)(raw, RECEIVED, LIMITS))
                    refused = careful(raw, LIMITS, source)
                    self.assertIsInstance(refused, Problem)
                    assert isinstance(refused, Problem)
                    self.assertEqual(refused.status, 400)

    def test_limit_below_schema_depth(self) -> None:
        """
        With limits.max_json_depth below the schema's four levels every
        body is left to the careful path, which refuses nesting past it.
        """
        raw = (FIXTURES / "alertmanager-firing.json").read_bytes()
        self.assertIsNone(FastDecoder()(raw, RECEIVED, Limits(max_json_depth=3)))
        self.assertIsInstance(careful(raw, Limits(max_json_depth=3)), Problem)

    def test_label_bytes(self) -> None:
        """
        Labels over limits.max_label_bytes (counted after their control
        characters are stripped) are left to the careful path, which
        refuses them; stripped to the limit, they are taken.
        """
        limits = Limits(max_label_bytes=10)
        check = Equivalence(self)
        over = json.dumps({"alerts": [{"status": "firing", "labels": {"abc": "12345678"}}]}).encode()
        self.assertIsNone(check.check(over, limits))
        self.assertIsInstance(careful(over, limits), ParseResult)
        stripped = json.dumps({"alerts": [{"status": "firing", "labels": {"abc": "123456\x01\x02"}}]}).encode()
        self.assertIsNotNone(check.check(stripped, limits))

    def test_too_many_alerts(self) -> None:
        """
        A body of more alerts than limits.max_alerts_per_request is left
        to the careful path, which answers the excess alerts one by one.
        """
        alert = {"labels": {"a": "b"}}
        raw = json.dumps({"alerts": [alert] * 4, "status": "firing"}).encode()
        self.assertIsNone(FastDecoder()(raw, RECEIVED, SMALL))
        self.assertIsNotNone(FastDecoder()(raw, RECEIVED, LIMITS))


def _one(labels: dict[str, str], **fields: object) -> bytes:
    return json.dumps({"labels": labels, **fields}).encode()


class RawAlertsTests(SynchronousTestCase):
    def test_repeated_alert_validated_once(self) -> None:
        """
        An alert repeated byte for byte, in the same body or another, is
        validated once; what the request adds (receipt time, group, the
        body's status for an alert without one) is its own each time.
        """
        decoder = FastDecoder()
        alert = {"labels": {"alertname": "A"}, "startsAt": "2026-11-26T03:49:49Z"}
        first = decoder(
            json.dumps({"alerts": [alert, alert], "receiver": "one", "status": "firing"}).encode(), RECEIVED, LIMITS
        )
        self.assertEqual(len(decoder.cache), 1)
        later = "2026-11-26T03:51:00.000Z"
        raw = json.dumps({"alerts": [alert], "receiver": "two", "status": "resolved"}).encode()
        second = decoder(raw, later, LIMITS)
        self.assertEqual(len(decoder.cache), 1)
        assert first is not None and second is not None
        [a, b], [c] = first.accepted, second.accepted
        self.assertEqual(a, b)
        self.assertEqual((a.status, a.received_at, a.extras["group"]), ("firing", RECEIVED, {"receiver": "one"}))
        self.assertEqual((c.status, c.received_at, c.extras["group"]), ("resolved", later, {"receiver": "two"}))
        self.assertEqual(c.labels, a.labels)
        # The body's status, not the alert's, is refused: the careful path says so.
        self.assertIsNone(decoder(json.dumps({"alerts": [alert], "status": "bad"}).encode(), RECEIVED, LIMITS))

    def test_bounded_in_entries(self) -> None:
        """
        Past its count the least recently used entry goes first.
        """
        cache = RawAlerts(max_entries=2)
        checked = [check_alert(_one({"a": str(i)}), LIMITS, {}) for i in range(3)]
        keys = [_one({"a": str(i)}) for i in range(3)]
        for key, value in zip(keys[:2], checked[:2], strict=True):
            assert value is not None
            cache.put(key, value)
        self.assertIs(cache.get(keys[0]), checked[0])
        assert checked[2] is not None
        cache.put(keys[2], checked[2])
        self.assertEqual(len(cache), 2)
        self.assertIsNone(cache.get(keys[1]))
        self.assertIs(cache.get(keys[0]), checked[0])
        self.assertEqual(cache.bytes, ENTRY_COST * (len(keys[0]) + len(keys[2])) + 2 * ENTRY_OVERHEAD)

    def test_bounded_in_bytes(self) -> None:
        """
        Past its bytes the oldest entries go; an alert bigger than all of
        them is not kept at all.
        """
        small, big = _one({"a": "b"}), _one({"a": "b" * 100})
        cache = RawAlerts(max_bytes=ENTRY_COST * (len(small) + len(big)) + 2 * ENTRY_OVERHEAD)
        for raw in (small, big, _one({"a": "c"})):
            checked = check_alert(raw, LIMITS, {})
            assert checked is not None
            cache.put(raw, checked)
        self.assertIsNone(cache.get(small))
        self.assertEqual(len(cache), 2)
        self.assertLessEqual(cache.bytes, cache.max_bytes)
        huge = _one({"a": "d" * (300 + ENTRY_OVERHEAD)})
        checked = check_alert(huge, LIMITS, {})
        assert checked is not None
        cache.put(huge, checked)
        self.assertIsNone(cache.get(huge))
        self.assertEqual((RAW_CACHE_ENTRIES, RAW_CACHE_BYTES), (4096, 4 * 1024 * 1024))

    def test_other_limits_forget(self) -> None:
        """
        What alerts validated to under one set of limits is forgotten when
        another applies: a label too long for the new one is refused.
        """
        decoder = FastDecoder()
        raw = json.dumps({"alerts": [{"status": "firing", "labels": {"alertname": "LongValue!"}}]}).encode()
        self.assertIsNotNone(decoder(raw, RECEIVED, LIMITS))
        self.assertEqual(len(decoder.cache), 1)
        self.assertIsNone(decoder(raw, RECEIVED, SMALL))
        self.assertEqual(len(decoder.cache), 0)

    def test_equal_limits_keep(self) -> None:
        """
        Limits equal to those the alerts were checked with, in another
        object, keep what they validated to.
        """
        decoder = FastDecoder()
        raw = json.dumps({"alerts": [{"status": "firing", "labels": {"a": "b"}}]}).encode()
        self.assertIsNotNone(decoder(raw, RECEIVED, Limits()))
        self.assertIsNotNone(decoder(raw, RECEIVED, Limits()))
        self.assertEqual(len(decoder.cache), 1)

    def test_time_memo_bounded(self) -> None:
        """
        The valid times remembered are at most as many as the entries.
        """
        times: dict[str, None] = {}
        for second in range(RAW_CACHE_ENTRIES + 1):
            stamp = f"2026-11-26T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
            self.assertIsNotNone(check_alert(_one({"a": "b"}, startsAt=stamp), LIMITS, times))
        self.assertEqual(len(times), 1)


class HostileNamesAndTimesTests(SynchronousTestCase):
    """
    What a hostile sender tried against the fast path.
    """

    def test_comma_in_a_label_name(self) -> None:
        """
        A label name with a comma in it (which, joined with the others,
        would pass for two names) is not taken by the fast path; the
        careful path refuses it with its pointer.
        """
        for labels in ({"a,b": "x"}, {"alertname": "A", "x,y,z": "v"}):
            raw = json.dumps({"alerts": [{"status": "firing", "labels": labels}]}).encode()
            self.assertIsNone(FastDecoder()(raw, RECEIVED, LIMITS))
            self.assertIsNone(check_alert(_one(labels), LIMITS, {}))

    def test_label_name_ending_in_newline(self) -> None:
        """
        The careful path refuses a label name that ends in a newline, as the
        fast path does.
        """
        body = {"alerts": [{"status": "firing", "labels": {"a\n": "x"}}]}
        result = PARSERS["alertmanager"](body, RECEIVED, LIMITS)
        [outcome] = result.outcomes
        self.assertIsInstance(outcome, Rejection)

    def test_long_times_not_remembered(self) -> None:
        """
        Valid times of unusual length (a fraction of any number of digits)
        are checked but not remembered: a sender choosing them cannot fill
        memory through the memo of times.
        """
        times: dict[str, None] = {}
        long_time = "2026-01-01T00:00:00." + "1" * 10_000 + "Z"
        raw = json.dumps({"status": "firing", "labels": {"a": "b"}, "startsAt": long_time}).encode()
        checked = check_alert(raw, LIMITS, times)
        assert checked is not None
        self.assertEqual(checked.starts_at, long_time)
        self.assertEqual(times, {})
        raw = json.dumps({"status": "firing", "labels": {"a": "b"}, "startsAt": "2026-01-01T00:00:00.5Z"}).encode()
        self.assertIsNotNone(check_alert(raw, LIMITS, times))
        self.assertEqual(list(times), ["2026-01-01T00:00:00.5Z"])
