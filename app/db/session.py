"""The per-request data access handle: executes the routing policy's plans and retries.

Where each operation goes is decided by `app.db.routing.route` (pure); this module runs the
plan, reports what it learned or what failed to the cluster state (`app.db.cluster_state`),
and retries with one helper for reads and writes (`DbSession._retry`). What that amounts to:

- reads go to a healthy, caught-up replica (or the writer when none qualifies, or when the
  request already wrote); a read with a consistency token that no replica is known to have
  replayed asks the replica it would use whether it has, on its own connection, waiting a
  few milliseconds for it (`app.db.replay`), and goes to the writer only when it has not; a
  token ahead of the primary itself is refused (`TokenAheadError`, a 400); a read that fails
  on a replica with a connection error moves to the next replica or the writer at once, and
  that replica leaves the rotation until the monitor sees it recover;
- writes go to the writer; after a write, `commit_lsn` holds the primary's WAL position so
  the response can carry it (`app.api.consistency`);
- transient connection failures are retried with exponential backoff (stamina, 100/200/400 ms
  plus jitter): reads always; writes only when the statement never reached the server or the
  write is idempotent (a retry of a committed, non-idempotent write would duplicate it).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import NoReturn, TypeVar

import stamina
import structlog
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from app.db import metrics
from app.db.cluster import Database
from app.db.connection import Connection, DriverConnection, Scalar
from app.db.errors import (
    CommandTimeoutError,
    DatabaseUnavailableError,
    TokenAheadError,
    is_database_error,
    is_read_only,
    is_statement_timeout,
    is_transient,
    never_sent,
)
from app.db.pool import Pool
from app.db.replay import replay_position
from app.db.routing import NO_FAILURES, Kind, Plan, route

T = TypeVar("T")
Operation = Callable[[Connection], Awaitable[T]]

RETRY_ATTEMPTS = 4  # the first try and 3 retries
RETRY_WAIT_INITIAL_S = 0.1  # then 0.2 and 0.4
RETRY_JITTER_S = 0.05
# stamina clamps wait + jitter to the maximum: leave room for the jitter of the last wait.
RETRY_WAIT_MAX_S = 0.4 + RETRY_JITTER_S

_READ, _READ_PRIMARY, _WRITE = Kind.READ, Kind.READ_PRIMARY, Kind.WRITE  # one global lookup each

_WAL_POSITION: Scalar[int] = Scalar("SELECT pg_current_wal_lsn()", int)  # asyncpg: pg_lsn -> int


class _NotReplayed(Exception):
    """A checked replica had not replayed the token: the read follows the plan's fallback."""


log = structlog.get_logger("app.db.session")


def _log_retry(details: RetryDetails) -> None:
    """stamina's own hooks would log the exception's repr, which quotes SQL and parameters."""
    log.info(
        "retrying after a transient database failure",
        retry=details.retry_num,
        wait_s=round(details.wait_for, 3),
        error=type(details.caused_by).__name__,
    )


set_on_retry_hooks([_log_retry])


