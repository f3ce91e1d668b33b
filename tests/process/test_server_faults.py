"""Faults under a steady stream of reads and sends against a real granian process.

Each test runs the service (`python -m app serve`) on this module's own cluster
(`fault_cluster`: a primary and two streaming replicas), drives it from a background thread
(`Traffic`), breaks a server for real, and checks every response. The timings are printed
(`pytest -s`) as `[timing]`.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from app.dev.cluster import StopMode
from tests.support.cluster import TestDatabase, embedded, fetchval, wait_until
from tests.support.drills import first_log, more, report, start_traffic
from tests.support.server import ServerProcess
from tests.support.traffic import Outcome, between, summary

_SERVE = {"DB_POOL_MIN": "2", "DB_REPLICA_POOL_MIN": "1"}
_SESSIONS = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"


def _wrong(outcomes: list[Outcome], allowed: set[int]) -> list[Outcome]:
    return [o for o in outcomes if o.status not in allowed or o.error is not None]


def test_a_killed_replica_fails_no_read_and_returns(fault_cluster: TestDatabase) -> None:
    cluster = embedded(fault_cluster)
    replica = cluster.replicas[0]
    with ServerProcess(fault_cluster, **_SERVE) as server:
        _, traffic = start_traffic(server)
        try:
            more(traffic, 150, "baseline traffic")
            killed_at = time.time()
            replica.stop("immediate")
            removed_at = first_log(
                server, "replica taken out of rotation", killed_at, pool="replica-0"
            )
            more(traffic, 150, "traffic with the replica down")
            ready = httpx.get(f"{server.url}/health/ready", timeout=5)
            assert ready.status_code == 200
            assert ready.json()["status"] == "warn"
            restarted_at = time.time()
            replica.start()
            started_at = time.time()
            returned_at = first_log(
                server, "replica back in rotation", restarted_at, pool="replica-0"
            )
            more(traffic, 150, "traffic after the return")
            # Back in rotation means serving reads: its pool reconnects.
            wait_until(
                lambda: fetchval(replica.url, _SESSIONS, "messenger-replica-0") > 0,
                10,
                "replica-0 serving reads again",
            )
        finally:
            outcomes = traffic.stop()
    wrong = _wrong(outcomes, {200, 201})
    assert not wrong, wrong[:5]
    report(
        "replica killed (immediate)",
        removal_after_kill_ms=round((removed_at - killed_at) * 1000),
        return_after_restart_ms=round((returned_at - started_at) * 1000),
        restart_took_ms=round((started_at - restarted_at) * 1000),
        before=summary(between(outcomes, 0, killed_at)),
        first_second_after_kill=summary(between(outcomes, killed_at, killed_at + 1)),
        while_down=summary(between(outcomes, killed_at, restarted_at)),
        after_return=summary(between(outcomes, returned_at, float("inf"))),
    )


def test_a_paused_replica_leaves_past_the_lag_limit_and_returns(
    fault_cluster: TestDatabase,
) -> None:
    replica = embedded(fault_cluster).replicas[0]
    with ServerProcess(fault_cluster, DB_REPLICA_MAX_LAG_S="1", **_SERVE) as server:
        _, traffic = start_traffic(server)
        try:
            more(traffic, 150, "baseline traffic")
            paused_at = time.time()
            fetchval(replica.url, "SELECT pg_wal_replay_pause()")
            removed_at = first_log(
                server, "replica taken out of rotation", paused_at, pool="replica-0"
            )
            ready = httpx.get(f"{server.url}/health/ready", timeout=5)
            assert ready.status_code == 200
            body = ready.json()
            assert body["status"] == "warn"
            assert body["checks"]["postgres:replica-0"][0]["status"] == "warn"
            assert body["checks"]["postgres:replica-1"][0]["status"] == "pass"
            more(traffic, 150, "traffic while replica-0 is out")
            resumed_at = time.time()
            fetchval(replica.url, "SELECT pg_wal_replay_resume()")
            returned_at = first_log(
                server, "replica back in rotation", resumed_at, pool="replica-0"
            )
            more(traffic, 150, "traffic after the return")
        finally:
            outcomes = traffic.stop()
    # Every token read found its message (checked per response), nothing failed.
    wrong = _wrong(outcomes, {200, 201})
    assert not wrong, wrong[:5]
    token_reads = [o for o in between(outcomes, paused_at, resumed_at) if o.kind == "token-read"]
    assert len(token_reads) >= 20
    report(
        "replay paused, lag limit 1 s",
        removal_after_pause_ms=round((removed_at - paused_at) * 1000),
        return_after_resume_ms=round((returned_at - resumed_at) * 1000),
        before=summary(between(outcomes, 0, paused_at)),
        while_paused=summary(between(outcomes, paused_at, resumed_at)),
        after_return=summary(between(outcomes, returned_at, float("inf"))),
    )


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_primary_restart_loses_and_duplicates_no_acknowledged_message(
    fault_cluster: TestDatabase, mode: StopMode
) -> None:
    primary = embedded(fault_cluster).primary
    with ServerProcess(fault_cluster, **_SERVE) as server:
        sender, traffic = start_traffic(server)
        try:
            more(traffic, 150, "baseline traffic")
            down_at = time.time()
            primary.stop(mode)
            stopped_at = time.time()
            more(traffic, 30, "traffic during the outage")
            primary.start()
            up_at = time.time()

            def send_succeeded() -> float | None:
                sends = between(list(traffic.outcomes), up_at, float("inf"))
                ok = [o.at + o.latency_s for o in sends if o.kind == "send" and o.status == 201]
                return min(ok) if ok else None

            recovered_at = float(wait_until(send_succeeded, 30, "a send to succeed again"))
            more(traffic, 150, "traffic after recovery")
        finally:
            outcomes = traffic.stop()
        # A client resends what got no answer, with the same key.
        unanswered = [o.key for o in outcomes if o.kind == "send" and o.status not in (200, 201)]
        resent = traffic.resend([key for key in unanswered if key])

    hung = [o for o in outcomes if o.status is None]
    assert not hung, hung[:5]
    unavailable = [o for o in outcomes if o.status == 503]
    assert unavailable, "the outage was not seen"
    assert all(o.retry_after for o in unavailable)
    assert max(o.latency_s for o in unavailable) < 3.0  # answered quickly, not hung
    wrong = _wrong(outcomes, {200, 201, 503})
    assert not wrong, wrong[:5]
    assert set(resent.values()) <= {200, 201}
    acknowledged = {o.key for o in outcomes if o.kind == "send" and o.status in (200, 201)}
    counts = _stored_counts(fault_cluster, sender.id)
    assert all(key is not None and counts.get(key) == 1 for key in acknowledged), (
        "an acknowledged send is missing"
    )
    assert all(counts.get(key) == 1 for key in resent), "a resent message is missing"
    assert all(count == 1 for count in counts.values()), "a message was stored twice"
    report(
        f"primary restarted ({mode})",
        stop_took_ms=round((stopped_at - down_at) * 1000),
        outage_ms=round((up_at - down_at) * 1000),
        first_send_ok_after_start_ms=round((recovered_at - up_at) * 1000),
        resent=len(resent),
        resent_already_stored=sum(1 for status in resent.values() if status == 200),
        before=summary(between(outcomes, 0, down_at)),
        sends_during_outage=summary(
            [o for o in between(outcomes, down_at, up_at) if o.kind == "send"]
        ),
        reads_during_outage=summary(
            [o for o in between(outcomes, down_at, up_at) if o.kind != "send"]
        ),
        after_recovery=summary(between(outcomes, recovered_at, float("inf"))),
    )


def _stored_counts(database: TestDatabase, sender_id: int) -> dict[str, int]:
    stored = fetchval(
        database.primary_url,
        "SELECT json_object_agg(client_msg_id, n) FROM (SELECT client_msg_id, count(*) AS n"
        " FROM messages WHERE sender_id = $1 GROUP BY client_msg_id) AS counts",
        sender_id,
    )
    return dict(json.loads(stored)) if stored else {}
