"""The data layer's root object: the writer pool, the replica set, and their background loops.

It is one component of the process's life (`app.process.lifecycle`): `start` opens and warms
the pools and starts the loops that keep its own data current (the cluster monitor, the idle
reaper, the gauge publisher, each on a `Periodic` runner); `stop` stops the loops and closes
the pools.

Two topologies (docs/architecture.md, "Naming the cluster"):
- fixed: `DATABASE_URL` is the primary and `DATABASE_REPLICA_URLS` the replicas;
- a host list: `DATABASE_URL` names every member and each round of the monitor finds their
  roles. The writer pool follows the one primary (a new pool on the new primary; the old one
  is closed, so no connection to a demoted or dead server is reused for a write), standbys
  join the readers, and while two members claim to be primary no write goes to either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import metrics
from app.db.connection import Scalar
from app.db.engine import create_pool_engine
from app.db.errors import DatabaseUnavailableError
from app.db.idle import IdleReaper
from app.db.monitor import ClusterMonitor, MemberProbe
from app.db.pool import Pool
from app.db.replicas import ReplicaSet, ReplicaState
from app.dsn import parse_host_list
from app.process.lifecycle import StartupAborted
from app.process.periodic import Periodic

log = structlog.get_logger("app.db")

_SERVER_VERSION: Scalar[str] = Scalar("SELECT current_setting('server_version')", str)
_DATABASE_NAME: Scalar[str] = Scalar("SELECT current_database()", str)
_MAX_CONNECTIONS: Scalar[int] = Scalar("SELECT current_setting('max_connections')::int", int)
_PRIMARY_POSITION: Scalar[int] = Scalar("SELECT pg_current_wal_lsn()", int)
PROBE_TIMEOUT_S = 1.0  # each monitor probe, connecting included
WAIT_FOR_PRIMARY_RETRY_S = 0.5
WRITER = "primary"  # the writer pool's name, whichever member it is on

Role = Literal["primary", "standby", "unknown"]


class Database:
    """Writer pool, replica pools and their background loops, created from `Settings`."""

    name = "database"

    def __init__(self, settings: Settings) -> None:
        url = settings.database.url
        if url is None:
            raise ValueError("DATABASE_URL is not set")
        self.settings = settings
        self.discovers_roles = bool(settings.database.members)
        """True with a host list: roles are found by probing, and followed."""
        if self.discovers_roles:
            self._urls = {member.name: member.url for member in settings.database.members}
        else:
            self._urls = {_member_name(url, 0): url}
            for index, replica_url in enumerate(settings.database.replica_urls, start=1):
                name = _member_name(replica_url, index)
                self._urls[name if name not in self._urls else f"{name}#{index}"] = replica_url
        names = list(self._urls)
        self.roles: dict[str, Role] = dict.fromkeys(names, "unknown")
        """Every member's role as last seen (`unknown` until it answers)."""
        self._writer_member = names[0]
        self.write_block: str | None = None
        """Why writes are refused (two primaries), or None."""
        self.writer = self._pool(WRITER, names[0])
        self.replicas = ReplicaSet([])
        if not self.discovers_roles:
            for name in names[1:]:
                self.replicas.add(
                    ReplicaState(self._pool(self._replica_pool_name(name), name), name)
                )
        self.monitor = ClusterMonitor(
            self,
            {name: self._probe_engine(name) for name in names},
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
        self._commit_high = 0  # the highest commit position this process saw
        self._refreshing: asyncio.Task[int] | None = None

    # -- pools ------------------------------------------------------------------------------

    def _pool(self, name: str, member: str) -> Pool:
        settings = self.settings
        pool = settings.writer_pool if name == WRITER else settings.replica_pool
        engine = create_pool_engine(
            name=name,
            url=self._urls[member],
            pool=pool,
            sslmode=settings.database.sslmode,
            pgbouncer=settings.database.pgbouncer,
        )
        return Pool(name, engine, pool)

    def _replica_pool_name(self, member: str) -> str:
        """`replica-<n>`, n counting the replicas as the configuration names them."""
        index = list(self._urls).index(member)
        return f"replica-{index - 1 if not self.discovers_roles else index}"

    def _probe_engine(self, member: str) -> AsyncEngine:
        """A one-connection engine for the monitor, apart from the serving pools: a
        saturated pool must not fail a health probe, nor a probe wait behind requests.
        Named `<pool>-monitor` in `pg_stat_activity`; opened on first use."""
        settings = self.settings
        probe_pool = replace(
            settings.writer_pool,
            min_size=0,
            max_size=1,
            timeout_s=PROBE_TIMEOUT_S,
            connect_timeout_s=min(settings.writer_pool.connect_timeout_s, PROBE_TIMEOUT_S),
            statement_timeout_s=PROBE_TIMEOUT_S,
        )
        index = list(self._urls).index(member)
        label = "primary" if index == 0 and not self.discovers_roles else f"member-{index}"
        return create_pool_engine(
            name=f"{label}-monitor",
            url=self._urls[member],
            pool=probe_pool,
            sslmode=settings.database.sslmode,
            pgbouncer=settings.database.pgbouncer,
        )

    @property
    def pools(self) -> list[Pool]:
        """Every pool, writer first."""
        return [self.writer, *(state.pool for state in self.replicas.states)]

    @property
    def writer_member(self) -> str:
        """The member (`host:port`) the writer pool is on."""
        return self._writer_member

    def check_writable(self) -> None:
        """Raise `DatabaseUnavailableError` (503) while writes are refused (two primaries)."""
        if self.write_block is not None:
            raise DatabaseUnavailableError(self.write_block, retry_after_s=1)

    @property
    def primary_position(self) -> int:
        """The highest WAL position this process knows the primary reached: the monitor's
        last sample, or a later commit of this process. A consistency token above it may
        still be genuine (another instance wrote since): see `refresh_primary_position`."""
        return max(self.monitor.primary_position, self._commit_high)

    def note_commit(self, position: int) -> None:
        """A write of this process committed at `position`."""
        self._commit_high = max(self._commit_high, position)

    async def refresh_primary_position(self) -> int:
        """Ask the primary for its position now; concurrent callers share one query."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._query_primary_position())
        return await asyncio.shield(self._refreshing)

    async def _query_primary_position(self) -> int:
        async with self.writer.acquire() as conn:
            position = await conn.fetch_scalar(_PRIMARY_POSITION)
        self.note_commit(position)
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
                target=", ".join(self._urls) if self.discovers_roles else self._writer_member,
                error=type(error).__name__,
                reason=str(error) if isinstance(error, DatabaseUnavailableError) else None,
                waited_s=waited_s,
                hint="check DATABASE_URL, or set DB_WAIT_FOR_PRIMARY_S to wait for it",
            )
            raise StartupAborted("the primary is unreachable") from None
        await self._warm_replicas()
        await self.monitor.probe_all()
        await self._warn_if_oversubscribed()
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
        self._publish_now()  # the disposed pools' zero counts
        log.info("pools disposed", pools=[pool.name for pool in self.pools])

    def _start_loops(self) -> None:
        loops = [self._gauges]
        if len(self.monitor.members) > 1:
            loops.append(self.monitor.periodic)
        if self.idle_reaper.enabled:
            loops.append(self.idle_reaper.periodic)
        self._publish_now()
        for loop in loops:
            loop.start()
        self._loops = loops

    # -- warm-up ----------------------------------------------------------------------------

    async def _find_and_warm_writer(self, deadline: float) -> None:
        while True:
            try:
                if self.discovers_roles:
                    self.observe(await self.monitor.probe_members())
                    self.check_writable()
                    if self.roles[self._writer_member] != "primary":
                        raise DatabaseUnavailableError("no member is a primary yet")
                await self._warm(self.writer)
                return
            except Exception:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(WAIT_FOR_PRIMARY_RETRY_S)

    async def _warm_replicas(self) -> None:
        """A replica that is down is logged and taken out; it does not stop the start."""
        states = self.replicas.states
        results = await asyncio.gather(
            *(self._warm(state.pool) for state in states), return_exceptions=True
        )
        for state, result in zip(states, results, strict=True):
            if isinstance(result, BaseException):
                state.mark(healthy=False, reason=f"down at start: {type(result).__name__}")

    async def _warm(self, pool: Pool) -> None:
        """Open the pool's minimum at once and log what the server is."""
        await pool.open_minimum()
        async with pool.acquire() as conn:
            version = await conn.fetch_scalar(_SERVER_VERSION)
            database = await conn.fetch_scalar(_DATABASE_NAME)
        log.info(
            "pool ready",
            pool=pool.name,
            server_version=version,
            database=database,
            connections=pool.snapshot().total,
            min_size=pool.settings.min_size,
            max_size=pool.settings.max_size,
        )

    async def _warn_if_oversubscribed(self) -> None:
        async with self.writer.acquire() as conn:
            limit = await conn.fetch_scalar(_MAX_CONNECTIONS)
        workers = self.settings.server.workers
        monitor = 1 if len(self.monitor.members) > 1 else 0  # the monitor's own connection
        wanted = (self.writer.settings.max_size + monitor) * workers
        if wanted > limit:
            log.warning(
                "pool maxima exceed the server's max_connections",
                pool=WRITER,
                pool_max_total=wanted,
                max_connections=limit,
            )

    # -- roles (the monitor calls `observe` every round) ------------------------------------

    def observe(self, probes: Mapping[str, MemberProbe]) -> None:
        """Record each member's role; with a host list, follow the primary."""
        for name, probe in probes.items():
            if probe.answered:
                self.roles[name] = "standby" if probe.in_recovery else "primary"
            else:
                self.roles[name] = "unknown"
        primaries = [name for name, probe in probes.items() if probe.is_primary]
        metrics.CLUSTER_PRIMARIES.set(len(primaries))
        if not self.discovers_roles:
            return
        if len(primaries) > 1:
            self._block_writes(primaries)
            return
        self._unblock_writes()
        if len(primaries) == 1 and primaries[0] != self._writer_member:
            self._move_writer(primaries[0])
        for name, role in self.roles.items():
            if role == "standby" and self.replicas.of_member(name) is None:
                self._add_replica(name)

    def _block_writes(self, primaries: list[str]) -> None:
        reason = f"two members claim to be primary: {', '.join(primaries)}; writes wait"
        if self.write_block != reason:
            log.error("split brain: no write goes to either primary", members=primaries)
        self.write_block = reason

    def _unblock_writes(self) -> None:
        if self.write_block is not None:
            log.warning("one primary again: writes resume", member=self._writer_member)
        self.write_block = None

    def _move_writer(self, member: str) -> None:
        """Put the writer pool on `member`; close the old one (never reused for a write)."""
        previous, old_pool = self._writer_member, self.writer
        removed = self.replicas.remove(member)
        if removed is not None:
            self._close_later(removed.pool)
        self.writer = self._pool(WRITER, member)
        self._writer_member = member
        self._close_later(old_pool)
        if not self._started:
            log.info("primary found", member=member)
            return
        metrics.PRIMARY_CHANGES.inc()
        log.warning("primary changed", from_member=previous, to_member=member)

    def _add_replica(self, member: str) -> None:
        state = ReplicaState(self._pool(self._replica_pool_name(member), member), member)
        state.healthy = False  # in rotation once the monitor has measured its lag
        state.reason = "joining"
        self.replicas.add(state)
        log.info("member joins the readers", member=member, pool=state.pool.name)

    def _close_later(self, pool: Pool) -> None:
        task = asyncio.get_running_loop().create_task(pool.dispose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- gauges -----------------------------------------------------------------------------

    def publish_metrics(self) -> None:
        """Write the current pool, replica and member state into the gauges (also at every
        scrape). Set here, not on every checkout (the hot path); in multiprocess mode a
        scrape is answered from what every worker last wrote, at most one interval old."""
        self._publish_now()

    async def _publish(self) -> None:
        self._publish_now()

    def _publish_now(self) -> None:
        for pool in self.pools:
            pool.publish_metrics()
        for state in self.replicas.states:
            metrics.REPLICA_HEALTHY.labels(state.name).set(1 if state.healthy else 0)
            metrics.REPLICA_LAG.labels(state.name).set(state.lag_seconds)
            metrics.REPLICA_LAG_BYTES.labels(state.name).set(state.lag_bytes)
        for member, role in self.roles.items():
            for each in ("primary", "standby", "unknown"):
                metrics.MEMBER_ROLE.labels(member, each).set(1 if role == each else 0)
        metrics.WRITES_BLOCKED.set(1 if self.write_block else 0)


def _member_name(url: str, index: int) -> str:
    """`host:port` of a single-host URL (`member-<index>` when it names no TCP host)."""
    try:
        return parse_host_list(url).members[0].name
    except ValueError:
        return f"member-{index}"
