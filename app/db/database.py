"""The data layer's root object: the writer pool, the replica set, and their background loops.

It is one component of the process's life (`app.process.lifecycle`): `start` opens and warms
the pools and starts the loops that keep its own data current (the replica monitor, the idle
reaper, the gauge publisher, all on one `Periodic` runner each); `stop` stops the loops and
closes the pools.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from urllib.parse import urlsplit

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import metrics
from app.db.connection import Scalar
from app.db.engine import create_pool_engine
from app.db.idle import IdleReaper
from app.db.monitor import ReplicaMonitor
from app.db.pool import Pool
from app.db.replicas import ReplicaSet
from app.process.lifecycle import StartupAborted
from app.process.periodic import Periodic

log = structlog.get_logger("app.db")

_SERVER_VERSION: Scalar[str] = Scalar("SELECT current_setting('server_version')", str)
_DATABASE_NAME: Scalar[str] = Scalar("SELECT current_database()", str)
_MAX_CONNECTIONS: Scalar[int] = Scalar("SELECT current_setting('max_connections')::int", int)
PROBE_TIMEOUT_S = 1.0  # each monitor probe, connecting included
WAIT_FOR_PRIMARY_RETRY_S = 0.5


class Database:
    """Writer pool, replica pools and their background loops, created from `Settings`."""

    name = "database"

    def __init__(self, settings: Settings) -> None:
        url = settings.database.url
        if url is None:
            raise ValueError("DATABASE_URL is not set")
        self.settings = settings
        self.writer = self._pool("primary", url)
        replica_urls = settings.database.replica_urls
        self.replicas = ReplicaSet(
            [self._pool(f"replica-{index}", url) for index, url in enumerate(replica_urls)]
        )
        self.monitor = ReplicaMonitor(
            self.replicas,
            self._probe_engine("primary", url),
            [self._probe_engine(f"replica-{i}", url) for i, url in enumerate(replica_urls)],
            interval_s=settings.monitor.interval_s,
            max_lag_s=settings.monitor.max_lag_s,
            probe_timeout_s=PROBE_TIMEOUT_S,
        )
        self.idle_reaper = IdleReaper(
            [(pool.name, pool.queue_pool, pool.settings.min_size) for pool in self.pools],
            idle_timeout_s=settings.writer_pool.idle_timeout_s,
        )
        self._gauges = Periodic("gauge-publisher", settings.monitor.interval_s, self._publish)
        self._loops: list[Periodic] = []

    def _pool(self, name: str, url: str) -> Pool:
        settings = self.settings
        pool = settings.writer_pool if name == "primary" else settings.replica_pool
        engine = create_pool_engine(
            name=name,
            url=url,
            pool=pool,
            sslmode=settings.database.sslmode,
            pgbouncer=settings.database.pgbouncer,
        )
        return Pool(name, engine, pool)

    def _probe_engine(self, name: str, url: str) -> AsyncEngine:
        """A one-connection engine for the replica monitor, apart from the serving pools: a
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
        return create_pool_engine(
            name=f"{name}-monitor",
            url=url,
            pool=probe_pool,
            sslmode=settings.database.sslmode,
            pgbouncer=settings.database.pgbouncer,
        )

    @property
    def pools(self) -> list[Pool]:
        """Every pool, writer first."""
        return [self.writer, *(state.pool for state in self.replicas.states)]

    # -- the component's start and stop -----------------------------------------------------

    async def start(self) -> None:
        """Warm the pools and start the loops, or log one clear line and abort the start when
        the primary does not answer (within `DB_WAIT_FOR_PRIMARY_S`)."""
        wait_s = self.settings.database.wait_for_primary_s
        if wait_s:
            log.info("waiting for the primary if needed", up_to_s=wait_s)
        started = time.monotonic()
        try:
            await self._warm_writer(deadline=started + wait_s)
        except Exception as error:
            waited_s = round(time.monotonic() - started, 1)
            await self.stop()
            log.error(
                "the primary is unreachable; not starting",
                target=_where(self.settings.database.url),
                error=type(error).__name__,
                waited_s=waited_s,
                hint="check DATABASE_URL, or set DB_WAIT_FOR_PRIMARY_S to wait for it",
            )
            raise StartupAborted("the primary is unreachable") from None
        await self._warm_replicas()
        await self.monitor.probe_all()
        await self._warn_if_oversubscribed()
        self._start_loops()

    async def stop(self) -> None:
        """Stop the loops and close every pool concurrently (the caller bounds the time)."""
        for loop in reversed(self._loops):
            await loop.stop()
        self._loops.clear()
        await self.monitor.close()
        log.info("replica monitor stopped")
        await asyncio.gather(*(pool.dispose() for pool in self.pools))
        self._publish_now()  # the disposed pools' zero counts
        log.info("pools disposed", pools=[pool.name for pool in self.pools])

    def _start_loops(self) -> None:
        loops = [self._gauges]
        if len(self.replicas):
            loops.append(self.monitor.periodic)
        if self.idle_reaper.enabled:
            loops.append(self.idle_reaper.periodic)
        self._publish_now()
        for loop in loops:
            loop.start()
        self._loops = loops

    # -- warm-up ----------------------------------------------------------------------------

    async def _warm_writer(self, deadline: float) -> None:
        while True:
            try:
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
        monitor = 1 if len(self.replicas) else 0  # the replica monitor's own connection
        wanted = (self.writer.settings.max_size + monitor) * workers
        if wanted > limit:
            log.warning(
                "pool maxima exceed the server's max_connections",
                pool="primary",
                pool_max_total=wanted,
                max_connections=limit,
            )

    # -- gauges -----------------------------------------------------------------------------

    def publish_metrics(self) -> None:
        """Write the current pool and replica state into the gauges (also at every scrape).

        Gauges are set here, not on every checkout (the hot path); in multiprocess mode a
        scrape is answered from what every worker last wrote, at most one interval old.
        """
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


def _where(url: str | None) -> str:
    """`host:port/database` of a URL: no user, no password."""
    if not url:
        return "?"
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port or 5432}{parts.path}"
    except ValueError:
        return "?"
