# -*- test-case-name: tests.unit.test_sources -*-
"""
The sanitisation limits every parser applies: an alert over one is refused
on its own, with a pointer to the field; a body over C{max_alerts_per_request}
as a whole.
"""

from __future__ import annotations

import attrs

__all__ = ["Limits"]


@attrs.frozen
class Limits:
    max_alerts_per_request: int = 1000
    max_labels_per_alert: int = 128
    max_label_name_length: int = 256
    max_label_value_length: int = 4096
    max_annotation_bytes: int = 65536
    max_json_depth: int = 32
    # Read by the web layer while inflating, beside the depth it checks.
    max_gzip_members: int = 16
