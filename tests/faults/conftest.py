"""Fault tests stop, kill or pause servers, so here `database` is not the shared cluster but
one of the module's own (a primary and two replicas, migrated, destroyed after the module).
After each test every server runs, replays and streams again, whatever the test did.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cluster import TestDatabase, restore


@pytest.fixture(scope="module")
def database(own_cluster: TestDatabase) -> TestDatabase:
    return own_cluster


@pytest.fixture(autouse=True)
def _every_server_restored(database: TestDatabase) -> Iterator[None]:
    yield
    restore(database)
