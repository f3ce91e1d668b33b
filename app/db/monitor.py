"""The replica monitor: probes each replica's health and lag on an interval.

Each round samples the primary's WAL position, then probes every replica concurrently, each
over a dedicated one-connection engine (so a busy pool never makes a replica look dead, and
probes never queue behind reads). A replica is out of rotation when its probe fails, when it
is not in recovery (promoted), or when its lag exceeds `DB_REPLICA_MAX_LAG_S`.

Lag (`replica_lag`) is how stale the replica's data is:
- 0 when it has replayed the primary's position sampled this round, so an idle primary never
  makes a caught-up replica look lagged (the `now() - pg_last_xact_replay_timestamp()` bug);
- else, from the history of sampled primary positions, how long ago the primary first stood
  beyond the replica's replay position (within one interval of the truth; this also catches
  a replica that stopped receiving WAL, which reports "replayed all it received");
- with the primary unreachable, the replica's own view: 0 when it has replayed all it
  received, else the age of its last replayed transaction.
The byte distance to the primary's position is recorded too.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.lsn import parse_lsn
from app.db.replicas import ReplicaSet, ReplicaState
from app.process.periodic import Periodic

log = structlog.get_logger("app.db.monitor")

_REPLICA_PROBE = text(
    "SELECT pg_is_in_recovery(),"
    " pg_last_wal_replay_lsn()::text,"
    " CASE WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0"
    "      ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)"
    " END::float8"
)
_PRIMARY_POSITION = text("SELECT pg_current_wal_lsn()::text")
HISTORY_HORIZON_S = 900.0  # how far back primary positions are remembered
_HISTORY_MAX = 4096

Sample = tuple[float, int]  # (monotonic time the primary was seen at, its WAL position)


def replica_lag(history: Sequence[Sample], replay_lsn: int, now: float, own_lag_s: float) -> float:
    """Seconds of staleness of a replica that replayed up to `replay_lsn` at `now`.

    `history` holds the primary's sampled positions, oldest first, the newest taken this
    round (empty when the primary did not answer: the replica's `own_lag_s` is used then).
    """
    if not history:
        return own_lag_s
    if replay_lsn >= history[-1][1]:
        return 0.0
    first_ahead = next(seen for seen, position in history if position > replay_lsn)
    behind_for = max(0.0, now - first_ahead)
    if history[0][1] <= replay_lsn:
        return behind_for  # bracketed by two samples: within one interval of the truth
    # Behind every remembered position (a start, or a long outage): the replica's own view
    # bounds the staleness from above.
    return max(behind_for, own_lag_s)


class ReplicaMonitor:
    """Keeps `ReplicaSet` states current, one probe round per interval."""

    def __init__(
        self,
        replicas: ReplicaSet,
        primary_probe: AsyncEngine,
        replica_probes: Sequence[AsyncEngine],
        *,
        interval_s: float,
        max_lag_s: float,
        probe_timeout_s: float = 1.0,
    ) -> None:
        self._replicas = replicas
        self._primary_probe = primary_probe
        names = [state.name for state in replicas.states]
        self._probes = dict(zip(names, replica_probes, strict=True))
        self._max_lag_s = max_lag_s
        self._probe_timeout_s = probe_timeout_s
        self._history: deque[Sample] = deque(maxlen=_HISTORY_MAX)
        self.periodic = Periodic("replica-monitor", interval_s, self.probe_all)
        """Runs `probe_all` every interval; started by the data layer when there are replicas."""

    async def close(self) -> None:
        """Close the probe connections (the periodic run is stopped first by the owner)."""
        engines = [self._primary_probe, *self._probes.values()]
        await asyncio.gather(*(engine.dispose() for engine in engines), return_exceptions=True)

    async def probe_all(self) -> None:
        """Sample the primary's position, then probe every replica once, concurrently."""
        history = await self._sample_primary()
        await asyncio.gather(*(self._probe(state, history) for state in self._replicas.states))

    async def _sample_primary(self) -> list[Sample]:
        """This round's view of the primary's positions; empty when it does not answer."""
        try:
            async with asyncio.timeout(self._probe_timeout_s):
                async with self._primary_probe.connect() as conn:
                    value = (await conn.execute(_PRIMARY_POSITION)).scalar_one()
        except Exception as error:
            log.debug("primary position unavailable", error=type(error).__name__)
            return []
        now = time.monotonic()
        position = parse_lsn(str(value))
        if not self._history or position > self._history[-1][1]:
            self._history.append((now, position))  # a position keeps the time first seen
        while len(self._history) > 1 and now - self._history[0][0] > HISTORY_HORIZON_S:
            self._history.popleft()
        return list(self._history)

    async def _probe(self, state: ReplicaState, history: list[Sample]) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._probe_timeout_s):
                async with self._probes[state.name].connect() as conn:
                    in_recovery, replay, own_lag = (await conn.execute(_REPLICA_PROBE)).one()
        except Exception as error:  # any failure of the probe takes the replica out
            state.checked_at = time.monotonic()
            state.mark(healthy=False, reason=f"probe failed: {type(error).__name__}")
            return
        now = time.monotonic()
        state.checked_at = now
        state.replay_lsn = parse_lsn(replay) if replay else 0
        state.lag_seconds = round(replica_lag(history, state.replay_lsn, now, float(own_lag)), 3)
        if history:
            state.lag_bytes = max(0, history[-1][1] - state.replay_lsn)
        if not in_recovery:
            state.mark(healthy=False, reason="not in recovery (promoted?)")
        elif state.lag_seconds > self._max_lag_s:
            state.mark(healthy=False, reason=f"lag {state.lag_seconds:.1f}s")
        else:
            state.mark(healthy=True, reason=None, observed_at=started)
