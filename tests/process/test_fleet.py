"""Rolling restart behind a real load balancer: two instances (WORKERS=2 each) on one cluster
behind HAProxy, which health-checks `/health/ready`; they are restarted one at a time under a
steady load through HAProxy, and the client sees no failed request.

The timeline of each restart is printed as `[timing]` (docs/operator.md quotes it).
"""

from __future__ import annotations

import os
import time

import pytest

from tests.support.cluster import TestDatabase
from tests.support.fleet import Fleet, Load, Result, make_member
from tests.support.haproxy import haproxy_binary

pytestmark = pytest.mark.skipif(
    haproxy_binary() is None, reason="haproxy is not installed (apt-get install haproxy)"
)

# Longer than HAProxy needs to take an instance out after its readiness fails (two failed
# checks: inter 1 s, then fastinter 250 ms, each answered within 0.5 s: ~1.5 s at worst).
DRAIN_DELAY_S = 2.5
RATE = 150.0  # requests a second through HAProxy, for the whole drill


def _env(database: TestDatabase) -> dict[str, str]:
    return {
        **os.environ,
        **database.env(),
        "APP_ENV": "production",  # JSON logs: the timeline is read from them
        "DB_SSLMODE": "disable",
        "METRICS_PUBLIC": "true",  # production's requirements, for the settings that have them
        # AUTH_JWT_KEYS: the suite's key (database.env()), the same for every worker
        "WORKERS": "2",
        "DB_POOL_MIN": "2",
        "DB_POOL_MAX": "8",
        "DB_REPLICA_POOL_MIN": "1",
        "DB_REPLICA_POOL_MAX": "4",
        "DRAIN_DELAY_S": str(DRAIN_DELAY_S),
        "SHUTDOWN_TIMEOUT_S": "3",
        "PROMETHEUS_MULTIPROC_DIR": "",
    }


def _served_by(results: list[Result], server: str, start: float) -> list[Result]:
    return [r for r in results if r.server == server and r.at >= start]


def test_rolling_restart_behind_haproxy_fails_no_request(database: TestDatabase) -> None:
    with Fleet(_env(database), instances=2) as fleet:
        load = Load(fleet.url, make_member(fleet.url), rate=RATE, max_s=150).start()
        try:
            time.sleep(2)
            restarts = []
            for instance in fleet.instances:
                restarts.append(fleet.restart(instance))
                time.sleep(2)  # both serving again before the next one goes
        finally:
            results = load.stop()
        haproxy_log = fleet.lb.logs()
    began, ended = results[0].at, results[-1].at
    for restart in restarts:
        served = [
            r for r in _served_by(results, restart.instance, restart.signalled)
            if restart.exited is None or r.at < restart.exited
        ]  # fmt: skip
        restart.last_served = max((r.at + r.latency_s for r in served), default=None)
        print(f"[timing] {restart.timeline()}")
    failed = [r for r in results if r.failed]
    by_server = {name: sum(r.server == name for r in results) for name in ("a", "b")}
    print(
        f"[timing] load: {len(results)} requests in {ended - began:.1f} s"
        f" ({len(results) / (ended - began):.0f}/s) through HAProxy, by instance {by_server};"
        f" failed {len(failed)}"
    )
    assert failed == [], (failed[:10], haproxy_log[-3000:])
    for restart in restarts:
        assert restart.exit_code == 0
        assert restart.readiness_failed is not None
        assert restart.readiness_failed - restart.signalled < 0.5
        # HAProxy took it out while it still accepted: before the drain delay ended.
        assert restart.lb_down is not None
        assert restart.lb_down - restart.signalled < DRAIN_DELAY_S
        assert restart.exited is not None
        assert restart.exited - restart.signalled >= DRAIN_DELAY_S
        assert restart.lb_up is not None
        # Each instance served while the other one was away.
    assert all(count > 100 for count in by_server.values()), by_server
    assert len(results) > RATE * 10
