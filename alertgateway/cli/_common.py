# -*- test-case-name: tests.unit.test_cli -*-
"""
What the commands of C{alertgateway} share: their exit statuses, and
loading the gateway's configuration with its problems reported as
C{check-config} reports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO

from alertgateway.config import ConfigError, GatewayConfig, load_config

__all__ = ["EXIT_FAILED", "EXIT_INVALID", "EXIT_OK", "load_or_report"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


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
