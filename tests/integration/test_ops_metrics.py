"""`/metrics` (Prometheus) and the pool statistics behind it and `/health/metrics`."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from app.config import Settings
from app.db.cluster import Database
from app.main import create_app
from app.process.multiproc import multiprocess_dir
from tests.support.api import register
from tests.support.cluster import TestDatabase, wait_until

POOL_NAMES = {"primary", "replica-0", "replica-1"}


def scrape(client: TestClient[Litestar]) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Samples by name, then by sorted label pairs."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def value(
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str
) -> float:
    return samples[name][tuple(sorted(labels.items()))]


@pytest.fixture(scope="module")
def ops(database: TestDatabase) -> Iterator[TestClient[Litestar]]:
    app = create_app(Settings.from_env(database.env(DB_POOL_MIN="2", DB_REPLICA_POOL_MIN="1")))
    with TestClient(app) as client:
        yield client


def test_pool_metrics_use_the_opentelemetry_names(
    ops: TestClient[Litestar],
    settings: Settings,
) -> None:
    assert ops.get("/health/ready").status_code == 200
    samples = scrape(ops)
    for pool in POOL_NAMES:
        idle = value(samples, "db_client_connections", pool_name=pool, state="idle")
        used = value(samples, "db_client_connections", pool_name=pool, state="used")
        assert idle + used >= 1
        expected_max = (
            settings.writer_pool if pool == "primary" else settings.replica_pool
        ).max_size
        assert value(samples, "db_client_connection_max", pool_name=pool) == expected_max
        assert value(samples, "db_client_connection_pending_requests", pool_name=pool) == 0
        assert samples["db_client_connection_timeouts_total"] is not None
        assert value(samples, "db_client_connection_wait_time_seconds_count", pool_name=pool) > 0
        assert value(samples, "db_client_connection_use_time_seconds_count", pool_name=pool) > 0
    assert value(samples, "db_client_connection_idle_min", pool_name="primary") == 2
    assert value(samples, "db_client_connection_idle_min", pool_name="replica-0") == 1
    for replica in ("replica-0", "replica-1"):
        assert value(samples, "db_replica_healthy", pool_name=replica) == 1
        assert value(samples, "db_replica_lag_seconds", pool_name=replica) >= 0
        assert value(samples, "db_replica_lag_bytes", pool_name=replica) >= 0
    for name in samples:
        assert not name.endswith("_created"), name
    labels = {label for series in samples.values() for key in series for label, _ in key}
    assert "host" not in labels


def test_http_durations_are_labelled_by_route_template(ops: TestClient[Litestar]) -> None:
    user = register(ops)
    user_id = user.id
    for _ in range(3):
        assert ops.get(f"/users/{user_id}", headers=user.headers).status_code == 200
    samples = scrape(ops)
    durations = samples["http_server_request_duration_seconds_count"]
    by_path: dict[str, float] = {}
    for key, count in durations.items():  # a series per method and status code: sum by path
        path = dict(key)["path"]
        by_path[path] = by_path.get(path, 0.0) + count
    assert by_path["/users/{user_id}"] >= 3
    assert not any(str(user_id) in path for path in by_path)


def test_retries_and_errors_are_counted_per_pool(ops: TestClient[Litestar]) -> None:
    exposition = ops.get("/metrics").text
    # The families are declared even before the first retry or error.
    assert "# TYPE db_client_retries_total counter" in exposition
    assert "# TYPE db_client_errors_total counter" in exposition
    body = ops.get("/health/metrics").json()
    for pool in POOL_NAMES:
        assert body["database"][pool]["retries"] >= 0
        assert body["database"][pool]["errors"] >= 0


def test_exposition_passes_promtool(ops: TestClient[Litestar]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    ops.get("/health/ready")
    body = ops.get("/metrics").text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_openmetrics_is_served_when_asked_for(ops: TestClient[Litestar]) -> None:
    response = ops.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_waiting_requests_are_counted_while_they_queue(database: TestDatabase) -> None:
    """A pool of 2 under 20 concurrent slow requests: waiting > 0 while they queue, 0 after."""
    app = _app_holding_a_connection(
        database, 0.2, DB_POOL_MIN="1", DB_POOL_MAX="2", DB_POOL_TIMEOUT_MS="30000"
    )
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=20) as threads:
        start = threading.Barrier(20)

        def request() -> int:
            start.wait()
            return client.get("/test/hold", timeout=60).status_code

        futures = [threads.submit(request) for _ in range(20)]
        snapshot = wait_until(
            lambda: _waiting(client) or None, 10, "requests waiting for a connection"
        )
        assert snapshot["waitingCount"] > 0
        assert snapshot["usedCount"] == 2
        assert snapshot["utilization"] == 100.0
        pending = wait_until(
            lambda: value(
                scrape(client), "db_client_connection_pending_requests", pool_name="primary"
            ),
            10,
            "pending_requests > 0",
        )
        assert pending > 0
        assert [future.result() for future in futures] == [200] * 20
        after = client.get("/health/metrics").json()["database"]["primary"]
        assert after["waitingCount"] == 0
        assert after["usedCount"] == 0
        assert after["totalCount"] == 2
        assert after["acquireWaitMs"]["p99"] >= 100  # the last in line waited for others
        samples = scrape(client)
        assert value(samples, "db_client_connection_pending_requests", pool_name="primary") == 0
        assert value(samples, "db_client_connections", pool_name="primary", state="used") == 0
        assert value(samples, "db_client_connections", pool_name="primary", state="idle") == 2


def _waiting(client: TestClient[Litestar]) -> dict[str, float] | None:
    primary: dict[str, float] = client.get("/health/metrics").json()["database"]["primary"]
    return primary if primary["waitingCount"] > 0 else None


def test_multiprocess_dir_is_emptied_or_made_for_several_workers(tmp_path: Path) -> None:
    configured = tmp_path / "metrics"
    configured.mkdir()
    (configured / "counter_123.db").write_bytes(b"stale")
    (configured / "keep.txt").write_text("not ours")
    environ = {"PROMETHEUS_MULTIPROC_DIR": str(configured)}
    with multiprocess_dir(environ, workers=2) as path:
        assert path == configured
        assert not (configured / "counter_123.db").exists()
        assert (configured / "keep.txt").exists()
    single: dict[str, str] = {}
    with multiprocess_dir(single, workers=1) as path:
        assert path is None
        assert single == {}
    several: dict[str, str] = {}
    with multiprocess_dir(several, workers=2) as path:
        assert path is not None
        assert path.is_dir()
        assert several["PROMETHEUS_MULTIPROC_DIR"] == str(path)
    assert not path.exists()


def test_a_checkout_timeout_is_counted_logged_and_answered_503(database: TestDatabase) -> None:
    app = _app_holding_a_connection(
        database, 1.0, DB_POOL_MIN="1", DB_POOL_MAX="1", DB_POOL_TIMEOUT_MS="100"
    )
    with (
        capture_logs() as logs,
        TestClient(app) as client,
        ThreadPoolExecutor(max_workers=1) as threads,
    ):
        before = scrape(client)["db_client_connection_timeouts_total"]
        held = threads.submit(lambda: client.get("/test/hold", timeout=30).status_code)
        wait_until(
            lambda: client.get("/health/metrics").json()["database"]["primary"]["usedCount"] == 1,
            10,
            "the only connection to be in use",
        )
        response = client.get("/test/hold")
        assert response.status_code == 503
        assert "retry-after" in response.headers
        assert held.result() == 200
        primary = client.get("/health/metrics").json()["database"]["primary"]
        assert primary["timeouts"] == 1
        after = scrape(client)["db_client_connection_timeouts_total"]
        key = (("pool_name", "primary"),)
        assert after[key] == before.get(key, 0.0) + 1
    timeouts = [event for event in logs if event["event"] == "connection checkout timed out"]
    assert len(timeouts) == 1
    assert timeouts[0]["pool"] == "primary"
    assert timeouts[0]["waited_ms"] >= 100


def _app_holding_a_connection(database: TestDatabase, seconds: float, **env: str) -> Litestar:
    """The service plus `GET /test/hold`, which keeps a writer connection for `seconds`."""
    app = create_app(Settings.from_env(database.env(**env)))

    @get("/test/hold", exclude_from_auth=True)  # the test's own route: no account needed
    async def hold(state: State) -> dict[str, bool]:
        db: Database = state.database
        async with db.writer.acquire() as conn:
            await conn.driver.execute("SELECT pg_sleep($1)", seconds)
        return {"ok": True}

    app.register(hold)
    return app
