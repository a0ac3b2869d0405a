# -*- test-case-name: tests.unit.test_config -*-
"""
The C{metrics} and C{logging} sections: where Prometheus scrapes the
gateway, and what it logs in which format.
"""

from __future__ import annotations

import enum

import attrs

from alertgateway.config._fields import plain_path, plain_paths, port_number

__all__ = ["LogFormat", "LoggingConfig", "MetricsConfig"]


@attrs.frozen
class MetricsConfig:
    """
    The Prometheus metrics listener.
    """

    enabled: bool = True
    port: int = attrs.field(default=9090, metadata={"check": port_number})
    path: str = attrs.field(default="/metrics", metadata={"check": plain_path})
    # Defaults to service.host.
    host: str | None = None
    listen: tuple[str, ...] = ()


class LogFormat(enum.StrEnum):
    """
    How log lines are written: one JSON object each, or plain text.
    """

    JSON = "json"
    TEXT = "text"


@attrs.frozen
class LoggingConfig:
    """
    What is logged, and how.
    """

    level: str = attrs.field(
        default="info", metadata={"choices": ("debug", "info", "warn", "warning", "error", "critical")}
    )
    format: LogFormat = LogFormat.JSON
    # One line per request (at info).  Security refusals are logged apart,
    # whatever this says.
    access_log: bool = True
    # Requests for these paths leave no access line: the probes' and the
    # scrapes', most of the lines otherwise and never news.  They are still
    # counted in the request metrics.
    access_log_exclude: tuple[str, ...] = attrs.field(
        default=("/health", "/health/live", "/health/ready", "/metrics"), metadata={"check": plain_paths}
    )
