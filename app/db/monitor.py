"""The replica monitor: probes each replica's health and lag on an interval.

Lag is zero when a replica has replayed everything it received, else the age of the last
replayed transaction; so an idle primary does not make a caught-up replica look lagged.
The byte distance to the primary's current WAL position is measured too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from sqlalchemy import text

from app.db.errors import DatabaseUnavailableError
from app.db.lsn import parse_lsn
from app.db.pool import Pool
from app.db.replicas import ReplicaSet, ReplicaState

log = structlog.get_logger("app.db.monitor")

_REPLICA_PROBE = text(
    "SELECT pg_is_in_recovery(),"
    " pg_last_wal_replay_lsn()::text,"
    " CASE WHEN pg_last_wal_receive_lsn() IS NULL"
    "        OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    "      ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)"
    " END::float8"
)
_PRIMARY_POSITION = text("SELECT pg_current_wal_lsn()::text")


class ReplicaMonitor:
    """Background task keeping `ReplicaSet` states current."""

    def __init__(
        self,
        replicas: ReplicaSet,
        writer: Pool,
        *,
        interval_s: float,
        max_lag_s: float,
        probe_timeout_s: float = 1.0,
    ) -> None:
        self._replicas = replicas
        self._writer = writer
        self._interval_s = interval_s
        self._max_lag_s = max_lag_s
        self._probe_timeout_s = probe_timeout_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start probing in the background (no-op without replicas)."""
        if self._task is None and len(self._replicas):
            self._task = asyncio.create_task(self._run(), name="replica-monitor")

    async def stop(self) -> None:
        """Stop probing and wait for the task to end."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def probe_all(self) -> None:
        """Probe every replica once, concurrently."""
        primary_lsn = await self._primary_position()
        await asyncio.gather(*(self._probe(state, primary_lsn) for state in self._replicas.states))

    async def _run(self) -> None:
        while True:
            try:
                await self.probe_all()
            except Exception:  # a monitor that dies silently is worse than one that logs
                log.exception("replica monitor round failed")
            await asyncio.sleep(self._interval_s)

    async def _primary_position(self) -> int | None:
        try:
            async with asyncio.timeout(self._probe_timeout_s), self._writer.acquire() as conn:
                value = (await conn.execute(_PRIMARY_POSITION)).scalar_one()
        except (DatabaseUnavailableError, TimeoutError, OSError, Exception):
            return None
        return parse_lsn(str(value))

    async def _probe(self, state: ReplicaState, primary_lsn: int | None) -> None:
        try:
            async with asyncio.timeout(self._probe_timeout_s), state.pool.acquire() as conn:
                in_recovery, replay, lag = (await conn.execute(_REPLICA_PROBE)).one()
        except Exception as error:  # any failure of the probe takes the replica out
            state.mark(healthy=False, reason=f"probe failed: {type(error).__name__}")
            state.checked_at = time.monotonic()
            return
        state.checked_at = time.monotonic()
        state.lag_seconds = float(lag)
        state.replay_lsn = parse_lsn(replay) if replay else 0
        state.lag_bytes = max(0, primary_lsn - state.replay_lsn) if primary_lsn else 0
        if not in_recovery:
            state.mark(healthy=False, reason="not in recovery (promoted?)")
        elif state.lag_seconds > self._max_lag_s:
            state.mark(healthy=False, reason=f"lag {state.lag_seconds:.1f}s")
        else:
            state.mark(healthy=True, reason=None)
