"""
Problem answers are bounded whatever the request: at most MAX_ERRORS
errors, each pointer and message cut, the detail and instance cut; and
the parsers keep few errors per refused alert, so that neither a 400 nor a
207 is many times the size of the body that earned it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from alertgateway.sources import PARSERS, FieldError, Rejection
from alertgateway.sources._fields import MAX_ERRORS_PER_ALERT, MAX_LISTED_ERRORS, MAX_POINTER_KEY, bounded
from alertgateway.web import problems
from alertgateway.web.problems import MAX_ECHOED_CHARS, MAX_ERRORS, Problem
from tests.unit._http import AUTH, PROMETHEUS, Connection, HTTPResponse, make_config, make_service

RECEIVED = "2026-11-26T03:50:00.000Z"
# docs/openapi.yaml's JsonPointer.
POINTER = re.compile(r"^(/([^~/]|~[01])*)*$")
JSON = {**AUTH, "Content-Type": "application/json"}


def _bad_labels(alerts: int, labels: int) -> bytes:
    """
    A body of C{alerts} alerts, each with C{labels} labels named by a
    number (not a label name): one error per label, from a few bytes each.
    """
    one = b'{"status":"firing","labels":{' + b",".join(b'"%d":""' % i for i in range(labels)) + b"}}"
    return b'{"alerts":[' + b",".join([one] * alerts) + b"]}"


class ProblemTests(SynchronousTestCase):
    """
    L{Problem} bounds what it echoes.
    """

    def test_errors_capped(self) -> None:
        """
        Past MAX_ERRORS the errors are left out and counted in
        omittedErrors.
        """
        errors = [{"pointer": f"/alerts/{i}", "message": "must be an object"} for i in range(MAX_ERRORS + 150)]
        body = problems.invalid_payload("No alert in the body is valid.", errors).to_json("r", "/webhook/x")
        self.assertEqual(body["errors"], errors[:MAX_ERRORS])
        self.assertEqual(body["omittedErrors"], 150)
        self.assertNotIn("omittedErrors", problems.invalid_payload("x", errors[:3]).to_json("r", "/"))

    def test_values_cut(self) -> None:
        """
        Pointers and messages are cut to MAX_ECHOED_CHARS (a pointer stays
        a pointer: an escape is not cut in half), the detail to 1 kB and
        the instance (the request path) like the pointers.
        """
        long_pointer = "/labels/" + "~1" * 500
        error = {"pointer": long_pointer, "message": "m" * 5000}
        body = Problem(400, "x", "X", "d" * 5000, errors=[error]).to_json("r", "/" + "p" * 5000)
        [listed] = body["errors"]
        self.assertLessEqual(len(listed["pointer"]), MAX_ECHOED_CHARS)
        self.assertRegex(listed["pointer"], POINTER)
        self.assertTrue(long_pointer.startswith(listed["pointer"]))
        self.assertEqual(listed["message"], "m" * MAX_ECHOED_CHARS + "...")
        self.assertEqual(body["detail"], "d" * 1024 + "...")
        self.assertEqual(body["instance"], "/" + "p" * (MAX_ECHOED_CHARS - 1) + "...")
        self.assertLess(len(json.dumps(body)), 2000)

    def test_echoed_headers_cut(self) -> None:
        """
        A Content-Type or Content-Encoding of kilobytes is quoted short.
        """
        for problem in (problems.unsupported_media_type("t" * 9000), problems.unsupported_encoding("e" * 9000)):
            self.assertLess(len(problem.detail), MAX_ECHOED_CHARS + 150)


class ParserBoundsTests(SynchronousTestCase):
    """
    The parsers keep few errors per refused alert and few in all.
    """

    def test_per_alert_and_overall(self) -> None:
        """
        A refused alert keeps MAX_ERRORS_PER_ALERT errors; once
        MAX_LISTED_ERRORS are kept, further refused alerts keep their first
        only; valid alerts and single errors are untouched.
        """
        one = Rejection(tuple(FieldError(f"/alerts/0/labels/{i}", "bad") for i in range(50)))
        single = Rejection((FieldError("/alerts/1", "must be an object"),))
        outcomes = bounded([one] * 20 + [single])
        self.assertEqual([len(o.errors) for o in outcomes if isinstance(o, Rejection)][:12], [10] * 10 + [1, 1])
        self.assertEqual(outcomes[-1], single)
        self.assertEqual(sum(len(o.errors) for o in outcomes if isinstance(o, Rejection)), MAX_LISTED_ERRORS + 11)
        self.assertEqual(MAX_ERRORS_PER_ALERT, 10)

    def test_through_the_parser(self) -> None:
        """
        Alertmanager's parser applies the bounds to what it reads.
        """
        result = PARSERS["alertmanager"](json.loads(_bad_labels(30, 40)), RECEIVED)
        counts = [len(o.errors) for o in result.outcomes if isinstance(o, Rejection)]
        self.assertEqual(counts, [MAX_ERRORS_PER_ALERT] * 10 + [1] * 20)

    def test_long_names_cut_in_pointers(self) -> None:
        """
        A refused label name of 100 kB is named by its first
        MAX_POINTER_KEY characters in the pointer.
        """
        name = "9" * 100_000
        body = {"alerts": [{"status": "firing", "labels": {"alertname": "A", name: "x"}}]}
        [rejection] = PARSERS["alertmanager"](body, RECEIVED).outcomes
        assert isinstance(rejection, Rejection)
        [error] = rejection.errors
        self.assertEqual(error.pointer, "/alerts/0/labels/" + "9" * MAX_POINTER_KEY)

    def test_version_quoted_short(self) -> None:
        """
        An unsupported version of any size is quoted in a few characters.
        """
        from alertgateway.sources import PayloadError

        with self.assertRaises(PayloadError) as raised:
            PARSERS["alertmanager"]({"version": "v" * 100_000, "alerts": []}, RECEIVED)
        [error] = raised.exception.errors
        self.assertLess(len(error.message), 120)


class AnswerSizeTests(SynchronousTestCase):
    """
    What a client gets for a body of many small faults, through the
    gateway's site.
    """

    def post(self, raw: bytes) -> tuple[HTTPResponse, dict[str, Any]]:
        service, _, _ = make_service(make_config("service:\n  max_body_bytes: 2000000\n"))
        response = Connection(service.site).request("POST", PROMETHEUS, headers=JSON, body=raw)
        answer: dict[str, Any] = response.json()
        return response, answer

    def test_megabyte_of_faults(self) -> None:
        """
        A 1 MB body of 128,000 bad labels (which got a 12 MB answer) gets a
        400 of MAX_ERRORS errors, the rest counted, in under 16 kB.
        """
        raw = _bad_labels(1000, 128)
        self.assertGreater(len(raw), 1_000_000)
        response, answer = self.post(raw)
        self.assertEqual(response.status, 400)
        self.assertEqual(len(answer["errors"]), MAX_ERRORS)
        self.assertEqual(answer["omittedErrors"], 1000 - 10 + MAX_LISTED_ERRORS - MAX_ERRORS)
        self.assertLess(len(response.body), 16_000)

    def test_partial_answer(self) -> None:
        """
        The same faults beside one valid alert: a 207 listing every alert,
        the refused ones with few errors each, in a fraction of the body's
        size.
        """
        valid = b'{"status":"firing","labels":{"alertname":"Good"}}'
        raw = _bad_labels(999, 128).replace(b'{"alerts":[', b'{"alerts":[' + valid + b",", 1)
        response, answer = self.post(raw)
        self.assertEqual((response.status, answer["accepted"], answer["rejected"]), (207, 1, 999))
        self.assertLess(len(response.body), len(raw) // 4)
