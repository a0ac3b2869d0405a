"""
Check HTTP exchanges with the running gateway against C{docs/openapi.yaml}.

L{APIDocument.check} finds the operation by path and method (or the 404 and
405 answers the document describes for paths and methods it does not list),
the response by status code, and checks the response's headers (required
ones present, every documented one valid against its schema), its media
type and its body (JSON validated with C{jsonschema_rs} against the schema,
C{$ref}s resolved inside the document).  It returns a list of
disagreements, empty when the answer is what the document says.

L{exchange} talks to the gateway with a bare twisted.web C{Agent} (treq
would ask for gzip on every request and hide whether the answer was
compressed); it undoes C{Content-Encoding: gzip} itself, keeping the bytes
as sent in L{Exchange.wire_body}, so bodies are checked as a client reads
them.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import jsonschema_rs
import yaml
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent

from tests.integration.harness import REPO, reactor

__all__ = ["DOCUMENT_PATH", "APIDocument", "Exchange", "exchange", "load_document"]

DOCUMENT_PATH = REPO / "docs" / "openapi.yaml"
_DOCUMENT_URI = "urn:alertgateway:openapi"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def load_document(path: Path = DOCUMENT_PATH) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def escape(token: str) -> str:
    """
    One RFC 6901 reference token.
    """
    return token.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


@attrs.frozen
class Exchange:
    """
    One request to the gateway and the answer it got.

    @ivar listener: C{webhook} or C{metrics}: the listener that answered.
    @ivar headers: Response headers, names lower-cased.
    @ivar body: The body as the client reads it (inflated when the answer
        was gzipped).
    @ivar wire_body: The body as it was sent, when it differs from C{body}.
    """

    listener: str
    method: str
    path: str
    status: int
    headers: Mapping[str, Sequence[str]]
    body: bytes
    request_id: str | None = None
    wire_body: bytes | None = None

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    def describe(self) -> str:
        return f"{self.method} {self.path} ({self.listener}) -> {self.status} {self.body[:600]!r}"


async def exchange(
    base_url: str,
    listener: str,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    agent: IAgent | None = None,
) -> Exchange:
    """
    Send one request and collect the answer.

    @param agent: The agent to send with; by default one without
        persistent connections, so no pool outlives the test.
    """
    if agent is None:
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    raw = Headers({k.encode("latin-1"): [v.encode("latin-1")] for k, v in (headers or {}).items()})
    producer = FileBodyProducer(io.BytesIO(body)) if body is not None else None
    response = await agent.request(method.encode("ascii"), (base_url + path).encode("ascii"), raw, producer)
    content: bytes = await readBody(response)
    received = {
        name.decode("latin-1").lower(): [v.decode("latin-1") for v in values]
        for name, values in response.headers.getAllRawHeaders()
    }
    wire: bytes | None = None
    if content and received.get("content-encoding", [""])[0].lower() == "gzip":
        wire = content
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as e:
            content = f"<not valid gzip: {e}>".encode()
    return Exchange(
        listener,
        method,
        path,
        response.code,
        received,
        content,
        (headers or {}).get("X-Request-ID"),
        wire,
    )


class APIDocument:
    """
    The OpenAPI document, with what is needed to check answers against it.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._registry = jsonschema_rs.Registry([(_DOCUMENT_URI, document)], draft=jsonschema_rs.Draft202012)
        self._validators: dict[str, jsonschema_rs.Validator] = {}

    # --- navigation -------------------------------------------------------

    def at(self, location: str) -> Any:
        """
        The node at a JSON pointer (C{/components/schemas/Problem}).
        """
        node: Any = self.document
        for token in location.split("/")[1:]:
            key = _unescape(token)
            node = node[int(key)] if isinstance(node, list) else node[key]
        return node

    def deref(self, node: Any, location: str) -> tuple[Any, str]:
        """
        Follow C{$ref}s from C{node} (found at C{location}) to what they name.
        """
        for _ in range(32):
            if not (isinstance(node, dict) and "$ref" in node):
                return node, location
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"{location}: only local references are supported, not {ref}")
            location = ref[1:]
            node = self.at(location)
        raise ValueError(f"{location}: reference loop")

    def template_of(self, path: str) -> str:
        """
        The document's path that C{path} is: itself when listed, else the
        first templated path (C{/v1/alerts/{fingerprint}}) whose
        C{{parameters}} each match one non-empty segment; else C{path}.
        """
        paths: dict[str, Any] = self.document["paths"]
        if path in paths:
            return path
        segments = path.split("/")
        for template in paths:
            parts = template.split("/")
            if (
                "{" in template
                and len(parts) == len(segments)
                and all(
                    (part.startswith("{") and part.endswith("}") and segment) or part == segment
                    for part, segment in zip(parts, segments, strict=True)
                )
            ):
                return template
        return path

    def methods(self, path: str) -> list[str]:
        """
        The methods the document gives C{path}, upper-case.
        """
        item = self.document["paths"][path]
        return sorted(m.upper() for m in _METHODS if m in item)

    # --- validation -------------------------------------------------------

    def schema_errors(self, location: str, instance: Any) -> list[str]:
        """
        Validate C{instance} against the schema at C{location}.
        """
        validator = self._validators.get(location)
        if validator is None:
            validator = jsonschema_rs.validator_for(
                {"$ref": f"{_DOCUMENT_URI}#{location}"}, registry=self._registry, validate_formats=True
            )
            self._validators[location] = validator
        return [
            f"{location}: at /{'/'.join(str(p) for p in error.instance_path)}: {error.message}"
            for error in validator.iter_errors(instance)
        ]

    def check(self, answer: Exchange) -> list[str]:
        """
        Everything in which C{answer} disagrees with the document.
        """
        paths: dict[str, Any] = self.document["paths"]
        path = self.template_of(answer.path.split("?", 1)[0])
        item = paths.get(path)
        # A path item with its own servers is on the metrics listener.
        if item is None or ("servers" in item) != (answer.listener == "metrics"):
            if answer.status != 404:
                return [f"{path} is not documented on the {answer.listener} listener, but was answered {answer.status}"]
            return self._check_response("/components/responses/NotFound", answer)
        problems: list[str] = []
        operation = item.get(answer.method.lower())
        if operation is None:
            if answer.status != 405:
                return [*problems, f"{answer.method} {path} is not documented, but was answered {answer.status}"]
            allow = answer.header("allow")
            documented = self.methods(path)
            if allow is None or sorted(m.strip() for m in allow.split(",")) != documented:
                problems.append(f"{answer.method} {path}: Allow is {allow!r}, the document has {documented}")
            return problems + self._check_response("/components/responses/MethodNotAllowed", answer)
        responses = operation["responses"]
        for key in (str(answer.status), f"{answer.status // 100}XX", "default"):
            if key in responses:
                location = f"/paths/{escape(path)}/{answer.method.lower()}/responses/{key}"
                return problems + self._check_response(location, answer)
        return [*problems, f"{answer.method} {path}: status {answer.status} is not documented"]

    def _check_response(self, location: str, answer: Exchange) -> list[str]:
        response, location = self.deref(self.at(location), location)
        where = f"{answer.method} {answer.path} {answer.status}"
        problems = [f"{where}: {p}" for p in self._check_headers(response, location, answer)]
        content: dict[str, Any] | None = response.get("content")
        if not content:
            if answer.body:
                problems.append(f"{where}: the document gives no body, got {answer.body[:200]!r}")
            return problems
        content_type = answer.header("content-type")
        if content_type is None:
            return [*problems, f"{where}: no Content-Type, the document has {sorted(content)}"]
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in content:
            return [*problems, f"{where}: Content-Type {content_type!r} is not one of {sorted(content)}"]
        if answer.method == "HEAD":
            return problems
        schema_location = f"{location}/content/{escape(media)}/schema"
        if media == "application/json" or media.endswith("+json"):
            try:
                body = json.loads(answer.body)
            except ValueError as e:
                return [*problems, f"{where}: the body is not JSON ({e}): {answer.body[:200]!r}"]
            problems += [f"{where}: {p}" for p in self.schema_errors(schema_location, body)]
            request_id = answer.header("x-request-id")
            if isinstance(body, dict) and "requestId" in body and body["requestId"] != request_id:
                problems.append(f"{where}: requestId {body['requestId']!r} is not X-Request-ID {request_id!r}")
        elif media.startswith("text/"):
            try:
                text = answer.body.decode("utf-8")
            except UnicodeDecodeError:
                return [*problems, f"{where}: the body is not UTF-8 text"]
            problems += [f"{where}: {p}" for p in self.schema_errors(schema_location, text)]
        return problems

    def _check_headers(self, response: dict[str, Any], location: str, answer: Exchange) -> list[str]:
        problems = []
        for name, definition in response.get("headers", {}).items():
            header, header_location = self.deref(definition, f"{location}/headers/{escape(name)}")
            value = answer.header(name)
            if value is None:
                if header.get("required", False):
                    problems.append(f"header {name} is required and missing")
                continue
            problems += self.header_value_errors(name, value, header, header_location)
        return problems

    def header_value_errors(self, name: str, value: str, header: dict[str, Any], location: str) -> list[str]:
        """
        Check one header value against its definition (a header object or
        parameter, or a C{$ref} to one) found at C{location}.
        """
        header, location = self.deref(header, location)
        schema, _ = self.deref(header.get("schema", {}), f"{location}/schema")
        instance: Any = value
        if schema.get("type") == "integer":
            try:
                instance = int(value)
            except ValueError:
                return [f"header {name}: {value!r} is not an integer"]
        return [f"header {name}: {p}" for p in self.schema_errors(f"{location}/schema", instance)]

    def check_outbound(self, headers: Mapping[str, str], body: object) -> list[str]:
        """
        Check a request the gateway made to the Alert Processor against the
        C{alertProcessorDelivery} webhook of the document.

        @param headers: Request headers, names lower-cased.
        """
        location = "/webhooks/alertProcessorDelivery/post"
        operation = self.at(location)
        problems = []
        for index, definition in enumerate(operation.get("parameters", [])):
            parameter, parameter_location = self.deref(definition, f"{location}/parameters/{index}")
            if parameter["in"] != "header":
                continue
            value = headers.get(parameter["name"].lower())
            if value is None:
                if parameter.get("required", False):
                    problems.append(f"outbound header {parameter['name']} is required and missing")
                continue
            problems += self.header_value_errors(parameter["name"], value, parameter, parameter_location)
        body_location = f"{location}/requestBody"
        request_body, body_location = self.deref(self.at(body_location), body_location)
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media not in request_body["content"]:
            return [*problems, f"outbound Content-Type {media!r} is not one of {sorted(request_body['content'])}"]
        return problems + self.schema_errors(f"{body_location}/content/{escape(media)}/schema", body)
