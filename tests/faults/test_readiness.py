"""Readiness when servers stop or hang: replicas warn, the writer and Redis fail, fast.

These stop or pause servers of the module's own cluster; each restores them (and waits for
streaming) before it returns, whatever happens.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from app.dev.cluster import EmbeddedCluster, Node
from tests.support.api import make_client, register
from tests.support.cluster import TestDatabase, embedded, paused, wait_until
from tests.support.redis_server import redis_server

pytestmark = pytest.mark.slow

READY_DEADLINE_S = 1.0


@contextmanager
def stopped(cluster: EmbeddedCluster, node: Node) -> Iterator[None]:
    node.stop("fast")
    try:
        yield
    finally:
        node.start()
        cluster.wait_streaming()


def timed_ready(client: TestClient[Litestar], **params: Any) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = client.get("/health/ready", params=params)
    return time.perf_counter() - started, response


def statuses(response: httpx.Response) -> dict[str, str]:
    """The database checks' verdicts (the event listener's check, which follows the primary
    on its own schedule, is tested in tests/integration/test_ops_health.py and the drills)."""
    return {
        name: checks[0]["status"]
        for name, checks in response.json()["checks"].items()
        if name != "events:listener"
    }


def test_replica_stopped_is_warn_and_reads_still_succeed(database: TestDatabase) -> None:
    cluster = embedded(database)
    with make_client(database) as client:
        user = register(client)
        with stopped(cluster, cluster.replicas[1]):
            elapsed, response = timed_ready(client, verbose="true")
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "warn"
            assert statuses(response) == {
                "postgres:primary": "pass",
                "postgres:replica-0": "pass",
                "postgres:replica-1": "fail",
            }
            assert response.json()["checks"]["postgres:replica-1"][0]["output"].startswith("error")
            assert elapsed < READY_DEADLINE_S
            for _ in range(10):  # rotation would reach the stopped replica: reads fail over
                response = client.get(f"/users/{user.id}", headers=user.headers)
                assert response.status_code == 200, response.text
        wait_until(
            lambda: client.get("/health/ready").json()["status"] == "pass",
            30,
            "readiness passes again after the replica is back",
        )


def test_writer_stopped_fails_readiness_within_a_second(database: TestDatabase) -> None:
    cluster = embedded(database)
    with make_client(database) as client:
        assert client.get("/health/ready").status_code == 200
        with stopped(cluster, cluster.primary):
            elapsed, response = timed_ready(client)
            assert response.status_code == 503, response.text
            assert response.json()["status"] == "fail"
            assert statuses(response)["postgres:primary"] == "fail"
            assert elapsed < READY_DEADLINE_S
        wait_until(
            lambda: client.get("/health/ready").status_code == 200,
            30,
            "readiness passes again after the primary is back",
        )


@pytest.mark.parametrize("server", ["primary", "replica-0"])
def test_readiness_answers_within_a_second_when_a_server_hangs(
    database: TestDatabase, server: str
) -> None:
    cluster = embedded(database)
    node = cluster.primary if server == "primary" else cluster.replicas[0]
    check = f"postgres:{server}"
    with make_client(database) as client:
        assert client.get("/health/ready").status_code == 200
        timings = []
        with paused(node):
            for _ in range(3):  # the first probe, and probes while the first is still stuck
                elapsed, response = timed_ready(client, verbose="true")
                timings.append(elapsed)
                assert statuses(response)[check] == "fail"
                assert response.json()["checks"][check][0]["output"] == "timeout"
                expected = 503 if server == "primary" else 200
                assert response.status_code == expected, response.text
        print(f"readiness with a hung {server}: {[round(t, 3) for t in timings]} s")
        assert max(timings) < READY_DEADLINE_S
        wait_until(
            lambda: client.get("/health/ready").json()["status"] == "pass",
            30,
            f"readiness passes again after the {server} resumes",
        )


def test_redis_configured_but_stopped_fails_readiness(database: TestDatabase) -> None:
    with (
        redis_server("R3disPw") as (url, process),
        make_client(database, REDIS_URL=url) as client,
    ):
        response = client.get("/health/ready")
        assert response.status_code == 200, response.text
        assert statuses(response)["redis"] == "pass"
        assert response.json()["checks"]["redis"][0]["observedUnit"] == "ms"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        elapsed, response = timed_ready(client)
        assert response.status_code == 503, response.text
        assert statuses(response)["redis"] == "fail"
        assert statuses(response)["postgres:primary"] == "pass"
        assert elapsed < READY_DEADLINE_S
        assert "R3disPw" not in response.text


def test_redis_that_hangs_fails_readiness_within_a_second(database: TestDatabase) -> None:
    with (
        redis_server("R3disPw") as (url, process),
        make_client(database, REDIS_URL=url) as client,
    ):
        assert client.get("/health/ready").status_code == 200
        os.kill(process.pid, signal.SIGSTOP)
        try:
            elapsed, response = timed_ready(client)
        finally:
            os.kill(process.pid, signal.SIGCONT)
        print(f"readiness with a hung redis: {elapsed:.3f} s")
        assert response.status_code == 503
        assert statuses(response)["redis"] == "fail"
        assert elapsed < READY_DEADLINE_S
