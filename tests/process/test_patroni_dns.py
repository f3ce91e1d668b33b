"""A writer endpoint that is a DNS name whose address moves at failover (what managed services
give): the service, given only that name, follows a Patroni switchover once the name points at
the new leader, without a restart.

The members of a Patroni cluster of this module's own listen on loopback addresses of their
own (127.0.0.11, .12, .13) on one port, as separate machines would; the name is an
`/etc/hosts` entry (glibc reads the file on every lookup, as a resolver asks DNS again after a
record's TTL). After the promotion the drill moves the name to the new leader, as the
provider's DNS update or a Patroni `on_role_change` callback would, and restores `/etc/hosts`
exactly as it was afterwards, whatever happens. Needs root (it writes `/etc/hosts`).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.process.test_patroni import (
    _check_answers,
    _check_exactly_once,
    _first_write_after,
    _promoted,
    _writer_sessions_elsewhere,
)
from tests.support.cluster import TestDatabase
from tests.support.drills import more, report, start_traffic
from tests.support.patroni import DATABASE, PatroniCluster, RoleWatch, missing
from tests.support.server import ServerProcess
from tests.support.traffic import between, summary

HOSTS = Path("/etc/hosts")
NAME = "messenger-writer.patroni.test"
_MARK = "# messenger test: the writer endpoint of the Patroni DNS drill"


def _cannot_run() -> str | None:
    reason = missing()
    if reason is not None:
        return reason
    if os.geteuid() != 0 or not os.access(HOSTS, os.W_OK):
        return "moves a name in /etc/hosts: needs root"
    return None


pytestmark = pytest.mark.skipif(_cannot_run() is not None, reason=_cannot_run() or "")


@contextmanager
def _name_in_hosts() -> Iterator[None]:
    """`/etc/hosts` as it is now, restored byte for byte afterwards."""
    original = HOSTS.read_bytes()
    try:
        yield
    finally:
        HOSTS.write_bytes(original)


def _point(address: str) -> None:
    """`NAME` resolves to `address` from now on (written in place: /etc/hosts may be a
    bind mount that a rename would not replace)."""
    kept = [line for line in HOSTS.read_text().splitlines() if not line.endswith(_MARK)]
    HOSTS.write_text("\n".join([*kept, f"{address} {NAME} {_MARK}"]) + "\n")


@pytest.fixture(scope="module")
def patroni() -> Iterator[PatroniCluster]:
    root = Path(tempfile.mkdtemp(prefix="messenger-patroni-dns-"))
    cluster = PatroniCluster(root, own_hosts=True)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy(keep_logs=Path(tempfile.gettempdir()) / "messenger-patroni-dns-logs")


def test_a_writer_name_that_moves_is_followed(patroni: PatroniCluster) -> None:
    leader = patroni.wait_healthy()
    sync = patroni.sync_standby()
    url = f"postgresql://{patroni.userinfo}@{NAME}:{leader.pg_port}/{DATABASE}"
    with _name_in_hosts():
        _point(leader.host)
        env = {"DATABASE_URL": url, "DATABASE_REPLICA_URLS": "", "DB_POOL_MIN": "2"}
        with (
            RoleWatch(patroni.members) as watch,
            ServerProcess(TestDatabase(leader.url, []), **env) as server,
        ):
            _, traffic = start_traffic(server)
            try:
                more(traffic, 90, "traffic before the switchover")
                event_at = time.time()
                patroni.patronictl(
                    "switchover", "--leader", leader.name, "--candidate", sync.name, "--force"
                )  # fmt: skip
                promoted, promoted_at = _promoted(watch, patroni.members, event_at)
                _point(promoted.host)  # the provider moves the name
                moved_at = time.time()
                more(traffic, 150, "traffic after the name moved")
                new_leader = patroni.wait_leader(30)
            finally:
                outcomes = traffic.stop()
            _check_answers(outcomes)
            sends = _check_exactly_once(traffic, new_leader, outcomes)
            elsewhere = _writer_sessions_elsewhere(patroni, new_leader)
    assert HOSTS.read_bytes().count(_MARK.encode()) == 0, "/etc/hosts restored"
    assert promoted.name == sync.name == new_leader.name
    assert not watch.overlaps
    assert set(elsewhere.values()) <= {0}, f"writer connections off the leader: {elsewhere}"
    first_write_s = _first_write_after(outcomes, moved_at)
    report(
        "patroni switchover, writer endpoint a DNS name that moves",
        from_member=leader.address,
        to_member=promoted.address,
        promotion_after_event_ms=round((promoted_at - event_at) * 1000),
        name_moved_after_promotion_ms=round((moved_at - promoted_at) * 1000),
        first_write_after_name_moved_ms=round(first_write_s * 1000),
        sends=sends,
        window=summary(between(outcomes, event_at, moved_at + first_write_s)),
    )
    assert first_write_s <= 2.0, first_write_s
