"""The routing policy, a pure function of what is known (no database: the pools are
stand-ins with a name and a load)."""

from __future__ import annotations

from collections import Counter
from typing import cast

from app.db.cluster_state import ClusterSnapshot, ClusterState
from app.db.pool import Pool
from app.db.routing import NO_FAILURES, Kind, Plan, route


class StubPool:
    """What routing reads from a pool: its name and how many connections are lent out."""

    def __init__(self, name: str, checked_out: int = 0) -> None:
        self.name = name
        self.checked_out = checked_out


def cluster(*loads: int) -> ClusterState:
    replicas = [
        (f"10.0.0.{index}:5432", cast("Pool", StubPool(f"replica-{index}", load)))
        for index, load in enumerate(loads)
    ]
    return ClusterState(
        topology="fixed",
        members=["10.0.0.9:5432", *(member for member, _ in replicas)],
        writer_member="10.0.0.9:5432",
        writer=cast("Pool", StubPool("primary")),
        replicas=replicas,
    )


def read(
    snapshot: ClusterSnapshot,
    token: int | None = None,
    *,
    turn: int = 0,
    failed: frozenset[str] = NO_FAILURES,
    wrote: bool = False,
    now: float = 0.0,
) -> Plan:
    return route(Kind.READ, token, snapshot, wrote, failed, turn, now)


def test_the_least_loaded_healthy_replica_is_chosen() -> None:
    state = cluster(3, 1, 2)
    assert {read(state.snapshot, turn=turn).pool.name for turn in range(6)} == {"replica-1"}
    state.replica_failed("replica-1", "probe failed")
    assert {read(state.snapshot, turn=turn).pool.name for turn in range(6)} == {"replica-2"}


def test_ties_rotate_instead_of_favouring_the_first() -> None:
    snapshot = cluster(0, 0, 0).snapshot
    counts = Counter(read(snapshot, turn=turn).pool.name for turn in range(30))
    assert counts == {"replica-0": 10, "replica-1": 10, "replica-2": 10}


def test_the_writer_when_no_replica_qualifies() -> None:
    state = cluster(0, 0)
    state.replica_failed("replica-0", "lag 12.0s")
    state.replica_failed("replica-1", "lag 12.0s")
    plan = read(state.snapshot)
    assert plan.pool.name == "primary"
    assert plan.replica is None
    assert read(cluster().snapshot).pool.name == "primary"


def test_replicas_that_failed_this_read_are_skipped() -> None:
    snapshot = cluster(0, 1).snapshot
    assert read(snapshot, failed=frozenset({"replica-0"})).pool.name == "replica-1"
    assert read(snapshot, failed=frozenset({"replica-0", "replica-1"})).pool.name == "primary"


def test_writes_and_reads_after_a_write_go_to_the_writer() -> None:
    snapshot = cluster(0).snapshot
    assert route(Kind.WRITE, None, snapshot, False, NO_FAILURES, 0, 0.0).pool.name == "primary"
    assert read(snapshot, wrote=True).pool.name == "primary"
    on_primary = route(Kind.READ_PRIMARY, 5, snapshot, False, NO_FAILURES, 0, 0.0)
    assert on_primary.pool.name == "primary"
    assert not on_primary.refuse_token_ahead


def test_a_write_while_two_members_claim_the_primary_is_refused() -> None:
    state = cluster(0)
    state.block_writes(["a:1", "b:2"])
    plan = route(Kind.WRITE, None, state.snapshot, True, NO_FAILURES, 0, 0.0)
    assert plan.refused is not None
    assert "a:1, b:2" in plan.refused
    assert read(state.snapshot).refused is None, "reads go on"


def test_a_token_goes_to_a_replica_known_to_have_replayed_it() -> None:
    state = cluster(5, 0)
    state.replay_seen("replica-0", 2_000)
    state.replay_seen("replica-1", 1_000)
    plan = read(state.snapshot, 1_500)
    assert plan.pool.name == "replica-0", "though busier"
    assert not plan.check_replay
    assert plan.counts_as == "replica"
    assert read(state.snapshot, 1_000).pool.name == "replica-1"


def test_a_token_no_replica_is_known_to_have_asks_the_least_loaded_first() -> None:
    state = cluster(2, 1)
    plan = read(state.snapshot, 9_000)
    assert plan.pool.name == "replica-1"
    assert plan.check_replay
    assert plan.fallback is not None
    assert plan.fallback.pool.name == "primary"
    assert plan.fallback.refuse_token_ahead
    assert plan.fallback.counts_as == "primary"


def test_a_replica_slow_to_replay_is_not_asked_until_its_time_is_up() -> None:
    state = cluster(0)
    state.replica_slow("replica-0", for_s=1.0)
    until = state.snapshot.replicas[0].slow_until
    slow = read(state.snapshot, 9_000, now=until - 0.5)
    assert slow.pool.name == "primary"
    assert slow.refuse_token_ahead
    assert read(state.snapshot, 9_000, now=until).check_replay


def test_a_token_without_replicas_reads_on_the_writer_after_the_ahead_check() -> None:
    plan = read(cluster().snapshot, 9_000)
    assert plan.pool.name == "primary"
    assert plan.refuse_token_ahead


def test_routing_allocates_no_plan_per_request() -> None:
    """Plans are built with the pools, not per call: the same object for the same choice."""
    snapshot = cluster(0, 0).snapshot
    assert read(snapshot, turn=0) is read(snapshot, turn=2)
    assert read(snapshot, 5, turn=0) is read(snapshot, 5, turn=2)
