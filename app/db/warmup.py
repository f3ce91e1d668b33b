"""Warm-up: open each pool's minimum before the first request, and say what the server is.

A pool that is warm serves the first requests without connecting; the log line of each pool
(server version, database, connections) is what an operator checks first after a deploy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from app.db.connection import Scalar
from app.db.pool import Pool

log = structlog.get_logger("app.db")

_SERVER_VERSION: Scalar[str] = Scalar("SELECT current_setting('server_version')", str)
_DATABASE_NAME: Scalar[str] = Scalar("SELECT current_database()", str)
_MAX_CONNECTIONS: Scalar[int] = Scalar("SELECT current_setting('max_connections')::int", int)


async def warm(pool: Pool) -> None:
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


async def warm_all(pools: Sequence[Pool]) -> list[BaseException | None]:
    """Warm every pool concurrently; each one's failure, or None."""
    results = await asyncio.gather(*(warm(pool) for pool in pools), return_exceptions=True)
    return [result if isinstance(result, BaseException) else None for result in results]


async def warn_if_oversubscribed(writer: Pool, *, workers: int, monitor_connections: int) -> None:
    """Log when every worker's writer pool at its maximum (and the monitor's connection)
    would exceed the server's `max_connections`."""
    async with writer.acquire() as conn:
        limit = await conn.fetch_scalar(_MAX_CONNECTIONS)
    wanted = (writer.settings.max_size + monitor_connections) * workers
    if wanted > limit:
        log.warning(
            "pool maxima exceed the server's max_connections",
            pool=writer.name,
            pool_max_total=wanted,
            max_connections=limit,
        )
