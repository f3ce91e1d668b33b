"""Patroni drills: the service follows what Patroni (with etcd) does to a real cluster, under
a steady stream of sends, reads and token reads from a real granian, every answer checked.

One three-member Patroni cluster (tests/support/patroni.py: `ttl` 20 s, `loop_wait` 1 s,
`retry_timeout` 5 s, synchronous mode) serves every drill of the module; each drill starts
from a healthy cluster with whoever leads it then. Two topologies:

- `host-list`: `DATABASE_URL` names the three members as a libpq host list; the service's
  cluster monitor finds the primary itself;
- `haproxy`: the service is given HAProxy's writer port (`GET /primary` on Patroni's REST API)
  as `DATABASE_URL` and its reader port (`GET /replica`) as `DATABASE_REPLICA_URLS`.

The events: `patronictl switchover` and `patronictl failover` (to the synchronous standby),
the leader's PostgreSQL killed (-9: Patroni restarts it in place), the leader's Patroni killed
(-9; its PostgreSQL runs on until the watchdog Patroni is deployed with would reset the node,
`ttl` - `safety_margin` = 15 s after its last keepalive, which the drill does by killing that
PostgreSQL; this box has no watchdog device), and the leader cut off from etcd (its link to
etcd cut: Patroni demotes it, the others elect a new leader once its key expires).

Every drill checks: only 2xx or 503 with Retry-After; every acknowledged send stored exactly
once on the new leader (the unanswered ones resent with their keys, stored once too); the first
acknowledged send within 2 s of the promotion (the moment the new leader's PostgreSQL first
answered as a primary, polled every 20 ms; through HAProxy, or its Patroni's first 200 on
`GET /primary` if that came later: what HAProxy's check follows); never two primaries at
once; at the end no connection of the writer pool on any member but the leader. The
timelines are printed (`pytest -s`) as `[timing]` and are the numbers in
docs/high-availability.md.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.cluster import TestDatabase
from tests.support.drills import more, report, start_traffic
from tests.support.haproxy import haproxy_binary
from tests.support.patroni import (
    TTL_S,
    Member,
    PatroniCluster,
    PatroniHAProxy,
    RoleWatch,
    missing,
)
from tests.support.server import ServerProcess
from tests.support.traffic import Outcome, Traffic, between, summary

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")

_SERVE = {"DB_POOL_MIN": "2", "DB_REPLICA_POOL_MIN": "1", "DB_POOL_TIMEOUT_MS": "1000"}
_ANSWERED = {200, 201}
_STORED = (
    "SELECT client_msg_id, count(*)::int FROM messages"
    " WHERE client_msg_id = ANY($1::text[]) GROUP BY client_msg_id"
)
_WRITER_SESSIONS = "SELECT count(*)::int FROM pg_stat_activity WHERE application_name = $1"
_WRITER_POOL = "messenger-primary"
_FIRST_WRITE_GOAL_S = 2.0
_WATCHDOG_S = TTL_S - 5 - 1  # ttl - safety_margin, from the last keepalive (loop_wait before)


@pytest.fixture(scope="module")
def patroni() -> Iterator[PatroniCluster]:
    cluster = PatroniCluster(Path(tempfile.mkdtemp(prefix="messenger-patroni-")), links=True)
    try:
        cluster.start()
        yield cluster
    finally:
        # The members' logs outlive the run, for a failed drill (the cluster does not).
        cluster.destroy(keep_logs=Path(tempfile.gettempdir()) / "messenger-patroni-logs")


@pytest.fixture(scope="module")
def haproxy(patroni: PatroniCluster) -> Iterator[PatroniHAProxy]:
    if haproxy_binary() is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    with PatroniHAProxy(patroni) as proxy:
        yield proxy


# -- the events -------------------------------------------------------------------------------


@dataclass
class Event:
    """What a drill does to the leader (`act`, returning the member Patroni should promote,
    None when it restarts the leader in place), and what it does once a new primary is there
    (`after`: heal the link, restart the killed Patroni)."""

    act: Callable[[PatroniCluster, Member, Member], Member]
    after: Callable[[PatroniCluster, Member], None] = lambda cluster, leader: None


def _switchover(cluster: PatroniCluster, leader: Member, sync: Member) -> Member:
    cluster.patronictl(
        "switchover", "--leader", leader.name, "--candidate", sync.name, "--force"
    )  # fmt: skip
    return sync


def _failover(cluster: PatroniCluster, leader: Member, sync: Member) -> Member:
    cluster.patronictl("failover", "--candidate", sync.name, "--force")
    return sync


def _kill_postgres(cluster: PatroniCluster, leader: Member, sync: Member) -> Member:
    leader.kill_postgres()
    return leader


def _kill_patroni(cluster: PatroniCluster, leader: Member, sync: Member) -> Member:
    leader.kill()
    # The watchdog a production Patroni runs with would reset the node here.
    threading.Timer(_WATCHDOG_S, leader.kill_postgres).start()
    return sync


def _restart_patroni(cluster: PatroniCluster, leader: Member) -> None:
    leader.start()  # as systemd would: it rewinds the old leader and follows the new one


def _cut_from_etcd(cluster: PatroniCluster, leader: Member, sync: Member) -> Member:
    cluster.links[leader.name].cut()
    return sync


def _heal_link(cluster: PatroniCluster, leader: Member) -> None:
    cluster.links[leader.name].heal()


EVENTS = {
    "switchover": Event(_switchover),
    "failover": Event(_failover),
    "postgres-killed": Event(_kill_postgres),
    "patroni-killed": Event(_kill_patroni, _restart_patroni),
    "cut-from-etcd": Event(_cut_from_etcd, _heal_link),
}


# -- the drill --------------------------------------------------------------------------------


def _serve(cluster: PatroniCluster, proxy: PatroniHAProxy | None) -> ServerProcess:
    database = TestDatabase(cluster.leader().url, [])
    if proxy is None:
        urls = {"DATABASE_URL": cluster.host_list_url, "DATABASE_REPLICA_URLS": ""}
    else:
        urls = {"DATABASE_URL": proxy.writer_url, "DATABASE_REPLICA_URLS": proxy.reader_url}
        # HAProxy accepts a connection at once and then relays it to a member that may be
        # going away: with the default 2 s, a connection whose member never answered held a
        # send 4.9 s (two attempts) in a switchover; the service's own bound is what ends it.
        urls["DB_CONNECT_TIMEOUT_MS"] = "500"
    return ServerProcess(database, **urls, **_SERVE)


def _fetch(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return [tuple(row) for row in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


# A known defect (docs/high-availability.md, "stale token reads through the HAProxy reader"):
# with the leader cut off from etcd, the HAProxy reader port may send a read to the demoted
# old leader, whose old-timeline WAL passes a new primary's token, while the service believes
# the reader caught up from a probe that landed on another member. CI saw one such read in
# two of three runs. At most this many are tolerated in that drill, reported, never hidden.
KNOWN_STALE_TOKEN_READS = {("haproxy", "cut-from-etcd"): 2}


def _check_answers(outcomes: list[Outcome], *, stale_token_reads_allowed: int = 0) -> None:
    """Only 2xx or 503 with Retry-After; never a 500, never a hang; token reads see their
    write (one served by the old leader before its rewind did not, until the monitor took a
    standby ahead of the primary out of rotation), but for `stale_token_reads_allowed`."""
    stale = [o for o in outcomes if o.error is not None and o.error.startswith("token read misses")]
    if stale:
        report("stale token reads", count=len(stale), allowed=stale_token_reads_allowed)
    assert len(stale) <= stale_token_reads_allowed, stale[:5]
    wrong = [
        o
        for o in outcomes
        if o not in stale
        and (
            o.status not in {*_ANSWERED, 503}
            or o.error is not None
            or (o.status == 503 and not o.retry_after)
        )
    ]
    assert not wrong, wrong[:5]


def _check_exactly_once(
    traffic: Traffic, leader: Member, outcomes: list[Outcome]
) -> dict[str, int]:
    sends = [o for o in outcomes if o.kind == "send" and o.key is not None]
    acknowledged = {o.key for o in sends if o.status in _ANSWERED}
    unanswered = {o.key for o in sends if o.status not in _ANSWERED} - acknowledged
    resent = traffic.resend(sorted(k for k in unanswered if k is not None))
    assert set(resent.values()) <= _ANSWERED, resent
    keys = sorted(k for k in acknowledged | unanswered if k is not None)
    stored = dict(_fetch(leader.url, _STORED, keys))
    lost = set(keys) - set(stored)
    assert not lost, f"{len(lost)} acknowledged or resent sends missing on {leader.name}"
    assert set(stored.values()) == {1}, "each stored once"
    return {"acknowledged": len(acknowledged), "resent": len(unanswered)}


def _first_write_after(outcomes: list[Outcome], moment: float) -> float:
    done = sorted(
        o.at + o.latency_s
        for o in outcomes
        if o.kind == "send" and o.status in _ANSWERED and o.at + o.latency_s >= moment
    )
    assert done, "no write succeeded after the promotion"
    return done[0] - moment


def _promoted(watch: RoleWatch, members: list[Member], after: float) -> tuple[Member, float]:
    """The member that first answered as a primary after `after` (waits up to 60 s)."""

    def first() -> tuple[Member, float] | None:
        seen = [
            (at, name)
            for at, name, role in list(watch.changes)
            if role == "primary" and at >= after
        ]
        if not seen:
            return None
        at, name = min(seen)
        return next(m for m in members if m.name == name), at

    deadline = time.monotonic() + 60
    while (found := first()) is None:
        assert time.monotonic() < deadline, f"no promotion within 60 s: {watch.changes[-6:]}"
        time.sleep(0.01)
    return found


def _writer_sessions_elsewhere(cluster: PatroniCluster, leader: Member) -> dict[str, int]:
    """The writer pool's connections on each member but the leader (0 each once settled)."""
    counts = {}
    for member in cluster.members:
        if member.name == leader.name:
            continue
        try:
            counts[member.name] = int(_fetch(member.url, _WRITER_SESSIONS, _WRITER_POOL)[0][0])
        except (OSError, asyncpg.PostgresError):
            counts[member.name] = 0  # not answering: nothing connected to it
    return counts


