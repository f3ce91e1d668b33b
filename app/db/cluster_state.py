"""The cluster state: the one owner of what the process knows about the database cluster.

Roles, the writer, the replicas with their health and positions, the primary's position and
the write block live here, and change only through methods named for what happened: the
monitor's observations (`roles_seen`, `primary_sampled`, `replica_checked`), failures
reported by the session (`replica_failed`), what a token read learned (`replay_seen`,
`replica_slow`), and the topology's decisions (`writer_moved`, `replica_joined`,
`block_writes`). Everyone else reads `snapshot`: an immutable `ClusterSnapshot` (frozen
msgspec structs), rebuilt on each change, so reading it is one attribute access and a reader
never sees half a change (the way psycopg_pool's `get_stats()` or HikariCP's pool MXBean
serve observers).

The commit position is the exception: every write reports one (`commit_seen`), so it is a
plain number beside the snapshot instead of a new snapshot per write.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Literal

import msgspec
import structlog

from app.db import metrics
from app.db.pool import Pool
from app.db.routing import Plans, build_plans

log = structlog.get_logger("app.db.replicas")

Role = Literal["primary", "standby", "unknown"]

_TURNS = 120

_replace = msgspec.structs.replace
"""A copy with some fields changed (C, well under a microsecond: `dataclasses.replace` took
several, and a token read that learns a replay position makes one)."""


class ReplicaView(msgspec.Struct, frozen=True):
    """What is known about one replica at one moment."""

    name: str
    """The pool's name (`replica-<n>`)."""
    member: str
    """The server behind the pool (`host:port`), as the monitor probes it."""
    pool: Pool
    healthy: bool = True
    reason: str | None = None
    lag_seconds: float = 0.0
    lag_bytes: int = 0
    replay_lsn: int = 0
    checked_at: float | None = None
    """Monotonic time of the monitor's last probe of it."""
    changed_at: float | None = None
    """Monotonic time of the last change in or out of rotation."""
    slow_until: float = 0.0
    """Monotonic time until which token reads do not ask this replica: it did not replay a
    token within the wait (replay paused or far behind), so asking again would only add a
    round trip and a wait to every such read."""
    changes: int = 0


class ClusterSnapshot(msgspec.Struct, frozen=True):
    """The cluster as the process knows it, at one moment (never changed: replaced)."""

    topology: str
    """`fixed` or `host list` (`app.db.topology`)."""
    roles: Mapping[str, Role]
    """Every member's role as last seen (`unknown` until it answers)."""
    writer_member: str
    """The member (`host:port`) the writer pool is on."""
    writer: Pool
    write_block: str | None
    """Why writes are refused (two primaries), or None."""
    replicas: tuple[ReplicaView, ...]
    primary_sample: int
    """The primary's WAL position at the monitor's last round that reached it (0 before)."""
    plans: Plans
    """The routing plans of these pools (`app.db.routing`)."""
    positions: Mapping[str, int]
    """Each replica's place in `replicas`, by name."""

    @property
    def pools(self) -> list[Pool]:
        """Every serving pool, writer first."""
        return [self.writer, *(replica.pool for replica in self.replicas)]

    @property
    def discovers_roles(self) -> bool:
        """True with a host list: roles are found by probing, and followed."""
        return self.topology == "host list"

    def replica(self, name: str) -> ReplicaView | None:
        """The replica whose pool is `name`."""
        index = self.positions.get(name)
        return None if index is None else self.replicas[index]

    def replica_of_member(self, member: str) -> ReplicaView | None:
        """The replica on `member`, if it is one."""
        return next((replica for replica in self.replicas if replica.member == member), None)

    def primaries(self) -> list[str]:
        """The members last seen as primary."""
        return [name for name, role in self.roles.items() if role == "primary"]


