"""The data layer's root object: the writer pool, the replica set and their lifecycle."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.engine import create_pool_engine
from app.db.idle import IdleReaper
from app.db.monitor import ReplicaMonitor
from app.db.pool import Pool
from app.db.replicas import ReplicaSet

log = structlog.get_logger("app.db")

_SERVER_INFO = "SELECT current_setting('server_version'), current_database()"
_MAX_CONNECTIONS = "SELECT current_setting('max_connections')::int"
PROBE_TIMEOUT_S = 1.0  # each monitor probe, connecting included


class Database:
    """Writer pool, replica pools and the replica monitor, created from `Settings`."""

    def __init__(self, settings: Settings) -> None:
        if settings.database_url is None:
            raise ValueError("DATABASE_URL is not set")
        self.settings = settings
        self.writer = Pool(
            "primary",
            create_pool_engine(
                name="primary",
                url=settings.database_url,
                pool=settings.writer_pool,
                sslmode=settings.sslmode,
                pgbouncer=settings.pgbouncer,
            ),
            settings.writer_pool,
        )
        replica_pools = [
            Pool(
                f"replica-{index}",
                create_pool_engine(
                    name=f"replica-{index}",
                    url=url,
                    pool=settings.replica_pool,
                    sslmode=settings.sslmode,
                    pgbouncer=settings.pgbouncer,
                ),
                settings.replica_pool,
            )
            for index, url in enumerate(settings.replica_urls)
        ]
        self.replicas = ReplicaSet(replica_pools)
        self.monitor = ReplicaMonitor(
            self.replicas,
            self._probe_engine("primary", settings.database_url),
            [
                self._probe_engine(f"replica-{index}", url)
                for index, url in enumerate(settings.replica_urls)
            ],
            interval_s=settings.replica_check_interval_ms / 1000,
            max_lag_s=settings.replica_max_lag_s,
            probe_timeout_s=PROBE_TIMEOUT_S,
        )
        self.idle_reaper = IdleReaper(
            [(pool.name, pool.queue_pool, pool.settings.min_size) for pool in self.pools],
            idle_timeout_s=settings.idle_timeout_ms / 1000,
        )

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
            statement_timeout_ms=int(PROBE_TIMEOUT_S * 1000),
        )
        return create_pool_engine(
            name=f"{name}-monitor",
            url=url,
            pool=probe_pool,
            sslmode=settings.sslmode,
            pgbouncer=settings.pgbouncer,
        )

    @property
    def pools(self) -> list[Pool]:
        """Every pool, writer first."""
        return [self.writer, *(state.pool for state in self.replicas.states)]

    async def warm_up(self) -> None:
        """Open each pool's minimum concurrently and log what each server is.

        The writer must answer (within `DB_WAIT_FOR_PRIMARY_S`, default no wait); a replica
        that is down is logged, taken out of rotation, and does not stop the start.
        """
        deadline = time.monotonic() + self.settings.wait_for_database_s
        while True:
            try:
                await self._warm(self.writer)
                break
            except Exception:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.5)
        results = await asyncio.gather(
            *(self._warm(state.pool) for state in self.replicas.states), return_exceptions=True
        )
        for state, result in zip(self.replicas.states, results, strict=True):
            if isinstance(result, BaseException):
                state.mark(healthy=False, reason=f"down at start: {type(result).__name__}")
        await self.monitor.probe_all()
        await self._warn_if_oversubscribed()
        self.monitor.start()
        self.idle_reaper.start()

    async def _warm(self, pool: Pool) -> None:
        await pool.open_minimum()
        async with pool.acquire() as conn:
            version, database = await conn.fetchrow(_SERVER_INFO)
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
            limit = int(await conn.fetchval(_MAX_CONNECTIONS))
        workers = self.settings.workers
        monitor = 1 if len(self.replicas) else 0  # the replica monitor's own connection
        wanted = (self.settings.pool_max + monitor) * workers
        if wanted > limit:
            log.warning(
                "pool maxima exceed the server's max_connections",
                pool="primary",
                pool_max_total=wanted,
                max_connections=limit,
            )

    async def dispose(self, timeout_s: float) -> None:
        """Stop the monitor and close every pool concurrently, within `timeout_s`."""
        await self.idle_reaper.stop()
        await self.monitor.stop()
        log.info("replica monitor stopped")
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(pool.dispose() for pool in self.pools))
        except TimeoutError:
            log.warning("pools not disposed within the time limit", timeout_s=timeout_s)
        else:
            log.info("pools disposed", pools=[pool.name for pool in self.pools])
