"""
Serve a twisted.web resource on loopback for the benchmark, quietly.

A plain ``Site`` writes a combined-log line per request to the legacy log
(buffered in memory when nobody observes it); the stub processor and the
ceiling skip that, so they cost as little as twisted.web allows.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site


class QuietSite(Site):
    """
    A Site without access log or factory start/stop messages.
    """

    noisy = False

    def log(self, request: Any) -> None:
        """
        Log nothing.
        """


def serve(resource: Resource, port: int = 0) -> None:
    """
    Listen on 127.0.0.1:``port`` (0: any free port), print ``PORT <n>``
    on stdout and run the reactor until SIGTERM.
    """
    listening = reactor.listenTCP(port, QuietSite(resource), backlog=1024, interface="127.0.0.1")  # type: ignore[arg-type]
    print(f"PORT {listening.getHost().port}", flush=True)  # type: ignore[attr-defined]
    reactor.run()
    sys.exit(0)
