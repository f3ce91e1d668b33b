"""How late the worker's event loop runs what is due: `process_event_loop_lag_seconds`.

Every request's latency includes the time its callbacks wait for the loop, which one slow step
anywhere (a garbage collection, a long synchronous call, a burst of requests) stretches for
all of them. A `Periodic` step due every `INTERVAL_S` notes how late it started: that is the
wait any ready callback saw at that moment. Ten samples a second cost a few microseconds of a
second; the benchmark's `users` scenario reads this histogram next to the GC pauses and the
pool waits to tell which of them the slowest requests waited for (docs/performance.md).
"""

from __future__ import annotations

import asyncio

from prometheus_client import Histogram

from app.process.periodic import Periodic, next_due

INTERVAL_S = 0.1

LOOP_LAG = Histogram(
    "process_event_loop_lag_seconds",
    "How late a callback due now starts on the worker's event loop (sampled every 100 ms)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)


class LoopLag:
    """A lifecycle component sampling the event loop's lag while the worker runs."""

    name = "loop-lag"

    def __init__(self) -> None:
        self._due: float | None = None
        self._sampler = Periodic("loop-lag", INTERVAL_S, self._sample)

    async def start(self) -> None:
        self._due = asyncio.get_running_loop().time() + INTERVAL_S
        self._sampler.start()

    async def stop(self) -> None:
        await self._sampler.stop()

    async def _sample(self) -> None:
        """Runs at the tick the runner was due to start it, or late by the loop's lag."""
        now = asyncio.get_running_loop().time()
        due = self._due if self._due is not None else now
        LOOP_LAG.observe(max(0.0, now - due))
        self._due = next_due(due, now, INTERVAL_S)
