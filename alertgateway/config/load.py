# -*- test-case-name: tests.unit.test_config -*-
"""
Reading a configuration file into a L{GatewayConfig}, or into a
L{ConfigError} listing every problem found.

The YAML is read with PyYAML's safe loader, refusing keys given twice
(which YAML would otherwise resolve silently); the environment overrides
(C{WEBHOOK_AUTH_TOKEN}, C{WEBHOOK_PORT}) are applied before the model is
built, so they are checked as if the file said them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from alertgateway.config._fields import port_number
from alertgateway.config._schema import Problem, read_fields
from alertgateway.config.checks import check_across
from alertgateway.config.gateway import GatewayConfig

__all__ = ["ConfigError", "load_config", "parse_config"]


class ConfigError(Exception):
    """
    The configuration cannot be used; C{problems} says why, key by key.
    """

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _yaml_problem(origin: str, error: yaml.YAMLError) -> Problem:
    # PyYAML's own message spans several lines with a source excerpt; an
    # operator needs one line saying where and what.
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark or error.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        context = f" ({error.context})" if error.context else ""
        return Problem("", f"{origin}:{where} not valid YAML: {error.problem}{context}")
    return Problem("", f"{origin}: not valid YAML: {' '.join(str(error).split())}")


def _duplicate_keys(root: yaml.Node) -> list[Problem]:
    """
    Find keys given twice in one mapping: YAML keeps the last silently,
    which would hide the first as surely as a typo would.
    """
    found: list[tuple[int, Problem]] = []
    visited: set[int] = set()
    pending: list[tuple[yaml.Node, str]] = [(root, "")]
    while pending:
        node, path = pending.pop()
        # Aliases share nodes (and may nest themselves): visit each once.
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                child = path
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    child = f"{path}.{key_node.value}" if path else str(key_node.value)
                    key = (key_node.tag, key_node.value)
                    line = key_node.start_mark.line + 1
                    if key in first:
                        found.append((line, Problem(child, f"is given twice (lines {first[key]} and {line})")))
                    else:
                        first[key] = line
                pending.append((value_node, child))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend((item, f"{path}[{index}]") for index, item in enumerate(node.value))
    return [problem for _line, problem in sorted(found, key=lambda item: item[0])]


def _load_yaml(text: str, origin: str, problems: list[Problem]) -> object:
    try:
        # The reader checks the characters as soon as it is made.
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            problems.extend(_duplicate_keys(node))
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise ConfigError([_yaml_problem(origin, e)]) from None
    except RecursionError:
        # PyYAML composes recursively; a hostile file must not crash the tool.
        raise ConfigError([Problem("", f"{origin}: not valid YAML: nested too deeply")]) from None


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str], problems: list[Problem]) -> None:
    def section(parent: dict[str, Any], name: str) -> dict[str, Any] | None:
        # An empty section (C{webhook:}) is null in YAML; the override must
        # still apply.  Anything else that is not a mapping is reported by
        # the schema, so it is left alone here.
        if parent.get(name) is None:
            parent[name] = {}
        child = parent[name]
        return child if isinstance(child, dict) else None

    token = environ.get("WEBHOOK_AUTH_TOKEN")
    if token:
        webhook = section(raw, "webhook")
        auth = section(webhook, "auth") if webhook is not None else None
        if auth is not None:
            auth["token"] = token
    port = environ.get("WEBHOOK_PORT")
    if port:
        try:
            number = int(port)
        except ValueError:
            problems.append(Problem("WEBHOOK_PORT", f"must be an integer, got {port!r}"))
            return
        message = port_number(number)
        if message is not None:
            # Named after the variable: the file is not where the value is.
            problems.append(Problem("WEBHOOK_PORT", f"{message}, got {port!r}"))
            return
        service = section(raw, "service")
        if service is not None:
            service["port"] = number


def parse_config(text: str, environ: Mapping[str, str] | None = None, origin: str = "<config>") -> GatewayConfig:
    """
    Parse and validate configuration YAML.

    @param environ: Where overrides and C{*_env} secrets are looked up;
        C{os.environ} by default.
    @param origin: What the text was read from, for problems about the
        whole document.
    @raise ConfigError: With every problem found.
    """
    problems: list[Problem] = []
    raw = _load_yaml(text, origin, problems)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([Problem("", f"{origin}: the top level must be a mapping")])
    _apply_environment(raw, os.environ if environ is None else environ, problems)
    sections = read_fields(GatewayConfig, raw, "", problems)
    check_across(sections, os.environ if environ is None else environ, problems)
    if problems:
        raise ConfigError(problems)
    return GatewayConfig(**sections)


def load_config(path: str, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """
    Read, parse and validate the configuration file at C{path}.

    @raise ConfigError: With every problem found, the unreadable file included.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([Problem("", f"cannot read {path}: {e}")]) from None
    return parse_config(text, environ, origin=path)