class _SentError(Exception):
    """Wraps a failure that happened after the statement may have reached the server."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error


def _retryable(error: Exception) -> bool:
    return not isinstance(error, _SentError) and (is_transient(error) or is_read_only(error))


class DbSession:
    """Request-scoped: remembers whether the request wrote and the token it must honour, and
    executes the routing policy's plans (`app.db.routing`)."""

    __slots__ = ("_db", "_min_lsn", "commit_lsn", "wrote")

    def __init__(self, db: Database, min_lsn: int | None = None) -> None:
        self._db = db
        self._min_lsn = min_lsn
        self.wrote = False
        self.commit_lsn: int | None = None

    async def read(self, operation: Operation[T], *, on_primary: bool = False) -> T:
        """Run a read-only `operation` on the right reader, retrying transient failures.

        `on_primary`: what was just written elsewhere must be seen now, and no token names
        it (a login right after registering, a refresh token minted a moment ago)."""
        kind = _READ_PRIMARY if on_primary else _READ
        try:
            return await self._read_once(operation, kind)  # the fast path
        except Exception as error:
            return await self._retry(
                error,
                is_transient,
                lambda: self._read_once(operation, kind),
                lambda: self._retry_pool(kind),
            )

    async def write(self, operation: Operation[T], *, idempotent: bool = False) -> T:
        """Run a writing `operation` on the writer and record the commit position.

        Each operation is one autocommit statement. After a transient failure it is retried
        only when it never reached the server or `idempotent` is true.
        """
        self.wrote = True
        try:
            return await self._write_once(operation, idempotent=idempotent)
        except Exception as error:
            return await self._retry(
                error,
                _retryable,
                lambda: self._write_once(operation, idempotent=idempotent),
                lambda: self._db.state.snapshot.writer.name,
            )

    async def _retry(
        self,
        first_failure: Exception,
        retryable: Callable[[Exception], bool],
        again: Callable[[], Awaitable[T]],
        pool_name: Callable[[], str],
    ) -> T:
        """After the first attempt failed: retry with backoff while the failure is
        `retryable` (stamina), counting each retry against the pool it goes to; a failure
        that is not, or the last one, is translated (`_raise_translated`)."""
        if not retryable(first_failure):
            _raise_translated(first_failure)
        try:
            async for attempt in _retrying(retryable):
                with attempt:
                    if attempt.num == 1:
                        raise first_failure  # let stamina schedule the backoff after it
                    metrics.RETRIES.labels(pool_name()).inc()
                    return await again()
        except Exception as error:
            _raise_translated(error)
        raise AssertionError("unreachable: stamina re-raises the last failure")

    def _retry_pool(self, kind: Kind) -> str:
        """The pool a read's retry is counted against: where the plan reads without asking
        (a checked read counts against the writer, its fallback)."""
        state = self._db.state
        token = self._min_lsn
        now = time.monotonic() if token is not None else 0.0
        plan = route(kind, token, state.snapshot, self.wrote, NO_FAILURES, next(state.turns), now)
        return (plan.fallback or plan).pool.name

    async def _read_once(self, operation: Operation[T], kind: Kind) -> T:
        """One attempt: execute the plan; a replica that fails with a connection error is
        reported, and the read moves to the next plan at once (no backoff)."""
        state = self._db.state
        token = self._min_lsn
        now = time.monotonic() if token is not None else 0.0
        failed = NO_FAILURES
        while True:
            plan = route(kind, token, state.snapshot, self.wrote, failed, next(state.turns), now)
            if plan.check_replay:
                try:
                    return await self._read_checked(plan, operation)
                except _NotReplayed:
                    pass
                except Exception as error:
                    failed = self._replica_failed(plan, error, failed)
                plan = plan.fallback or self._db.state.snapshot.plans.token_writer
            if plan.refuse_token_ahead:
                await self._refuse_token_ahead()
            if plan.counts_as is not None:
                metrics.TOKEN_READS.labels(plan.counts_as).inc()
            try:
                return await _run(plan.pool, operation, in_transaction=self._transactions)
            except Exception as error:
                if plan.replica is None:
                    _note_failure(plan.pool, error)
                    raise
                failed = self._replica_failed(plan, error, failed)
                metrics.RETRIES.labels(plan.pool.name).inc()

    def _replica_failed(
        self, plan: Plan, error: Exception, failed: frozenset[str]
    ) -> frozenset[str]:
        """A replica failed the read: a connection failure takes it out of rotation and the
        read goes on without it; any other failure is the read's."""
        _note_failure(plan.pool, error)
        if plan.replica is None or not is_transient(error):
            raise error
        self._db.state.replica_failed(plan.replica, f"read failed: {type(error).__name__}")
        return failed | {plan.replica}

    async def _read_checked(self, plan: Plan, operation: Operation[T]) -> T:
        """Ask the replica, on the connection the read uses, whether it has replayed the
        token (`app.db.replay`), and read there when it has; `_NotReplayed` when not."""
        db = self._db
        token = self._min_lsn
        assert token is not None, "only a token read is checked"
        assert plan.replica is not None, "only a replica is checked"
        monitor = db.settings.monitor
        async with plan.pool.acquire() as conn:
            position = await replay_position(
                conn, token, wait_s=monitor.token_wait_s, known_primary=db.state.primary_position
            )
            db.state.replay_seen(plan.replica, position)
            if position >= token:
                metrics.TOKEN_READS.labels("replica_checked").inc()
                return await _execute(conn, operation, in_transaction=self._transactions)
        # Raised once the connection is back in the pool: it was not at fault.
        db.state.replica_slow(plan.replica, for_s=monitor.interval_s)
        raise _NotReplayed

    async def _refuse_token_ahead(self) -> None:
        """A token read on the writer: a token past the primary's known position may be
        genuine (another instance wrote since), so the primary is asked; one past its answer
        is refused (`TokenAheadError`, a 400)."""
        db = self._db
        token = self._min_lsn
        if token is None or token <= db.state.primary_position:
            return
        try:
            ahead = token > await db.refresh_primary_position()
        except Exception:  # the writer is unreachable: the read itself says so (503)
            ahead = False
        if ahead:
            metrics.TOKEN_READS.labels("rejected").inc()
            raise TokenAheadError("the token is ahead of the primary")

    async def _write_once(self, operation: Operation[T], *, idempotent: bool) -> T:
        """One attempt on the writer as it is now (a failover moves it between attempts).

        A failure to get a connection means nothing was sent: retryable as it is. So is a
        statement a standby refused (read-only: nothing was written)."""
        plan = route(_WRITE, None, self._db.state.snapshot, True, NO_FAILURES, 0, 0.0)
        if plan.refused is not None:
            raise DatabaseUnavailableError(plan.refused, retry_after_s=1)
        writer = plan.pool
        try:
            async with writer.acquire() as conn:
                try:
                    result = await _execute(conn, operation, in_transaction=self._transactions)
                except Exception as error:
                    _note_failure(writer, error)
                    if is_read_only(error) or (
                        is_transient(error) and (idempotent or never_sent(error))
                    ):
                        raise
                    raise _SentError(error) from error
                await self._record_position(conn)
                return result
        except BaseException as error:
            cause = error.error if isinstance(error, _SentError) else error
            if is_read_only(cause) or is_transient(cause):
                self._db.writer_failed()  # the monitor looks for a new primary now
            raise

    async def _record_position(self, conn: Connection) -> None:
        """Best effort: the write has committed, so failing here must not fail the request."""
        try:
            self.commit_lsn = await conn.fetch_scalar(_WAL_POSITION)
        except Exception as error:
            log.warning("consistency token unavailable", error=type(error).__name__)
            return
        self._db.state.commit_seen(self.commit_lsn)

    @property
    def _transactions(self) -> bool:
        """PgBouncer (transaction pooling) may run a statement's prepare and execute on
        different server connections unless they share a transaction."""
        return self._db.settings.database.pgbouncer


