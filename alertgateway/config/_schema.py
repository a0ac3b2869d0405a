# -*- test-case-name: tests.unit.test_schema,tests.unit.test_config -*-
"""
Build frozen attrs configuration objects from parsed YAML, collecting problems.

The configuration model in L{alertgateway.config} is a tree of attrs classes.
This module walks such a class and a mapping together and produces an
instance, or a list of L{Problem}s that each name the key path they concern
(C{webhook.endpoints[1].path: must start with /}).  Every problem is
collected rather than raised, so an operator sees all of them at once.

A field's type annotation says how a value is read:

    - C{bool}, C{int}, C{float}, C{str}: the YAML scalar of that type
      (an C{int} is accepted where a C{float} is expected, never a C{bool});
    - an L{enum.StrEnum}: a YAML string, read as the member of that value;
    - C{tuple[X, ...]}: a YAML sequence of X;
    - C{dict[str, str]}: a YAML mapping of strings to strings;
    - C{dict[str, X]} with X an attrs class: a mapping of names to X;
    - an attrs class: a nested mapping, read recursively;
    - C{X | None}: X, or null.

Field metadata adds what a type cannot say: C{duration=True} reads C{5s},
C{250ms}, C{5m}, C{1h} or a bare number of seconds; C{check} is a callable
returning an error message for an unacceptable value; C{choices} restricts a
string.  A closed set that code branches on reads better as a C{StrEnum}
(its members still compare equal to their values); a value outside either
is refused in the same words.  Unknown keys are problems: a misspelt key
must never be silently ignored.
"""

from __future__ import annotations

import enum
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, get_args, get_origin

import attrs

__all__ = ["Problem", "build", "duration", "parse_duration", "read_fields"]

T = TypeVar("T")
E = TypeVar("E", bound=enum.StrEnum)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
# attrs types Factory as a function, so take its class from an instance.
_FACTORY: type[Any] = type(attrs.Factory(dict))


@attrs.frozen
class Problem:
    """
    One thing wrong with a configuration file.

    @ivar path: The dotted key path, e.g. C{webhook.endpoints[1].path}.
    @ivar message: What is wrong, phrased to follow C{path: }.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def parse_duration(value: object) -> float:
    """
    Read a duration such as C{5s}, C{250ms}, C{5m}, C{1h} or C{30}.

    @return: The duration in seconds.
    @raise ValueError: If C{value} is not a non-negative duration.
    """
    if isinstance(value, bool):
        raise ValueError("must be a duration like 5s, 250ms or 5m")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is not None:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError("must be a duration like 5s, 250ms or 5m")


def duration(default: float, check: Callable[[Any], str | None] | None = None) -> Any:
    """
    Declare an attrs field holding a duration in seconds.
    """
    return attrs.field(default=default, metadata={"duration": True, "check": check})


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(kind: Any) -> str:
    # Mappings and lists are reported where they are read.
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
    }.get(kind, str(kind))


def _one_of(choices: Iterable[str]) -> str:
    return f"must be one of {', '.join(choices)}"


def _read(kind: Any, meta: Mapping[str, Any], value: Any, path: str, problems: list[Problem]) -> Any:
    """
    Read C{value} as C{kind}; on failure append problems and return C{None}.
    """
    origin = get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in get_args(kind) if arg is not type(None)]
        if value is None:
            return None
        return _read(members[0], meta, value, path, problems)
    if meta.get("duration"):
        try:
            return parse_duration(value)
        except ValueError as e:
            problems.append(Problem(path, str(e)))
            return None
    if attrs.has(kind):
        return build(kind, value, path, problems)
    if isinstance(kind, type) and issubclass(kind, enum.StrEnum):
        return _read_member(kind, value, path, problems)
    if origin is tuple:
        (item_kind, _ellipsis) = get_args(kind)
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            problems.append(Problem(path, "must be a list"))
            return None
        items = [_read(item_kind, {}, item, f"{path}[{i}]", problems) for i, item in enumerate(value)]
        return tuple(items)
    if origin is dict and attrs.has(get_args(kind)[1]):
        if not isinstance(value, Mapping):
            problems.append(Problem(path, "must be a mapping"))
            return None
        entries = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append(Problem(_join(path, str(key)), "must be named by a string (quote the name)"))
                continue
            built = build(get_args(kind)[1], item, _join(path, key), problems)
            if built is not None:
                entries[key] = built
        return entries
    if origin is dict:
        if not isinstance(value, Mapping):
            problems.append(Problem(path, "must be a mapping of strings"))
            return None
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                # YAML reads an unquoted 1 or true as a number or boolean.
                problems.append(Problem(_join(path, str(key)), "must be named by a string (quote the name)"))
            elif not isinstance(item, str):
                problems.append(Problem(_join(path, key), "must be a string"))
            else:
                result[key] = item
        return result
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (bool, int, float, str) and type(value) is kind:
        return value
    problems.append(Problem(path, f"must be {_type_name(kind)}"))
    return None


def _read_member(kind: type[E], value: object, path: str, problems: list[Problem]) -> E | None:
    """
    Read the member of the C{StrEnum} C{kind} whose value C{value} is.
    """
    if not isinstance(value, str):
        problems.append(Problem(path, f"must be {_type_name(str)}"))
        return None
    try:
        return kind(value)
    except ValueError:
        # Worded as for a field with choices: a key whose type became an
        # enum reads exactly as it did.
        problems.append(Problem(path, _one_of(member.value for member in kind)))
        return None


def read_fields(cls: type[Any], data: object, path: str, problems: list[Problem]) -> dict[str, Any]:
    """
    Read every field of the attrs class C{cls} from the mapping C{data}.

    @return: The value of each field that was read without a problem, absent
        ones taking their default; a field with a problem is left out, so
        callers can still check what did read well.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        problems.append(Problem(path, "must be a mapping"))
        return {}
    attrs.resolve_types(cls)
    fields = {f.name: f for f in attrs.fields(cls)}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            problems.append(Problem(_join(path, str(key)), f"unknown key (known keys: {known})"))
    values: dict[str, Any] = {}
    for name, field in fields.items():
        key_path = _join(path, name)
        if name not in data:
            if field.default is attrs.NOTHING:
                problems.append(Problem(key_path, "is required"))
            elif isinstance(field.default, _FACTORY):
                values[name] = field.default.factory()
            else:
                values[name] = field.default
            continue
        before = len(problems)
        value = _read(field.type, field.metadata, data[name], key_path, problems)
        # One problem per key: a value of the wrong type is not also
        # reported as outside its choices.
        if len(problems) > before:
            continue
        # null is only readable for optional fields, and means "not set".
        if value is not None:
            choices = field.metadata.get("choices")
            if choices is not None and value not in choices:
                problems.append(Problem(key_path, _one_of(choices)))
                continue
            check = field.metadata.get("check")
            message = check(value) if check is not None else None
            if message is not None:
                problems.append(Problem(key_path, message))
                continue
        values[name] = value
    return values


def build(cls: type[T], data: object, path: str, problems: list[Problem]) -> T | None:
    """
    Build an instance of the attrs class C{cls} from C{data}.

    Missing keys take the field's default; problems are appended to
    C{problems} and C{None} is returned if there were any in this subtree.
    """
    before = len(problems)
    values = read_fields(cls, data, path, problems)
    if len(problems) > before:
        return None
    instance: T = cls(**values)
    return instance
