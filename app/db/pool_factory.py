"""Pools and probe engines, made from the settings: the one place that knows which pool
settings each kind of pool uses."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.engine import create_pool_engine
from app.db.pool import Pool

PROBE_TIMEOUT_S = 1.0  # each monitor probe, connecting included
WRITER = "primary"  # the writer pool's name, whichever member it is on


class PoolFactory:
    """Makes the serving pools and the monitor's probe engines of the members in `urls`."""

    def __init__(self, settings: Settings, urls: dict[str, str]) -> None:
        self._settings = settings
        self._urls = urls

    def pool(self, name: str, member: str) -> Pool:
        """A serving pool named `name` on `member` (writer settings for `WRITER`)."""
        settings = self._settings
        pool = settings.writer_pool if name == WRITER else settings.replica_pool
        engine = create_pool_engine(
            name=name,
            url=self._urls[member],
            pool=pool,
            sslmode=settings.database.sslmode,
            pgbouncer=settings.database.pgbouncer,
        )
        return Pool(name, engine, pool)

    def probe_engine(self, member: str, label: str) -> AsyncEngine:
        """A one-connection engine for the monitor, apart from the serving pools: a
        saturated pool must not fail a health probe, nor a probe wait behind requests.
        Named `<label>-monitor` in `pg_stat_activity`; opened on first use."""
        settings = self._settings
        probe_pool = replace(
            settings.writer_pool,
            min_size=0,
            max_size=1,
            timeout_s=PROBE_TIMEOUT_S,
            connect_timeout_s=min(settings.writer_pool.connect_timeout_s, PROBE_TIMEOUT_S),
            statement_timeout_s=PROBE_TIMEOUT_S,
        )
        return create_pool_engine(
            name=f"{label}-monitor",
            url=self._urls[member],
            pool=probe_pool,
            sslmode=settings.database.sslmode,
            pgbouncer=settings.database.pgbouncer,
        )
