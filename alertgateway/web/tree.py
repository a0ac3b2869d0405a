# -*- test-case-name: tests.unit.test_web_site -*-
"""
The resource trees served on the webhook and metrics listeners.

Every configured endpoint is mounted at its path and again under C{/v1}
(so C{/webhook/prometheus} and C{/v1/webhook/prometheus} are the same
endpoint); everything else is a problem+json 404.
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import IResource, Resource

from alertgateway.observability.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from alertgateway.web.resource import HandlerResource, NotFoundResource, Response
from alertgateway.web.site import GatewayRequest

__all__ = ["Branch", "MetricsResource", "mount"]


class Branch(Resource):
    """
    An inner node of the tree: its own path and unknown children are 404.
    """

    def getChild(self, path: bytes, request: Any) -> IResource:
        return NotFoundResource()

    def render(self, request: Any) -> Any:
        return NotFoundResource().render(request)


def mount(root: Resource, path: str, resource: Resource) -> None:
    """
    Put C{resource} at C{path} below C{root}, making branches as needed.
    """
    segments = [s.encode("utf-8") for s in path.strip("/").split("/")]
    node = root
    for segment in segments[:-1]:
        child = node.children.get(segment)
        if child is None:
            child = Branch()
            node.putChild(segment, child)
        node = child
    existing = node.children.get(segments[-1])
    if isinstance(existing, Resource):
        # Keep what was mounted below the path being replaced.
        for name, grandchild in existing.children.items():
            resource.putChild(name, grandchild)
    node.putChild(segments[-1], resource)


class MetricsResource(HandlerResource):
    """
    The Prometheus exposition of the gateway's own registry.
    """

    def __init__(self, metrics: GatewayMetrics, path: str) -> None:
        super().__init__()
        self._metrics = metrics
        self.endpoint = path

    async def handle_GET(self, request: GatewayRequest) -> Response:
        return Response(200, self._metrics.exposition(), content_type=CONTENT_TYPE_LATEST)
