"""What the data layer raises, and which driver failures count as transient.

Four questions are answered here, from the exception alone:
- `is_transient`: a connection-level failure that a retry on a fresh connection can cure;
- `never_sent`: the statement provably never left the client (safe to retry any write);
- `is_statement_timeout`: the server (or the client-side bound) gave up on a slow statement;
- `is_unique_violation`: a unique constraint refused the row (a repository's conflict).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

# SQLSTATEs of failures that a retry on a fresh connection can cure (class 08 too).
_TRANSIENT_SQLSTATES = frozenset(
    {
        "53300",  # too_many_connections
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, shutting down, in recovery)
    }
)
_STATEMENT_TIMEOUT = "57014"  # query_canceled (statement_timeout)
_UNIQUE_VIOLATION = "23505"
_READ_ONLY = "25006"  # read_only_sql_transaction: a standby (or a demoted primary) refused a write
# asyncpg's InterfaceError text when an operation is attempted on a connection it already
# knows is closed: raised before anything is written to the socket.
_CLOSED_BEFORE_SEND = "connection is closed"
# Driver errors without a SQLSTATE whose text says the connection went away.
_CONNECTION_LOST = ("connection is closed", "connection was closed", "connection lost")
# asyncpg's InternalClientError when an operation starts while its protocol is still in
# another state: raised by the state switch that precedes writing the first message.
_OUT_OF_STEP_BEFORE_SEND = "cannot switch to state "


class DatabaseUnavailableError(Exception):
    """No server could serve the operation in time; the API answers 503 with a reason."""

    def __init__(self, reason: str, *, retry_after_s: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class TokenAheadError(Exception):
    """A consistency token names a WAL position the primary has not reached: it was not
    returned by this service (a client error, answered 400)."""


class CommandTimeoutError(Exception):
    """The server did not answer a statement within the client-side bound (asyncpg's
    `command_timeout`); treated like a statement timeout, never retried."""


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, what SQLAlchemy wrapped (`orig`) and its causes, each once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop(0)
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
    if isinstance(error, (sa_exc.TimeoutError, DatabaseUnavailableError, CommandTimeoutError)):
        return False
    code = sqlstate_of(error)
    if code is not None:
        return code.startswith("08") or code in _TRANSIENT_SQLSTATES
    return any(_connection_lost(item) for item in _chain(error))


def _connection_lost(item: BaseException) -> bool:
    """One link of an error's chain says the connection is gone (or never came)."""
    if isinstance(item, sa_exc.DBAPIError) and item.connection_invalidated:
        return True
    # Refused, reset, unreachable, and asyncpg's connect timeout (TimeoutError is an
    # OSError); a statement's client-side timeout arrives as CommandTimeoutError instead.
    if isinstance(item, OSError) or _checkout_gave_up(item):
        return True
    if _out_of_step(item):
        return True
    if type(item).__name__ == "InterfaceError":
        message = str(item).lower()
        return any(phrase in message for phrase in _CONNECTION_LOST)
    return False


def _out_of_step(item: BaseException) -> bool:
    """asyncpg's protocol lost track of the server: its `InternalClientError`. Seen when the
    server ends a session (a primary shutting down, `pg_terminate_backend`) while a statement
    is being prepared: about 1 termination in 4 here, and the same in SQLAlchemy issue 13241.
    The connection is unusable, like a lost one (it is closed by then)."""
    return type(item).__name__ == "InternalClientError" and type(item).__module__.startswith(
        "asyncpg"
    )


def never_sent(error: BaseException) -> bool:
    """Whether the statement provably never reached the server for execution: the driver
    refused to use a connection it had already seen close, or its protocol refused to start
    the statement's next message (a FATAL error ended the session during the prepare, which
    executes nothing). Any write may be retried after such a failure."""
    for item in _chain(error):
        if not type(item).__module__.startswith("asyncpg"):
            continue
        name, message = type(item).__name__, str(item)
        if name == "InterfaceError" and _CLOSED_BEFORE_SEND in message:
            return True
        if name == "InternalClientError" and message.startswith(_OUT_OF_STEP_BEFORE_SEND):
            return True
    return False


def is_database_error(error: BaseException) -> bool:
    """Whether `error` comes from the database or the driver (not from the caller's code)."""
    if isinstance(error, (sa_exc.SQLAlchemyError, OSError, CommandTimeoutError)):
        return True
    return type(error).__module__.startswith("asyncpg")


def is_statement_timeout(error: BaseException) -> bool:
    """Whether the statement was cancelled for exceeding `statement_timeout` (server side)
    or the client-side command timeout."""
    if any(isinstance(item, CommandTimeoutError) for item in _chain(error)):
        return True
    return sqlstate_of(error) == _STATEMENT_TIMEOUT


def is_unique_violation(error: BaseException) -> bool:
    """Whether a unique constraint refused the statement's row."""
    return sqlstate_of(error) == _UNIQUE_VIOLATION


def is_read_only(error: BaseException) -> bool:
    """Whether the server refused a write because it is a standby (SQLSTATE 25006): nothing
    was written, and the connection is on the wrong server."""
    return sqlstate_of(error) == _READ_ONLY


def _checkout_gave_up(item: BaseException) -> bool:
    """A checkout whose connection failed its ping twice (a server restarting under it):
    SQLAlchemy gives up with "This connection is closed"; nothing was sent."""
    if isinstance(item, sa_exc.DisconnectionError):
        return True
    return isinstance(item, sa_exc.InvalidRequestError) and "connection is closed" in str(item)