class ClusterState:
    """Owns the roles, the writer, the replicas, the positions and the write block."""

    def __init__(
        self,
        *,
        topology: str,
        members: Iterable[str],
        writer_member: str,
        writer: Pool,
        replicas: Iterable[tuple[str, Pool]] = (),
    ) -> None:
        views = tuple(ReplicaView(pool.name, member, pool) for member, pool in replicas)
        self.snapshot = ClusterSnapshot(
            topology=topology,
            roles=MappingProxyType(dict.fromkeys(members, "unknown")),
            writer_member=writer_member,
            writer=writer,
            write_block=None,
            replicas=views,
            primary_sample=0,
            plans=build_plans(writer, None, [view.pool for view in views]),
            positions=_positions(views),
        )
        self.turns = itertools.cycle(range(_TURNS))
        """Where each read's scan of the replicas starts (`app.db.routing.route`): small
        integers (cached by CPython: no allocation per read), a multiple of every replica
        count up to 6 so ties rotate evenly."""
        self._commit_high = 0

    @property
    def primary_position(self) -> int:
        """The highest WAL position this process knows the primary reached: the monitor's
        last sample, or a later commit of this process."""
        return max(self.snapshot.primary_sample, self._commit_high)

    # -- the monitor's observations ---------------------------------------------------------

    def roles_seen(self, roles: Mapping[str, Role]) -> None:
        """This round's role of every member that was probed."""
        merged = {**self.snapshot.roles, **roles}
        if merged != self.snapshot.roles:
            self.snapshot = _replace(self.snapshot, roles=MappingProxyType(merged))
        metrics.CLUSTER_PRIMARIES.set(sum(1 for role in roles.values() if role == "primary"))

    def primary_sampled(self, position: int) -> None:
        """The monitor read the primary's WAL position."""
        if position != self.snapshot.primary_sample:
            self.snapshot = _replace(self.snapshot, primary_sample=position)

    def replica_checked(
        self,
        name: str,
        *,
        healthy: bool,
        reason: str | None,
        observed_at: float | None = None,
        replay_lsn: int | None = None,
        lag_seconds: float | None = None,
        lag_bytes: int | None = None,
    ) -> None:
        """The monitor's verdict on a replica, with what it measured.

        `observed_at` (monotonic) is when the evidence was gathered: a healthy verdict from a
        probe that began before the replica was taken out is stale and ignored, so a read
        failure is not undone by a probe that was already in flight."""
        view = self.snapshot.replica(name)
        if view is None:
            return
        view = _replace(
            view,
            checked_at=time.monotonic(),
            replay_lsn=view.replay_lsn if replay_lsn is None else replay_lsn,
            lag_seconds=view.lag_seconds if lag_seconds is None else lag_seconds,
            lag_bytes=view.lag_bytes if lag_bytes is None else lag_bytes,
        )
        self._put(_verdict(view, healthy=healthy, reason=reason, observed_at=observed_at))

    # -- failures and what token reads learned (reported by the session) --------------------

    def replica_failed(self, name: str, reason: str) -> None:
        """A read failed on the replica with a connection error: out until the monitor sees
        it recover."""
        view = self.snapshot.replica(name)
        if view is not None:
            self._put(_verdict(view, healthy=False, reason=reason, observed_at=None))

    def replay_seen(self, name: str, position: int) -> None:
        """A token read saw the replica's replay position: later reads with older tokens are
        routed there without asking."""
        view = self.snapshot.replica(name)
        if view is not None and position > view.replay_lsn:
            self._put(_replace(view, replay_lsn=position))

    def replica_slow(self, name: str, for_s: float) -> None:
        """The replica did not replay a token within the wait: token reads do not ask it for
        `for_s`."""
        view = self.snapshot.replica(name)
        if view is not None:
            self._put(_replace(view, slow_until=time.monotonic() + for_s))

    def commit_seen(self, position: int) -> None:
        """A write of this process committed at `position`."""
        self._commit_high = max(self._commit_high, position)

    # -- the topology's decisions (app.db.topology) -----------------------------------------

    def block_writes(self, primaries: list[str]) -> None:
        """Two members claim to be primary: no write goes to either."""
        reason = f"two members claim to be primary: {', '.join(primaries)}; writes wait"
        if self.snapshot.write_block != reason:
            log.error("split brain: no write goes to either primary", members=primaries)
            self._rebuild(write_block=reason)

    def unblock_writes(self) -> None:
        """One primary again."""
        if self.snapshot.write_block is not None:
            log.warning("one primary again: writes resume", member=self.snapshot.writer_member)
            self._rebuild(write_block=None)

    def writer_moved(self, member: str, pool: Pool) -> Pool | None:
        """The writer is now `pool` on `member` (the member leaves the readers if it was
        one); returns the replica pool it had, for the caller to close."""
        removed = self.snapshot.replica_of_member(member)
        replicas = tuple(view for view in self.snapshot.replicas if view is not removed)
        self._rebuild(writer_member=member, writer=pool, replicas=replicas)
        return removed.pool if removed is not None else None

    def replica_joined(self, member: str, pool: Pool) -> None:
        """A member became a standby: a reader, in rotation once the monitor measured its lag."""
        view = ReplicaView(pool.name, member, pool, healthy=False, reason="joining")
        self._rebuild(replicas=(*self.snapshot.replicas, view))

    # -- building snapshots -----------------------------------------------------------------

    def _put(self, view: ReplicaView) -> None:
        """Replace the replica's view (its pool is unchanged: the plans stay)."""
        snapshot = self.snapshot
        replicas = list(snapshot.replicas)
        replicas[snapshot.positions[view.name]] = view
        self.snapshot = _replace(snapshot, replicas=tuple(replicas))

    def _rebuild(
        self,
        *,
        writer_member: str | None = None,
        writer: Pool | None = None,
        write_block: str | Literal[False] | None = False,
        replicas: tuple[ReplicaView, ...] | None = None,
    ) -> None:
        """A new snapshot with new pools or write block, and the plans to match."""
        now = self.snapshot
        writer = writer if writer is not None else now.writer
        block = now.write_block if write_block is False else write_block
        replicas = replicas if replicas is not None else now.replicas
        self.snapshot = _replace(
            now,
            writer_member=writer_member if writer_member is not None else now.writer_member,
            writer=writer,
            write_block=block,
            replicas=replicas,
            plans=build_plans(writer, block, [view.pool for view in replicas]),
            positions=_positions(replicas),
        )


def _verdict(
    view: ReplicaView, *, healthy: bool, reason: str | None, observed_at: float | None
) -> ReplicaView:
    """`view` with a health verdict, logging and counting only real changes."""
    if healthy == view.healthy:
        return view if reason == view.reason else _replace(view, reason=reason)
    if healthy and _before(observed_at, view.changed_at):
        return view
    changed = _replace(
        view, healthy=healthy, reason=reason, changes=view.changes + 1, changed_at=time.monotonic()
    )
    metrics.REPLICA_STATE_CHANGES.labels(view.name, "in" if healthy else "out").inc()
    if healthy:
        log.info("replica back in rotation", pool=view.name, lag_s=round(view.lag_seconds, 3))
    else:
        log.warning("replica taken out of rotation", pool=view.name, reason=reason)
    return changed


def _positions(replicas: tuple[ReplicaView, ...]) -> Mapping[str, int]:
    return MappingProxyType({replica.name: index for index, replica in enumerate(replicas)})


def _before(observed_at: float | None, changed_at: float | None) -> bool:
    return observed_at is not None and changed_at is not None and observed_at < changed_at
