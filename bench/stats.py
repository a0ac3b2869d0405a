"""
Percentiles for the benchmark's generators and stub (nearest rank).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

POINTS = (50.0, 95.0, 99.0)


def percentile(ordered: list[float], point: float) -> float:
    """
    The nearest-rank percentile of an already sorted, non-empty list.
    """
    rank = max(1, math.ceil(point / 100.0 * len(ordered)))
    return ordered[rank - 1]


def percentiles(values: Iterable[float], points: Iterable[float] = POINTS) -> dict[str, float] | None:
    """
    ``{"p50": ..., "p95": ..., "p99": ..., "max": ...}``, or None without values.
    """
    ordered = sorted(values)
    if not ordered:
        return None
    found = {f"p{point:g}": percentile(ordered, point) for point in points}
    found["max"] = ordered[-1]
    return found
