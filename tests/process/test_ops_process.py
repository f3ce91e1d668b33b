"""The operator's view of the real service (`python -m app serve`, granian): JSON logs without
secrets, one clear line when the primary is down at start, metrics over several workers."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import PASSWORD as ACCOUNT_PASSWORD
from tests.support.api import bearer
from tests.support.cluster import TestDatabase, wait_until
from tests.support.redis_server import redis_server
from tests.support.server import ServerProcess, free_port

PASSWORD = "S3cretPw"


def with_password(url: str) -> str:
    """`url` with a password (the embedded cluster's URLs carry their generated one)."""
    if urlsplit(url).password:
        return url
    assert "postgres@" in url
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def test_a_password_in_every_url_reaches_no_response_log_or_metric(
    database: TestDatabase,
) -> None:
    seen: list[str] = []

    def record(response: httpx.Response) -> httpx.Response:
        seen.append(response.text)
        seen.extend(f"{name}: {value}" for name, value in response.headers.items())
        return response

    with redis_server(PASSWORD) as (redis_url, redis_process):
        env = {
            "APP_ENV": "production",
            "DB_SSLMODE": "disable",
            "DATABASE_URL": with_password(database.primary_url),
            "DATABASE_REPLICA_URLS": ",".join(with_password(u) for u in database.replica_urls),
            "REDIS_URL": redis_url,  # the login limits count there
            "METRICS_PUBLIC": "true",  # production's requirement; the metrics are recorded too
        }
        with ServerProcess(database, **env) as server, httpx.Client(base_url=server.url) as http:
            assert record(http.get("/health/ready")).json()["status"] == "pass"
            record(http.get("/health"))
            record(http.get("/health/ready", params={"verbose": "true"}))
            record(http.get("/health/metrics"))
            record(http.get("/metrics"))
            record(http.get("/schema/openapi.json"))
            account = {"username": f"pw_{server.port}", "password": ACCOUNT_PASSWORD}
            user = record(http.post("/users", json=account)).json()
            record(http.post("/users", json=account))  # 409
            login = record(http.post("/auth/token", json=account)).json()
            http.headers.update(bearer(login["access_token"]))
            record(http.get("/users/999999999"))  # 404
            record(http.post("/users", json={**account, "username": "NO"}))  # 400
            record(http.get(f"/users/{user['id']}"))
            redis_process.kill()  # a failing check: its details go to the log
            assert record(http.get("/health/ready", params={"verbose": "true"})).status_code == 503
            server.signal(signal.SIGTERM)
            assert server.wait(timeout_s=20) == 0
            logs = server.logs()
    secrets = {PASSWORD, urlsplit(with_password(database.primary_url)).password}
    for secret in secrets:
        assert secret
        assert all(secret not in text for text in seen)
        assert secret not in logs
    assert "readiness check not passing" in logs  # the failure was logged, without secrets
    service_lines = [line for line in logs.splitlines() if not line.startswith("[")]
    events = [json.loads(line) for line in service_lines]  # JSON in production, every line
    assert {"pool ready", "ready", "stopped"} <= {event["event"] for event in events}


def test_the_primary_down_at_start_stops_the_service_with_one_clear_line(
    database: TestDatabase,
) -> None:
    """Checked once before granian starts: one line, not one per worker among granian's exit
    lines (the workers' own check, `app.db`, still guards a later start)."""
    port = free_port()
    dead = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/messenger"
    server = ServerProcess(
        database,
        DATABASE_URL=dead,
        APP_ENV="production",
        DB_SSLMODE="disable",
        METRICS_PUBLIC="true",  # production's requirement, so that the primary is the error
        WORKERS="2",
    )
    try:
        with pytest.raises(AssertionError, match="server exited with 2"):
            server.start(ready_timeout_s=30)
        logs = server.logs()
    finally:
        server.__exit__(None, None, None)
    assert PASSWORD not in logs
    assert logs.splitlines() == [
        f"error: the database is unreachable (127.0.0.1:{port}: ConnectionRefusedError):"
        " check DATABASE_URL and DB_SSLMODE, or set DB_WAIT_FOR_PRIMARY_S to wait for it"
    ]


def test_two_workers_report_one_aggregate(database: TestDatabase, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {
        "WORKERS": "2",
        "DB_POOL_MIN": "2",
        "DB_POOL_MAX": "10",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    with ServerProcess(database, **env) as server:
        workers: set[int] = set()

        def both_workers_answer() -> bool:
            # A new connection per request, so both workers get a turn at accepting.
            body = httpx.get(f"{server.url}/health/metrics").json()
            workers.add(body["process"]["pid"])
            return len(workers) == 2

        wait_until(both_workers_answer, 30, "both workers to answer")
        health_before = _scrape(server.url)["http_server_requests_total"].get("/health", 0.0)
        for _ in range(20):
            assert httpx.get(f"{server.url}/health").status_code == 200
        for _ in range(4):  # whichever worker answers, the numbers are the pod's
            samples = _scrape(server.url)
            assert samples["db_client_connection_max"]["primary"] == 2 * 10
            assert samples["db_client_connection_idle_min"]["primary"] == 2 * 2
            assert samples["http_server_requests_total"]["/health"] == health_before + 20
        server.signal(signal.SIGTERM)
        assert server.wait(timeout_s=20) == 0
    live = list(metrics_dir.glob("gauge_live*.db"))
    assert live == [], "stopped workers leave no live gauges behind"


def _scrape(url: str) -> dict[str, dict[str, float]]:
    """Per metric, the value summed by pool (db_*) or route (http_*)."""
    text = httpx.get(f"{url}/metrics").text
    samples: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.labels.get("pool_name") or sample.labels.get("path") or ""
            by_key = samples.setdefault(sample.name, {})
            by_key[key] = by_key.get(key, 0.0) + sample.value
    return samples
