# -*- test-case-name: tests.unit.test_tap -*-
"""
The twistd plugin's options and service factory:
C{twistd -n alertgateway --config FILE}.

The configuration is loaded and validated while the options are parsed, so
an invalid file stops twistd before anything starts, with the same messages
as C{alertgateway check-config}: one block on standard error, and no usage
text (twistd prints its whole usage before the message of a usage error,
which buried the problems under a screen of options that were not at fault).
"""

from __future__ import annotations

import sys
from typing import ClassVar, cast

from twisted.application.service import IService
from twisted.python import usage

from alertgateway.config import ConfigError, GatewayConfig, load_config

__all__ = ["Options", "makeService"]


class Options(usage.Options):
    synopsis = "--config FILE"
    longdesc = "Receive alert webhooks from Alertmanager and Grafana and forward them to the Alert Processor."
    optParameters: ClassVar[list[list[str | None]]] = [
        ["config", "c", None, "Path to the YAML configuration file (required)."]
    ]

    config: GatewayConfig

    def postOptions(self) -> None:
        path = self["config"]
        if not path:
            raise usage.UsageError("--config FILE is required")
        try:
            self.config = load_config(path)
        except ConfigError as e:
            # Printed to standard error with exit status 1, as Python does
            # with a SystemExit that carries text.
            raise SystemExit(f"twistd alertgateway: invalid configuration in {path}, not started:\n{e}") from None


def makeService(options: Options) -> IService:
    # The reactor twistd installed, imported only now: importing this module
    # must not install one.
    from twisted.internet import reactor

    from alertgateway.app.service import GatewayService
    from alertgateway.interfaces import IGatewayReactor

    return GatewayService(options.config, cast(IGatewayReactor, reactor), log_stream=sys.stdout)
