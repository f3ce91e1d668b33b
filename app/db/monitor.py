"""The cluster monitor: probes every member's role, position and lag on an interval.

Each round probes every member concurrently, each over a dedicated one-connection engine (so
a busy pool never makes a server look dead, and probes never queue behind reads). It reports
the answers to the cluster state (`app.db.cluster_state`) and hands them to the data layer's
`observe` (with a host list it follows a failover from them), samples the primary's WAL
position, and reports each replica's verdict and lag. A replica is out of rotation when its
probe fails, when it is not in recovery (promoted), or when its lag exceeds
`DB_REPLICA_MAX_LAG_S`.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.cluster_state import ClusterState, ReplicaView
from app.db.lsn import parse_lsn
from app.process.periodic import Periodic

log = structlog.get_logger("app.db.monitor")

# One round trip per member: its role, its WAL position (written on a primary, replayed on a
# standby) and, on a standby, its own view of its staleness.
_MEMBER_PROBE = text(
    "SELECT pg_is_in_recovery(),"
    " (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
    "       ELSE pg_current_wal_lsn() END)::text,"
    " CASE WHEN NOT pg_is_in_recovery() THEN 0"
    "      WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0"
    "      ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)"
    " END::float8"
)
HISTORY_HORIZON_S = 900.0  # how far back primary positions are remembered
_HISTORY_MAX = 4096

Sample = tuple[float, int]  # (monotonic time the primary was seen at, its WAL position)


@dataclass(frozen=True, slots=True)
class MemberProbe:
    """What one member answered this round, or that it did not answer."""

    member: str
    """`host:port`."""
    started_at: float
    """Monotonic time the probe began (evidence older than a change is ignored)."""
    answered: bool
    """False when the probe failed or timed out."""
    in_recovery: bool = False
    """True on a standby."""
    position: int = 0
    """Its WAL position: written (primary) or replayed (standby)."""
    own_lag_s: float = 0.0
    """A standby's own view of its staleness."""
    failure: str | None = None
    """Why it did not answer (the exception's type only)."""

    @property
    def is_primary(self) -> bool:
        """Answered, and not in recovery."""
        return self.answered and not self.in_recovery


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


class ClusterMonitor:
    """Keeps the cluster state current, one probe round per interval."""

    def __init__(
        self,
        state: ClusterState,
        observe: Callable[[Mapping[str, MemberProbe]], None],
        probes: Mapping[str, AsyncEngine],
        *,
        interval_s: float,
        max_lag_s: float,
        probe_timeout_s: float = 1.0,
    ) -> None:
        self._state = state
        self._observe = observe
        self._probes = dict(probes)
        self._max_lag_s = max_lag_s
        self._probe_timeout_s = probe_timeout_s
        self._history: deque[Sample] = deque(maxlen=_HISTORY_MAX)
        self.periodic = Periodic("cluster-monitor", interval_s, self.probe_all)
        """Runs `probe_all` every interval; started by the data layer."""

    @property
    def members(self) -> list[str]:
        """Every member probed, in the order they were named."""
        return list(self._probes)

    async def probe_members(self) -> dict[str, MemberProbe]:
        """Probe every member once, concurrently."""
        answers = await asyncio.gather(*(self._probe(name) for name in self._probes))
        return {probe.member: probe for probe in answers}

    async def probe_all(self) -> None:
        """One round: probe, let the roles follow, sample the primary, judge the replicas."""
        probes = await self.probe_members()
        self._observe(probes)
        writer = self._state.snapshot.writer_member
        history = self._sample_primary(probes.get(writer))
        if history and any(
            p.in_recovery and p.position > history[-1][1] for p in probes.values() if p.answered
        ):
            # Probed at once, a standby may have replayed past the primary's sample of this
            # round; the primary's position now settles it (see `_judge`).
            history = self._sample_primary(await self._probe(writer))
        if history:
            self._state.primary_sampled(history[-1][1])
        for replica in self._state.snapshot.replicas:
            probe = probes.get(replica.member)
            if probe is not None:
                self._judge(replica, probe, history)

    async def close(self) -> None:
        """Close the probe connections (the periodic run is stopped first by the owner)."""
        engines = self._probes.values()
        await asyncio.gather(*(engine.dispose() for engine in engines), return_exceptions=True)

    async def _probe(self, member: str) -> MemberProbe:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._probe_timeout_s):
                async with self._probes[member].connect() as conn:
                    in_recovery, position, own_lag = (await conn.execute(_MEMBER_PROBE)).one()
        except Exception as error:  # any failure of the probe counts as no answer
            return MemberProbe(member, started, answered=False, failure=type(error).__name__)
        return MemberProbe(
            member,
            started,
            answered=True,
            in_recovery=bool(in_recovery),
            position=parse_lsn(position) if position else 0,
            own_lag_s=float(own_lag),
        )

    def _sample_primary(self, probe: MemberProbe | None) -> list[Sample]:
        """This round's view of the primary's positions; empty when it did not answer."""
        if probe is None or not probe.is_primary:
            log.debug("primary position unavailable")
            return []
        now = time.monotonic()
        if not self._history or probe.position > self._history[-1][1]:
            self._history.append((now, probe.position))  # a position keeps the time first seen
        while len(self._history) > 1 and now - self._history[0][0] > HISTORY_HORIZON_S:
            self._history.popleft()
        return list(self._history)

    def _judge(self, replica: ReplicaView, probe: MemberProbe, history: list[Sample]) -> None:
        """Report the replica's verdict and lag to the cluster state."""
        if not probe.answered:
            self._state.replica_checked(
                replica.name, healthy=False, reason=f"probe failed: {probe.failure}"
            )
            return
        lag_s = round(replica_lag(history, probe.position, time.monotonic(), probe.own_lag_s), 3)
        lag_bytes = max(0, history[-1][1] - probe.position) if history else None
        if not probe.in_recovery:
            healthy, reason = False, "not in recovery (promoted?)"
        elif history and probe.position > history[-1][1]:
            # Replayed past where the primary is now: not on the primary's timeline (an old
            # primary started as a standby before its rewind). It would pass every token.
            healthy, reason = False, "ahead of the primary (another timeline)"
        elif lag_s > self._max_lag_s:
            healthy, reason = False, f"lag {lag_s:.1f}s"
        else:
            healthy, reason = True, None
        self._state.replica_checked(
            replica.name,
            healthy=healthy,
            reason=reason,
            observed_at=probe.started_at,
            replay_lsn=probe.position,
            lag_seconds=lag_s,
            lag_bytes=lag_bytes,
        )
