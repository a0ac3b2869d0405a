"""
Tests for L{alertgateway.config._schema}: reading attrs classes from parsed YAML.

The classes below are small stand-ins for the configuration model so that
each reading rule is pinned on its own, independently of the gateway's
actual sections.
"""

from __future__ import annotations

import enum

import attrs
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.config._schema import Problem, build, duration, parse_duration, read_fields


def _even(value: int) -> str | None:
    return None if value % 2 == 0 else "must be even"


@attrs.frozen
class Inner:
    name: str = "inner"
    ratio: float = 1.0


@attrs.frozen
class Outer:
    required: int
    inner: Inner = attrs.field(factory=Inner)
    inners: tuple[Inner, ...] = ()
    items: tuple[str, ...] = ()
    mode: str = attrs.field(default="a", metadata={"choices": ("a", "b")})
    optional_mode: str | None = attrs.field(default=None, metadata={"choices": ("a", "b")})
    even: int | None = attrs.field(default=None, metadata={"check": _even})
    wait: float = duration(1.0)
    flag: bool = False


def _build(data: object) -> tuple[Outer | None, list[str]]:
    problems: list[Problem] = []
    result = build(Outer, data, "top", problems)
    return result, [str(p) for p in problems]


class ParseDurationTests(SynchronousTestCase):
    def test_units(self) -> None:
        """
        C{ms}, C{s}, C{m} and C{h} suffixes are read as milliseconds,
        seconds, minutes and hours.
        """
        self.assertEqual(parse_duration("250ms"), 0.25)
        self.assertEqual(parse_duration("5s"), 5.0)
        self.assertEqual(parse_duration("30s"), 30.0)
        self.assertEqual(parse_duration("5m"), 300.0)
        self.assertEqual(parse_duration("1h"), 3600.0)

    def test_fractions_and_spaces(self) -> None:
        """
        A fractional amount is multiplied by its unit and surrounding or
        separating blanks are tolerated.
        """
        self.assertEqual(parse_duration("1.5m"), 90.0)
        self.assertEqual(parse_duration(" 2 s "), 2.0)

    def test_bare_numbers_are_seconds(self) -> None:
        """
        A bare YAML number, or a string of digits, is a number of seconds.
        """
        self.assertEqual(parse_duration(30), 30.0)
        self.assertEqual(parse_duration(0.5), 0.5)
        self.assertEqual(parse_duration("45"), 45.0)
        self.assertIsInstance(parse_duration(30), float)

    def test_bad_durations(self) -> None:
        """
        Unknown units, words, negative amounts, booleans and other types
        are refused with a message giving examples.
        """
        for value in ("5x", "s", "-5s", "5 seconds", "1m30s", "", True, None, [5]):
            with self.subTest(value=value):
                error = self.assertRaises(ValueError, parse_duration, value)
                self.assertEqual(str(error), "must be a duration like 5s, 250ms or 5m")

    def test_negative_number(self) -> None:
        """
        A negative bare number is refused as negative.
        """
        error = self.assertRaises(ValueError, parse_duration, -1)
        self.assertEqual(str(error), "must not be negative")

    def test_not_finite(self) -> None:
        """
        YAML's C{.inf} and C{.nan} are not durations: an infinite timeout
        would pass a "greater than 0" check and never fire.
        """
        for value in (float("inf"), float("nan")):
            with self.subTest(value=value):
                error = self.assertRaises(ValueError, parse_duration, value)
                self.assertEqual(str(error), "must be a finite number of seconds")


class ProblemTests(SynchronousTestCase):
    def test_str_with_path(self) -> None:
        """
        A problem reads as C{path: message}.
        """
        self.assertEqual(str(Problem("a.b[1].c", "must start with /")), "a.b[1].c: must start with /")

    def test_str_without_path(self) -> None:
        """
        A problem about the whole file is just its message.
        """
        self.assertEqual(str(Problem("", "not valid YAML")), "not valid YAML")


class BuildTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        Absent keys take their field's default, factories included.
        """
        result, problems = _build({"required": 1})
        self.assertEqual(problems, [])
        self.assertEqual(result, Outer(required=1))
        assert result is not None
        self.assertEqual(result.inner, Inner())

    def test_values(self) -> None:
        """
        Every kind of field is read from its YAML value.
        """
        result, problems = _build(
            {
                "required": 2,
                "inner": {"name": "x", "ratio": 2},
                "inners": [{"name": "y"}],
                "items": ["p", "q"],
                "mode": "b",
                "optional_mode": "a",
                "even": 4,
                "wait": "5m",
                "flag": True,
            }
        )
        self.assertEqual(problems, [])
        self.assertEqual(
            result,
            Outer(
                required=2,
                inner=Inner(name="x", ratio=2.0),
                inners=(Inner(name="y"),),
                items=("p", "q"),
                mode="b",
                optional_mode="a",
                even=4,
                wait=300.0,
                flag=True,
            ),
        )

    def test_unknown_key(self) -> None:
        """
        A key the class does not have is reported by its full path, with the
        keys that would have been accepted.
        """
        result, problems = _build({"required": 1, "inner": {"nmae": "x"}})
        self.assertIsNone(result)
        self.assertEqual(problems, ["top.inner.nmae: unknown key (known keys: name, ratio)"])

    def test_unknown_key_in_list_item(self) -> None:
        """
        The path of a problem inside a list names the item's index.
        """
        _result, problems = _build({"required": 1, "inners": [{}, {"ratoi": 1}]})
        self.assertEqual(problems, ["top.inners[1].ratoi: unknown key (known keys: name, ratio)"])

    def test_required(self) -> None:
        """
        A field without a default must be given.
        """
        result, problems = _build({})
        self.assertIsNone(result)
        self.assertEqual(problems, ["top.required: is required"])

    def test_wrong_scalar_types(self) -> None:
        """
        A boolean is not an integer or a number, a string is not a boolean,
        a float is not an integer.
        """
        _result, problems = _build({"required": True, "flag": "yes", "inner": {"ratio": False}, "even": 2.0})
        self.assertEqual(
            problems,
            [
                "top.required: must be an integer",
                "top.inner.ratio: must be a number",
                "top.even: must be an integer",
                "top.flag: must be true or false",
            ],
        )

    def test_int_for_float(self) -> None:
        """
        An integer is accepted where a number is expected, as a float.
        """
        result, problems = _build({"required": 1, "inner": {"ratio": 3}})
        self.assertEqual(problems, [])
        assert result is not None
        self.assertIsInstance(result.inner.ratio, float)

    def test_list_items(self) -> None:
        """
        A list of strings reports each item that is not one by index; a
        string or mapping is not a list.
        """
        _result, problems = _build({"required": 1, "items": ["ok", 3]})
        self.assertEqual(problems, ["top.items[1]: must be a string"])
        for value in ("ok", {"a": "b"}):
            with self.subTest(value=value):
                _result, problems = _build({"required": 1, "items": value})
                self.assertEqual(problems, ["top.items: must be a list"])

    def test_choices(self) -> None:
        """
        A string outside its field's choices is refused, naming them.
        """
        _result, problems = _build({"required": 1, "mode": "c"})
        self.assertEqual(problems, ["top.mode: must be one of a, b"])

    def test_check(self) -> None:
        """
        A field's check runs on the value read and its message is reported.
        """
        _result, problems = _build({"required": 1, "even": 3})
        self.assertEqual(problems, ["top.even: must be even"])

    def test_null_for_optional(self) -> None:
        """
        null on an optional field means "not set", without checking choices
        or the field's check against it.
        """
        result, problems = _build({"required": 1, "optional_mode": None, "even": None})
        self.assertEqual(problems, [])
        self.assertEqual(result, Outer(required=1))

    def test_null_for_required_value(self) -> None:
        """
        null on a field that is not optional is one problem, not also a
        complaint about its choices.
        """
        _result, problems = _build({"required": None, "mode": None})
        self.assertEqual(problems, ["top.required: must be an integer", "top.mode: must be a string"])

    def test_null_section(self) -> None:
        """
        An empty (null) nested section takes the section's defaults.
        """
        result, problems = _build({"required": 1, "inner": None})
        self.assertEqual(problems, [])
        assert result is not None
        self.assertEqual(result.inner, Inner())

    def test_not_a_mapping(self) -> None:
        """
        A section that is not a mapping is reported at its own path.
        """
        _result, problems = _build({"required": 1, "inner": ["name"]})
        self.assertEqual(problems, ["top.inner: must be a mapping"])
        _result, problems = _build("required")
        self.assertEqual(problems, ["top: must be a mapping"])

    def test_every_problem_reported(self) -> None:
        """
        Reading goes on after a problem, so that every problem of the
        document is reported at once.
        """
        _result, problems = _build({"required": "one", "mode": "z", "typo": 1, "inner": {"ratio": "x"}})
        self.assertEqual(
            problems,
            [
                "top.typo: unknown key (known keys: even, flag, inner, inners, items, mode, optional_mode, "
                "required, wait)",
                "top.required: must be an integer",
                "top.inner.ratio: must be a number",
                "top.mode: must be one of a, b",
            ],
        )

    def test_top_level_path(self) -> None:
        """
        At the top level (empty path) keys are named without a leading dot.
        """
        problems: list[Problem] = []
        build(Inner, {"nam": "x"}, "", problems)
        self.assertEqual([str(p) for p in problems], ["nam: unknown key (known keys: name, ratio)"])


class ReadFieldsTests(SynchronousTestCase):
    def test_partial(self) -> None:
        """
        The fields that read well are returned, defaults included, even when
        others of the same mapping have problems: checks across sections
        can still run on them.
        """
        problems: list[Problem] = []
        values = read_fields(Outer, {"required": 1, "mode": "z", "inner": {"name": "n"}}, "", problems)
        self.assertEqual([str(p) for p in problems], ["mode: must be one of a, b"])
        self.assertNotIn("mode", values)
        self.assertEqual(values["required"], 1)
        self.assertEqual(values["inner"], Inner(name="n"))
        self.assertEqual(values["wait"], 1.0)
        self.assertEqual(values["items"], ())

    def test_not_a_mapping(self) -> None:
        """
        Nothing is read from a value that is not a mapping.
        """
        problems: list[Problem] = []
        self.assertEqual(read_fields(Outer, 3, "x", problems), {})
        self.assertEqual([str(p) for p in problems], ["x: must be a mapping"])


@attrs.frozen
class WithMapping:
    headers: dict[str, str] = attrs.field(factory=dict)
    optional: dict[str, str] | None = None


class MappingTests(SynchronousTestCase):
    """
    C{dict[str, str]} fields: a YAML mapping of strings to strings.
    """

    def _build(self, data: object) -> tuple[WithMapping | None, list[str]]:
        problems: list[Problem] = []
        result = build(WithMapping, data, "top", problems)
        return result, [str(p) for p in problems]

    def test_read(self) -> None:
        """
        A mapping of strings is read as a dict, order kept; absent, it
        takes a fresh empty dict for each instance.
        """
        result, problems = self._build({"headers": {"X-B": "2", "X-A": "1"}, "optional": {}})
        self.assertEqual(problems, [])
        self.assertEqual(result, WithMapping(headers={"X-B": "2", "X-A": "1"}, optional={}))
        assert result is not None
        self.assertEqual(list(result.headers), ["X-B", "X-A"])
        first, _ = self._build({})
        second, _ = self._build({})
        assert first is not None and second is not None
        self.assertEqual(first.headers, {})
        self.assertIsNot(first.headers, second.headers)

    def test_null(self) -> None:
        """
        null on an optional mapping means "not set".
        """
        result, problems = self._build({"optional": None})
        self.assertEqual(problems, [])
        assert result is not None
        self.assertIsNone(result.optional)

    def test_not_a_mapping(self) -> None:
        """
        A list, a string or null (where a mapping is required) is refused at
        the field.
        """
        for value in (["X-A"], "X-A: 1", None):
            with self.subTest(value=value):
                result, problems = self._build({"headers": value})
                self.assertIsNone(result)
                self.assertEqual(problems, ["top.headers: must be a mapping of strings"])

    def test_items(self) -> None:
        """
        Each value that is not a string is refused at its own key, and each
        key that YAML read as something else than a string is refused with
        a hint to quote it; the good items do not hide the bad ones.
        """
        _result, problems = self._build({"headers": {"X-A": "1", "X-B": 2, 3: "c", True: "d", "X-E": None}})
        self.assertEqual(
            problems,
            [
                "top.headers.X-B: must be a string",
                "top.headers.3: must be named by a string (quote the name)",
                "top.headers.True: must be named by a string (quote the name)",
                "top.headers.X-E: must be a string",
            ],
        )


@attrs.frozen
class Named:
    size: int = attrs.field(default=1, metadata={"check": _even})
    wait: float | None = attrs.field(default=None, metadata={"duration": True})


@attrs.frozen
class WithNamed:
    named: dict[str, Named] = attrs.field(factory=dict, hash=False)


class NamedMappingTests(SynchronousTestCase):
    """
    C{dict[str, X]} fields with X an attrs class: names to nested sections.
    """

    def _build(self, data: object) -> tuple[WithNamed | None, list[str]]:
        problems: list[Problem] = []
        result = build(WithNamed, data, "top", problems)
        return result, [str(p) for p in problems]

    def test_read(self) -> None:
        """
        Each name's mapping is read as the class, defaults filled in and
        order kept; null is an entry with every default; absent, the field
        is a fresh empty dict.
        """
        result, problems = self._build({"named": {"b": {"size": 4, "wait": "2m"}, "a": None}})
        self.assertEqual(problems, [])
        assert result is not None
        self.assertEqual(result.named, {"b": Named(size=4, wait=120.0), "a": Named()})
        self.assertEqual(list(result.named), ["b", "a"])
        first, second = self._build({})[0], self._build({})[0]
        assert first is not None and second is not None
        self.assertEqual(first.named, {})
        self.assertIsNot(first.named, second.named)

    def test_problems_by_name(self) -> None:
        """
        Problems inside an entry name it in their path; unknown keys of an
        entry are refused; the good entries do not hide the bad ones.
        """
        result, problems = self._build(
            {"named": {"ok": {}, "odd": {"size": 3}, "typo": {"sise": 2}, "late": {"wait": "x"}}}
        )
        self.assertIsNone(result)
        self.assertEqual(
            problems,
            [
                "top.named.odd.size: must be even",
                "top.named.typo.sise: unknown key (known keys: size, wait)",
                "top.named.late.wait: must be a duration like 5s, 250ms or 5m",
            ],
        )

    def test_not_mappings(self) -> None:
        """
        The field must be a mapping, each entry a mapping (or null), and
        each name a string.
        """
        self.assertEqual(self._build({"named": ["a"]})[1], ["top.named: must be a mapping"])
        self.assertEqual(
            self._build({"named": {"a": 3, 7: {}}})[1],
            ["top.named.a: must be a mapping", "top.named.7: must be named by a string (quote the name)"],
        )


class Colour(enum.StrEnum):
    RED = "red"
    GREEN = "green"


@attrs.frozen
class WithEnum:
    colour: Colour = Colour.GREEN
    optional: Colour | None = None
    colours: tuple[Colour, ...] = ()


class EnumTests(SynchronousTestCase):
    """
    Fields whose type is a C{StrEnum}: a YAML string naming one member's
    value.
    """

    def _build(self, data: object) -> tuple[WithEnum | None, list[str]]:
        problems: list[Problem] = []
        result = build(WithEnum, data, "top", problems)
        return result, [str(p) for p in problems]

    def test_read(self) -> None:
        """
        A value is read as the member that has it, not as a plain string,
        in a field, an optional field and a list alike.
        """
        result, problems = self._build({"colour": "red", "optional": "green", "colours": ["green", "red"]})
        self.assertEqual(problems, [])
        assert result is not None
        self.assertIs(result.colour, Colour.RED)
        self.assertIs(result.optional, Colour.GREEN)
        self.assertEqual(result.colours, (Colour.GREEN, Colour.RED))
        self.assertIs(result.colours[0], Colour.GREEN)

    def test_default(self) -> None:
        """
        An absent key takes the field's default member; null on an optional
        field means "not set".
        """
        result, problems = self._build({"optional": None})
        self.assertEqual(problems, [])
        self.assertEqual(result, WithEnum())
        assert result is not None
        self.assertIs(result.colour, Colour.GREEN)
        self.assertIsNone(result.optional)

    def test_refused(self) -> None:
        """
        A string that is no member's value (the members' names and other
        cases included) is refused naming the values in definition order,
        worded as for a field with C{choices}; in a list, at the item.
        """
        for value in ("blue", "RED", "Red", " red", ""):
            with self.subTest(value=value):
                result, problems = self._build({"colour": value})
                self.assertIsNone(result)
                self.assertEqual(problems, ["top.colour: must be one of red, green"])
        _result, problems = self._build({"colours": ["red", "blue"]})
        self.assertEqual(problems, ["top.colours[1]: must be one of red, green"])

    def test_not_a_string(self) -> None:
        """
        A value that is not a string, null on a field that is not optional
        included, is refused as not a string, not also as outside the set.
        """
        for value in (1, True, None, ["red"], {"red": 1}):
            with self.subTest(value=value):
                _result, problems = self._build({"colour": value})
                self.assertEqual(problems, ["top.colour: must be a string"])
