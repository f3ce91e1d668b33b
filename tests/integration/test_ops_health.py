"""`/health`, `/health/ready` and `/health/metrics` against the real primary and replicas."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from app.process.lifecycle import Lifecycle, Phase
from app.process.signals import install_drain_handlers
from tests.support.api import make_client
from tests.support.cluster import TestDatabase


@pytest.fixture(scope="module")
def ops(database: TestDatabase) -> Iterator[TestClient[Litestar]]:
    with make_client(database) as client:
        yield client


def test_liveness_is_pass_with_uptime(ops: TestClient[Litestar]) -> None:
    response = ops.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "pass"
    assert isinstance(body["uptime"], float)
    assert body["uptime"] >= 0


def test_readiness_passes_with_a_check_per_server(ops: TestClient[Litestar]) -> None:
    response = ops.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/health+json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["status"] == "pass"
    assert set(body["checks"]) == {
        "postgres:primary",
        "postgres:replica-0",
        "postgres:replica-1",
        "events:listener",
    }
    events = body["checks"]["events:listener"][0]
    assert events["status"] == "pass"
    assert events["observedUnit"] == "s"
    primary = body["checks"]["postgres:primary"][0]
    assert primary["status"] == "pass"
    assert primary["observedUnit"] == "ms"
    assert 0 < primary["observedValue"] < 1000
    replica = body["checks"]["postgres:replica-0"][0]
    assert replica["observedUnit"] == "s"
    assert isinstance(replica["observedValue"], float)
    assert "output" not in replica  # details only with ?verbose


def test_verbose_readiness_adds_details_for_people(ops: TestClient[Litestar]) -> None:
    body = ops.get("/health/ready", params={"verbose": "true"}).json()
    assert body["phase"] == "ready"
    assert isinstance(body["pid"], int)
    assert isinstance(body["elapsedMs"], float)
    replica = body["checks"]["postgres:replica-1"][0]
    assert isinstance(replica["latencyMs"], float)
    assert isinstance(replica["lagBytes"], float)


def test_readiness_fails_while_draining_but_liveness_does_not(
    database: TestDatabase,
) -> None:
    with make_client(database) as client:
        lifecycle: Lifecycle = client.app.state.lifecycle
        assert client.get("/health/ready").status_code == 200
        assert lifecycle.begin_draining("test")
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert response.json() == {"status": "fail", "output": "draining", "checks": {}}
        assert client.get("/health").json()["status"] == "pass"
        lifecycle.phase = Phase.READY  # let the lifespan shut down as usual


def test_readiness_fails_before_warm_up_ends(database: TestDatabase) -> None:
    client = make_client(database)  # lifespan not entered: the pools are not warm
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["output"] == "starting"


def test_metrics_snapshot_is_numbers(ops: TestClient[Litestar]) -> None:
    assert ops.get("/health/ready").status_code == 200  # use every pool once
    response = ops.get("/health/metrics")
    assert response.status_code == 200
    body = response.json()
    assert set(body["database"]) == {"primary", "replica-0", "replica-1"}
    for pool in body["database"].values():
        for key in ("totalCount", "idleCount", "usedCount", "waitingCount", "maxSize"):
            assert type(pool[key]) is int, key
        for key in ("timeouts", "retries", "errors"):
            assert type(pool[key]) is int, key
        assert isinstance(pool["utilization"], float)
        assert 0 <= pool["utilization"] <= 100
        assert pool["totalCount"] == pool["idleCount"] + pool["usedCount"]
        assert pool["totalCount"] >= pool["minSize"]
        waits = pool["acquireWaitMs"]
        assert set(waits) == {"p50", "p95", "p99"}
        assert 0 <= waits["p50"] <= waits["p95"] <= waits["p99"]
    for replica in body["replicas"].values():
        assert replica["healthy"] is True
        assert isinstance(replica["lagSeconds"], float)
    assert type(body["memory"]["rss"]) is int
    assert body["memory"]["rss"] > 10 * 1024 * 1024
    process = body["process"]
    assert isinstance(process["uptime"], float)
    assert type(process["pid"]) is int
    assert str(process["pid"]) in process["workerId"]


def test_sigterm_fails_readiness_first_then_runs_the_handler_it_replaced() -> None:
    calls: list[str] = []

    def granian_like(signum: int, frame: object) -> None:
        calls.append("previous")

    original = signal.signal(signal.SIGTERM, granian_like)
    try:

        async def main() -> None:
            announced = asyncio.Event()

            def announce(name: str) -> None:
                calls.append(f"announce:{name}")
                announced.set()

            restore = install_drain_handlers(lambda name: calls.append(f"drain:{name}"), announce)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(announced.wait(), 5)
            restore()

        asyncio.run(main())
        assert calls == ["drain:SIGTERM", "previous", "announce:SIGTERM"]
        assert signal.getsignal(signal.SIGTERM) is granian_like
    finally:
        signal.signal(signal.SIGTERM, original)
