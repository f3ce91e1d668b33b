"""The data layer's lifecycle component: the cluster's pools, state and background loops.

`Database` puts the parts together and runs them; each job is elsewhere:
- what is known about the cluster: `app.db.cluster_state` (read as `state.snapshot`);
- how the cluster is named and what a round of roles asks for: `app.db.topology`;
- which member serves an operation: `app.db.routing` (executed by `app.db.session`);
- the pools and probe engines: `app.db.pool_factory`; warming them: `app.db.warmup`;
- the observations: `app.db.monitor`.

It is one component of the process's life (`app.process.lifecycle`): `start` opens and warms
the pools and starts the loops that keep its own data current (the cluster monitor, the idle
reaper, the gauge publisher, each on a `Periodic` runner); `stop` stops the loops and closes
the pools. With a host list it applies what the topology decides from each round of roles:
the writer pool follows the primary, standbys join the readers, writes wait while two members
claim the primary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import structlog

from app.config import Settings
from app.db import metrics
from app.db.cluster_state import ClusterSnapshot, ClusterState, Role
from app.db.connection import Scalar
from app.db.errors import DatabaseUnavailableError
from app.db.idle import IdleReaper
from app.db.monitor import ClusterMonitor, MemberProbe
from app.db.pool import Pool
from app.db.pool_factory import PROBE_TIMEOUT_S, WRITER, PoolFactory
from app.db.topology import topology_of
from app.db.warmup import warm, warm_all, warn_if_oversubscribed
from app.process.lifecycle import StartupAborted
from app.process.periodic import Periodic

log = structlog.get_logger("app.db")

# The insert position, not the written one: a token the service made (the event hub's
# horizon is an insert position) may be past what the WAL writer wrote out yet (an
# asynchronous commit, such as a NOTIFY's), and must not be refused as ahead of the primary.
_PRIMARY_POSITION: Scalar[int] = Scalar("SELECT pg_current_wal_insert_lsn()", int)
WAIT_FOR_PRIMARY_RETRY_S = 0.5

__all__ = ["PROBE_TIMEOUT_S", "WRITER", "Database"]


class Database:
    """Writer pool, replica pools and their background loops, created from `Settings`."""

    name = "database"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topology = topology_of(settings)
        urls = dict(self.topology.urls)
        self._pools = PoolFactory(settings, urls)
        names = list(urls)
        self.state = ClusterState(
            topology=self.topology.name,
            members=names,
            writer_member=names[0],
            writer=self._pools.pool(WRITER, names[0]),
            replicas=[
                (member, self._pools.pool(self.topology.replica_pool_name(member), member))
                for member in self.topology.initial_replicas
            ],
        )
        """The one owner of what is known about the cluster; read `state.snapshot`."""
        self.monitor = ClusterMonitor(
            self.state,
            self.observe,
            {
                name: self._pools.probe_engine(name, self.topology.probe_label(name))
                for name in names
            },
            interval_s=settings.monitor.interval_s,
            max_lag_s=settings.monitor.max_lag_s,
            probe_timeout_s=PROBE_TIMEOUT_S,
        )
        self.idle_reaper = IdleReaper(
            lambda: [(pool.name, pool.queue_pool, pool.settings.min_size) for pool in self.pools],
            idle_timeout_s=settings.writer_pool.idle_timeout_s,
        )
        self._gauges = Periodic("gauge-publisher", settings.monitor.interval_s, self._publish)
        self._loops: list[Periodic] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._started = False
        self._refreshing: asyncio.Task[int] | None = None

    @property
    def snapshot(self) -> ClusterSnapshot:
        """The cluster as known now (`app.db.cluster_state`)."""
        return self.state.snapshot

    @property
    def writer(self) -> Pool:
        """The writer pool as it is now (a failover replaces it)."""
        return self.state.snapshot.writer

    @property
    def pools(self) -> list[Pool]:
        """Every serving pool, writer first."""
        return self.state.snapshot.pools

    async def refresh_primary_position(self) -> int:
        """Ask the primary for its position now; concurrent callers share one query."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._query_primary_position())
        return await asyncio.shield(self._refreshing)

    async def _query_primary_position(self) -> int:
        async with self.writer.acquire() as conn:
            position = await conn.fetch_scalar(_PRIMARY_POSITION)
        self.state.commit_seen(position)
        return position

    def writer_failed(self) -> None:
        """A write found the writer unreachable or read-only: ask the monitor for news now."""
        self.monitor.periodic.wake()

    # -- the component's start and stop -----------------------------------------------------

    async def start(self) -> None:
        """Warm the pools and start the loops, or log one clear line and abort the start when
        no primary answers (within `DB_WAIT_FOR_PRIMARY_S`)."""
        wait_s = self.settings.database.wait_for_primary_s
        if wait_s:
            log.info("waiting for the primary if needed", up_to_s=wait_s)
        started = time.monotonic()
        try:
            await self._find_and_warm_writer(deadline=started + wait_s)
        except Exception as error:
            waited_s = round(time.monotonic() - started, 1)
            await self.stop()
            log.error(
                "the primary is unreachable; not starting",
                target=self.topology.start_target(self.snapshot.writer_member),
                error=type(error).__name__,
                reason=str(error) if isinstance(error, DatabaseUnavailableError) else None,
                waited_s=waited_s,
                hint="check DATABASE_URL, or set DB_WAIT_FOR_PRIMARY_S to wait for it",
            )
            raise StartupAborted("the primary is unreachable") from None
        await self._warm_replicas()
        await self.monitor.probe_all()
        await warn_if_oversubscribed(
            self.writer,
            workers=self.settings.server.workers,
            monitor_connections=1 if len(self.monitor.members) > 1 else 0,
        )
        self._start_loops()
        self._started = True

    async def stop(self) -> None:
        """Stop the loops and close every pool concurrently (the caller bounds the time)."""
        for loop in reversed(self._loops):
            await loop.stop()
        self._loops.clear()
        await self.monitor.close()
        log.info("cluster monitor stopped")
        await asyncio.gather(*(pool.dispose() for pool in self.pools), *self._closing)
        self.publish_metrics()  # the disposed pools' zero counts
        log.info("pools disposed", pools=[pool.name for pool in self.pools])

    def _start_loops(self) -> None:
        loops = [self._gauges]
        if len(self.monitor.members) > 1:
            loops.append(self.monitor.periodic)
        if self.idle_reaper.enabled:
            loops.append(self.idle_reaper.periodic)
        self.publish_metrics()
        for loop in loops:
            loop.start()
        self._loops = loops

    async def _find_and_warm_writer(self, deadline: float) -> None:
        while True:
            try:
                if self.topology.finds_roles:
                    self.observe(await self.monitor.probe_members())
                    self.check_writable()
                    snapshot = self.snapshot
                    if snapshot.roles[snapshot.writer_member] != "primary":
                        raise DatabaseUnavailableError("no member is a primary yet")
                await warm(self.writer)
                return
            except Exception:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(WAIT_FOR_PRIMARY_RETRY_S)

    async def _warm_replicas(self) -> None:
        """A replica that is down is logged and taken out; it does not stop the start."""
        replicas = self.snapshot.replicas
        failures = await warm_all([replica.pool for replica in replicas])
        for replica, failure in zip(replicas, failures, strict=True):
            if failure is not None:
                reason = f"down at start: {type(failure).__name__}"
                self.state.replica_checked(replica.name, healthy=False, reason=reason)

    def check_writable(self) -> None:
        """Raise `DatabaseUnavailableError` (503) while writes are refused (two primaries)."""
        block = self.snapshot.write_block
        if block is not None:
            raise DatabaseUnavailableError(block, retry_after_s=1)

    # -- roles (the monitor calls `observe` every round) ------------------------------------

    def observe(self, probes: Mapping[str, MemberProbe]) -> None:
        """Record each member's role, and apply what the topology makes of them."""
        roles: dict[str, Role] = {
            name: ("standby" if probe.in_recovery else "primary") if probe.answered else "unknown"
            for name, probe in probes.items()
        }
        self.state.roles_seen(roles)
        snapshot = self.snapshot
        primaries = [name for name, probe in probes.items() if probe.is_primary]
        standbys_not_reading = [
            name
            for name, role in snapshot.roles.items()
            if role == "standby" and snapshot.replica_of_member(name) is None
        ]
        following = self.topology.follow(primaries, snapshot.writer_member, standbys_not_reading)
        if following.block:
            self.state.block_writes(following.block)
            return
        self.state.unblock_writes()  # a no-op unless writes were blocked (a host list only)
        if following.writer is not None:
            self._move_writer(following.writer)
        for member in following.joiners:
            self._add_replica(member)

    def _move_writer(self, member: str) -> None:
        """Put the writer pool on `member`; close the old one (never reused for a write)."""
        previous, old_pool = self.snapshot.writer_member, self.writer
        removed = self.state.writer_moved(member, self._pools.pool(WRITER, member))
        if removed is not None:
            self._close_later(removed)
        self._close_later(old_pool)
        if not self._started:
            log.info("primary found", member=member)
            return
        metrics.PRIMARY_CHANGES.inc()
        log.warning("primary changed", from_member=previous, to_member=member)

    def _add_replica(self, member: str) -> None:
        pool = self._pools.pool(self.topology.replica_pool_name(member), member)
        self.state.replica_joined(member, pool)
        log.info("member joins the readers", member=member, pool=pool.name)

    def _close_later(self, pool: Pool) -> None:
        task = asyncio.get_running_loop().create_task(pool.dispose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- gauges -----------------------------------------------------------------------------

    def publish_metrics(self) -> None:
        """Write the current pool, replica and member state into the gauges (also at every
        scrape). Set here, not on every checkout (the hot path); in multiprocess mode a
        scrape is answered from what every worker last wrote, at most one interval old."""
        metrics.publish_cluster(self.snapshot)

    async def _publish(self) -> None:
        self.publish_metrics()
