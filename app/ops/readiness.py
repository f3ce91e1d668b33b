"""Readiness checks: each dependency probed concurrently, each within its own deadline.

`pass` when everything answers; `warn` when only replicas fail or lag (reads then go to the
writer); `fail` when the writer or Redis fails. (The endpoint adds: `fail` while the service
starts or drains.) Failure details go to the log; the response names only the check.

A hung server must not hang the probe: the answer is assembled at the deadline from whatever
finished, and a check still running then counts as failed. Each check runs as one task per
dependency that concurrent probes share, so a hung server holds one connection attempt per
pool, not one per probe.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from app.db.cluster import Database
from app.db.cluster_state import ReplicaView
from app.db.pool import Pool
from app.events.hub import Hub
from app.logging import Throttle

Status = Literal["pass", "warn", "fail"]

CHECK_TIMEOUT_S = 0.5  # per check; a probe answers within this (Kubernetes' default is 1 s)
_SELECT_ONE = "SELECT 1"
_RANK: dict[Status, int] = {"pass": 0, "warn": 1, "fail": 2}
STALE_EVENTS_PASS_S = 5.0  # the event hub passes at least once a second when healthy
_LOG_REPEAT_S = 30.0  # a check that keeps failing is logged again this often

log = structlog.get_logger("app.ops.readiness")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's verdict; `reason` is for the log and `?verbose`, never a secret."""

    status: Status
    observed_value: float
    observed_unit: str
    component_type: str
    reason: str | None = None
    extra: dict[str, float] = field(default_factory=dict)
    component_id: str | None = None
    """The member (`host:port`) checked; both members while two claim to be primary."""

    def as_json(self, *, verbose: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "componentType": self.component_type,
            "status": self.status,
            "observedValue": self.observed_value,
            "observedUnit": self.observed_unit,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        if self.component_id is not None:
            body["componentId"] = self.component_id
        if verbose:
            body.update(self.extra)
            if self.reason:
                body["output"] = self.reason
        return body


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    """The overall status and each check's result, keyed `postgres:primary`, ..."""

    status: Status
    checks: dict[str, CheckResult]
    elapsed_ms: float

    def as_json(self, *, verbose: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            "checks": {
                name: [check.as_json(verbose=verbose)] for name, check in self.checks.items()
            },
        }
        if verbose:
            body["elapsedMs"] = self.elapsed_ms
        return body


class _RedisPing:
    """A Redis client that answers one question: does PING work?"""

    def __init__(self, url: str, timeout_s: float) -> None:
        import redis.asyncio as redis_asyncio  # imported only when REDIS_URL is set
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._client = redis_asyncio.Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            max_connections=4,
        )

    async def ping(self) -> None:
        await self._client.ping()

    async def aclose(self) -> None:
        await self._client.aclose()


