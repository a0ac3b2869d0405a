# -*- test-case-name: tests.unit.test_web_edge -*-
"""
The security log: every refusal at the edge is one structured
warning event, with its reason and the client address, and is counted in
C{gateway_security_rejections_total{endpoint,reason}}.
"""

from __future__ import annotations

from twisted.logger import Logger

from alertgateway.observability.logs import clip
from alertgateway.observability.metrics import WebhookMetrics
from alertgateway.web.problems import Problem
from alertgateway.web.site import GatewayRequest

__all__ = ["record_refusal"]

_security_log = Logger(namespace="alertgateway.security")


def record_refusal(
    metrics: WebhookMetrics | None, endpoint: str, request: GatewayRequest, client: str, problem: Problem
) -> None:
    """
    Log and count one refusal; never the credential or the body, and of
    what the client chose (the path, its address as forwarded, what the
    detail quotes) only the start.
    """
    if metrics is not None:
        metrics.refused(endpoint, str(problem.reason))
    _security_log.warn(
        "Refused {method} {path} from {client}: {reason} ({status})",
        method=request.method.decode("latin-1"),
        path=clip(request.path.decode("latin-1")),
        client=clip(client),
        reason=problem.reason,
        status=problem.status,
        detail=clip(problem.detail, 1024),
        requestId=request.request_id,
        endpoint=endpoint,
    )
