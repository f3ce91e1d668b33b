"""Wakes every hub of the cluster after events commit: one `NOTIFY` for many writes.

A `pg_notify` inside the writing statement made every send take PostgreSQL's cluster-wide
notification lock at commit and signal every listening backend: on the `sends` bench it
doubled PostgreSQL's CPU per send and cut the sends' throughput by a quarter to a third
(docs/performance.md). So a write only marks that something committed (`announce()`: no
I/O, no await), after its commit, and this worker's announcer sends one notification for
everything marked since its previous one, at most one every `ANNOUNCE_GAP_S`, off the
requests' path. The hubs pass at most once per 10 ms anyway, so a finer wake-up would buy
nothing.

The payload is the newest transaction id that can have committed before the notification
(the primary's next id, minus one): a hub whose horizon is not yet past it (an older
transaction still runs) looks again soon, as it did for the writer's own id.

A worker that stops between a commit and its announcement loses only the wake-up: every
hub still polls every `EVENTS_POLL_INTERVAL_MS`, and the rows are the truth.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from app.events import metrics
from app.logging import Throttle
from app.process.periodic import Periodic

log = structlog.get_logger("app.events")

ANNOUNCE_GAP_S = 0.005
"""At most one notification per worker this often (a hub passes at most every 10 ms)."""
_LOG_EVERY_S = 5.0


class Announcer:
    """Coalesces `announce()` calls into notifications sent by `notify` on its own task."""

    def __init__(self, notify: Callable[[], Awaitable[object]], *, idle_check_s: float) -> None:
        self._notify = notify
        self._pending = False
        self._failure_log = Throttle(_LOG_EVERY_S)
        # Runs when woken (spaced ANNOUNCE_GAP_S apart) and every `idle_check_s`, when a
        # failed notification is tried again.
        self.periodic = Periodic(
            "events-announcer", idle_check_s, self._step, min_gap_s=ANNOUNCE_GAP_S
        )

    def announce(self) -> None:
        """Something committed that streams may want: notify soon (never waits)."""
        self._pending = True
        self.periodic.wake()

    def start(self) -> None:
        self.periodic.start()

    async def stop(self) -> None:
        """Stop, sending what is still pending (best effort)."""
        await self.periodic.stop()
        await self._step()

    async def _step(self) -> None:
        if not self._pending:
            return
        self._pending = False
        try:
            await self._notify()
        except Exception as error:  # the polls still deliver; the next write tries again
            self._pending = True
            metrics.ANNOUNCEMENTS.labels("error").inc()
            held_back = self._failure_log.allow()
            if held_back is not None:
                log.warning(
                    "events: notifying the listeners failed",
                    error=type(error).__name__,
                    held_back=held_back,
                )
            return
        metrics.ANNOUNCEMENTS.labels("sent").inc()
