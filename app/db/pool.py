"""A named connection pool: an engine plus the statistics SQLAlchemy does not keep.

SQLAlchemy counts checked-in and checked-out connections but not the requests queued for
one, nor wait and use times; `Pool.acquire` measures those around `engine.connect()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import QueuePool

from app.config import PoolSettings
from app.db import metrics
from app.db.errors import DatabaseUnavailableError

_RECENT_WAITS = 1024


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """Point-in-time counts of one pool."""

    name: str
    total: int
    idle: int
    used: int
    waiting: int
    min_size: int
    max_size: int
    timeouts: int
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
    async def acquire(self) -> AsyncIterator[AsyncConnection]:
        """Borrow a connection; `DatabaseUnavailableError` when none frees up in time."""
        started = time.perf_counter()
        self.waiting += 1
        try:
            connection = await self.engine.connect()
        except sa_exc.TimeoutError:
            self.timeouts += 1
            self._timeout_metric.inc()
            raise DatabaseUnavailableError(
                f"no free connection in the {self.name} pool", retry_after_s=1
            ) from None
        finally:
            self.waiting -= 1
        acquired = time.perf_counter()
        waited = acquired - started
        self._recent_waits.append(waited)
        self._wait_metric.observe(waited)
        try:
            yield connection
        finally:
            # Shielded: a request cancelled mid-query must still hand its connection back.
            await asyncio.shield(connection.close())
            self._use_metric.observe(time.perf_counter() - acquired)

    async def open_minimum(self) -> None:
        """Open `min_size` connections at once (warm-up) and put them back idle."""
        count = self.settings.min_size
        if count == 0:
            return
        stack = contextlib.AsyncExitStack()
        async with stack:
            await asyncio.gather(
                *(stack.enter_async_context(self.engine.connect()) for _ in range(count))
            )

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
            wait_p50_ms=_percentile_ms(waits, 0.50),
            wait_p95_ms=_percentile_ms(waits, 0.95),
            wait_p99_ms=_percentile_ms(waits, 0.99),
        )

    async def dispose(self) -> None:
        """Close every connection of the pool."""
        await self.engine.dispose()


def _percentile_ms(sorted_values: list[float], quantile: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(quantile * len(sorted_values)))
    return round(sorted_values[index] * 1000, 3)
