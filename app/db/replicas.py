"""The replica set: which replicas may serve reads, and which one serves the next.

This module answers "where is the replica chosen?": `ReplicaSet.choose`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from app.db import metrics
from app.db.pool import Pool

log = structlog.get_logger("app.db.replicas")


@dataclass(slots=True)
class ReplicaState:
    """What the monitor last learned about one replica."""

    pool: Pool
    healthy: bool = True
    reason: str | None = None
    lag_seconds: float = 0.0
    lag_bytes: int = 0
    replay_lsn: int = 0
    checked_at: float | None = None
    changes: int = field(default=0)

    @property
    def name(self) -> str:
        return self.pool.name

    def mark(self, *, healthy: bool, reason: str | None) -> None:
        """Record a health verdict, logging and counting only real changes."""
        if healthy == self.healthy:
            self.reason = reason
            return
        self.healthy = healthy
        self.reason = reason
        self.changes += 1
        state = "in" if healthy else "out"
        metrics.REPLICA_STATE_CHANGES.labels(self.name, state).inc()
        if healthy:
            log.info("replica back in rotation", pool=self.name)
        else:
            log.warning("replica taken out of rotation", pool=self.name, reason=reason)


class ReplicaSet:
    """The replicas and their health; chooses the reader for each read."""

    def __init__(self, pools: list[Pool]) -> None:
        self.states = [ReplicaState(pool) for pool in pools]

    def __len__(self) -> int:
        return len(self.states)

    def choose(
        self, min_lsn: int | None = None, exclude: frozenset[str] = frozenset()
    ) -> Pool | None:
        """The healthy replica with the fewest checked-out connections that has replayed
        `min_lsn` (when given); None when no replica qualifies (read from the writer)."""
        best: ReplicaState | None = None
        best_load = 0
        for state in self.states:
            if not state.healthy or state.name in exclude:
                continue
            if min_lsn is not None and state.replay_lsn < min_lsn:
                continue
            load = state.pool.checked_out
            if best is None or load < best_load:
                best, best_load = state, load
        return best.pool if best is not None else None

    def report_failure(self, pool: Pool, reason: str) -> None:
        """A read failed on `pool` with a connection error: take it out until it recovers."""
        for state in self.states:
            if state.pool is pool:
                state.mark(healthy=False, reason=reason)
