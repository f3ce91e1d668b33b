"""The per-request data access handle: routes each operation to a pool and retries it.

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
from app.db.replay import has_replayed, worth_asking

T = TypeVar("T")
Operation = Callable[[Connection], Awaitable[T]]

RETRY_ATTEMPTS = 4  # the first try and 3 retries
RETRY_WAIT_INITIAL_S = 0.1  # then 0.2 and 0.4
RETRY_JITTER_S = 0.05
# stamina clamps wait + jitter to the maximum: leave room for the jitter of the last wait.
RETRY_WAIT_MAX_S = 0.4 + RETRY_JITTER_S

_WAL_POSITION: Scalar[int] = Scalar("SELECT pg_current_wal_lsn()", int)  # asyncpg: pg_lsn -> int


class _NotServed:
    """A checked replica had not replayed the token: the read goes elsewhere."""


_NOT_SERVED = _NotServed()

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
    """Request-scoped: remembers whether the request wrote and the token it must honour."""

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
        failed: set[str] = set()
        try:
            return await self._read_once(operation, failed, on_primary)  # the fast path
        except Exception as error:
            if not is_transient(error):
                _raise_translated(error)
            first_failure = error
        try:
            async for attempt in _retrying(is_transient):
                with attempt:
                    if attempt.num == 1:
                        raise first_failure  # let stamina schedule the backoff after it
                    metrics.RETRIES.labels(self._reader(failed, on_primary).name).inc()
                    return await self._read_once(operation, failed, on_primary)
        except Exception as error:
            _raise_translated(error)
        raise AssertionError("unreachable: stamina re-raises the last failure")

    async def _read_once(self, operation: Operation[T], failed: set[str], on_primary: bool) -> T:
        """One attempt: fail over from replica to replica (then the writer) without waiting;
        each replica that fails with a connection error is reported and skipped."""
        while True:
            pool = self._reader(failed, on_primary)
            wants_replica = not (self.wrote or on_primary)
            if pool is self._db.writer and self._min_lsn is not None and wants_replica:
                result = await self._read_checked(operation, failed, self._min_lsn)
                if not isinstance(result, _NotServed):
                    return result
                pool = self._db.writer
            try:
                return await _run(pool, operation, in_transaction=self._transactions)
            except Exception as error:
                _note_failure(pool, error)
                if pool is self._db.writer or not is_transient(error):
                    raise
                failed.add(pool.name)
                self._db.replicas.report_failure(pool, f"read failed: {type(error).__name__}")
                metrics.RETRIES.labels(pool.name).inc()

    async def _read_checked(
        self, operation: Operation[T], failed: set[str], token: int
    ) -> T | _NotServed:
        """A token read no replica is known to have replayed: ask the replica it would use
        (`app.db.replay`). `_NOT_SERVED` when none has it: the caller reads on the writer,
        unless the token is ahead of the primary itself (then `TokenAheadError`)."""
        db = self._db
        pool = db.replicas.choose(None, exclude=frozenset(failed))
        state = db.replicas.of_pool(pool) if pool is not None else None
        if pool is not None and state is not None and worth_asking(state, token):
            monitor = db.settings.monitor
            try:
                async with pool.acquire() as conn:
                    if await has_replayed(
                        conn,
                        state,
                        token,
                        wait_s=monitor.token_wait_s,
                        known_primary=db.primary_position,
                        slow_for_s=monitor.interval_s,
                    ):
                        metrics.TOKEN_READS.labels("replica_checked").inc()
                        return await _execute(conn, operation, in_transaction=self._transactions)
            except Exception as error:
                _note_failure(pool, error)
                if not is_transient(error):
                    raise
                failed.add(pool.name)
                db.replicas.report_failure(pool, f"read failed: {type(error).__name__}")
        if token > db.primary_position:
            try:
                ahead = token > await db.refresh_primary_position()
            except Exception:  # the writer is unreachable: the read below says so (503)
                ahead = False
            if ahead:
                metrics.TOKEN_READS.labels("rejected").inc()
                raise TokenAheadError("the token is ahead of the primary")
        metrics.TOKEN_READS.labels("primary").inc()
        return _NOT_SERVED

    async def write(self, operation: Operation[T], *, idempotent: bool = False) -> T:
        """Run a writing `operation` on the writer and record the commit position.

        Each operation is one autocommit statement. After a transient failure it is retried
        only when it never reached the server or `idempotent` is true.
        """
        self.wrote = True
        try:
            return await self._write_once(operation, idempotent=idempotent)
        except _SentError as sent:
            _raise_translated(sent.error)
        except Exception as error:
            if not _retryable(error):
                _raise_translated(error)
            first_failure = error
        try:
            async for attempt in _retrying(_retryable):
                with attempt:
                    if attempt.num == 1:
                        raise first_failure  # let stamina schedule the backoff after it
                    metrics.RETRIES.labels(self._db.writer.name).inc()
                    return await self._write_once(operation, idempotent=idempotent)
        except _SentError as sent:
            _raise_translated(sent.error)
        except Exception as error:
            _raise_translated(error)
        raise AssertionError("unreachable: stamina re-raises the last failure")

    async def _write_once(self, operation: Operation[T], *, idempotent: bool) -> T:
        """One attempt on the writer as it is now (a failover moves it between attempts).

        A failure to get a connection means nothing was sent: retryable as it is. So is a
        statement a standby refused (read-only: nothing was written)."""
        self._db.check_writable()
        writer = self._db.writer
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
        self._db.note_commit(self.commit_lsn)

    @property
    def _transactions(self) -> bool:
        """PgBouncer (transaction pooling) may run a statement's prepare and execute on
        different server connections unless they share a transaction."""
        return self._db.settings.database.pgbouncer

    def _reader(self, failed: set[str], on_primary: bool) -> Pool:
        if self.wrote or on_primary:
            return self._db.writer
        pool = self._db.replicas.choose(self._min_lsn, exclude=frozenset(failed))
        if pool is None:
            return self._db.writer
        if self._min_lsn is not None:
            metrics.TOKEN_READS.labels("replica").inc()
        return pool


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
