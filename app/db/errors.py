"""What the data layer raises, and which driver failures count as transient."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

# SQLSTATEs of failures that a retry on a fresh connection can cure.
_TRANSIENT_SQLSTATES = frozenset(
    {
        "53300",  # too_many_connections
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, shutting down, in recovery)
    }
)
_STATEMENT_TIMEOUT = "57014"  # query_canceled (statement_timeout)


class DatabaseUnavailableError(Exception):
    """No server could serve the operation in time; the API answers 503 with a reason."""

    def __init__(self, reason: str, *, retry_after_s: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, what SQLAlchemy wrapped (`orig`) and its causes, each once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend([getattr(current, "orig", None), current.__cause__])


def sqlstate_of(error: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind a (possibly wrapped) driver error, if any."""
    for item in _chain(error):
        code = getattr(item, "sqlstate", None) or getattr(item, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def is_transient(error: BaseException) -> bool:
    """Whether `error` is a connection-level failure worth retrying on a fresh connection.

    Query errors (constraints, syntax, statement timeouts) are never transient; neither is a
    pool timeout, which means overload and is answered with 503 at once.
    """
    if isinstance(error, (sa_exc.TimeoutError, DatabaseUnavailableError)):
        return False
    code = sqlstate_of(error)
    if code is not None:
        return code.startswith("08") or code in _TRANSIENT_SQLSTATES
    for item in _chain(error):
        if isinstance(item, sa_exc.DBAPIError) and item.connection_invalidated:
            return True
        if isinstance(item, (OSError, asyncio.TimeoutError, ConnectionError)):
            return True
        name = type(item).__name__
        if name in {"ConnectionDoesNotExistError", "InterfaceError", "InternalClientError"} and (
            "closed" in str(item) or "connection" in str(item).lower()
        ):
            return True
    return False


def is_statement_timeout(error: BaseException) -> bool:
    """Whether the server cancelled the statement for exceeding `statement_timeout`."""
    return sqlstate_of(error) == _STATEMENT_TIMEOUT
