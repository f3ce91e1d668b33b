"""The two topologies as strategies: how members are named, and what a round of roles asks
of the data layer (pure: no pools, no servers)."""

from __future__ import annotations

from app.config import Settings
from app.db.topology import NOTHING, FixedTopology, HostListTopology, topology_of

A, B, C = "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"


def test_the_settings_choose_the_strategy() -> None:
    fixed = topology_of(
        Settings.from_env(
            {
                "DATABASE_URL": f"postgresql://u@{A}/db",
                "DATABASE_REPLICA_URLS": f"postgresql://u@{B}/db,postgresql://u@{C}/db",
            }
        )
    )
    assert isinstance(fixed, FixedTopology)
    assert list(fixed.urls) == [A, B, C]
    assert fixed.initial_replicas == [B, C]
    assert [fixed.replica_pool_name(member) for member in (B, C)] == ["replica-0", "replica-1"]
    assert [fixed.probe_label(member) for member in (A, B)] == ["primary", "member-1"]
    host_list = topology_of(Settings.from_env({"DATABASE_URL": f"postgresql://u@{A},{B},{C}/db"}))
    assert isinstance(host_list, HostListTopology)
    assert host_list.initial_replicas == []
    assert host_list.replica_pool_name(B) == "replica-1"
    assert host_list.probe_label(A) == "member-0"
    assert host_list.start_target(A) == f"{A}, {B}, {C}"


def test_a_fixed_topology_never_follows() -> None:
    fixed = FixedTopology({A: "a", B: "b"})
    assert fixed.follow([B], A, [C]) is NOTHING
    assert fixed.follow([A, B], A, []) is NOTHING


def test_a_host_list_follows_the_one_primary_and_adds_standbys() -> None:
    host_list = HostListTopology({A: "a", B: "b", C: "c"})
    following = host_list.follow([B], A, [C])
    assert following.writer == B
    assert following.joiners == [C]
    assert following.block == []
    unchanged = host_list.follow([A], A, [])
    assert unchanged.writer is None
    assert unchanged.joiners == []


def test_a_host_list_blocks_writes_while_two_members_claim_the_primary() -> None:
    following = HostListTopology({A: "a", B: "b"}).follow([A, B], A, [])
    assert following.block == [A, B]
    assert following.writer is None


def test_no_primary_keeps_the_writer_where_it_is() -> None:
    following = HostListTopology({A: "a", B: "b"}).follow([], A, [])
    assert following.writer is None
    assert following.block == []