@pytest.mark.parametrize("topology", ["host-list", "haproxy"])
@pytest.mark.parametrize("event_name", list(EVENTS))
def test_patroni_drill(
    patroni: PatroniCluster, request: pytest.FixtureRequest, topology: str, event_name: str
) -> None:
    event = EVENTS[event_name]
    proxy = request.getfixturevalue("haproxy") if topology == "haproxy" else None
    patroni.restore()
    leader = patroni.wait_healthy()
    sync = patroni.sync_standby()
    with RoleWatch(patroni.members) as watch, _serve(patroni, proxy) as server:
        _, traffic = start_traffic(server)
        try:
            more(traffic, 90, "traffic before the event")
            event_at = time.time()
            try:
                expected = event.act(patroni, leader, sync)
                acted_at = time.time()
                promoted, promoted_at = _promoted(watch, patroni.members, event_at)
                patroni_at = watch.patroni_primary(promoted, event_at)
            finally:
                event.after(patroni, leader)
            more(traffic, 150, "traffic after the promotion")
            new_leader = patroni.wait_leader(30)
        finally:
            outcomes = traffic.stop()
        _check_answers(
            outcomes,
            stale_token_reads_allowed=KNOWN_STALE_TOKEN_READS.get((topology, event_name), 0),
        )
        sends = _check_exactly_once(traffic, new_leader, outcomes)
        elsewhere = _writer_sessions_elsewhere(patroni, new_leader)
    assert promoted.name == expected.name == new_leader.name
    assert not watch.overlaps, f"two primaries at once: {watch.overlaps[:3]}"
    assert set(elsewhere.values()) <= {0}, f"writer connections off the leader: {elsewhere}"
    first_write_s = _first_write_after(outcomes, promoted_at)
    # The promotion the goal counts from: the new leader's PostgreSQL answering as a primary
    # (what the service's monitor sees); through HAProxy, its Patroni answering `GET /primary`
    # with 200 if that came later (what HAProxy's check sees; in practice Patroni reports the
    # role as it asks PostgreSQL to promote, a little before).
    reference_at = promoted_at if proxy is None else max(promoted_at, patroni_at)
    first_write_goal_s = _first_write_after(outcomes, reference_at)
    last_write_before = max(
        (o.at + o.latency_s for o in outcomes
         if o.kind == "send" and o.status in _ANSWERED and o.at + o.latency_s < promoted_at),
        default=event_at,
    )  # fmt: skip
    report(
        f"patroni {event_name} via {topology}",
        from_member=leader.name,
        to_member=promoted.name,
        command_took_ms=round((acted_at - event_at) * 1000),
        promotion_after_event_ms=round((promoted_at - event_at) * 1000),
        patroni_reported_after_promotion_ms=round((patroni_at - promoted_at) * 1000),
        first_write_after_promotion_ms=round(first_write_s * 1000),
        first_write_after_patroni_reported_ms=round(
            (promoted_at + first_write_s - patroni_at) * 1000
        ),
        first_write_after_event_ms=round((promoted_at + first_write_s - event_at) * 1000),
        writes_stopped_after_event_ms=round((last_write_before - event_at) * 1000),
        sends=sends,
        window=summary(between(outcomes, event_at, promoted_at + first_write_s)),
        after=summary(between(outcomes, promoted_at + first_write_s, float("inf"))),
    )
    assert first_write_goal_s <= _FIRST_WRITE_GOAL_S, first_write_goal_s
