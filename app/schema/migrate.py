"""Apply the Alembic migrations programmatically (`messenger migrate`, `just run`, tests).

The Alembic environment lives beside this module (`migrations/`), inside the package, so an
installed wheel can migrate without the repository's `alembic.ini` (which exists for people
who run the `alembic` command itself).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from app.db.discovery import find_primary

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config bound to `database_url`, not to anything in a file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the schema at `database_url` (its primary, for a host list) to `revision`."""
    command.upgrade(alembic_config(_primary(database_url)), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Downgrade the schema at `database_url` (its primary) to `revision`."""
    command.downgrade(alembic_config(_primary(database_url)), revision)


def _primary(database_url: str) -> str:
    """Migrations write: a host list is resolved to its one primary first."""
    return asyncio.run(find_primary(database_url))
