"""
docs/configuration.md against the configuration model: every key the
gateway reads is documented, with the default the code has, and nothing
else is.
"""

from __future__ import annotations

import types
import typing
from collections import deque
from typing import Any

import attrs
import yaml
from twisted.trial.unittest import TestCase

from alertgateway.config import ConfigError, GatewayConfig, parse_config
from alertgateway.config._schema import parse_duration
from tests.docs._markdown import named, tables

PAGE = "docs/configuration.md"
# How a key under a mapping of names is written: escalation.environments.<name>.level
NAME_PLACEHOLDER = "<name>"
# How a key of the items of a list is written: webhook.endpoints[].path
ITEM_SUFFIX = "[]"
# attrs types Factory as a function; its class comes from an instance.
_FACTORY: type[Any] = type(attrs.Factory(dict))


@attrs.frozen
class Key:
    """
    One configuration key: its dotted path and the attrs field it reads.
    """

    path: str
    field: attrs.Attribute  # type: ignore[type-arg]


def _plain(kind: Any) -> Any:
    """
    C{X} for C{X | None}.
    """
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        (kind,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    return kind


def _nested(kind: Any) -> tuple[type[Any], str] | None:
    """
    The attrs class a field of this type holds, with what its keys' paths
    add: a section (C{.key}), list items (C{[].key}) or named entries
    (C{.<name>.key}).
    """
    kind = _plain(kind)
    if attrs.has(kind):
        return kind, ""
    args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple and args and attrs.has(args[0]):
        return args[0], ITEM_SUFFIX
    if typing.get_origin(kind) is dict and len(args) == 2 and attrs.has(args[1]):
        return args[1], "." + NAME_PLACEHOLDER
    return None


def configuration_keys() -> list[Key]:
    """
    Every key of the configuration model, breadth first from
    L{GatewayConfig}.

    A field holding a plain section (an attrs class that always exists,
    such as C{webhook.auth}) is a heading, not a key; its fields are keys.
    Lists of sections (C{webhook.endpoints}), mappings of named sections
    (C{escalation.environments}) and optional sections
    (C{webhook.endpoints[].auth}) are keys themselves, and so are their
    fields, unless the same class was met before at a shallower path: the
    documentation then says once that they are the same keys (the keys of
    C{webhook.endpoints[].auth} are those of C{webhook.auth}).
    """
    found: list[Key] = []
    documented: set[type[Any]] = {GatewayConfig}
    pending: deque[tuple[type[Any], str]] = deque([(GatewayConfig, "")])
    while pending:
        cls, prefix = pending.popleft()
        attrs.resolve_types(cls)
        for field in attrs.fields(cls):
            path = f"{prefix}.{field.name}" if prefix else field.name
            nested = _nested(field.type)
            section = nested is not None and nested[1] == "" and _plain(field.type) is field.type
            if not section:
                found.append(Key(path, field))
            if nested is not None and nested[0] not in documented:
                documented.add(nested[0])
                pending.append((nested[0], path + nested[1]))
    return found


def documented_rows() -> dict[str, list[str]]:
    """
    The rows of the page's key tables (those headed C{key}), by key path.
    """
    rows: dict[str, list[str]] = {}
    for table in tables(PAGE):
        if table[0][0] != "key":
            continue
        for row in table[1:]:
            rows[row[0].strip("`")] = row
    return rows


def _documented_value(field: attrs.Attribute, cell: str) -> Any:  # type: ignore[type-arg]
    """
    What a default cell (C{`5m`}, C{`[environment, env]`}) says, read as
    the field reads it.
    """
    text = cell[1:-1]
    kind = _plain(field.type)
    if field.metadata.get("duration"):
        return parse_duration(text)
    if kind is str:
        return text
    value = yaml.safe_load(text)
    return tuple(value) if isinstance(value, list) else value


def _code_default(field: attrs.Attribute) -> Any:  # type: ignore[type-arg]
    default = field.default
    if isinstance(default, _FACTORY):
        default = default.factory()
    return default


class ConfigurationKeyTests(TestCase):
    """
    The key tables of docs/configuration.md and the configuration model.
    """

    def test_every_key_documented(self) -> None:
        """
        Every key of the configuration model has a row in a key table.
        """
        rows = documented_rows()
        missing = [key.path for key in configuration_keys() if key.path not in rows]
        self.assertEqual(missing, [])

    def test_no_unknown_key_documented(self) -> None:
        """
        Every row of a key table names a key the gateway reads.
        """
        known = {key.path for key in configuration_keys()}
        self.assertEqual(sorted(set(documented_rows()) - known), [])

    def test_defaults(self) -> None:
        """
        A default written as one literal (C{`5m`}, C{`[]`}, C{`json`}) is
        the code's default, read as the configuration reads it; C{none}
        means the key is unset by default; C{required} that it has no
        default.  Other defaults (a reference to another key, words) are
        not checked.
        """
        rows = documented_rows()
        keys = {key.path: key for key in configuration_keys()}
        wrong = []
        for path, row in rows.items():
            cell = row[1]
            field = keys[path].field
            code = _code_default(field)
            if cell == "none":
                ok = code is None
            elif cell == "required":
                ok = field.default is attrs.NOTHING
            elif cell.count("`") == 2 and cell.startswith("`") and cell.endswith("`") and cell[1:-1] not in keys:
                ok = _documented_value(field, cell) == code
            else:
                continue
            if not ok:
                wrong.append(f"{path}: documented {cell}, code {code!r}")
        self.assertEqual(wrong, [])

    def test_key_paths(self) -> None:
        """
        The walk names list items with C{[]}, named entries with
        C{<name>}, leaves plain sections out, and lists a repeated class's
        keys once.
        """
        paths = [key.path for key in configuration_keys()]
        for expected in (
            "service.port",
            "webhook.endpoints",
            "webhook.endpoints[].auth",
            "webhook.auth.users[].password_env",
            "escalation.environments.<name>.window",
            "queue.redis.claim_idle",
        ):
            self.assertIn(expected, paths)
        for section in ("service", "webhook.auth", "queue.redis", "webhook.endpoints[].auth.type"):
            self.assertNotIn(section, paths)
        self.assertEqual(len(paths), len(set(paths)))


class CheckConfigExampleTests(TestCase):
    """
    The example of an invalid file and its problems.
    """

    def test_problems_as_documented(self) -> None:
        """
        Loading the documented invalid file reports exactly the documented
        problems, in that order.
        """
        text = named("invalid-config").text
        expected = named("invalid-config-problems").text.splitlines()
        with self.assertRaises(ConfigError) as raised:
            parse_config(text, environ={})
        self.assertEqual([str(problem) for problem in raised.exception.problems], expected)
