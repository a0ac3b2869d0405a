"""
Request body decoding on its own: content encodings, media types, the XML
format and the depth check (alertgateway.web.bodies).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.web.bodies import check_depth, decode_body, inflate
from alertgateway.web.problems import Problem

# limits.max_gzip_members's default.
MEMBERS = 16


def refusal(case: SynchronousTestCase, status: int, slug: str, call: Any, *args: Any) -> Problem:
    """
    Call C{call(*args)} expecting the problem C{slug} with C{status}.
    """
    problem: Problem = case.assertRaises(Problem, call, *args)
    case.assertEqual((problem.status, problem.slug), (status, slug))
    return problem


class InflateTests(SynchronousTestCase):
    """
    inflate: Content-Encoding undone within the body limit.
    """

    def test_identity(self) -> None:
        """
        No Content-Encoding, an empty one or identity (any case, spaces)
        leave the body as it is, whatever its size.
        """
        for encoding in (None, "", " identity ", "IDENTITY"):
            self.assertEqual(inflate(b"x" * 50, encoding, 10, MEMBERS), b"x" * 50)

    def test_large_body(self) -> None:
        """
        A body inflating to many steps' worth (past the 64 KiB step) comes
        back whole and exact.
        """
        raw = bytes(range(256)) * 2000
        self.assertEqual(inflate(gzip.compress(raw), "gzip", len(raw), MEMBERS), raw)

    def test_step_boundaries(self) -> None:
        """
        Bodies ending exactly at a step (64 KiB) or one byte past it come
        back whole.
        """
        for size in (64 * 1024, 64 * 1024 + 1, 2 * 64 * 1024):
            raw = b"a" * size
            self.assertEqual(inflate(gzip.compress(raw), "gzip", 10 * size, MEMBERS), raw, size)

    def test_limit_exact(self) -> None:
        """
        Exactly the limit is fine; one byte more is 413 naming the limit,
        also when the excess is in a later member.
        """
        self.assertEqual(inflate(gzip.compress(b"a" * 100), "gzip", 100, MEMBERS), b"a" * 100)
        problem = refusal(self, 413, "payload-too-large", inflate, gzip.compress(b"a" * 101), "gzip", 100, MEMBERS)
        self.assertEqual(problem.extensions, {"limit": 100})
        refusal(
            self,
            413,
            "payload-too-large",
            inflate,
            gzip.compress(b"a" * 60) + gzip.compress(b"a" * 41),
            "gzip",
            100,
            MEMBERS,
        )

    def test_members(self) -> None:
        """
        Members are inflated in turn, an empty one included.
        """
        raw = gzip.compress(b"ab") + gzip.compress(b"") + gzip.compress(b"cd")
        self.assertEqual(inflate(raw, "x-gzip", 100, MEMBERS), b"abcd")

    def test_member_cap(self) -> None:
        """
        Up to max_gzip_members members are inflated; one more, even empty,
        is 400 naming the limit and its key.
        """
        empty = gzip.compress(b"", mtime=0)
        self.assertEqual(inflate(gzip.compress(b"ab") + empty * 2, "gzip", 100, 3), b"ab")
        problem = refusal(self, 400, "malformed-body", inflate, gzip.compress(b"ab") + empty * 3, "gzip", 100, 3)
        self.assertEqual(problem.detail, "The body has more than 3 gzip members (limits.max_gzip_members).")
        self.assertEqual(problem.reason, "content")

    def test_member_bomb_cheap(self) -> None:
        """
        A megabyte of 50,000 empty gzip members is refused after the cap's
        worth of them: it costs no more than inflating one small body a
        few times, not the 50,000 inflaters it asks for (measured against
        a real one-member body of the same size, which must come first).
        """
        bomb = gzip.compress(b"", mtime=0) * 50_000
        plain = gzip.compress(bytes(range(256)) * 4096, compresslevel=0)
        self.assertGreater(len(plain), len(bomb))
        self.assertEqual(len(inflate(plain, "gzip", 2_000_000, MEMBERS)), 256 * 4096)
        counted: list[int] = []
        real = zlib.decompressobj

        def counting(*args: Any) -> Any:
            counted.append(1)
            return real(*args)

        self.patch(zlib, "decompressobj", counting)
        refusal(self, 400, "malformed-body", inflate, bomb, "gzip", 1_048_576, MEMBERS)
        self.assertEqual(len(counted), MEMBERS)

    def test_stored_blocks(self) -> None:
        """
        A body of stored (uncompressed) deflate blocks, where zlib leaves
        most of the input unconsumed at every step, comes back whole.
        """
        raw = bytes(range(256)) * 4096
        self.assertEqual(inflate(gzip.compress(raw, compresslevel=0), "gzip", len(raw), MEMBERS), raw)

    def test_invalid(self) -> None:
        """
        Not gzip, cut short anywhere, followed by garbage, or empty: 400.
        """
        whole = gzip.compress(b'{"a": 1}' * 100)
        for raw in (b"plain", b"", whole[:5], whole[:-1], whole[: len(whole) // 2], whole + b"\0", whole + b"x"):
            problem = refusal(self, 400, "malformed-body", inflate, raw, "gzip", 10_000, MEMBERS)
            self.assertEqual(problem.reason, "content")

    def test_unsupported(self) -> None:
        """
        Other codings are 415 with Accept-Encoding: gzip.
        """
        problem = refusal(self, 415, "unsupported-encoding", inflate, b"x", "br", 100, MEMBERS)
        self.assertEqual(problem.headers, {"Accept-Encoding": "gzip"})
        self.assertEqual(problem.reason, "content")


class DecodeTests(SynchronousTestCase):
    """
    decode_body: the document a media type carries.
    """

    def test_json_types(self) -> None:
        """
        No Content-Type, application/json with parameters and any
        application/*+json are JSON.
        """
        for content_type in (None, "application/json", 'application/json; charset="utf-8"', "application/alert+json"):
            self.assertEqual(decode_body(content_type, b'{"a": [1, 2.5]}'), {"a": [1, 2.5]})

    def test_json_refused(self) -> None:
        """
        Empty, not JSON, not UTF-8, NaN and out-of-range numbers are
        malformed, with an error on the whole document.
        """
        for raw in (b"", b"\t", b"{", b"\xff", b"NaN", b"[1e400]", b'{"a": Infinity}'):
            problem = refusal(self, 400, "malformed-body", decode_body, "application/json", raw)
            self.assertEqual(problem.errors, [{"pointer": "", "message": problem.detail}])

    def test_recursion(self) -> None:
        """
        A document deeper than the decoder can follow is malformed, not a
        RecursionError.
        """
        refusal(self, 400, "malformed-body", decode_body, "application/json", b"[" * 100_000)

    def test_unsupported(self) -> None:
        """
        Other media types, an empty Content-Type included, are 415.
        """
        for content_type in ("", "text/plain", "application/jsonl", "application/json-seq", "image/+json"):
            problem = refusal(self, 415, "unsupported-media-type", decode_body, content_type, b"{}")
            self.assertIn(repr(content_type), problem.detail)

    def test_form(self) -> None:
        """
        The payload field of a form is decoded as JSON; the first of
        several payload fields is used.
        """
        document = {"alerts": [], "note": "a+b & c"}
        raw = b"payload=" + json.dumps(document).encode().replace(b"+", b"%2B").replace(b"&", b"%26")
        self.assertEqual(decode_body("application/x-www-form-urlencoded", raw), document)
        self.assertEqual(
            decode_body("application/x-www-form-urlencoded", b"payload=1&payload=2"),
            1,
        )

    def test_form_empty_payload(self) -> None:
        """
        An empty payload field is an empty JSON body.
        """
        problem = refusal(self, 400, "malformed-body", decode_body, "application/x-www-form-urlencoded", b"payload=")
        self.assertIn("empty", problem.detail)

    def test_xml_minimal(self) -> None:
        """
        Sections may be left out; without a version attribute the
        document has none; a label without a name has an empty one and
        empty elements give empty strings.
        """
        raw = b'<alerts><alert><labels><label>x</label><label name="b"/></labels><startsAt/></alert></alerts>'
        self.assertEqual(
            decode_body("text/xml", raw),
            {"alerts": [{"labels": {"": "x", "b": ""}, "startsAt": ""}]},
        )

    def test_xml_other_elements(self) -> None:
        """
        Elements outside the format are ignored, not read as alerts.
        """
        raw = b'<alerts version="4"><note>x</note><alert status="resolved"><extra/></alert></alerts>'
        self.assertEqual(decode_body("application/xml", raw), {"alerts": [{"status": "resolved"}], "version": "4"})

    def test_xml_encodings(self) -> None:
        """
        A declared encoding Python knows is honoured; an unknown one is a
        malformed body.
        """
        raw = '<?xml version="1.0" encoding="iso-8859-1"?><alerts><alert status="caf\xe9"/></alerts>'
        self.assertEqual(decode_body("application/xml", raw.encode("latin-1")), {"alerts": [{"status": "caf\xe9"}]})
        refusal(
            self,
            400,
            "malformed-body",
            decode_body,
            "application/xml",
            b'<?xml version="1.0" encoding="x-unknown"?><alerts/>',
        )


_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=12,
)


def _refused(check: Callable[..., None], *args: object) -> bool:
    try:
        check(*args)
    except Problem:
        return True
    return False


class DepthTests(SynchronousTestCase):
    """
    check_depth: containers nested past the limit.
    """

    def test_scalars(self) -> None:
        """
        Scalars have no depth; a flat container is depth 1.
        """
        for document in ("x", 1, None, True, 2.5):
            check_depth(document, 1)
        check_depth({"a": 1}, 1)
        check_depth([], 1)

    def test_limit(self) -> None:
        """
        Exactly the limit passes, one more level fails, in objects and
        arrays alike and in any branch.
        """
        check_depth({"a": [{"b": []}]}, 4)
        refusal(self, 400, "malformed-body", check_depth, {"a": [{"b": []}]}, 3)
        refusal(self, 400, "malformed-body", check_depth, [1, 2, {"x": 1, "y": [[[]]]}], 4)

    def test_raw_text_shortcut(self) -> None:
        """
        Given the JSON text, a text with no more brackets than the limit
        passes without a walk; one with more is walked, so brackets inside
        strings never let a deep document through nor refuse a flat one.
        """
        flat = {"a": "[[[[[[", "b": "{{{{"}
        check_depth(flat, 1, json.dumps(flat).encode())
        deep: dict[str, object] = {"a": [{"b": []}]}
        refusal(self, 400, "malformed-body", check_depth, deep, 3, json.dumps(deep).encode())
        check_depth(deep, 4, json.dumps(deep).encode())

    @given(_documents)
    def test_text_agrees_with_walk(self, document: object) -> None:
        """
        For any JSON document, checking its text refuses exactly what
        walking the decoded document refuses, at every limit.
        """
        raw = json.dumps(document, ensure_ascii=False).encode("utf-8")
        for limit in range(1, 6):
            walked = _refused(check_depth, document, limit)
            scanned = _refused(check_depth, document, limit, raw)
            self.assertEqual(walked, scanned, (limit, raw))

    def test_deep_without_recursion(self) -> None:
        """
        A document deeper than the interpreter's stack is checked without
        recursing.
        """
        value: object = []
        for _ in range(100_000):
            value = [value]
        refusal(self, 400, "malformed-body", check_depth, value, 32)
