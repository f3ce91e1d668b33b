"""The one runner of every background loop (cluster monitor, idle reaper, gauge publisher).

Steps start on a fixed cadence measured from the start, not from the end of the previous
step, so a 30 ms probe does not turn a 1 s interval into 1.03 s (drift-free). A step that
overruns its interval skips the ticks it missed instead of running them back to back.
`wake()` asks for an extra step now (a failed write wants the monitor's news at once); wakes
are coalesced and spaced at least `min_gap_s` apart, and the cadence is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("app.periodic")


class Periodic:
    """Runs `step` every `interval_s`; a failing step is logged, and the next one still runs."""

    def __init__(
        self,
        name: str,
        interval_s: float,
        step: Callable[[], Awaitable[None]],
        *,
        min_gap_s: float = 0.05,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.name = name
        self.interval_s = interval_s
        self._step = step
        self._min_gap_s = min_gap_s
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Run a step as soon as the minimum gap allows (no-op when not running)."""
        if self._task is not None:
            self._woken.set()

    @property
    def running(self) -> bool:
        """Whether the loop is started."""
        return self._task is not None

    def start(self) -> None:
        """Start; the first step runs one interval from now (no-op when already running)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the loop and wait for it to end."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval_s
        while True:
            woken = await self._wait(due - loop.time())
            self._woken.clear()
            try:
                await self._step()
            except Exception:  # a background loop that dies silently is worse than one that logs
                log.exception("periodic step failed", task=self.name)
            if woken:
                await asyncio.sleep(self._min_gap_s)  # spaces the wakes; the cadence stays
            if not woken or loop.time() >= due:
                due = next_due(due, loop.time(), self.interval_s)

    async def _wait(self, timeout_s: float) -> bool:
        """Sleep until the next tick; True when woken before it."""
        if timeout_s <= 0:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                await self._woken.wait()
        except TimeoutError:
            return False
        return True


def next_due(due: float, now: float, interval_s: float) -> float:
    """The tick after `due` that is still ahead of `now` (missed ticks are skipped)."""
    following = due + interval_s
    if following > now:
        return following
    return following + math.ceil((now - following) / interval_s) * interval_s
