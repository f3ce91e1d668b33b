"""DB_IDLE_TIMEOUT_MS: idle connections above the pool minimum are closed, the rest kept."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.pool import QueuePool

from app.config import Settings
from app.db.cluster import Database
from app.db.idle import IdleReaper
from tests.support.cluster import TestDatabase

_ALIVE = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])"


async def _alive(database: Database, pids: list[int]) -> int:
    async with database.writer.acquire() as conn:
        # This probe borrows a connection itself; count only the burst's backends.
        return int(await conn.driver.fetchval(_ALIVE, pids))


async def _scenario(settings: Settings) -> tuple[int, int, int]:
    database = Database(settings)
    pool = database.writer.engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    await database.writer.open_minimum()
    pids: list[int] = []
    release = asyncio.Event()
    all_holding = asyncio.Barrier(6)

    async def hold() -> None:
        async with database.writer.acquire() as conn:
            pids.append(int(await conn.driver.fetchval("SELECT pg_backend_pid()")))
            await all_holding.wait()
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(5)]
    await asyncio.wait_for(all_holding.wait(), 10)
    release.set()
    await asyncio.gather(*holders)
    after_burst = database.writer.snapshot().total
    reaper = IdleReaper(lambda: [("primary", pool, 2)], idle_timeout_s=0.3)
    reaper.periodic.start()
    deadline = time.monotonic() + 10
    try:
        while database.writer.snapshot().total > 2 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    finally:
        await reaper.periodic.stop()
    trimmed = database.writer.snapshot().total
    # Backends leave pg_stat_activity shortly after their client hangs up; wait for that.
    alive = await _alive(database, pids)
    while alive > 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        alive = await _alive(database, pids)
    await database.stop()
    return after_burst, trimmed, alive


def test_idle_surplus_is_closed_down_to_the_minimum(database: TestDatabase) -> None:
    settings = Settings.from_env(
        database.env(DATABASE_REPLICA_URLS="", DB_POOL_MIN="2", DB_POOL_MAX="5")
    )
    after_burst, trimmed, alive = asyncio.run(_scenario(settings))
    assert after_burst == 5
    assert trimmed == 2
    # Server side: of the burst's five backends, only the kept ones remain (the probe reuses
    # one of them, so at most two).
    assert alive <= 2


async def _service_scenario(settings: Settings) -> tuple[int, int]:
    """Through `Database.start`, as the service starts it: the reaper runs by itself."""
    database = Database(settings)
    await database.start()
    try:
        release = asyncio.Event()
        all_holding = asyncio.Barrier(5)

        async def hold() -> None:
            async with database.writer.acquire():
                await all_holding.wait()
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(4)]
        await asyncio.wait_for(all_holding.wait(), 10)
        release.set()
        await asyncio.gather(*holders)
        peak = database.writer.snapshot().total
        deadline = time.monotonic() + 10
        while database.writer.snapshot().total > 1 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return peak, database.writer.snapshot().total
    finally:
        await database.stop()


def test_the_service_trims_idle_connections_after_db_idle_timeout_ms(
    database: TestDatabase,
) -> None:
    settings = Settings.from_env(
        database.env(
            DATABASE_REPLICA_URLS="", DB_POOL_MIN="1", DB_POOL_MAX="4", DB_IDLE_TIMEOUT_MS="200"
        )
    )
    peak, trimmed = asyncio.run(_service_scenario(settings))
    assert peak == 4
    assert trimmed == 1
