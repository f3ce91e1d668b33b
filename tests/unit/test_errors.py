"""Which failures are transient, never sent, or statement timeouts.

The exceptions are the real ones: asyncpg's classes, translated by SQLAlchemy's own asyncpg
adapter and wrapped by `DBAPIError.instance` exactly as a failing statement raises them.
"""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import (
    AsyncAdapt_asyncpg_connection,
    AsyncAdapt_asyncpg_dbapi,
)

from app.db.errors import (
    CommandTimeoutError,
    DatabaseUnavailableError,
    is_statement_timeout,
    is_transient,
    never_sent,
    sqlstate_of,
)

_DBAPI = AsyncAdapt_asyncpg_dbapi(asyncpg)


def wrapped(error: Exception, *, invalidated: bool = False) -> BaseException:
    """`error` as SQLAlchemy raises it from a statement: adapter error inside a DBAPIError."""
    try:
        try:
            AsyncAdapt_asyncpg_connection._handle_exception_no_connection(_DBAPI, error)
        except Exception as adapted:
            raise sa_exc.DBAPIError.instance(
                "SELECT 1", {}, adapted, _DBAPI.Error, connection_invalidated=invalidated
            ) from adapted
    except sa_exc.DBAPIError as final:
        return final
    raise AssertionError("not raised")


def server_error(cls: type[asyncpg.PostgresError], message: str) -> asyncpg.PostgresError:
    return cls(message)


TRANSIENT = [
    pytest.param(
        server_error(asyncpg.ConnectionDoesNotExistError, "closed in the middle of operation"),
        id="closed mid-operation (08003)",
    ),
    pytest.param(server_error(asyncpg.ConnectionFailureError, "connection failure"), id="08006"),
    pytest.param(server_error(asyncpg.TooManyConnectionsError, "too many clients"), id="53300"),
    pytest.param(
        server_error(asyncpg.CannotConnectNowError, "the database system is starting up"),
        id="starting up (57P03)",
    ),
    pytest.param(server_error(asyncpg.AdminShutdownError, "terminating connection"), id="57P01"),
    pytest.param(server_error(asyncpg.CrashShutdownError, "crash"), id="57P02"),
]

NOT_TRANSIENT = [
    pytest.param(
        server_error(asyncpg.UniqueViolationError, "duplicate key"), id="unique violation"
    ),
    pytest.param(server_error(asyncpg.ForeignKeyViolationError, "fk"), id="foreign key violation"),
    pytest.param(server_error(asyncpg.PostgresSyntaxError, "syntax error"), id="syntax"),
    pytest.param(
        server_error(asyncpg.QueryCanceledError, "canceling statement due to statement timeout"),
        id="statement timeout (57014)",
    ),
    pytest.param(server_error(asyncpg.DeadlockDetectedError, "deadlock detected"), id="deadlock"),
]


@pytest.mark.parametrize("error", TRANSIENT)
def test_connection_failures_are_transient_raw_and_wrapped(error: Exception) -> None:
    assert is_transient(error)
    assert is_transient(wrapped(error))
    assert not is_statement_timeout(wrapped(error))


@pytest.mark.parametrize("error", NOT_TRANSIENT)
def test_query_errors_are_never_transient(error: Exception) -> None:
    assert not is_transient(error)
    # Not even when SQLAlchemy invalidated the connection on the way.
    assert not is_transient(wrapped(error, invalidated=True))


def test_sqlstate_is_found_through_the_wrappers() -> None:
    error = wrapped(server_error(asyncpg.UniqueViolationError, "duplicate key"))
    assert isinstance(error, sa_exc.IntegrityError)
    assert sqlstate_of(error) == "23505"