class Readiness:
    """Runs the checks of one application: writer, replicas, Redis when configured.

    A lifecycle component: it has nothing to start, and stops its checks and Redis client.
    """

    name = "readiness"

    def __init__(
        self, database: Database, timeout_s: float = CHECK_TIMEOUT_S, events: Hub | None = None
    ) -> None:
        self._database = database
        self._events = events if events is not None and events.settings.enabled else None
        self._timeout_s = timeout_s
        url = database.settings.redis_url
        self._redis = _RedisPing(url, timeout_s) if url else None
        self._running: dict[str, asyncio.Task[CheckResult]] = {}
        self._logged: dict[str, tuple[Status, str | None, Throttle]] = {}

    async def check(self) -> ReadinessReport:
        """Run every check concurrently; answer within the deadline whatever the servers do."""
        started = time.perf_counter()
        factories = self._factories()
        tasks = {name: self._shared_task(name, factory) for name, factory in factories.items()}
        await asyncio.wait(tasks.values(), timeout=self._timeout_s)
        checks = {name: _outcome(name, task, self._timeout_s) for name, task in tasks.items()}
        for name, result in checks.items():
            self._log_change(name, result)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        return ReadinessReport(overall(checks), checks, elapsed_ms)

    async def start(self) -> None:
        """Nothing to open: the checks borrow from the data layer's pools."""

    async def stop(self) -> None:
        """Cancel checks still running (a hung server) and close the Redis client."""
        for task in self._running.values():
            task.cancel()
        if self._running:  # cancellation is prompt; the bound is for a misbehaving driver
            await asyncio.wait(self._running.values(), timeout=self._timeout_s)
        self._running.clear()
        if self._redis is not None:
            await self._redis.aclose()

    def _factories(self) -> dict[str, Callable[[], Awaitable[CheckResult]]]:
        database = self._database
        factories: dict[str, Callable[[], Awaitable[CheckResult]]] = {
            "postgres:primary": self._writer_check,
        }
        for replica in database.snapshot.replicas:
            factories[f"postgres:{replica.name}"] = functools.partial(self._replica_check, replica)
        if self._redis is not None:
            redis = self._redis
            factories["redis"] = lambda: self._redis_check(redis)
        if self._events is not None:
            factories["events:listener"] = self._events_check
        return factories

    def _shared_task(
        self, name: str, factory: Callable[[], Awaitable[CheckResult]]
    ) -> asyncio.Task[CheckResult]:
        task = self._running.get(name)
        if task is None or task.done():
            task = asyncio.ensure_future(factory())
            self._running[name] = task
        return task

    async def _ping(self, pool: Pool) -> float:
        """Milliseconds for `SELECT 1` through the pool (borrowing included)."""
        started = time.perf_counter()
        async with asyncio.timeout(self._timeout_s), pool.acquire() as conn:
            await conn.execute(_SELECT_ONE)
        return round((time.perf_counter() - started) * 1000, 2)

    async def _writer_check(self) -> CheckResult:
        snapshot = self._database.snapshot
        member = snapshot.writer_member
        if snapshot.write_block is not None:  # two primaries: name both, write to neither
            both = ", ".join(snapshot.primaries()) or member
            return CheckResult("fail", 0.0, "ms", "datastore", snapshot.write_block, {}, both)
        started = time.perf_counter()
        try:
            latency = await self._ping(snapshot.writer)
        except Exception as error:
            reason = _reason(error)
            return CheckResult("fail", _elapsed_ms(started), "ms", "datastore", reason, {}, member)
        return CheckResult("pass", latency, "ms", "datastore", None, {}, member)

    async def _replica_check(self, replica: ReplicaView) -> CheckResult:
        max_lag = self._database.settings.monitor.max_lag_s
        lag = round(replica.lag_seconds, 3)
        try:
            latency = await self._ping(replica.pool)
        except Exception as error:
            return CheckResult("fail", lag, "s", "datastore", _reason(error), {}, replica.member)
        # Its verdict as it is after the ping (a read failure meanwhile counts).
        state = self._database.snapshot.replica(replica.name) or replica
        extra = {"latencyMs": latency, "lagBytes": float(state.lag_bytes)}
        if not state.healthy:
            reason = f"out of rotation: {state.reason or 'unknown'}"
            return CheckResult("warn", lag, "s", "datastore", reason, extra, state.member)
        if lag > max_lag:
            return CheckResult("warn", lag, "s", "datastore", "lagging", extra, state.member)
        return CheckResult("pass", lag, "s", "datastore", None, extra, state.member)

    async def _redis_check(self, redis: _RedisPing) -> CheckResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                await redis.ping()
        except Exception as error:
            return CheckResult("fail", _elapsed_ms(started), "ms", "cache", _reason(error))
        return CheckResult("pass", _elapsed_ms(started), "ms", "cache")

    async def _events_check(self) -> CheckResult:
        """`warn` (streams still deliver, by polling, or late) when the LISTEN connection is
        down or the hub has not read the primary's horizon for a while; never `fail`: the
        REST API does not depend on it. The value: seconds since the hub's last good pass."""
        hub = self._events
        assert hub is not None
        since = round(time.monotonic() - hub.last_pass_ok, 3)
        extra = {"streams": float(hub.open_streams)}
        member = hub.listener.state.member if hub.listener is not None else None
        if since > STALE_EVENTS_PASS_S:
            return CheckResult("warn", since, "s", "component", "stalled", extra, member)
        if hub.listener is not None and not hub.listening:
            reason = "not listening: polling"
            return CheckResult("warn", since, "s", "component", reason, extra, member)
        return CheckResult("pass", since, "s", "component", None, extra, member)

    def _log_change(self, name: str, result: CheckResult) -> None:
        """Log a check when its verdict changes, and while it keeps failing now and then."""
        status, reason, repeat = self._logged.get(name, ("pass", None, None))
        changed = (status, reason) != (result.status, result.reason)
        if changed:
            repeat = repeat or Throttle(_LOG_REPEAT_S)
            repeat.restart()
            self._logged[name] = (result.status, result.reason, repeat)
        elif result.status == "pass" or repeat is None or repeat.allow() is None:
            return
        if result.status == "pass":
            log.info("readiness check passing again", check=name)
        else:
            log.warning(
                "readiness check not passing",
                check=name,
                status=result.status,
                reason=result.reason,
                still=not changed,
            )


def _outcome(name: str, task: asyncio.Task[CheckResult], timeout_s: float) -> CheckResult:
    """The task's result, or a failure when it is still running at the deadline."""
    if task.done() and not task.cancelled():
        error = task.exception()
        if error is None:
            return task.result()
        reason = _reason(error)
    else:
        reason = "timeout"
    component = "cache" if name == "redis" else "datastore"
    if name.startswith("postgres:replica"):
        return CheckResult("fail", 0.0, "s", component, reason)
    return CheckResult("fail", round(timeout_s * 1000, 2), "ms", component, reason)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _reason(error: BaseException) -> str:
    """The failure's kind only: messages can carry hosts, users or SQL."""
    if isinstance(error, TimeoutError):
        return "timeout"
    return f"error: {type(error).__name__}"


def overall(checks: dict[str, CheckResult]) -> Status:
    """`fail` if the writer or Redis fails; `warn` if anything else is not passing."""
    statuses = [
        check.status
        if check.status != "fail" or not name.startswith("postgres:replica")
        else "warn"
        for name, check in checks.items()
    ]
    return max(statuses, key=_RANK.__getitem__, default="pass")
