"""Alembic: upgrade, downgrade to base, upgrade again, on a scratch database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from app.schema.migrate import downgrade, upgrade
from tests.support.cluster import TestDatabase, fetchval

_TABLES = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY($1)"
_NAMES = ["users", "chats", "chat_members", "messages", "refresh_tokens"]


@pytest.fixture
def scratch_url(database: TestDatabase) -> Iterator[str]:
    name = f"migrate_{uuid.uuid4().hex[:8]}"
    fetchval(database.primary_url, f'CREATE DATABASE "{name}"')
    base, _, _ = database.primary_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        fetchval(database.primary_url, f'DROP DATABASE "{name}" WITH (FORCE)')


_XID_COLUMNS = (
    "SELECT count(*) FROM information_schema.columns"
    " WHERE table_schema = 'public' AND column_name = 'xid'"
)


def test_upgrade_downgrade_upgrade(scratch_url: str) -> None:
    upgrade(scratch_url)
    assert fetchval(scratch_url, _TABLES, _NAMES) == 5
    assert fetchval(scratch_url, "SELECT version_num FROM alembic_version") == "0006"
    assert fetchval(scratch_url, _TABLES, ["chat_departures"]) == 1
    downgrade(scratch_url, "0005")
    assert fetchval(scratch_url, _TABLES, ["chat_departures"]) == 0
    downgrade(scratch_url, "0004")
    assert fetchval(scratch_url, _XID_COLUMNS) == 0
    downgrade(scratch_url, "0002")
    assert fetchval(scratch_url, _TABLES, _NAMES) == 5
    downgrade(scratch_url, "0001")
    assert fetchval(scratch_url, _TABLES, _NAMES) == 4
    downgrade(scratch_url, "base")
    assert fetchval(scratch_url, _TABLES, _NAMES) == 0
    upgrade(scratch_url)
    assert fetchval(scratch_url, _TABLES, _NAMES) == 5
    assert fetchval(scratch_url, _XID_COLUMNS) == 3


def test_schema_enforces_the_data_model(scratch_url: str) -> None:
    upgrade(scratch_url)
    indexes = fetchval(
        scratch_url,
        "SELECT array_agg(indexname::text ORDER BY indexname) FROM pg_indexes"
        " WHERE schemaname = 'public'",
    )
    for expected in (
        "ix_messages_chat_id_id",
        "ix_messages_xid_id",
        "ix_messages_chat_id_xid_id",
        "ix_chat_members_xid",
        "ix_chat_members_user_id_chat_id",
        "ix_chat_departures_user_id_xid",
        "uq_messages_sender_id_client_msg_id",
        "uq_users_username",
    ):
        assert expected in indexes
    definition = fetchval(
        scratch_url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_messages_chat_id_id'"
    )
    assert "id DESC" in definition
    assert "ix_chat_members_user_id" not in indexes  # replaced by (user_id, chat_id)
