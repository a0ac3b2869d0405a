"""
Property-based tests (hypothesis): arbitrary bytes, JSON values, form and
XML-ish bodies thrown at each source's parser, at body decoding and at the
whole webhook resource through a real site.

Whatever arrives, a parser returns a L{ParseResult} or raises
L{PayloadError}; the resource answers 2xx, or 4xx with a problem body,
never 5xx; and the connection (or, once it is closed, the site) goes on
serving valid webhooks.

Runs are derandomized and keep no example database, so CI sees the same
examples every time.
"""

from __future__ import annotations

import gzip
import json
import re
from typing import Any
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape, quoteattr

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.model import Alert
from alertgateway.sources import PARSERS, ParseResult, PayloadError, Rejection
from alertgateway.sources.limits import Limits
from alertgateway.web.bodies import check_depth, decode_body, inflate
from alertgateway.web.endpoints import Guards
from alertgateway.web.problems import Problem
from tests.unit._http import PROMETHEUS, Connection, Edge, HTTPResponse, alert, assert_security_headers, body

FAST = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RECEIVED_AT = "2026-11-26T03:50:00.000Z"
# Small limits, so that examples reach every limit's branch.
LIMITS = Limits(
    max_alerts_per_request=3,
    max_labels_per_alert=4,
    max_label_name_length=12,
    max_label_value_length=16,
    max_annotation_bytes=64,
    max_json_depth=6,
)
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Bidirectional formatting characters and unpaired surrogates, which
# nothing of an accepted alert may carry.
UNSAFE = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

# -- JSON ------------------------------------------------------------------

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
# Strings a hostile sender would try: controls, bidi overrides, an unpaired
# surrogate (legal as a JSON escape), long ones.
odd_strings = st.sampled_from(["", " ", "\x00", "a\x1b[31mb", "\u202e", "\ud800", "x" * 40, "\n", "caf\xe9"])
strings = st.text(max_size=20) | odd_strings
label_names = st.sampled_from(
    ["alertname", "severity", "", " ", "bad-name", "1abc", "_ok", "a" * 20, "\ud800"]
) | st.text(max_size=10)
timestamps = st.sampled_from(
    [
        "2026-11-26T03:49:49Z",
        "2026-11-26T03:49:49.123+01:00",
        "0001-01-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-11-26 03:49:49Z",
        "yesterday",
        "",
    ]
) | (strings | scalars)
string_maps = st.dictionaries(label_names, strings | scalars, max_size=6) | json_values
alerts = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["firing", "resolved", "pending"]) | scalars,
        "labels": string_maps,
        "annotations": string_maps,
        "startsAt": timestamps,
        "endsAt": timestamps,
        "generatorURL": strings | scalars,
        "fingerprint": strings | scalars,
    },
)
# Valid but for what the strategies vary: labels within and past the small
# limits, text with controls, any annotations.
plausible_alerts = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved"]),
        "labels": st.dictionaries(
            st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,14}", fullmatch=True), strings, min_size=1, max_size=5
        ),
        "startsAt": st.sampled_from(["2026-11-26T03:49:49Z", "2026-11-26T03:49:49.5+02:00"]),
    },
    optional={
        "annotations": st.dictionaries(st.text(max_size=8), strings, max_size=3),
        "endsAt": st.sampled_from(["0001-01-01T00:00:00Z", "2026-11-26T04:00:00Z"]),
        "generatorURL": st.text(max_size=20),
    },
)
legacy_documents = st.fixed_dictionaries(
    {
        "ruleName": st.text(min_size=1, max_size=10),
        "state": st.sampled_from(["alerting", "no_data", "ok"]),
    },
    optional={"tags": st.dictionaries(st.text(max_size=8), strings, max_size=3), "message": strings},
)
# Shaped like the senders' documents (Alertmanager, Grafana unified and
# legacy), so that examples get past the first checks.
documents = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from(["4", "1", "3", 4]) | scalars,
        "status": st.sampled_from(["firing", "resolved"]) | scalars,
        "receiver": strings | scalars,
        "groupLabels": string_maps,
        "alerts": st.lists(plausible_alerts | alerts | json_values, max_size=5) | json_values,
        "ruleName": strings | scalars,
        "ruleId": scalars,
        "state": st.sampled_from(["alerting", "no_data", "ok", "paused"]) | scalars,
        "tags": string_maps,
        "evalMatches": json_values,
        "title": strings | scalars,
        "message": strings | scalars,
        "ruleUrl": strings | scalars,
    },
)
any_documents = (
    st.fixed_dictionaries({"version": st.just("4"), "alerts": st.lists(plausible_alerts, min_size=1, max_size=5)})
    | documents
    | legacy_documents
    | json_values
)


