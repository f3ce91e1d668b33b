"""One async SQLAlchemy engine (asyncpg) per pool, with its connection policy as pool events.

Policies added through SQLAlchemy's pool events rather than its fixed options:
- pre-ping only connections that sat idle (`PING_AFTER_IDLE_S`): a hot connection is not
  pinged on every checkout, which would double the round trips of a one-statement request;
- recycling after `DB_MAX_LIFETIME_S` minus up to 10% jitter, so a pool opened at once does
  not reconnect at once;
- pool events logged (opened, invalidated, recycled) without DSN or SQL.
"""

from __future__ import annotations

import random
import ssl
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog
from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from app.config import PoolSettings, SslMode

PING_AFTER_IDLE_S = 1.0
RECYCLE_JITTER = 0.1
CHECKED_IN_AT = "checked_in_at"
_RECYCLE_AT = "recycle_at"

log = structlog.get_logger("app.db.pool")


APPLICATION_PREFIX = "messenger-"
"""Every pool's connections carry `application_name` = this prefix + the pool's name: it names
them in `pg_stat_activity`, and tracing reads the pool of a statement from it."""


def application_name(pool: str) -> str:
    """The `application_name` of the connections of `pool`."""
    return APPLICATION_PREFIX + pool


def pool_of_application(name: str) -> str | None:
    """The pool whose connections carry `application_name` = `name` (None: not ours)."""
    return name.removeprefix(APPLICATION_PREFIX) if name.startswith(APPLICATION_PREFIX) else None


def create_pool_engine(
    *,
    name: str,
    url: str,
    pool: PoolSettings,
    sslmode: SslMode,
    pgbouncer: bool,
) -> AsyncEngine:
    """An engine whose pool keeps up to `pool.max_size` connections, reused LIFO.

    Connections are in autocommit: every repository operation is one statement, which is
    atomic on its own, so no BEGIN/COMMIT round trips are spent around it. In PgBouncer mode
    `DbSession` wraps each operation in an asyncpg transaction of its own: asyncpg prepares a
    statement and executes it in two protocol exchanges, which transaction pooling would
    otherwise be free to send to two different server connections.
    """
    # application_name is a startup parameter PgBouncer accepts and tracks; statement_timeout
    # is not (it rejects the connection), so in PgBouncer mode it is enforced client side.
    server_settings = {"application_name": application_name(name)}
    connect_args: dict[str, Any] = {
        "timeout": pool.connect_timeout_s,
        "server_settings": server_settings,
        "command_timeout": _command_timeout_s(pool.statement_timeout_s, pgbouncer=pgbouncer),
    }
    if pool.statement_timeout_s and not pgbouncer:
        server_settings["statement_timeout"] = str(round(pool.statement_timeout_s * 1000))
    if pgbouncer:
        # No server-side statement cache, and unique names for the statements asyncpg
        # prepares, since consecutive transactions may run on different server connections.
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = lambda: f"__asyncpg_{uuid.uuid4().hex}__"
    ssl_context = _ssl_context(sslmode)
    if ssl_context is not None:
        connect_args["ssl"] = ssl_context
    engine = create_async_engine(
        asyncpg_url(url),
        pool_size=max(pool.max_size, 1),
        max_overflow=0,
        pool_timeout=pool.timeout_s,
        pool_use_lifo=True,
        pool_pre_ping=False,
        pool_recycle=-1,
        # No rollback on return: connections are in autocommit, PgBouncer mode's transactions
        # end inside their operation, and one interrupted in a transaction is invalidated
        # (app/db/pool.py). So a return does no I/O and needs no greenlet.
        pool_reset_on_return=None,
        # Statements run on the driver connection (app/db/pool.py), outside SQLAlchemy's
        # transactions; PgBouncer mode opens its own asyncpg transaction per operation.
        isolation_level="AUTOCOMMIT",
        connect_args=connect_args,
    )
    _install_events(engine, name, pool)
    return engine


def asyncpg_url(url: str) -> str:
    """Force the asyncpg driver and drop libpq-only query options asyncpg does not accept."""
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query) if k not in {"sslmode", "target_session_attrs"}
    ]
    scheme = "postgresql+asyncpg"
    rebuilt = urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
    make_url(rebuilt)  # validate early; raises ArgumentError without echoing the password
    return rebuilt


def _command_timeout_s(statement_timeout_s: float, *, pgbouncer: bool) -> float | None:
    """asyncpg's client-side bound on each statement (it then sends a cancel request).

    Directly connected, the server's `statement_timeout` fires first and this only catches
    a server that stopped answering. Through PgBouncer (transaction pooling) a session
    setting cannot be relied on, so this is the statement timeout itself; set it on the
    server too (`ALTER ROLE ... SET statement_timeout`) to stop the statement there.
    """
    if not statement_timeout_s:
        return None
    return statement_timeout_s if pgbouncer else statement_timeout_s + 2


def _ssl_context(mode: SslMode) -> ssl.SSLContext | None:
    if mode in ("disable", "allow", "prefer"):
        return None
    context = ssl.create_default_context()
    if mode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode == "verify-ca":
        context.check_hostname = False
    return context


def _install_events(engine: AsyncEngine, name: str, pool: PoolSettings) -> None:
    target = engine.sync_engine
    lifetime = pool.max_lifetime_s

    @event.listens_for(target, "connect")
    def on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RECYCLE_AT] = time.monotonic() + lifetime * (
            1 - RECYCLE_JITTER * random.random()  # noqa: S311 - jitter, not security
        )
        # The record outlives its connections: a fresh one is not idle, so no ping for it
        # (a stale mark made SQLAlchemy ping a brand-new connection during a restart and give
        # up on the checkout with InvalidRequestError after its second failed attempt).
        record.info.pop(CHECKED_IN_AT, None)
        log.debug("connection opened", pool=name)

    @event.listens_for(target, "checkin")
    def on_checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(target, "checkout")
    def on_checkout(
        dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        now = time.monotonic()
        if now >= record.info.get(_RECYCLE_AT, float("inf")):
            log.debug("connection recycled", pool=name)
            raise exc.DisconnectionError("connection reached its maximum lifetime")
        checked_in_at = record.info.get(CHECKED_IN_AT)
        if checked_in_at is not None and now - checked_in_at >= PING_AFTER_IDLE_S:
            try:
                dbapi_connection.ping()
            except Exception as error:
                log.warning("stale connection replaced", pool=name, error=type(error).__name__)
                raise exc.DisconnectionError("connection failed its ping") from None

    @event.listens_for(target, "invalidate")
    def on_invalidate(
        dbapi_connection: Any, record: ConnectionPoolEntry, error: BaseException | None
    ) -> None:
        log.info(
            "connection invalidated",
            pool=name,
            error=type(error).__name__ if error is not None else None,
        )
