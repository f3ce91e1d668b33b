"""The routing policy: which member serves an operation, as a pure function of what is known.

`route` decides from the operation's kind, the request's consistency token, the cluster's
snapshot (`app.db.cluster_state`), whether the request already wrote and which replicas
already failed it, and returns a `Plan`. It does no I/O and changes nothing, so it is
unit-tested without a database (tests/unit/test_routing.py); the session executes the plan
(`app.db.session`). The one live input is each replica pool's `checked_out` count (the load),
read as it is at the moment of the choice.

The plans are built once per change of the pools (`build_plans`) and kept in the snapshot, so
routing a request allocates nothing.

The decisions:
- a write, or a read of a request that already wrote (or that must see the primary), goes to
  the writer; a write while writes are blocked (two primaries) is refused;
- a read without a token goes to the least-loaded healthy replica (ties rotate with `turn`),
  or the writer when none is healthy;
- a read with a token goes, in one pass over the replicas, to the least-loaded replica known
  to have replayed it; else it asks the least-loaded healthy replica whether it has
  (`check_replay`, unless that replica did not replay a token within the wait a moment ago:
  `slow_until`), falling back to the writer when it has not; else it reads on the writer,
  after making sure the token is not ahead of the primary itself.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from app.db.cluster_state import ClusterSnapshot
    from app.db.pool import Pool


class Kind(enum.Enum):
    """What the operation does, as far as routing cares."""

    READ = "read"
    READ_PRIMARY = "read on the primary"
    """A read that must see what was just written elsewhere, with no token to name it."""
    WRITE = "write"


class Plan(msgspec.Struct, frozen=True):
    """Where an operation runs, and what to do before and instead."""

    pool: Pool
    """The pool to borrow from (for a checked read: the replica to ask first)."""
    replica: str | None = None
    """The replica's name when `pool` is a replica (a connection failure there moves the read
    to the next replica, and takes this one out of rotation); None on the writer."""
    check_replay: bool = False
    """Ask the replica, on the connection the read uses, whether it has replayed the token."""
    fallback: Plan | None = None
    """Where a checked read goes when the replica has not replayed the token."""
    counts_as: str | None = None
    """The `db_token_reads_total` outcome this plan counts when executed."""
    refuse_token_ahead: bool = False
    """A token read on the writer: refuse a token ahead of the primary's position."""
    refused: str | None = None
    """Why the operation must not run at all (writes while two members claim the primary)."""


class Plans(msgspec.Struct, frozen=True):
    """Every plan a snapshot can give, built when the pools change (not per request)."""

    write: Plan
    writer: Plan
    token_writer: Plan
    reads: tuple[Plan, ...]
    """Per replica, in the snapshot's order: a read without a token."""
    token_reads: tuple[Plan, ...]
    """Per replica: a token read on a replica known to have replayed the token."""
    checked: tuple[Plan, ...]
    """Per replica: a token read that asks the replica first."""


NO_FAILURES: frozenset[str] = frozenset()


def build_plans(writer: Pool, write_block: str | None, replicas: Sequence[Pool]) -> Plans:
    """The plans of a cluster with this writer, write block and replica pools."""
    writer_plan = Plan(writer)
    token_writer = Plan(writer, counts_as="primary", refuse_token_ahead=True)
    return Plans(
        write=writer_plan if write_block is None else Plan(writer, refused=write_block),
        writer=writer_plan,
        token_writer=token_writer,
        reads=tuple(Plan(pool, pool.name) for pool in replicas),
        token_reads=tuple(Plan(pool, pool.name, counts_as="replica") for pool in replicas),
        checked=tuple(
            Plan(pool, pool.name, check_replay=True, fallback=token_writer) for pool in replicas
        ),
    )


def route(  # noqa: PLR0917 (positional: called once per operation, on the hot path)
    kind: Kind,
    token: int | None,
    snapshot: ClusterSnapshot,
    wrote: bool,
    failed: frozenset[str],
    turn: int,
    now: float,
) -> Plan:
    """The plan for one operation (see the module's docstring for the decisions).

    `failed`: replicas that already failed this operation with a connection error. `turn`:
    any integer that differs from one read to the next (where the scan starts, so ties
    rotate). `now`: monotonic seconds, compared with a replica's `slow_until` (token reads
    only)."""
    plans = snapshot.plans
    if kind is _WRITE:
        return plans.write
    if wrote or kind is _READ_PRIMARY:
        return plans.writer
    replicas = snapshot.replicas
    count = len(replicas)
    best = -1
    best_load = 0
    if token is None:
        for offset in range(count):
            index = (turn + offset) % count
            replica = replicas[index]
            if not replica.healthy or (failed and replica.name in failed):
                continue
            load = replica.pool.checked_out
            if best < 0 or load < best_load:
                best, best_load = index, load
        return plans.reads[best] if best >= 0 else plans.writer
    known = -1
    known_load = 0
    for offset in range(count):
        index = (turn + offset) % count
        replica = replicas[index]
        if not replica.healthy or (failed and replica.name in failed):
            continue
        load = replica.pool.checked_out
        if best < 0 or load < best_load:
            best, best_load = index, load
        if replica.replay_lsn >= token and (known < 0 or load < known_load):
            known, known_load = index, load
    if known >= 0:
        return plans.token_reads[known]
    if best >= 0 and now >= replicas[best].slow_until:
        return plans.checked[best]
    return plans.token_writer


_WRITE = Kind.WRITE
_READ_PRIMARY = Kind.READ_PRIMARY
