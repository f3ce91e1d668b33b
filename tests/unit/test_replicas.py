"""The cluster state's replicas: health verdicts, failure reports, learned positions, and
lag measured from WAL positions (no servers: the pools are stand-ins)."""

from __future__ import annotations

import time
from typing import cast

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from app.db.cluster_state import ClusterState, ReplicaView
from app.db.monitor import ClusterMonitor, MemberProbe, replica_lag
from app.db.pool import Pool


class StubPool:
    """What the cluster state and routing read from a pool: its name and its load."""

    def __init__(self, name: str, checked_out: int = 0) -> None:
        self.name = name
        self.checked_out = checked_out


def cluster(*names: str) -> ClusterState:
    replicas = [
        (f"10.0.0.{index}:5432", cast("Pool", StubPool(name))) for index, name in enumerate(names)
    ]
    return ClusterState(
        topology="fixed",
        members=["10.0.0.9:5432", *(member for member, _ in replicas)],
        writer_member="10.0.0.9:5432",
        writer=cast("Pool", StubPool("primary")),
        replicas=replicas,
    )


def replica(state: ClusterState, name: str) -> ReplicaView:
    view = state.snapshot.replica(name)
    assert view is not None
    return view


def _changes(pool: str, state: str) -> float:
    value = REGISTRY.get_sample_value(
        "db_replica_state_changes_total", {"pool_name": pool, "state": state}
    )
    return value or 0.0


def test_changes_are_logged_and_counted_once() -> None:
    name = "replica-unit-counted"
    state = cluster(name)
    out_before = _changes(name, "out")
    in_before = _changes(name, "in")
    with capture_logs() as logs:
        state.replica_checked(name, healthy=False, reason="probe failed: OSError")
        state.replica_checked(name, healthy=False, reason="probe failed: OSError")  # no change
        state.replica_checked(name, healthy=True, reason=None)
        state.replica_checked(name, healthy=True, reason=None)  # no change
    assert [entry["event"] for entry in logs] == [
        "replica taken out of rotation",
        "replica back in rotation",
    ]
    assert logs[0]["reason"] == "probe failed: OSError"
    assert replica(state, name).changes == 2
    assert _changes(name, "out") == out_before + 1
    assert _changes(name, "in") == in_before + 1


def test_a_failure_report_takes_the_replica_out() -> None:
    state = cluster("replica-0", "replica-1")
    state.replica_failed("replica-1", "read failed: ConnectionRefusedError")
    assert [view.healthy for view in state.snapshot.replicas] == [True, False]
    assert replica(state, "replica-1").reason == "read failed: ConnectionRefusedError"


def test_a_probe_begun_before_a_failure_does_not_undo_it() -> None:
    state = cluster("replica-0")
    probe_started = time.monotonic()
    state.replica_failed("replica-0", "read failed: OSError")
    state.replica_checked("replica-0", healthy=True, reason=None, observed_at=probe_started)
    assert not replica(state, "replica-0").healthy
    state.replica_checked("replica-0", healthy=True, reason=None, observed_at=time.monotonic())
    assert replica(state, "replica-0").healthy


def test_a_snapshot_never_changes_a_change_makes_a_new_one() -> None:
    state = cluster("replica-0")
    before = state.snapshot
    state.replica_failed("replica-0", "read failed: OSError")
    assert before.replicas[0].healthy, "a reader holding the old snapshot sees it whole"
    assert not state.snapshot.replicas[0].healthy
    assert state.snapshot.plans is before.plans, "the pools did not change: the plans stay"


def test_a_learned_replay_position_only_moves_forward() -> None:
    state = cluster("replica-0")
    state.replay_seen("replica-0", 2_000)
    state.replay_seen("replica-0", 1_000)  # an older answer, arriving late
    assert replica(state, "replica-0").replay_lsn == 2_000


def test_the_known_primary_position_is_the_later_of_the_sample_and_the_commits() -> None:
    state = cluster()
    state.primary_sampled(5_000)
    state.commit_seen(4_000)
    assert state.primary_position == 5_000
    state.commit_seen(6_000)
    assert state.primary_position == 6_000


def test_writes_are_blocked_while_two_members_claim_the_primary() -> None:
    state = cluster()
    with capture_logs() as logs:
        state.block_writes(["a:1", "b:2"])
        state.block_writes(["a:1", "b:2"])  # logged once
        state.unblock_writes()
    assert [entry["event"] for entry in logs] == [
        "split brain: no write goes to either primary",
        "one primary again: writes resume",
    ]
    assert state.snapshot.write_block is None
    assert state.snapshot.plans.write.refused is None


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
    state = cluster("replica-0")
    view = replica(state, "replica-0")
    monitor = ClusterMonitor(state, lambda _: None, {}, interval_s=1.0, max_lag_s=5.0)
    now = time.monotonic()
    ahead = MemberProbe(view.member, now, answered=True, in_recovery=True, position=200)
    monitor._judge(view, ahead, [(now, 100)])
    after = replica(state, "replica-0")
    assert (after.healthy, after.reason) == (False, "ahead of the primary (another timeline)")
    later = time.monotonic()  # rewound and following: a probe begun after the verdict
    caught_up = MemberProbe(view.member, later, answered=True, in_recovery=True, position=100)
    monitor._judge(after, caught_up, [(now, 100)])
    assert replica(state, "replica-0").healthy
