"""Choosing the reader, recording health changes, and measuring lag from WAL positions."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from app.db.monitor import replica_lag
from app.db.pool import Pool
from app.db.replicas import ReplicaSet


class StubPool:
    """What `ReplicaSet` reads from a pool: its name and how many connections are lent out."""

    def __init__(self, name: str, checked_out: int = 0) -> None:
        self.name = name
        self.checked_out = checked_out


def replica_set(*loads: int) -> tuple[ReplicaSet, list[StubPool]]:
    pools = [StubPool(f"replica-{index}", load) for index, load in enumerate(loads)]
    return ReplicaSet(cast("list[Pool]", pools)), pools


def chosen(
    replicas: ReplicaSet, min_lsn: int | None = None, exclude: frozenset[str] = frozenset()
) -> str | None:
    pool = replicas.choose(min_lsn, exclude)
    return pool.name if pool is not None else None


def test_the_least_loaded_healthy_replica_is_chosen() -> None:
    replicas, _ = replica_set(3, 1, 2)
    assert {chosen(replicas) for _ in range(6)} == {"replica-1"}
    replicas.states[1].mark(healthy=False, reason="probe failed")
    assert {chosen(replicas) for _ in range(6)} == {"replica-2"}


def test_ties_rotate_instead_of_favouring_the_first() -> None:
    replicas, _ = replica_set(0, 0, 0)
    counts = Counter(chosen(replicas) for _ in range(30))
    assert counts == {"replica-0": 10, "replica-1": 10, "replica-2": 10}


def test_none_when_no_replica_qualifies() -> None:
    replicas, _ = replica_set(0, 0)
    for state in replicas.states:
        state.mark(healthy=False, reason="lag 12.0s")
    assert chosen(replicas) is None
    assert chosen(ReplicaSet([])) is None


def test_a_token_needs_a_replica_that_replayed_past_it() -> None:
    replicas, _ = replica_set(5, 0)
    replicas.states[0].replay_lsn = 2_000
    replicas.states[1].replay_lsn = 1_000
    assert chosen(replicas, min_lsn=1_500) == "replica-0"  # though busier
    assert chosen(replicas, min_lsn=1_000) == "replica-1"
    assert chosen(replicas, min_lsn=2_001) is None


def test_excluded_replicas_are_skipped() -> None:
    replicas, _ = replica_set(0, 1)
    assert chosen(replicas, exclude=frozenset({"replica-0"})) == "replica-1"


def _changes(pool: str, state: str) -> float:
    value = REGISTRY.get_sample_value(
        "db_replica_state_changes_total", {"pool_name": pool, "state": state}
    )
    return value or 0.0


def test_changes_are_logged_and_counted_once() -> None:
    replicas, pools = replica_set(0)
    pools[0].name = "replica-unit-counted"
    state = replicas.states[0]
    out_before = _changes(state.name, "out")
    in_before = _changes(state.name, "in")
    with capture_logs() as logs:
        state.mark(healthy=False, reason="probe failed: OSError")
        state.mark(healthy=False, reason="probe failed: OSError")  # no change
        state.mark(healthy=True, reason=None)
        state.mark(healthy=True, reason=None)  # no change
    assert [entry["event"] for entry in logs] == [
        "replica taken out of rotation",
        "replica back in rotation",
    ]
    assert logs[0]["reason"] == "probe failed: OSError"
    assert state.changes == 2
    assert _changes(state.name, "out") == out_before + 1
    assert _changes(state.name, "in") == in_before + 1


def test_a_failure_report_takes_the_replica_out() -> None:
    replicas, pools = replica_set(0, 0)
    replicas.report_failure(cast("Pool", pools[1]), "read failed: ConnectionRefusedError")
    assert [state.healthy for state in replicas.states] == [True, False]
    assert replicas.states[1].reason == "read failed: ConnectionRefusedError"
    assert replicas.choose() is cast("Pool", pools[0]), "reads go to the one left"


def test_a_probe_begun_before_a_failure_does_not_undo_it() -> None:
    replicas, pools = replica_set(0)
    state = replicas.states[0]
    probe_started = time.monotonic()
    replicas.report_failure(cast("Pool", pools[0]), "read failed: OSError")
    state.mark(healthy=True, reason=None, observed_at=probe_started)
    assert not state.healthy
    state.mark(healthy=True, reason=None, observed_at=time.monotonic())
    assert state.healthy


# -- lag from WAL positions ------------------------------------------------------------------


def test_caught_up_replica_of_an_idle_primary_has_no_lag() -> None:
    # The primary's position has not moved for an hour; the replica replayed it.
    history = [(0.0, 5_000)]
    assert replica_lag(history, 5_000, now=3_600.0, own_lag_s=3_600.0) == 0.0


def test_lag_is_how_long_the_primary_has_been_ahead() -> None:
    history = [(10.0, 1_000), (11.0, 2_000), (12.0, 3_000), (13.0, 4_000)]
    # Replayed 2_000: the primary was first seen beyond it at t=12.
    assert replica_lag(history, 2_000, now=13.5, own_lag_s=0.0) == pytest.approx(1.5)
    assert replica_lag(history, 3_999, now=13.5, own_lag_s=99.0) == pytest.approx(0.5)


def test_a_replica_that_stopped_receiving_is_lagged_though_it_replayed_all_it_got() -> None:
    # Its own view says 0 (receive = replay), the primary moved on 20 s ago.
    history = [(0.0, 1_000), (100.0, 2_000), (120.0, 9_000)]
    assert replica_lag(history, 1_000, now=120.0, own_lag_s=0.0) == pytest.approx(20.0)


def test_behind_every_remembered_position_the_replicas_own_view_bounds_it() -> None:
    # Just started monitoring: one sample, and the replica is far behind it.
    history = [(50.0, 9_000)]
    assert replica_lag(history, 1_000, now=50.1, own_lag_s=3_600.0) == pytest.approx(3_600.0)
    assert replica_lag(history, 1_000, now=50.1, own_lag_s=0.0) == pytest.approx(0.1)


def test_without_the_primary_the_replicas_own_view_is_used() -> None:
    assert replica_lag([], 1_000, now=10.0, own_lag_s=0.0) == 0.0
    assert replica_lag([], 1_000, now=10.0, own_lag_s=4.2) == 4.2


def test_a_standby_ahead_of_the_primary_is_out_of_rotation() -> None:
    """An old primary started as a standby before its rewind has replayed past where the new
    primary is: it is on another timeline and would pass every token, so it serves nothing."""
    from app.db.monitor import ClusterMonitor, MemberProbe

    replicas, _ = replica_set(0)
    state = replicas.states[0]
    monitor = ClusterMonitor(cast("Any", None), {}, interval_s=1.0, max_lag_s=5.0)
    now = time.monotonic()
    ahead = MemberProbe("old-primary:5432", now, answered=True, in_recovery=True, position=200)
    monitor._update(state, ahead, [(now, 100)])
    assert (state.healthy, state.reason) == (False, "ahead of the primary (another timeline)")
    later = time.monotonic()  # rewound and following: a probe begun after the verdict
    caught_up = MemberProbe(
        "old-primary:5432", later, answered=True, in_recovery=True, position=100
    )
    monitor._update(state, caught_up, [(now, 100)])
    assert state.healthy
