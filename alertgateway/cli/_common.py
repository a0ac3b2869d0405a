# -*- test-case-name: tests.unit.test_cli -*-
"""
What the commands of C{alertgateway} share: their exit statuses, and
loading the gateway's configuration with its problems reported as
C{check-config} reports them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine, Mapping
from typing import IO, Any
from urllib.parse import urlsplit

from alertgateway.config import ConfigError, GatewayConfig, load_config

__all__ = [
    "EXIT_FAILED",
    "EXIT_INVALID",
    "EXIT_OK",
    "CommandError",
    "load_or_report",
    "on_reactor",
    "redis_location",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


class CommandError(Exception):
    """
    What the command was asked cannot be done; the message says why, in
    one line, and the command exits with L{EXIT_INVALID}.
    """


def load_or_report(path: str, err: IO[str], environ: Mapping[str, str] | None = None) -> GatewayConfig | None:
    """
    The configuration at C{path}, or C{None} once its problems are printed
    on C{err}, one line each.
    """
    try:
        return load_config(path, environ)
    except ConfigError as e:
        for problem in e.problems:
            print(str(problem), file=err)
        return None


def on_reactor(work: Callable[[Any], Coroutine[Any, Any, int]]) -> int:
    """
    Run C{work(reactor)} on the global reactor, which it alone uses, and
    return its exit status (L{EXIT_FAILED} if it raised).
    """
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react

    result: list[int] = []

    async def _work(reactor: Any) -> None:
        result.append(await work(reactor))

    # react() ends with sys.exit(); the exit status is ours to choose.
    with contextlib.suppress(SystemExit):
        react(lambda reactor: ensureDeferred(_work(reactor)))
    return result[0] if result else EXIT_FAILED


def redis_location(url: str) -> str:
    """
    Where C{state.redis.url} points, without the password it may carry.
    """
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"
