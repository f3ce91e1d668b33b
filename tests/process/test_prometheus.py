"""A real Prometheus server (Debian's `prometheus`) scrapes the service running two workers:
its query API returns each pool's connections by state summed over the workers, as the
workers themselves report them, and the project's alert rules load into it without error."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import TestDatabase, wait_until
from tests.support.server import ROOT, ServerProcess, free_port

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
METRICS_TOKEN = "scrape-token-for-the-test"
# Sent to the operator endpoints, for when they ask for the token (METRICS_TOKEN).
AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus is not installed (Debian package prometheus)",
)


@contextmanager
def prometheus(target: str, tmp_path: Path) -> Iterator[str]:
    """A Prometheus scraping `target` every second with the alert rules loaded; its URL."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "messenger",
                        "metrics_path": "/metrics",
                        # For when /metrics asks for a token (METRICS_TOKEN); ignored otherwise.
                        "authorization": {"credentials": METRICS_TOKEN},
                        "static_configs": [{"targets": [target]}],
                    }
                ],
            }
        )
    )
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 30, "prometheus ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


def query(url: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def by_pool_and_state(results: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {(r["metric"]["pool_name"], r["metric"]["state"]): float(r["value"][1]) for r in results}


def workers_report(url: str) -> dict[tuple[str, str], float]:
    """`/health/metrics` of each worker (a new connection per request, so both get a turn),
    summed: what the workers say they hold."""
    snapshots: dict[int, dict[str, Any]] = {}

    def both() -> bool:
        response = httpx.get(f"{url}/health/metrics", headers=AUTH, timeout=5)
        assert response.status_code == 200, response.text
        body = response.json()
        snapshots[body["process"]["pid"]] = body["database"]
        return len(snapshots) == 2

    wait_until(both, 30, "both workers to answer")
    total: dict[tuple[str, str], float] = {}
    for pools in snapshots.values():
        for pool, numbers in pools.items():
            for state, key in (("idle", "idleCount"), ("used", "usedCount")):
                total[(pool, state)] = total.get((pool, state), 0.0) + numbers[key]
    return total


def exposition(url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{url}/metrics", headers=AUTH, timeout=5).text
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "db_client_connections":
            for sample in family.samples:
                found[(sample.labels["pool_name"], sample.labels["state"])] = sample.value
    return found


def test_prometheus_scrapes_two_workers_and_loads_the_alert_rules(
    database: TestDatabase, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "multiproc"
    env = {
        "WORKERS": "2",
        "DB_POOL_MIN": "2",
        "DB_POOL_MAX": "6",
        "DB_REPLICA_POOL_MIN": "1",
        "DB_REPLICA_POOL_MAX": "3",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_TOKEN": METRICS_TOKEN,
    }
    with (
        ServerProcess(database, **env) as server,
        prometheus(f"127.0.0.1:{server.port}", tmp_path) as url,
    ):
        reported = workers_report(server.url)
        # Two warm pools of each kind per worker: primary 2 + 2, each replica 1 + 1.
        assert reported[("primary", "idle")] == 4
        assert reported[("replica-0", "idle")] == 2

        wait_until(
            lambda: query(url, 'count_over_time(up{job="messenger"}[1m]) >= 2'),
            30,
            "two scrapes of the service",
        )
        assert [r["value"][1] for r in query(url, 'up{job="messenger"}')] == ["1"]
        started = time.monotonic()
        scraped = wait_until(
            lambda: (
                by_pool_and_state(
                    query(url, 'sum by (pool_name, state) (db_client_connections{job="messenger"})')
                )
                == reported
                or None
            ),
            15,
            "prometheus to hold what the workers report",
        )
        assert scraped
        assert exposition(server.url) == reported
        pool_max = by_pool_and_state(
            [
                {**r, "metric": {**r["metric"], "state": "max"}}
                for r in query(url, 'db_client_connection_max{job="messenger"}')
            ]
        )
        assert pool_max[("primary", "max")] == 2 * 6  # livesum over the two workers

        def rules_loaded() -> list[dict[str, Any]] | None:
            body = httpx.get(f"{url}/api/v1/rules", timeout=5).json()
            rules = [rule for group in body["data"]["groups"] for rule in group["rules"]]
            evaluated = all(rule.get("health") == "ok" for rule in rules)
            return rules if rules and evaluated else None

        rules = wait_until(rules_loaded, 30, "the alert rules evaluated")
        names = {rule["name"] for rule in rules}
        expected = {rule["alert"] for g in yaml.safe_load(RULES.read_text())["groups"]
                    for rule in g["rules"]}  # fmt: skip
        assert names == expected
        assert all(not rule.get("lastError") for rule in rules)
        firing = [rule["name"] for rule in rules if rule["state"] != "inactive"]
        assert firing == [], firing  # a healthy service raises no alert
        print(
            f"[timing] prometheus: scrapes matched the workers' report"
            f" {time.monotonic() - started:.1f} s after the second scrape; {len(rules)} rules ok"
        )