def test_statement_timeout_is_recognised_server_and_client_side() -> None:
    server_side = wrapped(
        server_error(asyncpg.QueryCanceledError, "canceling statement due to statement timeout")
    )
    assert is_statement_timeout(server_side)
    client_side = CommandTimeoutError("the server did not answer in time")
    client_side.__cause__ = TimeoutError()
    assert is_statement_timeout(client_side)
    assert not is_transient(client_side)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ConnectionRefusedError(111, "Connect call failed"), id="refused"),
        pytest.param(ConnectionResetError(104, "Connection reset by peer"), id="reset"),
        pytest.param(OSError(113, "No route to host"), id="unreachable"),
        pytest.param(TimeoutError(), id="connect timeout (asyncpg raises asyncio.TimeoutError)"),
    ],
)
def test_socket_failures_while_connecting_are_transient(error: Exception) -> None:
    assert is_transient(error)


def test_a_connection_sqlalchemy_invalidated_is_transient() -> None:
    closed = asyncpg.InterfaceError("cannot perform operation: connection is closed")
    assert is_transient(wrapped(closed, invalidated=True))


def test_using_a_connection_known_closed_was_never_sent() -> None:
    closed = asyncpg.InterfaceError("cannot perform operation: connection is closed")
    error = wrapped(closed, invalidated=True)
    assert never_sent(error)
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        server_error(asyncpg.ConnectionDoesNotExistError, "closed in the middle of operation"),
        server_error(asyncpg.AdminShutdownError, "terminating connection"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
    ],
)
def test_a_connection_lost_mid_statement_may_have_been_sent(error: Exception) -> None:
    assert not never_sent(wrapped(error))


def test_overload_and_unavailability_are_not_retried_here() -> None:
    assert not is_transient(sa_exc.TimeoutError("QueuePool limit reached"))
    assert not is_transient(DatabaseUnavailableError("no free connection"))


def test_other_interface_errors_are_not_transient() -> None:
    busy = asyncpg.InterfaceError("cannot perform operation: another operation is in progress")
    assert not is_transient(wrapped(busy))
    assert not is_transient(ValueError("not a database error"))


def test_a_checkout_that_gave_up_on_a_restarting_server_is_transient() -> None:
    """SQLAlchemy gives up a checkout whose connection failed its ping twice with
    `InvalidRequestError("This connection is closed")`: nothing was sent, so it is retried
    (it answered 500 during a primary restart once)."""
    from sqlalchemy import exc as sa_exc

    assert is_transient(sa_exc.InvalidRequestError("This connection is closed"))
    assert is_transient(sa_exc.DisconnectionError("connection failed its ping"))
    assert not is_transient(sa_exc.InvalidRequestError("some other misuse"))


# asyncpg's own texts (coreproto.pyx): the first two are raised when an operation starts on a
# protocol still in another state, before its message is written; the last after a result.
_OUT_OF_STEP_AT_START = [
    asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    asyncpg.InternalClientError('cannot switch to state 11; protocol is in the "failed" state'),
]


@pytest.mark.parametrize("error", _OUT_OF_STEP_AT_START)
def test_a_protocol_out_of_step_at_the_start_is_transient_and_never_sent(error: Exception) -> None:
    """A session ended by the server during a prepare leaves asyncpg's protocol out of step:
    the statement's next message is refused before it is written (it answered 500 during
    primary stops until this was classified)."""
    assert is_transient(error)
    assert is_transient(wrapped(error))
    assert never_sent(wrapped(error))


def test_a_protocol_out_of_step_after_a_result_is_transient_but_may_have_been_sent() -> None:
    after_result = asyncpg.InternalClientError(
        'cannot switch to "idle" state; protocol is in the "failed" state'
    )
    assert is_transient(wrapped(after_result))
    assert not never_sent(wrapped(after_result))


def test_an_internal_client_error_of_another_library_is_not_transient() -> None:
    class InternalClientError(Exception):
        """Same name, not asyncpg's."""

    assert not is_transient(InternalClientError("cannot switch to state 12"))
    assert not never_sent(InternalClientError("cannot switch to state 12"))
