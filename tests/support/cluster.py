"""The database servers the suite runs against: the embedded cluster, or given URLs."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from app.dev.cluster import EmbeddedCluster, Node
from app.schema.migrate import upgrade
from tests.support.signing import AUTH_JWT_KEYS


@dataclass
class TestDatabase:
    """URLs of the primary and replicas, and (for the embedded cluster) control over them."""

    __test__ = False

    primary_url: str
    replica_urls: list[str]
    cluster: EmbeddedCluster | None = None
    _cleanup: list[Callable[[], None]] = field(default_factory=list)

    def env(self, **overrides: str) -> dict[str, str]:
        """The service's settings for this database. Tokens are signed with the suite's key
        (every worker and process agrees); logins, registrations, chats and sends from one
        address or user are not limited in practice, as one test client registers and logs
        many users in and sends a lot (each limit has its own test)."""
        env = {
            "APP_ENV": "test",
            "DATABASE_URL": self.primary_url,
            "DATABASE_REPLICA_URLS": ",".join(self.replica_urls),
            "AUTH_JWT_KEYS": AUTH_JWT_KEYS,
            "AUTH_LOGIN_LIMIT_PER_ADDRESS": "1000000",
            "REGISTER_LIMIT_PER_ADDRESS": "1000000",
            "REGISTER_LIMIT_GLOBAL": "10000000",
            "REGISTER_HASH_QUEUE": "10000",
            "LOGIN_HASH_QUEUE": "10000",
            "CHAT_CREATE_LIMIT": "10000000",
            "SEND_LIMIT": "10000000",
        }
        env.update(overrides)
        return env

    def wait_replicas(self, timeout_s: float = 30.0) -> None:
        """Wait until every replica has replayed the primary's current WAL position."""
        if not self.replica_urls:
            return
        target = fetchval(self.primary_url, "SELECT pg_current_wal_lsn()")
        for url in self.replica_urls:
            wait_until(
                partial(fetchval, url, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target),
                timeout_s,
                f"replica {url} replays {target}",
            )


def start_test_database() -> TestDatabase:
    """The embedded cluster in a temporary directory, or TEST_DATABASE_URL(S) when set."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        replicas = os.environ.get("TEST_DATABASE_REPLICA_URLS", "")
        return TestDatabase(url, [part for part in replicas.split(",") if part])
    root = Path(tempfile.mkdtemp(prefix="messenger-test-pg-"))
    cluster = EmbeddedCluster(root, replicas=2)
    cluster.start()
    database = TestDatabase(cluster.primary_url, cluster.replica_urls, cluster)
    database._cleanup.append(cluster.destroy)
    return database


def stop_test_database(database: TestDatabase) -> None:
    for cleanup in database._cleanup:
        cleanup()


@contextmanager
def fresh_cluster() -> Iterator[TestDatabase]:
    """A primary and two streaming replicas of the caller's own, in a temporary directory,
    migrated, destroyed afterwards: for tests that stop, kill or pause servers."""
    cluster = EmbeddedCluster(Path(tempfile.mkdtemp(prefix="messenger-own-pg-")), replicas=2)
    try:
        cluster.start()
        upgrade(cluster.primary_url)
        cluster.wait_streaming()
        yield TestDatabase(cluster.primary_url, cluster.replica_urls, cluster)
    finally:
        cluster.destroy()


def restore(database: TestDatabase) -> None:
    """Every server of an own cluster running, replaying and streaming again."""
    cluster = embedded(database)
    cluster.primary.start()
    for node in cluster.replicas:
        node.start()
        fetchval(node.url, "SELECT pg_wal_replay_resume()")
    cluster.wait_streaming()
    database.wait_replicas()


def embedded(database: TestDatabase) -> EmbeddedCluster:
    """The embedded cluster behind `database` (own clusters always have one)."""
    assert database.cluster is not None, "needs the embedded cluster"
    return database.cluster


def fetchval(url: str, query: str, *args: Any) -> Any:
    """Run one query on a fresh connection and return the first column of the first row."""

    async def run() -> Any:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def wait_until(
    condition: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition"
) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


@contextmanager
def paused(node: Node) -> Iterator[None]:
    """SIGSTOP the server's postmaster and every process it forked: a hung server."""
    pid = int((node.data_dir / "postmaster.pid").read_text().splitlines()[0])
    postmaster = psutil.Process(pid)
    processes = [postmaster, *postmaster.children(recursive=True)]
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for process in processes:
            with suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)
