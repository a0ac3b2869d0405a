"""
Tests for L{alertgateway.core.model}: the alert value object and Alertmanager's
fingerprint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core import model
from alertgateway.core.model import FIRING, RESOLVED, Alert, fingerprint

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ALERTMANAGER_FIXTURES = ("alertmanager-firing.json", "alertmanager-firing-and-resolved.json")


def _fnv1a_64(data: bytes) -> str:
    """
    FNV-1a over a whole byte string, written independently of the code
    under test (which feeds label by label) and checked against the
    published test vectors below.
    """
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    return format(h, "016x")


def _alert(**changes: Any) -> Alert:
    values: dict[str, Any] = {
        "fingerprint": "704fae8241e05a07",
        "source": "alertmanager",
        "status": FIRING,
        "labels": {"alertname": "A"},
        "annotations": {"summary": "s"},
        "starts_at": "2026-11-26T03:49:49Z",
        "ends_at": None,
        "generator_url": "http://prometheus/graph",
        "received_at": "2026-11-26T03:50:00.000Z",
        "extras": {"senderFingerprint": "704fae8241e05a07"},
    }
    values.update(changes)
    return Alert(**values)


class FingerprintTests(SynchronousTestCase):
    def test_reference_vectors(self) -> None:
        """
        The test's own FNV-1a matches the published 64-bit FNV-1a vectors,
        so it can serve as a reference below.
        """
        self.assertEqual(_fnv1a_64(b""), "cbf29ce484222325")
        self.assertEqual(_fnv1a_64(b"a"), "af63dc4c8601ec8c")
        self.assertEqual(_fnv1a_64(b"foobar"), "85944171f73967e8")

    def test_alertmanager_fixtures(self) -> None:
        """
        For every alert that a real Alertmanager sent, the fingerprint of
        its labels equals the C{fingerprint} Alertmanager wrote.
        """
        checked = 0
        for name in ALERTMANAGER_FIXTURES:
            payload = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
            for alert in payload["alerts"]:
                with self.subTest(fixture=name, expected=alert["fingerprint"]):
                    self.assertEqual(fingerprint(alert["labels"]), alert["fingerprint"])
                    checked += 1
        self.assertEqual(checked, 4)

    def test_layout(self) -> None:
        """
        Labels are fed sorted by name, each as name, 0xFF, value, 0xFF,
        whatever order the mapping has.
        """
        expected = _fnv1a_64(b"alertname\xffX\xffjob\xffnode\xff")
        self.assertEqual(fingerprint({"job": "node", "alertname": "X"}), expected)
        self.assertEqual(fingerprint({"alertname": "X", "job": "node"}), expected)

    def test_separator_matters(self) -> None:
        """
        Moving characters between a name and its value changes the
        fingerprint: the separator keeps them apart.
        """
        self.assertNotEqual(fingerprint({"ab": "c"}), fingerprint({"a": "bc"}))

    def test_empty(self) -> None:
        """
        The empty label set has FNV-1a's offset basis as fingerprint, as in
        Alertmanager.
        """
        self.assertEqual(fingerprint({}), "cbf29ce484222325")

    def test_empty_value(self) -> None:
        """
        A label with an empty value still counts: name and both separators.
        """
        self.assertEqual(fingerprint({"a": ""}), _fnv1a_64(b"a\xff\xff"))

    def test_unicode(self) -> None:
        """
        Names and values are hashed as UTF-8 bytes, sorted by name in byte
        order (as Go sorts strings).
        """
        labels = {"\u00e9t\u00e9": "\u2713", "z": "\U0001f525", "alertname": "\u00dcberhitzung"}
        expected = _fnv1a_64(
            b"alertname"
            + b"\xff"
            + "\u00dcberhitzung".encode()
            + b"\xff"
            + b"z\xff"
            + "\U0001f525".encode()
            + b"\xff"
            + "\u00e9t\u00e9".encode()
            + b"\xff"
            + "\u2713".encode()
            + b"\xff"
        )
        self.assertEqual(fingerprint(labels), expected)

    def test_cache_keeps_no_labels(self) -> None:
        """
        The fingerprints remembered are keyed by a 16-byte digest, never by
        the labels: past C{FINGERPRINT_CACHE_SIZE} label sets the oldest
        go, and none of the (large) label values is kept alive by it.
        """
        self.addCleanup(model._cache.clear)
        model._cache.clear()
        big = "x" * 4096
        for index in range(model.FINGERPRINT_CACHE_SIZE + 10):
            fingerprint({"alertname": "A", "value": f"{index}{big}"})
        self.assertEqual(len(model._cache), model.FINGERPRINT_CACHE_SIZE)
        self.assertEqual({len(key) for key in model._cache}, {16})
        self.assertEqual({len(value) for value in model._cache.values()}, {16})

    def test_cached_answer(self) -> None:
        """
        A label set seen before gets the same fingerprint from the cache as
        computed afresh, and label sets that differ only in where a name
        ends and its value begins are told apart by the digest too.
        """
        self.addCleanup(model._cache.clear)
        labels = {"alertname": "X", "job": "node"}
        first = fingerprint(labels)
        self.assertEqual(fingerprint(dict(reversed(labels.items()))), first)
        self.assertEqual(first, _fnv1a_64(b"alertname\xffX\xffjob\xffnode\xff"))
        self.assertEqual(fingerprint({"ab": "c"}), _fnv1a_64(b"ab\xffc\xff"))
        self.assertEqual(fingerprint({"a": "bc"}), _fnv1a_64(b"a\xffbc\xff"))

    def test_cache_key_with_nul(self) -> None:
        """
        A label set whose names or values hold NULs of their own is hashed
        over its own bytes (the NULs kept, 0xFF after each name and value),
        not as if its NULs separated more labels; each set is cached apart.
        """
        self.addCleanup(model._cache.clear)
        model._cache.clear()
        plain = {"a": "c", "b": "d"}
        nul = {"a\x00b": "c\x00d"}
        self.assertEqual(fingerprint(plain), _fnv1a_64(b"a\xffc\xffb\xffd\xff"))
        self.assertEqual(fingerprint(nul), _fnv1a_64(b"a\x00b\xffc\x00d\xff"))
        self.assertEqual(fingerprint(plain), _fnv1a_64(b"a\xffc\xffb\xffd\xff"))
        self.assertEqual(len(model._cache), 2)

    def test_format(self) -> None:
        """
        The fingerprint is 16 lowercase hex digits, leading zeros kept.
        """
        for labels in ({"a": "b"}, {"alertname": "Watchdog"}, {}):
            with self.subTest(labels=labels):
                value = fingerprint(labels)
                self.assertEqual(len(value), 16)
                self.assertEqual(value, value.lower())
                int(value, 16)


class IdempotencyKeyTests(SynchronousTestCase):
    def test_same_occurrence(self) -> None:
        """
        Deliveries of the same occurrence (same fingerprint, start and
        status) share a key, whatever else differs between them.
        """
        first = _alert()
        again = _alert(
            received_at="2026-11-26T03:55:00.000Z",
            annotations={"summary": "changed"},
            ends_at="2026-11-26T04:00:00Z",
            extras={},
        )
        self.assertEqual(first.idempotency_key, again.idempotency_key)
        self.assertEqual(first.idempotency_key, _alert().idempotency_key)

    def test_different_occurrences(self) -> None:
        """
        Another status, start or label set is another occurrence.
        """
        key = _alert().idempotency_key
        self.assertNotEqual(key, _alert(status=RESOLVED).idempotency_key)
        self.assertNotEqual(key, _alert(starts_at="2026-11-26T03:49:50Z").idempotency_key)
        self.assertNotEqual(key, _alert(fingerprint="995194533ae82003").idempotency_key)

    def test_without_start(self) -> None:
        """
        Without a start time, the receipt time tells occurrences apart: an
        alert that fires again later is not taken for a redelivery of its
        first firing, while a redelivery of one alert keeps its key.
        """
        first = _alert(starts_at=None, received_at="2026-11-26T03:50:00.000Z")
        later = _alert(starts_at=None, received_at="2026-11-26T05:00:00.000Z")
        self.assertNotEqual(first.idempotency_key, later.idempotency_key)
        self.assertEqual(first.idempotency_key, attrs.evolve(first).idempotency_key)

    def test_format(self) -> None:
        """
        The key is 32 lowercase hex digits, a plain HTTP header value.
        """
        key = _alert().idempotency_key
        self.assertEqual(len(key), 32)
        self.assertEqual(key, key.lower())
        int(key, 16)


class AlertTests(SynchronousTestCase):
    def test_to_json(self) -> None:
        """
        The processor gets every field under its Alertmanager-style JSON
        name, as plain JSON types.
        """
        alert = _alert()
        document = alert.to_json()
        self.assertEqual(
            document,
            {
                "fingerprint": "704fae8241e05a07",
                "source": "alertmanager",
                "status": "firing",
                "labels": {"alertname": "A"},
                "annotations": {"summary": "s"},
                "startsAt": "2026-11-26T03:49:49Z",
                "endsAt": None,
                "generatorURL": "http://prometheus/graph",
                "receivedAt": "2026-11-26T03:50:00.000Z",
                "extras": {"senderFingerprint": "704fae8241e05a07"},
            },
        )
        self.assertEqual(json.loads(json.dumps(document)), document)
        for key in ("labels", "annotations", "extras"):
            self.assertIs(type(document[key]), dict)

    def test_immutable(self) -> None:
        """
        An alert cannot be changed after it is made: not its fields, not its
        mappings, not through the dicts it was made from.
        """
        labels = {"alertname": "A"}
        alert = _alert(labels=labels)
        labels["alertname"] = "B"
        self.assertEqual(dict(alert.labels), {"alertname": "A"})
        labels_view: Any = alert.labels
        with self.assertRaises(TypeError):
            labels_view["x"] = "y"
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, alert, "status", RESOLVED)

    def test_equality(self) -> None:
        """
        Alerts with equal fields are equal.
        """
        self.assertEqual(_alert(), _alert())
        self.assertNotEqual(_alert(), _alert(labels={"alertname": "B"}))

    def test_extras_default(self) -> None:
        """
        Extras default to an empty mapping.
        """
        alert = Alert(
            fingerprint="f",
            source="grafana",
            status=FIRING,
            labels={},
            annotations={},
            starts_at=None,
            ends_at=None,
            generator_url="",
            received_at="now",
        )
        self.assertEqual(dict(alert.extras), {})
