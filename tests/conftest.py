"""Suite-wide fixtures: the shared cluster (a real primary with two streaming replicas,
migrated once, never broken), and clusters of their own for tests that break servers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from app.config import Settings
from app.schema.migrate import upgrade
from tests.support.api import Account, make_client, register
from tests.support.cluster import (
    TestDatabase,
    fresh_cluster,
    restore,
    start_test_database,
    stop_test_database,
)


@pytest.fixture(scope="session")
def database() -> Iterator[TestDatabase]:
    """The shared cluster: nothing stops, kills or pauses its servers (tests/faults/ gets a
    cluster of its own under this name; elsewhere ask for `fault_cluster`)."""
    db = start_test_database()
    try:
        upgrade(db.primary_url)
        db.wait_replicas()
        yield db
    finally:
        stop_test_database(db)


@pytest.fixture(scope="session")
def settings(database: TestDatabase) -> Settings:
    return Settings.from_env(database.env())


@pytest.fixture(scope="module")
def client(database: TestDatabase) -> Iterator[TestClient[Litestar]]:
    with make_client(database) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def alice(client: TestClient[Litestar]) -> Account:
    """A user of the module's client who has logged in (one registration per module)."""
    return register(client)


@pytest.fixture(scope="module")
def bob(client: TestClient[Litestar]) -> Account:
    """Another user of the module's client who has logged in."""
    return register(client)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[TestDatabase]:
    """A primary and two replicas of the module's own: started on first use, destroyed after
    the module. Embedded only (skipped when TEST_DATABASE_URL points elsewhere)."""
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("stops or pauses servers: runs on an embedded cluster of its own only")
    with fresh_cluster() as db:
        yield db


@pytest.fixture
def fault_cluster(own_cluster: TestDatabase) -> Iterator[TestDatabase]:
    """The module's own cluster; after the test every server runs, replays and streams."""
    yield own_cluster
    restore(own_cluster)
