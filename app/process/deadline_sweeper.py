"""Deadlines on waits, kept by one housekeeping task instead of a timer per wait.

A bound on a wait is usually a timer per wait: `asyncio.timeout`, or a bare `loop.call_at`
that cancels the task. Under granian and uvloop a timer per request cost 6 to 8% of a
message send's CPU in the concurrent A/B (docs/performance.md), far more than the timer
itself costs in a microbenchmark (0.5 to 2 µs). Here a wait is an entry in a set, and one
task, running only while there are waits, wakes every `resolution_s` and cancels the tasks
whose deadline has passed. A wait therefore ends between its deadline and one resolution
later, which is precise enough for bounds of seconds.

Cancellation follows `asyncio.timeout`'s protocol: the waiting task is cancelled, and
`Task.uncancel` tells the deadline's cancellation from any other (a shutdown, a disconnect),
which must stay a cancellation.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Wait:
    """One task's wait under a deadline (`Deadlines.begin`)."""

    __slots__ = ("deadline", "expired", "task")

    def __init__(self, task: asyncio.Task[Any], deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.expired = False


class Deadlines:
    """Cancels tasks still waiting past their deadline (loop time), from one task per loop.

    Usage, around one await:

        wait = deadlines.begin(deadline)
        try:
            result = await something()
        except asyncio.CancelledError:
            if deadlines.ended(wait):
                raise MyTimeout from None
            raise
        finally:
            deadlines.finish(wait)
    """

    def __init__(self, resolution_s: float) -> None:
        if resolution_s <= 0:
            raise ValueError("resolution_s must be positive")
        self.resolution_s = resolution_s
        self._waits: set[Wait] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def begin(self, deadline: float) -> Wait:
        """Put the current task's next wait under `deadline` (`loop.time()` clock)."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline needs a task to cancel")
        wait = Wait(task, deadline)
        self._waits.add(wait)
        sweeper = self._sweeper
        if sweeper is None or sweeper.done() or sweeper.get_loop() is not task.get_loop():
            self._sweeper = task.get_loop().create_task(self._sweep(), name="deadlines")
        return wait

    def finish(self, wait: Wait) -> None:
        """The wait is over (in time or not): stop watching it."""
        self._waits.discard(wait)

    @staticmethod
    def ended(wait: Wait) -> bool:
        """Whether the `CancelledError` the wait raised is its deadline's alone; then it is
        consumed (`Task.uncancel`) and the caller raises its own timeout instead."""
        return wait.expired and wait.task.uncancel() == 0

    async def _sweep(self) -> None:
        """Every `resolution_s` while there are waits: cancel the ones past their deadline."""
        loop = asyncio.get_running_loop()
        while self._waits:
            await asyncio.sleep(self.resolution_s)
            now = loop.time()
            for wait in [w for w in self._waits if not w.expired and w.deadline <= now]:
                wait.expired = True
                wait.task.cancel()
