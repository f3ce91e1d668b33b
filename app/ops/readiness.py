"""Readiness checks: each dependency probed concurrently, each within its own timeout.

`pass` when everything answers; `warn` when only replicas fail or lag (reads then go to the
writer); `fail` when the writer or Redis fails, or while the service starts or drains.
Failure details go to the log; the response names only the check that failed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import structlog
from litestar.datastructures import State
from sqlalchemy import text

from app.db.database import Database
from app.db.pool import Pool
from app.db.replicas import ReplicaState
from app.lifecycle import Lifecycle, Phase

CHECK_TIMEOUT_S = 0.8
_SELECT_ONE = text("SELECT 1")

log = structlog.get_logger("app.ops.readiness")


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    """The overall status and the health+json body."""

    status: str
    body: dict[str, Any]


def _check(status: str, value: float, unit: str, **extra: Any) -> dict[str, Any]:
    return {"status": status, "observedValue": value, "observedUnit": unit, **extra}


async def _ping(pool: Pool) -> float:
    started = time.perf_counter()
    async with asyncio.timeout(CHECK_TIMEOUT_S), pool.acquire() as conn:
        await conn.execute(_SELECT_ONE)
    return round((time.perf_counter() - started) * 1000, 2)


async def _writer_check(database: Database) -> dict[str, Any]:
    try:
        latency = await _ping(database.writer)
    except Exception as error:
        log.warning("readiness: primary failed", error=type(error).__name__)
        return _check("fail", CHECK_TIMEOUT_S * 1000, "ms", output="unreachable")
    return _check("pass", latency, "ms")


async def _replica_check(state: ReplicaState, max_lag_s: float) -> dict[str, Any]:
    try:
        latency = await _ping(state.pool)
    except Exception as error:
        log.warning("readiness: replica failed", pool=state.name, error=type(error).__name__)
        return _check("warn", CHECK_TIMEOUT_S * 1000, "ms", output="unreachable")
    if not state.healthy:
        return _check("warn", state.lag_seconds, "s", output="out of rotation", latencyMs=latency)
    status = "pass" if state.lag_seconds <= max_lag_s else "warn"
    return _check(status, state.lag_seconds, "s", latencyMs=latency)


async def _redis_check(url: str) -> dict[str, Any]:
    import redis.asyncio as redis_asyncio  # imported only when REDIS_URL is set

    started = time.perf_counter()
    client = redis_asyncio.Redis.from_url(
        url, socket_connect_timeout=CHECK_TIMEOUT_S, socket_timeout=CHECK_TIMEOUT_S
    )
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await client.ping()
    except Exception as error:
        log.warning("readiness: redis failed", error=type(error).__name__)
        return _check("fail", CHECK_TIMEOUT_S * 1000, "ms", output="unreachable")
    finally:
        await client.aclose()
    return _check("pass", round((time.perf_counter() - started) * 1000, 2), "ms")


async def check_readiness(state: State, *, verbose: bool = False) -> ReadinessReport:
    """Run every check concurrently and fold them into one status."""
    lifecycle: Lifecycle = state.lifecycle
    database: Database | None = getattr(state, "database", None)
    if lifecycle.phase is not Phase.READY or database is None:
        return ReadinessReport(
            "fail", {"status": "fail", "output": lifecycle.phase.value, "checks": {}}
        )
    names = ["postgres:primary"]
    jobs = [_writer_check(database)]
    max_lag = database.settings.replica_max_lag_s
    for index, replica in enumerate(database.replicas.states):
        names.append(f"postgres:replica-{index}")
        jobs.append(_replica_check(replica, max_lag))
    redis_url = database.settings.redis_url
    if redis_url:
        names.append("redis")
        jobs.append(_redis_check(redis_url))
    results = await asyncio.gather(*jobs)
    checks = dict(zip(names, results, strict=True))
    if any(check["status"] == "fail" for check in checks.values()):
        status = "fail"
    elif any(check["status"] == "warn" for check in checks.values()):
        status = "warn"
    else:
        status = "pass"
    body: dict[str, Any] = {"status": status, "checks": {k: [v] for k, v in checks.items()}}
    if verbose:
        body["uptime"] = lifecycle.uptime_s
    return ReadinessReport(status, body)
