"""The alert rules (deploy/prometheus/) and the dashboard (deploy/grafana/) against the
service's own metrics: every metric and label they use is one the service exports, every
expression parses (`promtool`), and every alert behaves as its unit tests say."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.promql import exported, metric_names, problems

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "messenger.json"
# Grafana's variables, as a query would see them.
_GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$job": ".+",
    "$instance": ".+",
}


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    return promtool


def _run(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _dashboard_queries() -> list[tuple[str, str]]:
    """(panel title and query id, expression with Grafana's variables filled in)."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in _GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: unknown variable in {expr}"
            queries.append((f"{panel['title']} {target['refId']}", expr))
    return queries


def test_exported_names_include_what_the_docs_promise() -> None:
    names = exported()
    assert "db_client_connection_timeouts_total" in names  # counters get `_total`
    assert "http_server_request_duration_seconds_bucket" in names
    assert names["db_client_connections"] == {"pool_name", "state"}


def test_alert_rules_use_only_exported_metrics_and_labels() -> None:
    alerts = _alerts()
    assert len(alerts) >= 8
    for rule in alerts:
        assert problems(rule["expr"]) == [], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        anchor = rule["annotations"]["runbook"].split("#")[1]
        assert anchor == rule["alert"].lower()


def test_every_alert_has_a_section_in_the_operator_page() -> None:
    page = (ROOT / "docs" / "operator.md").read_text()
    headings = {
        line.lstrip("#").strip().lower() for line in page.splitlines() if line.startswith("#")
    }
    for rule in _alerts():
        assert rule["alert"].lower() in headings, rule["alert"]


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    _run("check", "rules", RULES.name, cwd=RULES.parent)
    _run("test", "rules", RULE_TESTS.name, cwd=RULES.parent)


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    names = {rule["alert"] for rule in _alerts()}
    assert tested == names
    assert firing == names  # each is seen firing, not only staying quiet


def test_dashboard_queries_use_only_exported_metrics_and_labels() -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 15
    for where, expr in queries:
        assert problems(expr) == [], where
    used = set().union(*(metric_names(expr) for _, expr in queries))
    # The dashboard covers the pool, replica, cluster-role and HTTP series.
    for name in (
        "db_client_connections",
        "db_client_connection_pending_requests",
        "db_replica_healthy",
        "db_replica_lag_seconds",
        "db_cluster_member_role",
        "db_cluster_primaries",
        "http_server_requests_total",
        "http_server_request_duration_seconds_bucket",
    ):
        assert name in used, name


def test_dashboard_queries_parse_as_rule_expressions(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{index}", "expr": expr}
        for index, (_, expr) in enumerate(_dashboard_queries())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _run("check", "rules", path.name, cwd=tmp_path)


def test_a_renamed_metric_is_caught() -> None:
    assert problems("sum(db_client_connection_waiting{pool_name='primary'})") != []
    assert problems("sum by (pool) (db_client_connections)") != []
    assert problems('db_replica_healthy{replica="replica-0"}') != []
    assert re.search("not a metric", " ".join(problems("rate(http_requests_total[5m])")))
