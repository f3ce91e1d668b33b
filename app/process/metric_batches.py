"""Metric observations kept in the process and added to prometheus_client's shared samples
once a second, instead of once per observation.

In multiprocess mode (several granian workers) every `inc()` and `observe()` of
prometheus_client writes a memory-mapped file under a lock: a histogram observation is two
such writes (its bucket and its sum), a counter one, an in-progress gauge two per request.
The service made nine per request, ~15 µs of CPU measured alone and 30-40 µs per request in
the benchmark's profile (docs/performance.md). Here a request only adds to plain integers and
floats of its own process; `MetricBatches.flush()` adds each batch to the shared samples in
one write per touched bucket. A scrape flushes the worker that answers it first; the other
workers' last second may not be in it yet (a scrape is a sample of moving counters anyway).

Histograms are batched through `app.compat.prometheus_client` (prometheus_client has no
public way to add several observations to a bucket at once); counters and gauges use the
public `inc(amount)` and `set()`.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, TypeVar

from app.compat.prometheus_client import add_to_histogram, upper_bounds


class BatchedHistogram:
    """One labelled histogram child's observations since the last flush."""

    __slots__ = ("_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._bounds = upper_bounds(child)  # ascending, +Inf last: every value has a bucket
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count `value` in the first bucket whose bound is >= it (prometheus_client's rule)."""
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def flush(self) -> None:
        if any(self._counts):
            counts, self._counts = self._counts, [0] * len(self._bounds)
            total, self._sum = self._sum, 0.0
            add_to_histogram(self._child, counts, total)


class BatchedCounter:
    """One labelled counter child's increments since the last flush."""

    __slots__ = ("_child", "_pending")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._pending = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self._pending += amount

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, 0.0
            self._child.inc(pending)


class BatchedGauge:
    """One labelled gauge child moved up and down in the process; its value is set at flush
    (for in-progress counts: a sample of the moment, as a scrape always is)."""

    __slots__ = ("_child", "_flushed", "value")

    def __init__(self, child: Any) -> None:
        self._child = child
        self.value = 0
        self._flushed: int | None = None

    def flush(self) -> None:
        if self.value != self._flushed:
            self._flushed = self.value
            self._child.set(self.value)


Batch = BatchedHistogram | BatchedCounter | BatchedGauge
B = TypeVar("B", BatchedHistogram, BatchedCounter, BatchedGauge)


class MetricBatches:
    """Every batch of this process, flushed together (by the lifecycle component's periodic
    step, by a scrape, and at stop)."""

    def __init__(self) -> None:
        self._batches: list[Batch] = []

    def histogram(self, child: Any) -> BatchedHistogram:
        return self._add(BatchedHistogram(child))

    def counter(self, child: Any) -> BatchedCounter:
        return self._add(BatchedCounter(child))

    def gauge(self, child: Any) -> BatchedGauge:
        return self._add(BatchedGauge(child))

    def _add(self, batch: B) -> B:
        self._batches.append(batch)
        return batch

    def flush(self) -> None:
        """Add everything observed since the last flush to the shared samples."""
        for batch in self._batches:
            batch.flush()
