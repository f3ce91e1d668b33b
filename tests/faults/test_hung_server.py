"""A server that stops answering (every process SIGSTOPped: connections stay open, nothing
comes back) must not hold a request for ever: asyncpg bounds each statement at the statement
timeout plus 2 s (`command_timeout`), the connection is dropped at once (a graceful close
waited 2 s more on the hung server), and the request answers 503 (`the database did not
answer in time`)."""

from __future__ import annotations

import asyncio

import pytest

from app.config import Settings
from app.db.cluster import Database
from app.db.connection import Connection
from app.db.errors import DatabaseUnavailableError
from app.db.session import DbSession
from tests.support.cluster import TestDatabase, embedded, paused
from tests.support.driver import SELECT_ONE

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

STATEMENT_TIMEOUT_S = 0.5
BOUND_S = STATEMENT_TIMEOUT_S + 2  # directly connected: the server's own timeout comes first


async def _select_one(conn: Connection) -> int:
    return await conn.fetch_scalar(SELECT_ONE)


async def test_a_read_on_a_hung_primary_answers_503_at_the_bound(database: TestDatabase) -> None:
    settings = Settings.from_env(
        database.env(
            DATABASE_REPLICA_URLS="",
            DB_POOL_MIN="1",
            DB_POOL_MAX="1",
            DB_STATEMENT_TIMEOUT_MS=str(int(STATEMENT_TIMEOUT_S * 1000)),
        )
    )
    db = Database(settings)
    await db.start()
    try:
        assert await DbSession(db).read(_select_one) == 1  # the connection is fresh: no ping
        loop = asyncio.get_running_loop()
        with paused(embedded(database).primary):
            started = loop.time()
            with pytest.raises(DatabaseUnavailableError, match="did not answer in time"):
                await DbSession(db).read(_select_one)
            elapsed = loop.time() - started
        print(f"\n[faults] a read on a hung primary answered after {elapsed:.2f} s")
        assert BOUND_S <= elapsed < BOUND_S + 0.5
        # The connection the hung statement held was discarded; the next read reconnects.
        assert await DbSession(db).read(_select_one) == 1
        assert db.writer.checked_out == 0
    finally:
        await db.stop()
