"""The migrations build exactly the tables of `app.schema.tables`, and every statement the
data layer runs is valid against them (prepared by the real server)."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.connection import Query, Scalar
from app.db.engine import asyncpg_url
from app.schema.tables import metadata
from tests.support.cluster import TestDatabase

_MODULES_WITH_STATEMENTS = (
    "app.domain.users",
    "app.domain.chats",
    "app.domain.messages",
    "app.db.session",
    "app.db.cluster",
)


def _statements() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for name in _MODULES_WITH_STATEMENTS:
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if isinstance(value, (Query, Scalar)):
                found.append((f"{name}.{attribute}", value.sql))
    return found


STATEMENTS = _statements()


def test_every_module_with_statements_is_searched() -> None:
    assert len(STATEMENTS) >= 15, STATEMENTS


def test_the_migrated_database_matches_the_tables(database: TestDatabase) -> None:
    def compare(connection: SyncConnection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async def run() -> list[Any]:
        engine = create_async_engine(asyncpg_url(database.primary_url))
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(compare)
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == []


@pytest.mark.parametrize(("name", "sql"), STATEMENTS, ids=[name for name, _ in STATEMENTS])
def test_the_statement_is_valid_against_the_schema(
    database: TestDatabase, name: str, sql: str
) -> None:
    async def prepare() -> None:
        conn = await asyncpg.connect(database.primary_url, timeout=5)
        try:
            await conn.prepare(sql)  # parses, resolves every table and column, plans
        finally:
            await conn.close()

    asyncio.run(prepare())
