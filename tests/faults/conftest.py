"""Fixtures of the fault tests: a cluster of their own for the destructive ones.

Tests that stop or restart servers use `fault_cluster` (a primary and two replicas in a
temporary directory, migrated, destroyed at the end), so the suite's shared cluster stays
intact; after each such test every server is running and streaming again.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.dev.cluster import EmbeddedCluster
from app.schema.migrate import upgrade
from tests.support.cluster import TestDatabase, fetchval


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def cluster_control(database: TestDatabase) -> EmbeddedCluster:
    """The shared embedded cluster, for tests that pause replay (skipped on given URLs)."""
    if database.cluster is None:
        pytest.skip("needs the embedded cluster (pauses or stops servers)")
    return database.cluster


@pytest.fixture(scope="session")
def _fault_cluster() -> Iterator[TestDatabase]:
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("fault tests stop servers: they run on the embedded cluster only")
    cluster = EmbeddedCluster(Path(tempfile.mkdtemp(prefix="messenger-fault-pg-")), replicas=2)
    try:
        cluster.start()
        upgrade(cluster.primary_url)
        cluster.wait_streaming()
        yield TestDatabase(cluster.primary_url, cluster.replica_urls, cluster)
    finally:
        cluster.destroy()


@pytest.fixture
def fault_cluster(_fault_cluster: TestDatabase) -> Iterator[TestDatabase]:
    """The fault tests' own cluster; after the test every server runs, replays and streams."""
    yield _fault_cluster
    cluster = _fault_cluster.cluster
    assert cluster is not None
    cluster.primary.start()
    for node in cluster.replicas:
        node.start()
        fetchval(node.url, "SELECT pg_wal_replay_resume()")
    cluster.wait_streaming()
