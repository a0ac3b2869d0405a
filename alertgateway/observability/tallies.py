# -*- test-case-name: tests.unit.test_metrics -*-
"""
Counters and histograms kept as plain numbers, turned into Prometheus
samples only when scraped.

prometheus_client's own metrics take a lock and go through a child object
on every increment; the counters touched per request and per alert cost
more than 1 µs each that way.  A L{Tally} or a L{Spread} is a dict of plain
numbers on the hot path, and a collector on the registry: at scrape time it
yields the same family, samples, labels and C{_created} times that a
prometheus_client C{Counter} or C{Histogram} of the same name would, so
nothing scraping the gateway can tell them apart.

Everything here runs on the reactor thread (the hot path and the scrape
both do), which is what makes the lock needless.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

__all__ = ["Spread", "Tally"]

# A series' label values, as the hot path gives them (an int status code
# is turned into text only when scraped).
Key = tuple[Hashable, ...]
# What a family keeps per series.
V = TypeVar("V")


class _Family(Collector, Generic[V]):
    """
    What a L{Tally} and a L{Spread} share: a name, help, label names, the
    numbers and the creation time of each series, and registration as a
    collector.
    """

    kind = ""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._wall = wall
        self._created: dict[Key, float] = {}
        self.values: dict[Key, V] = {}
        if not self.labelnames:
            # Like a prometheus_client metric without labels: exported from
            # the start, empty.
            self.declare(())
        registry.register(self)

    def declare(self, key: Key) -> V:
        """
        Export the series C{key}, empty until counted; return its numbers.
        """
        found = self.values.get(key)
        if found is None:
            found = self.values[key] = self._empty()
            self._created[key] = self._wall()
        return found

    @abstractmethod
    def _empty(self) -> V:
        """
        The numbers of a series nothing was counted in yet.
        """

    def describe(self) -> Iterator[Metric]:
        # What the registry checks names against: no samples needed.
        yield Metric(self.name, self.documentation, self.kind)

    def _labels(self, key: Key) -> dict[str, str]:
        return dict(zip(self.labelnames, (str(v) for v in key), strict=True))

    def _key(self, values: tuple[Hashable, ...], named: dict[str, Hashable]) -> Key:
        if named:
            return tuple(named[name] for name in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes the labels {self.labelnames}, not {values!r}")
        return values


class Tally(_Family[float]):
    """
    A counter family: C{inc(key)} adds to the series of that tuple of label
    values.
    """

    kind = "counter"

    def _empty(self) -> float:
        return 0

    def inc(self, key: Key, amount: float = 1) -> None:
        try:
            self.values[key] += amount
        except KeyError:
            self.declare(key)
            self.values[key] += amount

    def labels(self, *values: Hashable, **named: Hashable) -> _TallySeries:
        """
        One series, for the rare callers (and the tests) that speak
        prometheus_client's C{labels(...).inc()}.
        """
        return _TallySeries(self, self._key(values, named))

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self.name, self.documentation, self.kind)
        created = self._created
        for key, value in list(self.values.items()):
            labels = self._labels(key)
            metric.add_sample(self.name + "_total", labels, value)
            metric.add_sample(self.name + "_created", labels, created[key])
        yield metric


class _TallySeries:
    def __init__(self, tally: Tally, key: Key) -> None:
        self._tally = tally
        self._key = key

    def inc(self, amount: float = 1) -> None:
        self._tally.inc(self._key, amount)


class Spread(_Family[list[float]]):
    """
    A histogram family: C{observe(key, value)} counts C{value} in the first
    bucket whose bound is at least C{value}, in the series of C{key}.
    """

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._bounds = tuple(float(b) for b in buckets)
        self._les = [floatToGoString(b) for b in (*self._bounds, INF)]
        super().__init__(name, documentation, labelnames, registry, wall)

    def _empty(self) -> list[float]:
        # A count per bucket (the last one +Inf), then the sum.
        return [0] * (len(self._bounds) + 2)

    def observe(self, key: Key, value: float) -> None:
        try:
            numbers = self.values[key]
        except KeyError:
            numbers = self.declare(key)
        numbers[bisect_left(self._bounds, value)] += 1
        numbers[-1] += value

    def labels(self, *values: Hashable, **named: Hashable) -> _SpreadSeries:
        """
        One series, as prometheus_client's C{labels(...).observe(v)}.
        """
        return _SpreadSeries(self, self._key(values, named))

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self.name, self.documentation, self.kind)
        name = self.name
        for key, numbers in list(self.values.items()):
            labels = self._labels(key)
            total = 0.0
            for le, count in zip(self._les, numbers, strict=False):
                total += count
                metric.add_sample(name + "_bucket", {**labels, "le": le}, total)
            metric.add_sample(name + "_count", labels, total)
            metric.add_sample(name + "_sum", labels, numbers[-1])
            metric.add_sample(name + "_created", labels, self._created[key])
        yield metric


class _SpreadSeries:
    def __init__(self, spread: Spread, key: Key) -> None:
        self._spread = spread
        self._key = key

    def observe(self, value: float) -> None:
        self._spread.observe(self._key, value)