async def _run(pool: Pool, operation: Operation[T], *, in_transaction: bool) -> T:
    async with pool.acquire() as conn:
        return await _execute(conn, operation, in_transaction=in_transaction)


async def _execute(conn: DriverConnection, operation: Operation[T], *, in_transaction: bool) -> T:
    """Run `operation` (in a transaction of its own in PgBouncer mode). A client-side command
    timeout becomes `CommandTimeoutError`; the pool then discards the connection, which may
    still be busy cancelling."""
    try:
        if in_transaction:
            async with conn.driver.transaction(isolation="read_committed"):
                return await operation(conn)
        return await operation(conn)
    except TimeoutError as error:
        raise CommandTimeoutError("the server did not answer in time") from error


def _note_failure(pool: Pool, error: BaseException) -> None:
    if not is_database_error(error):
        return  # a domain error raised by the operation itself, not a database failure
    if is_transient(error):
        kind = "transient"
    elif is_statement_timeout(error):
        kind = "statement_timeout"
    else:
        kind = "query"
    metrics.ERRORS.labels(pool.name, kind).inc()


def _retrying(on: Callable[[Exception], bool]) -> AsyncIterable[stamina.Attempt]:
    return stamina.retry_context(
        on=on,
        attempts=RETRY_ATTEMPTS,
        wait_initial=RETRY_WAIT_INITIAL_S,
        wait_max=RETRY_WAIT_MAX_S,
        wait_jitter=RETRY_JITTER_S,
        wait_exp_base=2,
    )


def _raise_translated(error: BaseException) -> NoReturn:
    """Connection failures and statement timeouts become `DatabaseUnavailableError` (503)."""
    if isinstance(error, _SentError):
        error = error.error
    if isinstance(error, DatabaseUnavailableError):
        raise error
    if is_statement_timeout(error):
        raise DatabaseUnavailableError("the database did not answer in time") from error
    if is_read_only(error):
        raise DatabaseUnavailableError(
            "the primary is read-only: a failover is under way"
        ) from error
    if is_transient(error):
        raise DatabaseUnavailableError("the database is unreachable") from error
    raise error
