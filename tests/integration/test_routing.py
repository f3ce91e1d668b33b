"""Pools by server: each replica pool connects to its replica, and without replicas every
read uses the writer pool. (Which server answers a read is proven with paused replay, on a
cluster of its own: tests/faults/test_read_your_writes.py.)"""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import TestClient

from tests.support.api import make_client, register
from tests.support.cluster import TestDatabase, fetchval


def test_replica_pools_are_named_in_pg_stat_activity(
    client: TestClient[Litestar], database: TestDatabase
) -> None:
    register(client)
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
    assert fetchval(database.primary_url, query, "messenger-primary") >= 1
    for index, url in enumerate(database.replica_urls):
        assert fetchval(url, query, f"messenger-replica-{index}") >= 1
        assert fetchval(url, "SELECT pg_is_in_recovery()") is True
        assert fetchval(database.primary_url, query, f"messenger-replica-{index}") == 0


def test_without_replicas_reads_use_the_writer_pool_only(database: TestDatabase) -> None:
    with make_client(database, DATABASE_REPLICA_URLS="") as client:
        user = register(client)
        assert client.get(f"/users/{user.id}", headers=user.headers).status_code == 200
        app_db = client.app.state.database
        assert [pool.name for pool in app_db.pools] == ["primary"]
        ready = client.get("/health/ready").json()
        assert list(ready["checks"]) == ["postgres:primary", "events:listener"]
