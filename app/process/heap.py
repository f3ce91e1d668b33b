"""The worker's heap after warm-up: frozen out of the cyclic garbage collector, collected less
often, and every collection's pause measured.

A worker holds about 100,000 long-lived objects once it is warm (Litestar's routes and
signatures, SQLAlchemy's pools and dialect, prometheus_client's children, the import graph).
CPython's full (generation 2) collection walks all of them: 30-60 ms on the 2-core box, and
under load a full collection comes every few seconds, so one request in a few thousand waited
that long behind it. `gc.freeze()` moves what exists after warm-up to the permanent
generation, which no collection walks (the same advice CPython's documentation gives for
pre-fork servers); objects made later are still collected as before, so a cycle created while
serving is still freed.

The thresholds are raised from CPython's (700, 10, 10) to `GC_THRESHOLDS`: a request
allocates a few hundred containers, so the default ran a young collection every request or
two, each walking every live young object of all the requests in flight. In the concurrent
A/B (docs/performance.md) the raised thresholds cost 6.3% less CPU per send and 7.5% less
per page than the frozen heap with the defaults, every round lower; a young collection then
walks at most ~20,000 objects (about a millisecond). The pauses that remain are exported as
`process_gc_pause_seconds{generation}` so the tail can be told apart from them.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import structlog
from prometheus_client import Histogram

log = structlog.get_logger("app.heap")

GC_THRESHOLDS = (20_000, 20, 20)
"""Young collections after this many net container allocations; the older generations after
this many collections of the one below."""

GC_PAUSES = Histogram(
    "process_gc_pause_seconds",
    "Pauses of the cyclic garbage collector, by generation",
    ("generation",),
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)


class GcPauses:
    """A `gc.callbacks` entry timing each collection (called only around collections, so it
    costs nothing per request)."""

    def __init__(self) -> None:
        self._started = 0.0
        self._children = [GC_PAUSES.labels(str(generation)) for generation in range(3)]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._children[info["generation"]].observe(time.perf_counter() - self._started)


class FrozenHeap:
    """A lifecycle component, registered last: its start runs once the pools are warm."""

    name = "heap"

    def __init__(self) -> None:
        self._pauses = GcPauses()
        self._thresholds = gc.get_threshold()

    async def start(self) -> None:
        """Collect what warm-up left behind, then freeze the rest, raise the thresholds and
        time later pauses."""
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        gc.callbacks.append(self._pauses)
        log.info("heap frozen after warm-up", frozen_objects=gc.get_freeze_count())

    async def stop(self) -> None:
        """Stop timing collections (the process is ending; the frozen heap goes with it)."""
        if self._pauses in gc.callbacks:
            gc.callbacks.remove(self._pauses)
        gc.set_threshold(*self._thresholds)
        gc.unfreeze()
