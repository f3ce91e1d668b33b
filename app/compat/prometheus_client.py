"""prometheus_client internals: adding a batch of observations to a histogram child.

Written for prometheus_client 0.26 (`Histogram._upper_bounds`, `_buckets` and `_sum`, set in
`Histogram._metric_init` since 0.4). The public `observe()` writes the bucket and the sum for
every observation, each a locked write to a memory-mapped file in multiprocess mode;
`app.process.metric_batches` keeps observations in the process and adds them here once a
second (the writes were ~15 µs of a request, docs/performance.md). The buckets are stored
per bucket, not cumulatively: prometheus_client accumulates them when it collects.
tests/unit/test_compat.py checks that a batch added here is exposed exactly as the same
observations made one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

TESTED_VERSIONS = ((0, 20), (0, 27))
"""[lowest, highest) (major, minor) this module was checked against."""


def upper_bounds(child: Any) -> list[float]:
    """The child's bucket bounds, ascending, ending with +Inf."""
    return list(child._upper_bounds)


def add_to_histogram(child: Any, bucket_counts: Sequence[int], total: float) -> None:
    """Add `bucket_counts[i]` observations to bucket i and `total` to the sum."""
    child._sum.inc(total)
    for bucket, count in zip(child._buckets, bucket_counts, strict=True):
        if count:
            bucket.inc(count)
