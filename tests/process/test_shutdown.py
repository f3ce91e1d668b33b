"""Graceful shutdown of the real service (`python -m app serve`, granian) under steady load.

On SIGTERM readiness fails at once, requests already accepted finish with 2xx, the cluster
monitor stops, the pools are disposed within `SHUTDOWN_TIMEOUT_S`, each step is logged, and
the process exits within the limit.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import httpx

from tests.support.api import PASSWORD, register
from tests.support.cluster import TestDatabase, embedded, fetchval, paused, wait_until
from tests.support.server import ServerProcess

SHUTDOWN_TIMEOUT_S = 3
IN_FLIGHT = 5
_LOCK_WAITERS = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE application_name = 'messenger-primary' AND wait_event_type = 'Lock'"
)


@dataclass
class Outcome:
    started: float
    ended: float
    result: int | str  # the HTTP status, or the transport error's type


@dataclass
class SteadyLoad:
    """A thread issuing requests back to back until stopped (bounded in count and time)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> SteadyLoad:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        failures = 0
        with httpx.Client(headers=self.headers, timeout=10) as client:
            for _ in range(20_000):
                if self._stop.is_set() or time.monotonic() > deadline or failures >= 20:
                    return
                started = time.time()
                try:
                    result: int | str = client.get(self.url).status_code
                    failures = 0
                except httpx.HTTPError as error:
                    result = type(error).__name__
                    failures += 1
                self.outcomes.append(Outcome(started, time.time(), result))


class HeldLock:
    """`LOCK TABLE users IN SHARE MODE` in an open transaction: inserts into users wait,
    reads do not (the lock is not replayed on replicas)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._locked = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._hold()), daemon=True)

    async def _hold(self) -> None:
        conn = await asyncpg.connect(self._url, timeout=5)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE users IN SHARE MODE")
                self._locked.set()
                await asyncio.get_running_loop().run_in_executor(None, self._release.wait, 60)
        finally:
            await conn.close()

    def __enter__(self) -> HeldLock:
        self._thread.start()
        assert self._locked.wait(10), "could not lock the users table"
        return self

    def release(self) -> None:
        self._release.set()
        self._thread.join(timeout=10)

    def __exit__(self, *exc: object) -> None:
        self.release()


def log_events(logs: str) -> list[dict[str, Any]]:
    """The service's JSON log lines (APP_ENV=production); granian's own lines are skipped."""
    events = []
    for line in logs.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def event_time(events: list[dict[str, Any]], name: str) -> float:
    for event in events:
        if event["event"] == name:
            return datetime.fromisoformat(str(event["timestamp"])).timestamp()
    raise AssertionError(f"no {name!r} in the log")


@contextmanager
def production_server(database: TestDatabase, **env: str) -> Iterator[ServerProcess]:
    with ServerProcess(
        database,
        APP_ENV="production",
        DB_SSLMODE="disable",
        METRICS_PUBLIC="true",  # production's requirement (the test reads no metrics)
        SHUTDOWN_TIMEOUT_S=str(SHUTDOWN_TIMEOUT_S),
        **env,
    ) as server:
        yield server


def test_sigterm_under_load_finishes_accepted_requests_and_exits_in_time(
    database: TestDatabase,
) -> None:
    with production_server(database) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            reader = register(client)
        read_url = f"{server.url}/users/{reader.id}"
        results: list[int | str] = [""] * IN_FLIGHT

        def insert(index: int) -> None:
            try:
                response = httpx.post(
                    f"{server.url}/users",
                    json={"username": f"drain_{server.port}_{index}", "password": PASSWORD},
                    timeout=30,
                )
                results[index] = response.status_code
            except httpx.HTTPError as error:
                results[index] = type(error).__name__

        with (
            SteadyLoad(read_url, reader.headers) as reads,
            SteadyLoad(f"{server.url}/health") as probes,
        ):
            wait_until(lambda: len(reads.outcomes) > 20, 10, "steady load running")
            with HeldLock(database.primary_url) as lock:
                writers = [threading.Thread(target=insert, args=(i,)) for i in range(IN_FLIGHT)]
                for writer in writers:
                    writer.start()
                wait_until(
                    lambda: fetchval(database.primary_url, _LOCK_WAITERS) == IN_FLIGHT,
                    10,
                    "the inserts to be in flight, waiting on the lock",
                )
                signalled = time.time()
                server.signal(signal.SIGTERM)
                wait_until(
                    lambda: "shutdown signal received" in server.logs(), 5, "the drain log line"
                )
                wait_until(
                    lambda: any(o.ended > signalled and isinstance(o.result, str)
                                for o in probes.outcomes),
                    5,
                    "new connections refused",
                )  # fmt: skip
                assert server.process is not None
                assert server.process.poll() is None, "exited with requests in flight"
                released = time.time()
                lock.release()
            for writer in writers:
                writer.join(timeout=30)
            code = server.wait(timeout_s=SHUTDOWN_TIMEOUT_S + 5)
            exited = time.time()
        logs = server.logs()
    assert code == 0, logs
    assert results == [201] * IN_FLIGHT, results
    for load in (reads, probes):
        before = [o for o in load.outcomes if o.ended < signalled]
        assert len(before) > 10
        assert all(o.result == 200 for o in before), [o.result for o in before]
        answered = [o.result for o in load.outcomes if isinstance(o.result, int)]
        assert all(status == 200 for status in answered), answered
        errors = [o for o in load.outcomes if isinstance(o.result, str)]
        assert all(o.ended >= signalled for o in errors)

    events = log_events(logs)
    steps = [
        "shutdown signal received; readiness now fails",
        "in-flight requests finished",
        "cluster monitor stopped",
        "pools disposed",
        "stopped",
    ]
    names = [str(event["event"]) for event in events]
    positions = [names.index(step) for step in steps]
    assert positions == sorted(positions), names
    signal_event = events[names.index(steps[0])]
    assert signal_event["signal"] == "SIGTERM"
    assert signal_event["in_flight"] >= IN_FLIGHT  # plus any read or probe of the load
    readiness_failed_after = event_time(events, steps[0]) - signalled
    drained_at = event_time(events, steps[1])
    stopped = events[names.index("stopped")]
    print(
        "shutdown timings:"
        f" signal->readiness fails {readiness_failed_after * 1000:.0f} ms;"
        f" lock released->drained {(drained_at - released) * 1000:.0f} ms;"
        f" dispose {stopped['dispose_ms']} ms;"
        f" lock released->exit {(exited - released) * 1000:.0f} ms;"
        f" signal->exit {(exited - signalled) * 1000:.0f} ms"
    )
    assert readiness_failed_after < 1.0
    assert exited - released < SHUTDOWN_TIMEOUT_S + 2


def test_shutdown_with_a_hung_replica_stays_within_the_time_limit(
    fault_cluster: TestDatabase,
) -> None:
    node = embedded(fault_cluster).replicas[0]  # paused: on a cluster of this module's own
    with production_server(fault_cluster) as server:
        assert httpx.get(f"{server.url}/health/ready").status_code == 200
        with paused(node):
            signalled = time.time()
            server.signal(signal.SIGTERM)
            code = server.wait(timeout_s=SHUTDOWN_TIMEOUT_S + 5)
            exited = time.time()
        logs = server.logs()
    print(f"shutdown with a hung replica: signal->exit {(exited - signalled) * 1000:.0f} ms")
    assert code == 0, logs
    assert exited - signalled < SHUTDOWN_TIMEOUT_S + 2
    names = [event["event"] for event in log_events(logs)]
    assert "database not closed within the shutdown limit; abandoning" in names
    assert "stopped" in names
