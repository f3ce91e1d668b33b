"""Alembic environment: async migrations over asyncpg against DATABASE_URL (the primary)."""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import ConfigError, Settings, SslMode
from app.db.engine import asyncpg_url
from app.schema.migrate import ssl_context, sslmode_from_env
from app.schema.tables import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def _database_url() -> str:
    url = config.attributes.get("database_url") or Settings.from_env().database.url
    if not url:
        raise ConfigError("DATABASE_URL", "is required to run migrations")
    return asyncpg_url(str(url))


def _sslmode() -> SslMode:
    """`DB_SSLMODE` as the pools use it (`messenger migrate` passes the validated one)."""
    mode: SslMode | None = config.attributes.get("sslmode")
    return mode or sslmode_from_env()


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of connecting (`alembic upgrade head --sql`)."""
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    """Apply migrations in one transaction per run over an async connection, with the TLS
    the pools would use (`DB_SSLMODE`)."""
    timeout_s = float(os.environ.get("DB_CONNECT_TIMEOUT_MS", "5000")) / 1000
    connect_args: dict[str, Any] = {
        "timeout": timeout_s,
        "server_settings": {"application_name": "messenger-migrate"},
    }
    context = ssl_context(_sslmode())
    if context is not None:
        connect_args["ssl"] = context
    engine = create_async_engine(_database_url(), connect_args=connect_args)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
