"""Overload and slow statements: 503 with Retry-After, and the pool intact afterwards.

Statements are made slow for real: another connection holds `LOCK TABLE users IN ACCESS
EXCLUSIVE MODE`, so a status update blocks until the lock goes or its timeout fires.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from app.config import Settings
from app.db.cluster import Database
from app.db.connection import Connection
from app.db.session import DbSession
from tests.support.api import Account, assert_problem, make_client, register
from tests.support.cluster import TestDatabase, fetchval
from tests.support.driver import SELECT_ONE, driver
from tests.support.faults import ACTIVE_QUERIES, TableLock, query, wait_for, wait_lock_waiters

_PRIMARY = "messenger-primary"
_PIDS = "SELECT array_agg(pid ORDER BY pid) FROM pg_stat_activity WHERE application_name = $1"


def _set_status(client: TestClient[Litestar], user: Account) -> Any:
    started = time.monotonic()
    response = client.put(f"/users/{user.id}/status", json={"status": "away"}, headers=user.headers)
    return response, time.monotonic() - started


def test_an_exhausted_pool_answers_503_quickly_and_recovers(database: TestDatabase) -> None:
    env = {"DB_POOL_MIN": "0", "DB_POOL_MAX": "2", "DB_POOL_TIMEOUT_MS": "200"}
    with make_client(database, **env) as client, ThreadPoolExecutor(max_workers=8) as threads:
        user = register(client)
        with TableLock(database.primary_url, "users"):
            holders = [threads.submit(_set_status, client, user) for _ in range(2)]
            wait_lock_waiters(database.primary_url, _PRIMARY, 2)  # both connections are stuck
            waiters: list[Future[Any]] = [
                threads.submit(_set_status, client, user) for _ in range(4)
            ]
            for future in waiters:
                response, elapsed = future.result(timeout=10)
                problem = assert_problem(response, 503)
                assert response.headers["retry-after"] == "1"
                assert "connection" in problem["detail"]
                assert elapsed < 1.5  # the pool timeout, not a hang
        for future in holders:
            response, _ = future.result(timeout=10)
            assert response.status_code == 200
        db: Database = client.app.state.database
        assert db.writer.checked_out == 0
        # Intact: both connections serve again, concurrently.
        again = [threads.submit(_set_status, client, user) for _ in range(4)]
        assert [future.result(timeout=10)[0].status_code for future in again] == [200] * 4


def test_a_statement_timeout_answers_503_and_keeps_the_connection(
    database: TestDatabase,
) -> None:
    env = {"DB_POOL_MIN": "1", "DB_POOL_MAX": "1", "DB_STATEMENT_TIMEOUT_MS": "300"}
    with make_client(database, **env) as client:
        user = register(client)
        pids_before = fetchval(database.primary_url, _PIDS, _PRIMARY)
        assert len(pids_before) == 1
        with TableLock(database.primary_url, "users"):
            response, elapsed = _set_status(client, user)
        problem = assert_problem(response, 503)
        assert response.headers["retry-after"] == "1"
        assert problem["detail"] == "the database did not answer in time"
        assert 0.3 <= elapsed < 1.5  # the statement timeout, not retried
        assert _set_status(client, user)[0].status_code == 200
        # The same server connection served the next request: nothing was thrown away.
        assert fetchval(database.primary_url, _PIDS, _PRIMARY) == pids_before


@pytest.mark.anyio
async def test_a_cancelled_request_returns_its_connection(database: TestDatabase) -> None:
    """A request task cancelled mid-statement (what a server does on shutdown or timeout)
    gives its connection back, and the server stops running the statement."""
    settings = Settings.from_env(
        database.env(DATABASE_REPLICA_URLS="", DB_POOL_MIN="1", DB_POOL_MAX="1")
    )
    db = Database(settings)
    await db.start()
    try:

        async def sleep(conn: Connection) -> None:
            await driver(conn).execute("SELECT pg_sleep(3)")

        task = asyncio.create_task(DbSession(db).read(sleep))

        async def running() -> bool:
            return bool(await query(database.primary_url, ACTIVE_QUERIES, _PRIMARY) == 1)

        await wait_for(running, 5, "the statement to run")
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert db.writer.checked_out == 0

        async def stopped() -> bool:
            return bool(await query(database.primary_url, ACTIVE_QUERIES, _PRIMARY) == 0)

        await wait_for(stopped, 2.5, "the server to stop the cancelled statement")
        assert time.monotonic() - started < 2.5

        async def one(conn: Connection) -> int:
            return await conn.fetch_scalar(SELECT_ONE)

        assert await DbSession(db).read(one) == 1
    finally:
        await db.stop()


@pytest.mark.anyio
async def test_waiting_checkouts_are_served_in_arrival_order(database: TestDatabase) -> None:
    """Five requests wait for the only connection; a sixth is ready to run at the moment it
    is returned (already scheduled ahead of the first waiter's wake-up, as a request just
    read from the network is). Each gets it in the order it asked, the newcomer last: none
    is passed over (SQLAlchemy's queue handed it to the newcomer, and the waiter it
    passed over queued again at the back)."""
    settings = Settings.from_env(
        database.env(DATABASE_REPLICA_URLS="", DB_POOL_MIN="1", DB_POOL_MAX="1")
    )
    db = Database(settings)
    await db.start()
    served: list[str] = []

    ready = asyncio.Event()

    async def borrow(name: str, after: asyncio.Event | None = None) -> None:
        if after is not None:
            ready.set()
            await after.wait()
        async with db.writer.acquire() as conn:
            served.append(name)
            await conn.fetch_scalar(SELECT_ONE)

    try:
        holder = db.writer.acquire()
        await holder.__aenter__()
        waiters = []
        for index in range(5):
            waiters.append(asyncio.create_task(borrow(f"waiter-{index}")))

            async def queued(count: int = index + 1) -> bool:
                return db.writer.waiting == count

            await wait_for(queued, 5, f"{index + 1} checkouts waiting")
        arrives = asyncio.Event()
        newcomer = asyncio.create_task(borrow("newcomer", after=arrives))
        await ready.wait()  # the newcomer now waits on `arrives`
        arrives.set()  # scheduled first, then the connection is returned
        await holder.__aexit__(None, None, None)
        await asyncio.gather(*waiters, newcomer)
    finally:
        await db.stop()
    assert served == [f"waiter-{index}" for index in range(5)] + ["newcomer"]
