"""What the fault tests share: async waits, a held table lock, server log events, timings."""

from __future__ import annotations

import asyncio
import re
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import asyncpg

from tests.support.cluster import fetchval, wait_until

ACTIVE_QUERIES = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE application_name = $1 AND state = 'active' AND pid <> pg_backend_pid()"
)
LOCK_WAITERS = (
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'"
)


async def query(url: str, sql: str, *args: Any) -> Any:
    """First column of the first row, on a fresh connection (for async tests)."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def wait_for(
    condition: Callable[[], Awaitable[Any]], timeout_s: float, what: str, poll_s: float = 0.02
) -> Any:
    """Await `condition` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(poll_s)


class TableLock:
    """Holds `LOCK TABLE <table> IN ACCESS EXCLUSIVE MODE` in an open transaction on its own
    connection (thread), so statements on the table block until `release()`."""

    def __init__(self, url: str, table: str) -> None:
        self._url = url
        self._table = table
        self._locked = threading.Event()
        self._release = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"lock-{table}", daemon=True)

    def _run(self) -> None:
        async def hold() -> None:
            conn = await asyncpg.connect(self._url, timeout=5)
            try:
                async with conn.transaction():
                    await conn.execute(f"LOCK TABLE {self._table} IN ACCESS EXCLUSIVE MODE")
                    self._locked.set()
                    await asyncio.get_running_loop().run_in_executor(None, self._release.wait, 120)
            finally:
                await conn.close()

        try:
            asyncio.run(hold())
        except BaseException as error:  # reported by acquire()
            self._error = error
            self._locked.set()

    def acquire(self) -> TableLock:
        self._thread.start()
        if not self._locked.wait(10) or self._error is not None:
            raise AssertionError(f"could not lock {self._table}: {self._error!r}")
        return self

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)

    def __enter__(self) -> TableLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def wait_lock_waiters(url: str, application_name: str, count: int, timeout_s: float = 10) -> None:
    """Wait until `count` backends of `application_name` are blocked on a lock."""
    wait_until(
        lambda: fetchval(url, LOCK_WAITERS, application_name) >= count,
        timeout_s,
        f"{count} {application_name} statements waiting on the lock",
    )


@contextmanager
def replay_paused(urls: list[str]) -> Iterator[None]:
    """Replicas stop replaying WAL inside the block (they keep answering reads)."""
    for url in urls:
        fetchval(url, "SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        for url in urls:
            fetchval(url, "SELECT pg_wal_replay_resume()")


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT[\d:.]+Z?)\s+\[\s*(\w+)\s*\]\s+(.*)$")


def log_events(logs: str, event: str, **fields: str) -> list[float]:
    """Unix times of the server's console log lines for `event` with `fields` (key=value)."""
    times = []
    for line in logs.splitlines():
        match = _LOG_LINE.match(line.strip())
        if match is None or not match.group(3).startswith(event):
            continue
        if all(f"{key}={value}" in match.group(3) for key, value in fields.items()):
            stamp = match.group(1).rstrip("Z")
            times.append(datetime.fromisoformat(stamp + "+00:00").timestamp())
    return times


def latency_summary(latencies_s: list[float]) -> dict[str, float]:
    """p50, p99 and max in milliseconds."""
    if not latencies_s:
        return {"n": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(latencies_s)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }
