"""Suite-wide fixtures: one real primary with two streaming replicas, migrated once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from app.config import Settings
from app.main import create_app
from app.schema.migrate import upgrade
from tests.support.cluster import TestDatabase, start_test_database, stop_test_database


@pytest.fixture(scope="session")
def database() -> Iterator[TestDatabase]:
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
def client(database: TestDatabase) -> Iterator[TestClient]:  # type: ignore[type-arg]
    app = create_app(Settings.from_env(database.env()))
    with TestClient(app) as test_client:
        yield test_client


def make_client(database: TestDatabase, **env: str) -> TestClient:  # type: ignore[type-arg]
    """A client for an app with extra settings; use it as a context manager."""
    return TestClient(create_app(Settings.from_env(database.env(**env))))