def dumps(document: object) -> bytes:
    return json.dumps(document).encode("utf-8")


# -- Forms -----------------------------------------------------------------

forms = (
    st.dictionaries(
        st.sampled_from(["payload", "other", ""]) | st.text(max_size=5), st.text(max_size=20), max_size=4
    ).map(lambda fields: urlencode(fields).encode("ascii"))
    | any_documents.map(lambda d: b"payload=" + quote(json.dumps(d)).encode("ascii"))
    | st.binary(max_size=200).map(lambda raw: b"payload=" + raw)
)

# -- XML -------------------------------------------------------------------

xml_names = st.sampled_from(
    ["alerts", "alert", "labels", "label", "annotations", "annotation", "startsAt", "endsAt", "generatorURL", "x"]
)
xml_texts = st.text(max_size=15).map(escape) | st.sampled_from(
    ["&amp;", "&lol;", "&#0;", "&#x1F600;", "<![CDATA[<x>]]>", "]]>", "&", "<", "\x00", "2026-11-26T03:49:49Z"]
)
xml_attributes = st.dictionaries(
    st.sampled_from(["name", "status", "version", "xmlns", "a:b"]),
    (st.sampled_from(["alertname", "firing", "resolved", "4"]) | st.text(max_size=10)).map(quoteattr),
    max_size=3,
)


def element(name: str, attributes: dict[str, str], children: list[str]) -> str:
    attrs = "".join(f" {key}={value}" for key, value in attributes.items())
    return f"<{name}{attrs}>{''.join(children)}</{name}>"


xml_elements = st.recursive(
    xml_texts,
    lambda children: st.builds(element, xml_names, xml_attributes, st.lists(children, max_size=4)),
    max_leaves=15,
)
xml_prologs = st.sampled_from(
    [
        "",
        '<?xml version="1.0"?>',
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<?xml version="1.0" encoding="utf-16"?>',
        '<?xml version="1.0" encoding="x-bogus"?>',
        "<!DOCTYPE alerts>",
        '<!DOCTYPE alerts [<!ENTITY lol "lol">]>',
        '<!DOCTYPE alerts SYSTEM "http://dtd.invalid/a.dtd">',
    ]
)


def xml_document(alerts: list[dict[str, Any]]) -> bytes:
    """
    The documented XML format for C{alerts} (plausible alerts).
    """
    parts = ['<?xml version="1.0" encoding="UTF-8"?><alerts version="4">']
    for item in alerts:
        labels = "".join(f"<label name={quoteattr(k)}>{escape(v)}</label>" for k, v in item["labels"].items())
        annotations = "".join(
            f"<annotation name={quoteattr(k)}>{escape(v)}</annotation>" for k, v in item.get("annotations", {}).items()
        )
        parts.append(
            f"<alert status={quoteattr(item['status'])}><labels>{labels}</labels>"
            f"<annotations>{annotations}</annotations><startsAt>{item['startsAt']}</startsAt></alert>"
        )
    parts.append("</alerts>")
    # Surrogates cannot be written as XML; what is left of them shows how
    # the parser takes replacement text.
    return "".join(parts).encode("utf-8", "replace")


xml_bodies = st.lists(plausible_alerts, max_size=4).map(xml_document) | st.builds(
    lambda prolog, root, tail: (prolog + root + tail).encode("utf-8"),
    xml_prologs,
    st.builds(element, st.just("alerts"), xml_attributes, st.lists(xml_elements, max_size=4)) | xml_elements,
    st.sampled_from(["", " ", "<x/>", "garbage"]),
)

# -- Whole requests --------------------------------------------------------

