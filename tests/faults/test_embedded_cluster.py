"""The embedded cluster itself: reuse across runs, and running as a normal (non-root) user.

On the module's own cluster (a second start must leave a running cluster alone; if it did
not, only this module's servers would suffer), and a cluster started and stopped as another
user."""

from __future__ import annotations

import multiprocessing
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from app.dev.cluster import SYSTEM_USER, EmbeddedCluster, bin_dir
from tests.support.cluster import TestDatabase, embedded, fetchval

pytestmark = pytest.mark.slow


def test_replica_is_a_streaming_standby_of_the_primary(database: TestDatabase) -> None:
    primary = embedded(database).primary
    streaming = primary.psql(
        "SELECT string_agg(application_name, ',' ORDER BY application_name)"
        " FROM pg_stat_replication WHERE state = 'streaming'"
    )
    assert streaming == "replica-0,replica-1"
    for url in database.replica_urls:
        assert fetchval(url, "SELECT pg_is_in_recovery()") is True


def test_a_second_start_reuses_the_running_cluster(database: TestDatabase) -> None:
    cluster = embedded(database)
    pid_before = (cluster.primary.data_dir / "postmaster.pid").read_text().split()[0]
    again = EmbeddedCluster(cluster.root, replicas=2)
    assert again.is_running()
    again.start()
    assert again.primary_url == cluster.primary_url
    assert again.replica_urls == cluster.replica_urls
    assert (cluster.primary.data_dir / "postmaster.pid").read_text().split()[0] == pid_before


def _reachable_by_others(path: Path) -> bool:
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)


def _start_as(uid: int, gid: int, root: str) -> None:
    """Child process: drop to `uid`, then build and start a cluster with one replica."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    cluster = EmbeddedCluster(Path(root), replicas=1)
    cluster.start()
    assert cluster.replicas[0].psql("SELECT pg_is_in_recovery()") == "t"
    cluster.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to a normal user")
def test_works_as_a_normal_user() -> None:
    if not _reachable_by_others(bin_dir()):
        pytest.skip("the PostgreSQL binaries are not reachable by other users here")
    EmbeddedCluster(Path(tempfile.gettempdir()) / "unused", replicas=0)  # ensures the user
    user = pwd.getpwnam(SYSTEM_USER)
    root = Path(tempfile.mkdtemp(prefix="messenger-nonroot-"))
    os.chown(root, user.pw_uid, user.pw_gid)
    try:
        child = multiprocessing.get_context("fork").Process(
            target=_start_as, args=(user.pw_uid, user.pw_gid, str(root))
        )
        child.start()
        child.join(120)
        assert child.exitcode == 0
        owner = (root / "primary" / "PG_VERSION").stat().st_uid
        assert owner == user.pw_uid
    finally:
        shutil.rmtree(root, ignore_errors=True)
