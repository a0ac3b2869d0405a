"""
Small helpers the unit tests share: sample envelopes and running async test
methods under trial.  (Fakes of the gateway's parts are public API, in
L{alertgateway.testing}.)
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import Deferred

from alertgateway.core.model import Alert, fingerprint
from alertgateway.delivery.envelope import Envelope

__all__ = ["envelope", "inline"]


def envelope(name: str, status: str = "firing", request_id: str = "r") -> Envelope:
    """
    The envelope of an alert named C{name}, keyed by its fingerprint.
    """
    labels = {"alertname": name}
    alert = Alert(
        fingerprint=fingerprint(labels),
        source="alertmanager",
        status=status,
        labels=labels,
        annotations={},
        starts_at="2026-11-26T03:49:49Z",
        ends_at=None,
        generator_url="",
        received_at="2026-11-26T03:50:00.000Z",
    )
    return Envelope.for_alert(alert, request_id)


def inline(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., Deferred[None]]:
    """
    Run an async test method as trial expects: through a Deferred.
    """

    def run(self: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(test(self))

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run
