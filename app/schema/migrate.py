"""Apply the Alembic migrations programmatically (`messenger migrate`, `just run`, tests).

The Alembic environment lives beside this module (`migrations/`), inside the package, so an
installed wheel can migrate without the repository's `alembic.ini` (which exists for people
who run the `alembic` command itself).

TLS follows the pools' rules (`DB_SSLMODE`, `app.db.engine`): finding the primary of a host
list and the migration's own connection both use the context the pools would use, so a
server the service refuses to serve from is refused here too.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config

from app.config import Settings, SslMode
from app.db.engine import _ssl_context
from app.schema.find_primary import find_primary

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_TLS_MODES = ("require", "verify-ca", "verify-full")


class MigrationConnectError(RuntimeError):
    """The database could not be reached as `DB_SSLMODE` demands; the message is one line
    that names the mode and the driver's reason, never a URL."""


def alembic_config(database_url: str, sslmode: SslMode | None = None) -> Config:
    """An Alembic config bound to `database_url`, not to anything in a file.

    `sslmode` None: `DB_SSLMODE` from the environment (with `APP_ENV`'s default).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = database_url
    config.attributes["sslmode"] = sslmode or sslmode_from_env()
    config.attributes["configure_logging"] = False
    return config


def sslmode_from_env() -> SslMode:
    """`DB_SSLMODE` as the service reads it (`verify-full` by default in production)."""
    return Settings.from_env().database.sslmode


def ssl_context(sslmode: SslMode) -> ssl.SSLContext | None:
    """The TLS context the pools would use for `sslmode` (None: asyncpg's default)."""
    return _ssl_context(sslmode)


def upgrade(database_url: str, revision: str = "head", *, sslmode: SslMode | None = None) -> None:
    """Upgrade the schema at `database_url` (its primary, for a host list) to `revision`."""
    mode = sslmode or sslmode_from_env()
    with _tls_errors(mode):
        command.upgrade(alembic_config(_primary(database_url, mode), mode), revision)


def downgrade(database_url: str, revision: str = "base", *, sslmode: SslMode | None = None) -> None:
    """Downgrade the schema at `database_url` (its primary) to `revision`."""
    mode = sslmode or sslmode_from_env()
    with _tls_errors(mode):
        command.downgrade(alembic_config(_primary(database_url, mode), mode), revision)


def _primary(database_url: str, sslmode: SslMode) -> str:
    """Migrations write: a host list is resolved to its one primary first."""
    return asyncio.run(find_primary(database_url, ssl_context=ssl_context(sslmode)))


@contextmanager
def _tls_errors(sslmode: SslMode) -> Iterator[None]:
    """Turn a refused or failed TLS connection into `MigrationConnectError` (one line)."""
    try:
        yield
    except (ConnectionError, ssl.SSLError) as error:
        # asyncpg raises a plain ConnectionError when the server refuses the TLS upgrade;
        # its subclasses (refused, reset) are not about TLS.
        about_tls = type(error) is ConnectionError or isinstance(error, ssl.SSLError)
        if sslmode not in _TLS_MODES or not about_tls:
            raise
        reason = " ".join(str(error).split()) or type(error).__name__
        raise MigrationConnectError(
            f"TLS to PostgreSQL failed (DB_SSLMODE={sslmode}): {reason}"
        ) from None
