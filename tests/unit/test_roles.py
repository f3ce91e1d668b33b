"""How the data layer follows a host list's roles from the monitor's answers (no servers:
the answers are given; the pools are created but never connected)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from structlog.testing import capture_logs

from app.config import Settings
from app.db.cluster import Database
from app.db.errors import DatabaseUnavailableError
from app.db.monitor import MemberProbe

A, B, C = "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"
URL = "postgresql://u@127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/db"


def _probe(member: str, role: str) -> MemberProbe:
    if role == "down":
        return MemberProbe(member, time.monotonic(), answered=False, failure="OSError")
    return MemberProbe(member, time.monotonic(), answered=True, in_recovery=role == "standby")


def _round(**roles: str) -> dict[str, MemberProbe]:
    names = {"a": A, "b": B, "c": C}
    return {names[key]: _probe(names[key], role) for key, role in roles.items()}


def _run(scenario: Callable[[Database], Awaitable[None]]) -> None:
    async def main() -> None:
        database = Database(Settings.from_env({"DATABASE_URL": URL, "APP_ENV": "test"}))
        database._started = True  # as after the start: changes are logged and counted
        try:
            await scenario(database)
        finally:
            await database.stop()

    asyncio.run(main())


def test_the_writer_follows_the_one_primary_and_standbys_join_the_readers() -> None:
    async def scenario(db: Database) -> None:
        db.observe(_round(a="primary", b="standby", c="down"))
        assert db.snapshot.writer_member == A
        assert [state.member for state in db.snapshot.replicas] == [B]
        old_writer = db.writer
        with capture_logs() as logs:
            db.observe(_round(a="down", b="primary", c="standby"))
        assert db.snapshot.writer_member == B
        assert db.writer is not old_writer, "a new pool: no connection to A is reused"
        assert [state.member for state in db.snapshot.replicas] == [C]
        changed = [event for event in logs if event["event"] == "primary changed"]
        assert changed == [
            {
                "event": "primary changed",
                "from_member": A,
                "to_member": B,
                "log_level": "warning",
            }
        ]
        db.observe(_round(a="standby", b="primary", c="standby"))
        assert sorted(state.member for state in db.snapshot.replicas) == [A, C]

    _run(scenario)


def test_no_primary_keeps_the_writer_where_it_was() -> None:
    async def scenario(db: Database) -> None:
        db.observe(_round(a="primary", b="standby", c="standby"))
        writer = db.writer
        db.observe(_round(a="down", b="standby", c="standby"))
        assert db.writer is writer
        assert db.snapshot.write_block is None

    _run(scenario)


def test_two_primaries_refuse_every_write_until_one_steps_down() -> None:
    async def scenario(db: Database) -> None:
        db.observe(_round(a="primary", b="standby", c="standby"))
        db.observe(_round(a="primary", b="primary", c="standby"))
        assert db.snapshot.writer_member == A, "the writer does not move to either claimant"
        with pytest.raises(DatabaseUnavailableError) as caught:
            db.check_writable()
        assert A in caught.value.reason
        assert B in caught.value.reason
        db.observe(_round(a="standby", b="primary", c="standby"))
        db.check_writable()
        assert db.snapshot.writer_member == B

    _run(scenario)


def test_a_fixed_topology_never_moves_the_writer() -> None:
    async def main() -> None:
        settings = Settings.from_env(
            {
                "DATABASE_URL": "postgresql://u@127.0.0.1:1/db",
                "DATABASE_REPLICA_URLS": "postgresql://u@127.0.0.1:2/db",
            }
        )
        db = Database(settings)
        try:
            writer = db.writer
            db.observe(_round(a="standby", b="primary"))
            assert db.writer is writer
            assert db.snapshot.roles == {A: "standby", B: "primary"}
            assert [state.name for state in db.snapshot.replicas] == ["replica-0"]
        finally:
            await db.stop()

    asyncio.run(main())
