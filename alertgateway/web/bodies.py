# -*- test-case-name: tests.unit.test_bodies -*-
"""
Request body decoding: content encodings and content types.

- C{Content-Encoding: gzip} (or C{x-gzip}) is inflated in bounded steps: the
  inflated size counts against the body limit while inflating, so a gzip
  bomb is refused (413) after at most the limit's worth of output, and the
  number of gzip members is capped, so a body of many empty ones is refused
  (400) after at most that many.
- C{application/json} and C{application/*+json}, any charset parameter
  (the body must be UTF-8, as RFC 8259 requires).
- C{application/x-www-form-urlencoded}: the JSON document is the
  C{payload} field.
- C{application/xml} and C{text/xml}: the gateway's XML alert format,
  parsed with defusedxml (DTDs, entities and external references are
  refused):

      <alerts version="4">
        <alert status="firing">
          <labels><label name="alertname">DiskFull</label></labels>
          <annotations><annotation name="summary">…</annotation></annotations>
          <startsAt>2026-11-26T03:49:49Z</startsAt>
          <endsAt>0001-01-01T00:00:00Z</endsAt>
          <generatorURL>http://…</generatorURL>
        </alert>
      </alerts>

  It becomes the same document as an Alertmanager webhook, so every source
  reads it with its own parser.

A missing Content-Type is read as JSON.  Everything refused raises a
L{alertgateway.web.problems.Problem}.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from alertgateway.web import problems

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

__all__ = ["check_depth", "decode_body", "inflate", "is_json"]
_CHUNK = 64 * 1024


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # 1e999 is valid JSON but becomes infinity, which json.dumps would
    # forward as the non-JSON token Infinity.  The message leaves the number
    # out: it is body text, as long as the sender likes, and the detail is
    # logged.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number is out of range")
    return value


def check_depth(document: object, limit: int, raw: bytes | None = None) -> None:
    """
    Refuse a document nested deeper than C{limit} (iteratively: a deep
    document must not cost a deep stack).

    @param raw: The JSON text it was decoded from, if it was: a text with
        no more than C{limit} brackets cannot nest deeper, which two C
        loops tell without walking the document (the common case: one
        alert has fewer than ten).  Bigger texts are walked: scanning them
        for brackets outside strings costs more than the walk.
    """
    if raw is not None and raw.count(b"{") + raw.count(b"[") <= limit:
        return
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: list[object] = list(value.values())
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            raise problems.malformed_body(f"The body is nested deeper than {limit} levels (limits.max_json_depth).")
        stack.extend((child, depth + 1) for child in children)


def inflate(raw: bytes, encoding: str | None, limit: int, max_members: int) -> bytes:
    """
    Undo C{Content-Encoding}, never producing more than C{limit} bytes, nor
    reading more than C{max_members} gzip members.

    Several gzip members one after the other are one body (RFC 1952); a
    member cut short, or bytes after the last one that are not a member,
    make the body invalid rather than silently shorter.  Each member costs
    a new inflater: 50,000 empty ones fit in a megabyte and cost the best
    part of a second, so their number is checked before each is begun.
    The input is handed over in pieces of L{_CHUNK} bytes, so that what
    zlib leaves unconsumed (copied on every call) stays that small: the
    work is proportional to the bytes in and out, as for a plain body.
    """
    coding = (encoding or "").strip().lower()
    if coding in ("", "identity"):
        return raw
    if coding not in ("gzip", "x-gzip"):
        raise problems.unsupported_encoding(encoding or "")
    output = bytearray()
    view = memoryview(raw)
    position = 0
    pending: bytes | memoryview = b""
    members = 0
    try:
        while True:
            members += 1
            if members > max_members:
                raise problems.malformed_body(
                    f"The body has more than {max_members} gzip members (limits.max_gzip_members)."
                )
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while not inflater.eof:
                if not pending and position < len(raw):
                    pending = view[position : position + _CHUNK]
                    position += _CHUNK
                room = min(_CHUNK, limit + 1 - len(output))
                chunk = inflater.decompress(pending, room)
                output += chunk
                if len(output) > limit:
                    raise problems.payload_too_large(limit)
                pending = inflater.unconsumed_tail
                # Output short of the room means zlib wants more input; with
                # none left, the member is truncated.
                if not pending and position >= len(raw) and len(chunk) < room:
                    break
            if not inflater.eof:
                raise problems.malformed_body("The body is not valid gzip: it ends inside a member.")
            pending = inflater.unused_data
            if not pending and position >= len(raw):
                return bytes(output)
    except zlib.error:
        raise problems.malformed_body("The body is not valid gzip.") from None


def _media_type(content_type: str | None) -> str:
    if content_type is None:
        return "application/json"
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith("application/") and media.endswith("+json"):
        return "application/json"
    return media


def is_json(content_type: str | None) -> bool:
    """
    Whether a body of C{content_type} is JSON text.
    """
    return _media_type(content_type) == "application/json"


def decode_body(content_type: str | None, raw: bytes) -> object:
    """
    Decode an (already inflated) body into the JSON-shaped document its
    content type carries.
    """
    media = _media_type(content_type)
    if media == "application/json":
        return _json(raw)
    if media == "application/x-www-form-urlencoded":
        return _form(raw)
    if media in ("application/xml", "text/xml"):
        return _xml(raw)
    raise problems.unsupported_media_type(content_type or "")


def _json(raw: bytes) -> object:
    if not raw.strip():
        raise problems.malformed_body("The request body is empty; expected a JSON object.")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float)
    except UnicodeDecodeError:
        raise problems.malformed_body("The request body is not valid UTF-8.") from None
    except RecursionError:
        raise problems.malformed_body("The request body is nested too deeply.") from None
    except ValueError as e:
        raise problems.malformed_body(f"The request body is not valid JSON: {e}") from None


def _form(raw: bytes) -> object:
    try:
        # Strict: a payload that is not UTF-8 is refused, as a JSON body
        # would be, rather than read with replacement characters.
        fields = parse_qs(
            raw.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=100,
            encoding="utf-8",
            errors="strict",
        )
    except ValueError:
        raise problems.malformed_body("The form body is not valid application/x-www-form-urlencoded.") from None
    payload = fields.get("payload")
    if not payload:
        raise problems.malformed_body("The form body has no 'payload' field carrying the JSON document.")
    return _json(payload[0].encode("utf-8"))


def _xml(raw: bytes) -> object:
    # Imported for the rare XML body: the parser's modules take 0.6 MB of
    # a gateway's memory at rest.
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        root = fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise problems.malformed_body("XML with DTDs, entities or external references is refused.") from None
    except (ParseError, ValueError, LookupError, RecursionError):
        # LookupError: an encoding declaration Python has no codec for.
        raise problems.malformed_body("The request body is not well-formed XML.") from None
    if root.tag != "alerts":
        raise problems.malformed_body("The XML document element must be <alerts>.")
    document: dict[str, Any] = {"alerts": [_xml_alert(alert) for alert in root.findall("alert")]}
    if "version" in root.attrib:
        document["version"] = root.attrib["version"]
    return document


def _xml_alert(element: Element) -> dict[str, Any]:
    alert: dict[str, Any] = {}
    if "status" in element.attrib:
        alert["status"] = element.attrib["status"]
    for section, item in (("labels", "label"), ("annotations", "annotation")):
        container = element.find(section)
        if container is not None:
            alert[section] = {child.attrib.get("name", ""): child.text or "" for child in container.findall(item)}
    for field in ("startsAt", "endsAt", "generatorURL"):
        child = element.find(field)
        if child is not None:
            alert[field] = child.text or ""
    return alert
