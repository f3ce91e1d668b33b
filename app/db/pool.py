"""A named connection pool: an engine plus the statistics SQLAlchemy does not keep.

SQLAlchemy counts checked-in and checked-out connections but not the requests queued for
one, nor wait and use times; `Pool.acquire` measures those around the checkout and logs
checkout failures and timeouts. The pool's gauges (connections by state, pending requests)
are written by `publish_metrics`, at every scrape and once a second (`Database`'s gauge
publisher), not on every checkout: that is the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool
from sqlalchemy.util import greenlet_spawn

from app.config import PoolSettings
from app.db import metrics
from app.db.connection import DriverConnection
from app.db.errors import (
    CommandTimeoutError,
    DatabaseUnavailableError,
    is_read_only,
    is_transient,
)
from app.logging import Throttle

_RECENT_WAITS = 1024
_LOG_EVERY_S = 5.0  # at most one checkout-failure (and one timeout) line per pool this often

log = structlog.get_logger("app.db.pool")


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """Point-in-time counts of one pool (this process's)."""

    name: str
    total: int
    idle: int
    used: int
    waiting: int
    min_size: int
    max_size: int
    timeouts: int
    retries: int
    errors: int
    wait_p50_ms: float
    wait_p95_ms: float
    wait_p99_ms: float

    @property
    def utilization(self) -> float:
        """Used connections as a percentage of the maximum."""
        return round(100.0 * self.used / self.max_size, 2) if self.max_size else 0.0


class Pool:
    """One logical pool (`primary`, `replica-0`, ...) over its own engine."""

    def __init__(self, name: str, engine: AsyncEngine, settings: PoolSettings) -> None:
        self.name = name
        self.engine = engine
        self.settings = settings
        self.waiting = 0
        self.timeouts = 0
        self._recent_waits: deque[float] = deque(maxlen=_RECENT_WAITS)
        self._wait_metric = metrics.CONNECTION_WAIT.labels(name)
        self._use_metric = metrics.CONNECTION_USE.labels(name)
        self._timeout_metric = metrics.CONNECTION_TIMEOUTS.labels(name)
        self._pending_metric = metrics.PENDING_REQUESTS.labels(name)
        self._idle_metric = metrics.CONNECTIONS.labels(name, "idle")
        self._used_metric = metrics.CONNECTIONS.labels(name, "used")
        self._max_metric = metrics.CONNECTION_MAX.labels(name)
        self._idle_min_metric = metrics.CONNECTION_IDLE_MIN.labels(name)
        self._failure_log = Throttle(_LOG_EVERY_S)
        self._timeout_log = Throttle(_LOG_EVERY_S)
        # One slot per connection the pool may hold: a request waits here, in arrival order,
        # and SQLAlchemy's queue then always has a connection (or room for one) for it.
        self._slots = asyncio.Semaphore(max(settings.max_size, 1))
        self._listen_for_connections()
        self.publish_metrics()

    @property
    def queue_pool(self) -> QueuePool:
        """The SQLAlchemy pool behind this one."""
        return self._queue_pool

    @property
    def _queue_pool(self) -> QueuePool:
        pool = self.engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        return pool

    @property
    def checked_out(self) -> int:
        """Connections currently lent out."""
        return self._queue_pool.checkedout()

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[DriverConnection]:
        """Borrow a connection from the SQLAlchemy pool and lend out its asyncpg connection.

        Waiting is first come, first served, on the pool's slots (`_take_slot`); the
        checkout itself (pre-ping, recycling, events) is SQLAlchemy's; statements then run
        on the driver connection itself, which spares each one the Core execution layer
        (docs/performance.md). `DatabaseUnavailableError` when no connection frees up within
        `DB_POOL_TIMEOUT_MS`. A connection that failed, timed out or was cancelled
        mid-statement is invalidated rather than returned.
        """
        started = time.perf_counter()
        self.waiting += 1
        try:
            await self._take_slot(started)
            try:
                fairy = await greenlet_spawn(self._queue_pool.connect)
            except BaseException:
                self._slots.release()
                raise
        except sa_exc.TimeoutError:
            self._note_timeout(time.perf_counter() - started)
            raise DatabaseUnavailableError(
                f"no free connection in the {self.name} pool", retry_after_s=1
            ) from None
        except DatabaseUnavailableError:
            raise
        except Exception as error:
            self._note_checkout_failure(error)
            raise
        finally:
            self.waiting -= 1
        acquired = time.perf_counter()
        waited = acquired - started
        self._recent_waits.append(waited)
        self._wait_metric.observe(waited)
        connection = DriverConnection(fairy.driver_connection)
        try:
            yield connection
        except BaseException as error:
            if isinstance(error, CommandTimeoutError):
                # The server stopped answering: no graceful close (SQLAlchemy would wait up
                # to 2 s for it), and no cancel request either, for it would go unanswered.
                connection.driver.terminate()
            if _unusable_after(connection.driver, error):
                # Closing does I/O: shielded, so a cancelled request cannot interrupt it.
                await asyncio.shield(greenlet_spawn(fairy.invalidate, error))
            raise
        else:
            if connection.driver.is_closed():
                # The session ended under a failure the borrower chose to absorb (the
                # best-effort commit position): the next borrower would only fail on it.
                await asyncio.shield(greenlet_spawn(fairy.invalidate))
        finally:
            try:
                # Returning a connection does no I/O (no reset on return: app/db/engine.py;
                # an unusable one was closed above), so it is called directly: through
                # greenlet_spawn it cost ~15 us a request in a microbenchmark.
                fairy.close()
            finally:
                self._slots.release()
            self._use_metric.observe(time.perf_counter() - acquired)

    async def _take_slot(self, started: float) -> None:
        """Wait for one of the pool's `max_size` slots, in arrival order, until the pool
        timeout (then `DatabaseUnavailableError`).

        SQLAlchemy's async queue is not fair: a request arriving just as a connection is
        returned takes it ahead of one already waiting, which then queues again at the back
        (asyncio.Queue re-appends a woken getter that found the queue empty), and each wait
        runs in a task of its own (`asyncio.wait_for`). At saturation that made the slowest
        1% of page reads 6 to 7 times the median. `asyncio.Semaphore` lets no newcomer past
        a waiter, and the timeout's context is only set up when there is a wait."""
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: returns without suspending
            return
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            self._note_timeout(time.perf_counter() - started)
            raise DatabaseUnavailableError(
                f"no free connection in the {self.name} pool", retry_after_s=1
            ) from None

    async def open_minimum(self) -> None:
        """Open `min_size` connections at once (warm-up) and put them back idle."""
        count = self.settings.min_size
        if count == 0:
            return
        async with contextlib.AsyncExitStack() as stack:
            await asyncio.gather(*(stack.enter_async_context(self.acquire()) for _ in range(count)))
        self.publish_metrics()

    def snapshot(self) -> PoolSnapshot:
        """Current counts and recent acquire-wait percentiles."""
        pool = self._queue_pool
        idle = pool.checkedin()
        used = pool.checkedout()
        waits = sorted(self._recent_waits)
        return PoolSnapshot(
            name=self.name,
            total=idle + used,
            idle=idle,
            used=used,
            waiting=self.waiting,
            min_size=self.settings.min_size,
            max_size=self.settings.max_size,
            timeouts=self.timeouts,
            retries=int(metrics.counter_total(metrics.RETRIES, self.name)),
            errors=int(metrics.counter_total(metrics.ERRORS, self.name)),
            wait_p50_ms=_percentile_ms(waits, 0.50),
            wait_p95_ms=_percentile_ms(waits, 0.95),
            wait_p99_ms=_percentile_ms(waits, 0.99),
        )

    def publish_metrics(self) -> None:
        """Set the pool's gauges (connections by state, limits) from its current counts."""
        self._max_metric.set(self.settings.max_size)
        self._idle_min_metric.set(self.settings.min_size)
        self._publish_counts()

    def _publish_counts(self) -> None:
        pool = self._queue_pool
        self._idle_metric.set(pool.checkedin())
        self._used_metric.set(pool.checkedout())
        self._pending_metric.set(self.waiting)

    async def dispose(self) -> None:
        """Close every connection of the pool."""
        await self.engine.dispose()
        self.publish_metrics()

    def _note_timeout(self, waited_s: float) -> None:
        self.timeouts += 1
        self._timeout_metric.inc()
        suppressed = self._timeout_log.allow()
        if suppressed is not None:
            log.warning(
                "connection checkout timed out",
                pool=self.name,
                waited_ms=round(waited_s * 1000, 1),
                waiting=self.waiting,
                max_size=self.settings.max_size,
                suppressed=suppressed,
            )

    def _note_checkout_failure(self, error: Exception) -> None:
        suppressed = self._failure_log.allow()
        if suppressed is not None:
            log.warning(
                "connection checkout failed",
                pool=self.name,
                error=type(error).__name__,
                suppressed=suppressed,
            )

    def _listen_for_connections(self) -> None:
        name = self.name

        def opened(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            log.info("connection opened", pool=name)

        def closed(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            log.debug("connection closed", pool=name)

        event.listen(self.engine.sync_engine, "connect", opened)
        event.listen(self.engine.sync_engine, "close", closed)


def _unusable_after(connection: Any, error: BaseException) -> bool:
    """Whether a connection must not go back to the pool after `error` escaped its use:
    it is closed, the statement was interrupted (cancelled or timed out client-side, so the
    server may still be busy with it), or the failure was at the connection level."""
    if connection.is_closed() or connection.is_in_transaction():
        return True
    if isinstance(error, (asyncio.CancelledError, TimeoutError, CommandTimeoutError)):
        return True
    return isinstance(error, Exception) and (is_transient(error) or is_read_only(error))


def _percentile_ms(sorted_values: list[float], quantile: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(quantile * len(sorted_values)))
    return round(sorted_values[index] * 1000, 3)
