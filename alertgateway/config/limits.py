# -*- test-case-name: tests.unit.test_config -*-
"""
The C{rate_limiting} and C{limits} sections: how many requests a sender
may make, and how large what it sends may be.
"""

from __future__ import annotations

import attrs

from alertgateway.config._fields import positive, rejection_status

__all__ = ["LimitsConfig", "RateLimitingConfig"]


@attrs.frozen
class RateLimitingConfig:
    """
    Requests allowed per minute, over all endpoints and per client.
    """

    enabled: bool = True
    # Requests per minute over all endpoints.
    global_limit: int = attrs.field(default=10000, metadata={"check": positive})
    burst_size: int = attrs.field(default=100, metadata={"check": positive})
    # Requests per minute from one client address; none by default.
    per_client_limit: int | None = attrs.field(default=None, metadata={"check": positive})
    # Alertmanager drops a notification answered with any 4xx (429 too) but
    # retries 5xx: unset, Alertmanager endpoints answer 503, the others 429.
    reject_status: int | None = attrs.field(default=None, metadata={"check": rejection_status})
    max_tracked_clients: int = attrs.field(default=100_000, metadata={"check": positive})


@attrs.frozen
class LimitsConfig:
    """
    Sanitisation limits, which keep one oversized alert from costing memory
    and time for all; an alert over one is rejected on its own, with a
    pointer to the field.
    """

    max_alerts_per_request: int = attrs.field(default=1000, metadata={"check": positive})
    max_labels_per_alert: int = attrs.field(default=128, metadata={"check": positive})
    max_label_name_length: int = attrs.field(default=256, metadata={"check": positive})
    max_label_value_length: int = attrs.field(default=4096, metadata={"check": positive})
    max_annotation_bytes: int = attrs.field(default=65536, metadata={"check": positive})
    max_json_depth: int = attrs.field(default=32, metadata={"check": positive})
    # Each gzip member costs a new inflater: many empty ones in a small
    # body would cost far more CPU than the same bytes sent plain.
    max_gzip_members: int = attrs.field(default=16, metadata={"check": positive})
