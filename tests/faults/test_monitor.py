"""The replica monitor against a real cluster (the module's own: replay is paused): idle
primary, lag out and back in."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from app.config import Settings
from app.db.cluster import Database
from app.db.cluster_state import ReplicaView
from app.db.routing import NO_FAILURES, Kind, route
from tests.support.cluster import TestDatabase
from tests.support.faults import query, wait_for

pytestmark = pytest.mark.anyio

_NAIVE_LAG = "SELECT EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8"


@asynccontextmanager
async def monitored(database: TestDatabase, **env: str) -> AsyncIterator[Database]:
    settings = {"DB_REPLICA_CHECK_INTERVAL_MS": "100", "DB_POOL_MIN": "0"}
    db = Database(Settings.from_env(database.env(**{**settings, **env})))
    await db.start()
    try:
        yield db
    finally:
        await db.stop()


async def test_an_idle_primary_does_not_make_a_caught_up_replica_lag(
    database: TestDatabase,
) -> None:
    """No writes for longer than the limit: the replay-timestamp measure passes the limit,
    the monitor still sees lag 0 and keeps every replica in rotation."""
    if not database.replica_urls:
        pytest.skip("needs a replica")
    async with monitored(database, DB_REPLICA_MAX_LAG_S="1") as db:
        replica_url = database.replica_urls[0]

        async def naive_lag_beyond_limit() -> bool:
            for state in db.snapshot.replicas:
                assert state.healthy, state.reason
                assert state.lag_seconds <= 1.0
            naive = await query(replica_url, _NAIVE_LAG)
            return naive is not None and naive > 2.0

        await wait_for(naive_lag_beyond_limit, 30, "the replay-timestamp lag to exceed 2 s")
        rounds_from = max(state.checked_at or 0.0 for state in db.snapshot.replicas)

        async def caught_up_after_more_rounds() -> bool:
            return all(
                (state.checked_at or 0) > rounds_from + 0.1
                and state.lag_seconds == 0
                and state.lag_bytes == 0
                for state in db.snapshot.replicas
            )

        await wait_for(caught_up_after_more_rounds, 5, "more rounds reporting lag 0")
        assert all(state.healthy for state in db.snapshot.replicas)
        assert all(state.changes == 0 for state in db.snapshot.replicas)


def _changes(pool: str, state: str) -> float:
    value = REGISTRY.get_sample_value(
        "db_replica_state_changes_total", {"pool_name": pool, "state": state}
    )
    return value or 0.0


async def test_a_replica_lagging_past_the_limit_leaves_and_returns(database: TestDatabase) -> None:
    lagging_url = database.replica_urls[0]
    with capture_logs() as logs:
        async with monitored(database, DB_REPLICA_MAX_LAG_S="1") as db:
            await _lag_out_and_back(db, database, lagging_url)
    changes = [
        (entry["event"], entry.get("pool")) for entry in logs if "rotation" in entry["event"]
    ]
    assert changes == [
        ("replica taken out of rotation", "replica-0"),
        ("replica back in rotation", "replica-0"),
    ]


async def _lag_out_and_back(db: Database, database: TestDatabase, lagging_url: str) -> None:
    lagging_name, other_name = (replica.name for replica in db.snapshot.replicas)

    def lagging() -> ReplicaView:
        replica = db.snapshot.replica(lagging_name)
        assert replica is not None
        return replica

    def other() -> ReplicaView:
        replica = db.snapshot.replica(other_name)
        assert replica is not None
        return replica

    outs, ins = _changes(lagging_name, "out"), _changes(lagging_name, "in")
    await query(lagging_url, "SELECT pg_wal_replay_pause()")
    paused_at = time.monotonic()

    async def taken_out() -> bool:
        # Writes keep coming, so the paused replica falls behind.
        await query(database.primary_url, "SELECT txid_current()")
        return not lagging().healthy

    await wait_for(taken_out, 15, "the paused replica to leave the rotation")
    left_after = time.monotonic() - paused_at
    assert lagging().reason is not None
    assert (lagging().reason or "").startswith("lag")
    assert lagging().lag_seconds > 1
    assert lagging().lag_bytes > 0
    assert other().healthy
    plan = route(Kind.READ, None, db.snapshot, False, NO_FAILURES, 0, 0.0)
    assert plan.pool is other().pool

    await query(lagging_url, "SELECT pg_wal_replay_resume()")
    resumed_at = time.monotonic()

    async def back() -> bool:
        return lagging().healthy

    await wait_for(back, 15, "the replica to return after resume")
    returned_after = time.monotonic() - resumed_at
    assert lagging().lag_seconds <= 1
    assert _changes(lagging_name, "out") == outs + 1
    assert _changes(lagging_name, "in") == ins + 1
    assert other().changes == 0
    print(
        f"\n[timing] lag limit 1 s, probe every 100 ms: out {left_after:.2f} s after the pause,"
        f" back {returned_after:.2f} s after resume"
    )