content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=latin-1",
        "application/alert+json",
        "application/x-www-form-urlencoded",
        "application/xml",
        "text/xml",
        "text/plain",
        "",
        "multipart/form-data; boundary=x",
    ]
)
# Mostly each kind of body under its own type, so that examples get past
# the type check, and anything under any type besides.
typed_bodies = st.one_of(
    st.tuples(st.sampled_from([None, "application/json", "application/alert+json"]), any_documents.map(dumps)),
    st.tuples(st.just("application/x-www-form-urlencoded"), forms),
    st.tuples(st.sampled_from(["application/xml", "text/xml; charset=utf-8"]), xml_bodies),
    st.tuples(content_types, st.binary(max_size=300) | st.sampled_from([b"", b"{}", b"[]"])),
    st.tuples(content_types, forms | xml_bodies | any_documents.map(dumps)),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[list[tuple[str, str]], bytes]:
    """
    Headers and a body: any body under any content type, perhaps gzipped
    (and perhaps claiming gzip without being it), perhaps asking for a
    compressed answer.
    """
    content_type, raw = draw(typed_bodies)
    headers: list[tuple[str, str]] = []
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    encoding = draw(st.sampled_from([None, None, "gzip", "x-gzip", "identity", "br"]))
    if encoding is not None:
        headers.append(("Content-Encoding", encoding))
        if encoding in ("gzip", "x-gzip") and draw(st.booleans()):
            raw = gzip.compress(raw, mtime=0)
    accept = draw(st.sampled_from([None, "gzip", "gzip;q=0", "*", "br;q=x"]))
    if accept is not None:
        headers.append(("Accept-Encoding", accept))
    return headers, raw


def depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


class ParserProperties(SynchronousTestCase):
    """
    alertmanager.parse and grafana.parse on anything JSON can carry.
    """

    def check(self, document: object) -> None:
        for name, parse in PARSERS.items():
            for limits in (LIMITS, Limits()):
                try:
                    result = parse(document, RECEIVED_AT, limits)
                except PayloadError as e:
                    self.assertTrue(e.errors, name)
                    for error in e.errors:
                        self.assertTrue(error.pointer == "" or error.pointer.startswith("/"), error)
                    continue
                self.assertIsInstance(result, ParseResult, name)
                self.check_result(result, limits)

    def check_result(self, result: ParseResult, limits: Limits) -> None:
        for outcome in result.outcomes:
            if isinstance(outcome, Rejection):
                self.assertTrue(outcome.errors)
                continue
            self.assertIsInstance(outcome, Alert)
            self.assertLessEqual(len(outcome.labels), limits.max_labels_per_alert)
            for label, value in outcome.labels.items():
                self.assertRegex(label, LABEL_NAME)
                self.assertIsNone(CONTROL.search(value), repr(value))
                self.assertLessEqual(len(value), limits.max_label_value_length)
            # What the sinks will do with it.
            text = json.dumps(outcome.to_json(), ensure_ascii=False)
            text.encode("utf-8")
            self.assertIsNone(UNSAFE.search(text), repr(text))
        self.assertLessEqual(len(result.accepted), limits.max_alerts_per_request)

    @FAST
    @given(any_documents | st.binary(max_size=50))
    def test_json_values(self, document: object) -> None:
        """
        Any JSON value, shaped like a webhook or not (or bytes no decoder
        made anything of), gives a ParseResult of alerts (Prometheus label
        names, no control characters, within the limits, encodable, no
        bidirectional formatting characters anywhere) and
        rejections, or a PayloadError with pointers; nothing else escapes.
        """
        self.check(document)

    @FAST
    @given(typed_bodies)
    def test_decoded_bodies(self, typed: tuple[str | None, bytes]) -> None:
        """
        Whatever body decoding makes of arbitrary bytes, forms and XML is
        parsed the same way.
        """
        content_type, raw = typed
        try:
            document = decode_body(content_type, raw)
        except Problem:
            return
        self.check(document)


class DecodingProperties(SynchronousTestCase):
    """
    Body decoding refuses with problems only.
    """

    @FAST
    @given(typed_bodies)
    def test_decode(self, typed: tuple[str | None, bytes]) -> None:
        """
        decode_body returns a JSON-shaped value or raises a 400 or 415
        problem marked as a content refusal.
        """
        content_type, raw = typed
        try:
            document = decode_body(content_type, raw)
        except Problem as problem:
            self.assertIn(problem.status, (400, 415))
            self.assertEqual(problem.reason, "content")
            return
        json.dumps(document)

    @FAST
    @given(st.binary(max_size=500), st.integers(min_value=0, max_value=600))
    def test_inflate_garbage(self, raw: bytes, limit: int) -> None:
        """
        Arbitrary bytes claimed to be gzip inflate to at most the limit or
        are refused 400 or 413.
        """
        try:
            inflated = inflate(raw, "gzip", limit, 16)
        except Problem as problem:
            self.assertIn(problem.status, (400, 413))
            return
        self.assertLessEqual(len(inflated), limit)

    @FAST
    @given(st.lists(st.binary(max_size=300), min_size=1, max_size=3), st.integers(min_value=0, max_value=600))
    def test_inflate_roundtrip(self, members: list[bytes], limit: int) -> None:
        """
        Real gzip (in one or more members) inflates to exactly what was
        compressed when that fits the limit, and is refused 413 when not.
        """
        whole = b"".join(members)
        raw = b"".join(gzip.compress(member, mtime=0) for member in members)
        if len(whole) <= limit:
            self.assertEqual(inflate(raw, "gzip", limit, 16), whole)
        else:
            self.assertEqual(self.assertRaises(Problem, inflate, raw, "gzip", limit, 16).status, 413)

    @FAST
    @given(json_values, st.integers(min_value=1, max_value=6))
    def test_depth(self, document: object, limit: int) -> None:
        """
        check_depth refuses exactly the documents nested deeper than the
        limit.
        """
        if depth(document) > limit:
            self.assertRaises(Problem, check_depth, document, limit)
        else:
            check_depth(document, limit)


class ResourceProperties(SynchronousTestCase):
    """
    The whole webhook resource through a real site, no credentials needed
    so that every body is read.
    """

    def setUp(self) -> None:
        self.edge = Edge(self, Guards(limits=LIMITS), max_body_bytes=2000, gzip_min_bytes=200)

    def check_answer(self, response: HTTPResponse) -> None:
        self.assertTrue(200 <= response.status < 300 or 400 <= response.status < 500, response.status)
        assert_security_headers(self, response)
        payload = gzip.decompress(response.body) if response.header("content-encoding") == "gzip" else response.body
        answer: dict[str, Any] = json.loads(payload)
        if response.status >= 400:
            self.assertEqual(response.header("content-type"), "application/problem+json")
            self.assertTrue(answer["type"].startswith("urn:alertgateway:problem:"), answer)
            self.assertEqual(answer["status"], response.status)
        else:
            self.assertIn(response.status, (202, 207))
            self.assertEqual(len(answer["alerts"]), answer["accepted"] + answer["rejected"])

    def still_serving(self, connection: Connection) -> None:
        """
        A valid webhook is taken afterwards, on the same connection unless
        the gateway closed it.
        """
        if connection.closed:
            connection = Connection(self.edge.site)
        response = connection.request("POST", PROMETHEUS, body=body(alert("After")))
        self.assertEqual(response.status, 202, response.body)

    @FAST
    @given(requests())
    def test_any_request(self, request: tuple[list[tuple[str, str]], bytes]) -> None:
        """
        Any body under any content type and encoding is answered 2xx, or
        4xx with a problem+json body, never 5xx; security headers are on
        it; the gateway then takes a valid webhook.
        """
        headers, raw = request
        connection = Connection(self.edge.site)
        self.check_answer(connection.request("POST", PROMETHEUS, headers=headers, body=raw))
        self.still_serving(connection)

    @FAST
    @given(any_documents)
    def test_any_document(self, document: object) -> None:
        """
        Any JSON document, shaped like a webhook or not, is answered 2xx or
        4xx with a problem body, and a valid webhook follows on the same
        connection.
        """
        connection = Connection(self.edge.site)
        self.check_answer(connection.request("POST", PROMETHEUS, body=dumps(document)))
        self.still_serving(connection)

    @FAST
    @given(st.binary(min_size=1, max_size=400))
    def test_raw_bytes_on_the_wire(self, garbage: bytes) -> None:
        """
        Arbitrary bytes in place of a request never make the gateway answer
        5xx, and the site serves a new connection afterwards.
        """
        connection = Connection(self.edge.site)
        connection.send(garbage)
        written = connection.transport.value()
        if written:
            status = int(written.split(b" ", 2)[1])
            self.assertLess(status, 500, written[:200])
        # Whatever the bytes left pending ends with the connection.
        connection.lose()
        self.still_serving(Connection(self.edge.site))
