"""Read-your-writes served by the replicas: a read carrying the token of a write made a
moment ago asks its replica whether it has replayed the token and reads there; only a token
no replica replays in time goes to the primary, and a token ahead of the primary is refused.
(Replay paused on purpose: tests/faults/test_read_your_writes.py.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from app.db.connection import DriverConnection
from app.db.lsn import format_lsn
from app.db.replay import replay_position
from tests.support.api import Account, create_chat, make_client, register, send
from tests.support.cluster import TestDatabase, fetchval, wait_until

_PAIRS = 50


@pytest.fixture(scope="module")
def app_client(database: TestDatabase) -> Iterator[TestClient[Litestar]]:
    with make_client(database) as client:
        yield client


def _with_token(user: Account, token: str) -> dict[str, str]:
    """`user`'s headers with a consistency token of the test's making."""
    return {**user.headers, "X-Consistency-Token": token}


def _served(by: str) -> float:
    value = REGISTRY.get_sample_value("db_consistency_token_reads_total", {"served_by": by})
    return value or 0.0


def _counts() -> dict[str, float]:
    return {by: _served(by) for by in ("replica", "replica_checked", "primary", "rejected")}


def _delta(before: dict[str, float]) -> dict[str, float]:
    return {by: count - before[by] for by, count in _counts().items()}


def test_token_reads_right_after_the_write_are_served_by_replicas(
    app_client: TestClient[Litestar],
) -> None:
    user = register(app_client)
    chat = create_chat(app_client, user)
    before = _counts()
    for index in range(_PAIRS):
        body = f"pair {index} {uuid.uuid4().hex[:8]}"
        sent = send(app_client, user, chat["id"], body)
        assert sent.status_code == 201, sent.text
        read = app_client.get(f"/chats/{chat['id']}/messages?limit=1", headers=user.after(sent))
        assert read.status_code == 200, read.text
        assert read.json()["items"][0]["body"] == body, "a token read sees its write"
    served = _delta(before)
    on_replicas = served["replica"] + served["replica_checked"]
    assert on_replicas + served["primary"] == _PAIRS
    # A local standby replays within milliseconds, well inside DB_TOKEN_WAIT_MS (20 ms).
    assert on_replicas >= 0.9 * _PAIRS, served


def test_a_genuine_token_ahead_of_this_instance_is_served_not_refused(
    app_client: TestClient[Litestar], database: TestDatabase
) -> None:
    """Another instance wrote a moment ago: its token is ahead of everything this one saw."""
    user = register(app_client)
    fetchval(database.primary_url, "SELECT pg_logical_emit_message(true, 'test', 'x')")
    token = str(fetchval(database.primary_url, "SELECT pg_current_wal_lsn()::text"))
    before = _counts()
    read = app_client.get(f"/users/{user.id}", headers=_with_token(user, token))
    assert read.status_code == 200, read.text
    served = _delta(before)
    assert served["rejected"] == 0
    assert served["replica"] + served["replica_checked"] + served["primary"] == 1


@pytest.mark.parametrize("token", ["FFFFFFFF/FFFFFFFF", "FFFF/0"])
def test_a_token_ahead_of_the_primary_is_refused(
    app_client: TestClient[Litestar], database: TestDatabase, token: str
) -> None:
    user = register(app_client)
    before = _counts()
    response = app_client.get(f"/users/{user.id}", headers=_with_token(user, token))
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "ahead of the database" in response.json()["detail"]
    assert _delta(before)["rejected"] == 1
    assert _delta(before)["primary"] == 0, "a forged token never moves a read to the primary"


def test_an_old_token_is_served_by_a_replica_without_asking(
    app_client: TestClient[Litestar], database: TestDatabase
) -> None:
    user = register(app_client)
    database.wait_replicas()
    before = _counts()
    response = app_client.get(f"/users/{user.id}", headers=_with_token(user, format_lsn(1)))
    assert response.status_code == 200
    assert _delta(before)["replica"] == 1


def _replay_position_asked(url: str) -> int:
    """What a token read asks a standby, on a connection of its own (`app.db.replay`)."""

    async def ask() -> int:
        conn = await asyncpg.connect(url)
        try:
            return await replay_position(DriverConnection(conn), 1, wait_s=0.0, known_primary=0)
        finally:
            await conn.close()

    return asyncio.run(ask())


def _receivers(url: str) -> int:
    return int(fetchval(url, "SELECT count(*) FROM pg_stat_wal_receiver"))


def test_a_standby_that_streams_from_no_primary_passes_no_token(database: TestDatabase) -> None:
    """An old primary restarted as a standby before its rewind replays nothing new and may
    hold another timeline's WAL past a new primary's tokens: a standby without a WAL
    receiver answers position 0, so no token read is served there."""
    replica = database.replica_urls[-1]
    assert _replay_position_asked(replica) > 0  # streaming: its real position
    conninfo = str(fetchval(replica, "SHOW primary_conninfo"))
    assert conninfo
    fetchval(replica, "ALTER SYSTEM SET primary_conninfo = ''")
    fetchval(replica, "SELECT pg_reload_conf()")
    try:
        wait_until(lambda: _receivers(replica) == 0, what="the WAL receiver to stop")
        assert fetchval(replica, "SELECT pg_last_wal_replay_lsn() > '0/0'::pg_lsn")
        assert _replay_position_asked(replica) == 0
    finally:
        quoted = conninfo.replace("'", "''")
        fetchval(replica, f"ALTER SYSTEM SET primary_conninfo = '{quoted}'")
        fetchval(replica, "SELECT pg_reload_conf()")
        wait_until(lambda: _receivers(replica) == 1, what="the WAL receiver to stream again")
    database.wait_replicas()
