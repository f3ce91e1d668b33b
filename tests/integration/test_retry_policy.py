"""Retries against real servers: what is retried, what never is, and how long it takes.

Connections are broken for real: a backend terminated by `pg_terminate_backend` (after its
statement committed, or while idle in the pool), a port nobody listens on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from prometheus_client import REGISTRY

from app.config import Settings
from app.db.cluster import Database
from app.db.connection import Connection
from app.db.errors import DatabaseUnavailableError
from app.db.session import DbSession
from tests.support.cluster import TestDatabase
from tests.support.driver import SELECT_ONE, driver
from tests.support.faults import query, wait_for
from tests.support.server import free_port

pytestmark = pytest.mark.anyio

_INSERT = "INSERT INTO users (username, display_name) VALUES ($1, $1)"
_INSERT_ONCE = "INSERT INTO users (username, display_name) VALUES ($1, $1) ON CONFLICT DO NOTHING"
_KILL_SELF = "SELECT pg_terminate_backend(pg_backend_pid())"
_COUNT = "SELECT count(*) FROM users WHERE username = $1"


@asynccontextmanager
async def open_database(database: TestDatabase, **env: str) -> AsyncIterator[Database]:
    db = Database(Settings.from_env(database.env(**env)))
    await db.start()
    try:
        yield db
    finally:
        await db.stop()


def _name() -> str:
    return f"retry_{uuid.uuid4().hex[:16]}"


def _retries(pool: str) -> float:
    return REGISTRY.get_sample_value("db_client_retries_total", {"pool_name": pool}) or 0.0


async def test_a_write_that_may_have_committed_is_not_retried(database: TestDatabase) -> None:
    name, attempts = _name(), 0

    async def insert_then_lose_the_connection(conn: Connection) -> None:
        nonlocal attempts
        attempts += 1
        await driver(conn).execute(_INSERT, name)  # autocommit: committed here
        await driver(conn).execute(_KILL_SELF)

    async with open_database(database, DATABASE_REPLICA_URLS="") as db:
        with pytest.raises(DatabaseUnavailableError):
            await DbSession(db).write(insert_then_lose_the_connection)
    assert attempts == 1
    assert await query(database.primary_url, _COUNT, name) == 1


async def test_an_idempotent_write_is_retried_and_stored_once(database: TestDatabase) -> None:
    name, attempts = _name(), 0

    async def insert_once(conn: Connection) -> str:
        nonlocal attempts
        attempts += 1
        await driver(conn).execute(_INSERT_ONCE, name)
        if attempts == 1:
            await driver(conn).execute(_KILL_SELF)
        return name

    async with open_database(database, DATABASE_REPLICA_URLS="") as db:
        assert await DbSession(db).write(insert_once, idempotent=True) == name
    assert attempts == 2
    assert await query(database.primary_url, _COUNT, name) == 1


async def test_a_write_on_a_connection_already_closed_is_retried(database: TestDatabase) -> None:
    """The pooled connection died while idle; the driver refuses it before sending anything,
    so even a non-idempotent write is safe to retry on a fresh connection."""
    name, attempts = _name(), 0

    async def insert(conn: Connection) -> None:
        nonlocal attempts
        attempts += 1
        await driver(conn).execute(_INSERT, name)

    env = {"DATABASE_REPLICA_URLS": "", "DB_POOL_MIN": "1", "DB_POOL_MAX": "1"}
    async with open_database(database, **env) as db:
        async with db.writer.acquire() as conn:
            lent = conn.driver
        pid = lent.get_server_pid()
        await query(database.primary_url, "SELECT pg_terminate_backend($1)", pid)

        async def driver_saw_it() -> bool:
            return bool(lent.is_closed())

        await wait_for(driver_saw_it, 5, "the pooled connection to notice its end")
        await DbSession(db).write(insert)
    assert attempts == 2
    assert await query(database.primary_url, _COUNT, name) == 1


_TERMINATE_WRITERS = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE application_name = 'messenger-primary'"
)


async def test_sessions_ended_under_a_stream_of_writes_lose_and_double_nothing(
    database: TestDatabase,
) -> None:
    """The server ends the writer's session at arbitrary points of a stream of writes (what a
    primary's shutdown does to every connection), 40 times. Each write is acknowledged and
    stored once, or refused with `DatabaseUnavailableError` and stored at most once; nothing
    else escapes. asyncpg reports about one such end in four as an `InternalClientError`
    (its protocol out of step), which escaped as a 500 before it was classified."""
    acknowledged: list[str] = []
    refused: list[str] = []
    writing = True

    async def write_one(db: Database) -> None:
        name = _name()

        async def insert(conn: Connection) -> None:
            await driver(conn).execute(_INSERT, name)

        try:
            await DbSession(db).write(insert)
        except DatabaseUnavailableError:
            refused.append(name)
        else:
            acknowledged.append(name)

    async def write_stream(db: Database) -> None:
        while writing:
            await write_one(db)

    env = {"DATABASE_REPLICA_URLS": "", "DB_POOL_MIN": "1", "DB_POOL_MAX": "1"}
    async with open_database(database, **env) as db:
        stream = asyncio.create_task(write_stream(db))
        try:
            for _ in range(40):
                target = len(acknowledged) + 3

                async def more_written(target: int = target) -> bool:
                    assert not stream.done(), "the write stream stopped"
                    return len(acknowledged) >= target

                await wait_for(more_written, 10, "writes to go on", poll_s=0.003)
                await query(database.primary_url, _TERMINATE_WRITERS)
        finally:
            writing = False
            await stream  # raises whatever escaped a write
    stored = await _stored_counts(database, acknowledged + refused)
    assert all(stored.get(name) == 1 for name in acknowledged)
    assert all(stored.get(name, 0) <= 1 for name in refused)
    print(f"\n[faults] 40 ended sessions: {len(acknowledged)} stored, {len(refused)} refused")


async def _stored_counts(database: TestDatabase, names: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(database.primary_url, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT username, count(*) FROM users WHERE username = ANY($1) GROUP BY username",
            names,
        )
    finally:
        await conn.close()
    return {row[0]: row[1] for row in rows}


async def test_query_errors_and_statement_timeouts_are_not_retried(
    database: TestDatabase,
) -> None:
    attempts = 0

    async def slow(conn: Connection) -> None:
        nonlocal attempts
        attempts += 1
        await driver(conn).execute("SELECT pg_sleep(2)")

    async def broken(conn: Connection) -> None:
        nonlocal attempts
        attempts += 1
        await driver(conn).execute("SELEC 1")

    env = {"DATABASE_REPLICA_URLS": "", "DB_STATEMENT_TIMEOUT_MS": "100"}
    async with open_database(database, **env) as db:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match="did not answer in time"):
            await DbSession(db).read(slow)
        assert time.monotonic() - started < 0.6  # no 100+200+400 ms of retries
        assert attempts == 1
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await DbSession(db).read(broken)
        assert attempts == 2
        # The connection that timed out is reusable.
        assert await DbSession(db).read(_select_one) == 1
        assert db.writer.checked_out == 0


async def _select_one(conn: Connection) -> int:
    return await conn.fetch_scalar(SELECT_ONE)


async def test_an_unreachable_writer_is_retried_three_times_with_backoff(
    database: TestDatabase,
) -> None:
    """Measures the retry schedule: 100 + 200 + 400 ms plus up to 50 ms jitter each."""
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/messenger"
    db = Database(
        Settings.from_env({"APP_ENV": "test", "DATABASE_URL": closed, "DB_POOL_MIN": "0"})
    )
    before = _retries("primary")
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match="unreachable"):
            await DbSession(db).read(_select_one)
        elapsed = time.monotonic() - started
    finally:
        await db.stop()
    assert _retries("primary") == before + 3
    print(f"\n[timing] unreachable writer: 4 attempts answered 503 after {elapsed * 1000:.0f} ms")
    assert 0.7 <= elapsed < 1.2


async def test_a_read_fails_over_from_a_dead_replica_at_once(database: TestDatabase) -> None:
    """A failed checkout takes the replica out and the read moves on without a backoff."""
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/messenger"
    env = {"DATABASE_REPLICA_URLS": dead, "DB_REPLICA_CHECK_INTERVAL_MS": "60000"}
    async with open_database(database, **env) as db:
        name = db.snapshot.replicas[0].name
        assert not db.snapshot.replicas[0].healthy  # down at start
        # As if it had just died after a good probe.
        db.state.replica_checked(name, healthy=True, reason=None, observed_at=time.monotonic())
        assert db.snapshot.replicas[0].healthy
        started = time.monotonic()
        assert await DbSession(db).read(_select_one) == 1  # answered by the writer
        elapsed = time.monotonic() - started
        state = db.snapshot.replicas[0]
        assert not state.healthy
        assert state.reason is not None
        assert state.reason.startswith("read failed")
    print(f"\n[timing] read failing over from a refused replica: {elapsed * 1000:.1f} ms")
    assert elapsed < 0.1
