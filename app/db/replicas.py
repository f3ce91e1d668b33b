"""The replica set: which replicas may serve reads, and which one serves the next.

This module answers "where is the replica chosen?": `ReplicaSet.choose`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import structlog

from app.db import metrics
from app.db.pool import Pool

log = structlog.get_logger("app.db.replicas")


@dataclass(slots=True)
class ReplicaState:
    """What the monitor last learned about one replica."""

    pool: Pool
    member: str = ""
    """The server behind the pool (`host:port`), as the monitor probes it."""
    healthy: bool = True
    reason: str | None = None
    lag_seconds: float = 0.0
    lag_bytes: int = 0
    replay_lsn: int = 0
    checked_at: float | None = None
    changed_at: float | None = None  # monotonic time of the last change in or out
    slow_until: float = 0.0
    """Monotonic time until which token reads do not ask this replica: it did not replay a
    token within the wait (replay paused or far behind), so asking again would only add a
    round trip and a wait to every such read."""
    changes: int = field(default=0)

    @property
    def name(self) -> str:
        return self.pool.name

    def mark(self, *, healthy: bool, reason: str | None, observed_at: float | None = None) -> None:
        """Record a health verdict, logging and counting only real changes.

        `observed_at` (monotonic) is when the evidence was gathered: a healthy verdict from a
        probe that began before the replica was taken out is stale and ignored, so a read
        failure is not undone by a probe that was already in flight.
        """
        now = time.monotonic()
        if healthy == self.healthy:
            self.reason = reason
            return
        if healthy and _before(observed_at, self.changed_at):
            return
        self.healthy = healthy
        self.reason = reason
        self.changes += 1
        self.changed_at = now
        metrics.REPLICA_STATE_CHANGES.labels(self.name, "in" if healthy else "out").inc()
        if healthy:
            log.info("replica back in rotation", pool=self.name, lag_s=round(self.lag_seconds, 3))
        else:
            log.warning("replica taken out of rotation", pool=self.name, reason=reason)


def _before(observed_at: float | None, changed_at: float | None) -> bool:
    return observed_at is not None and changed_at is not None and observed_at < changed_at


class ReplicaSet:
    """The replicas and their health; chooses the reader for each read."""

    def __init__(self, pools: list[Pool], members: list[str] | None = None) -> None:
        names = members if members is not None else [pool.name for pool in pools]
        self.states = [
            ReplicaState(pool, member) for pool, member in zip(pools, names, strict=True)
        ]
        self._next = 0  # where the scan starts, so ties rotate instead of favouring the first

    def __len__(self) -> int:
        return len(self.states)

    def add(self, state: ReplicaState) -> None:
        """Put a replica in the set (a member that became a standby)."""
        self.states = [*self.states, state]

    def remove(self, member: str) -> ReplicaState | None:
        """Take out the replica of `member` (it became the primary); returns its state."""
        for state in self.states:
            if state.member == member:
                self.states = [other for other in self.states if other is not state]
                return state
        return None

    def of_pool(self, pool: Pool) -> ReplicaState | None:
        """The state of the replica `pool` serves."""
        for state in self.states:
            if state.pool is pool:
                return state
        return None

    def of_member(self, member: str) -> ReplicaState | None:
        """The replica state of `member`, if it is in the set."""
        for state in self.states:
            if state.member == member:
                return state
        return None

    def choose(
        self, min_lsn: int | None = None, exclude: frozenset[str] = frozenset()
    ) -> Pool | None:
        """The healthy replica with the fewest checked-out connections that has replayed
        `min_lsn` (when given); None when no replica qualifies (read from the writer).

        Among equally loaded replicas the choice rotates, so an idle service spreads its
        reads instead of sending them all to the first replica.
        """
        count = len(self.states)
        if count == 0:
            return None
        start = self._next
        self._next = (start + 1) % count
        best: ReplicaState | None = None
        best_load = 0
        for offset in range(count):
            state = self.states[(start + offset) % count]
            if not state.healthy or state.name in exclude:
                continue
            if min_lsn is not None and state.replay_lsn < min_lsn:
                continue
            load = state.pool.checked_out
            if best is None or load < best_load:
                best, best_load = state, load
        return best.pool if best is not None else None

    def report_failure(self, pool: Pool, reason: str) -> None:
        """A read failed on `pool` with a connection error: take it out until the monitor
        sees it recover."""
        for state in self.states:
            if state.pool is pool:
                state.mark(healthy=False, reason=reason)
