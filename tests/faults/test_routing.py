"""Which server answers: reads on a replica, tokens and read-after-write on the primary.

Replicas are told apart from the primary by pausing their WAL replay (on this module's own
cluster): a row written after the pause exists only on the primary, so whether a read finds
it shows who served it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.support.api import create_chat, create_user, make_client
from tests.support.cluster import TestDatabase, fetchval, wait_until


@pytest.fixture
def paused_replicas(database: TestDatabase) -> Iterator[None]:
    """Replicas stop replaying WAL for the test (they keep answering reads)."""
    database.wait_replicas()
    for url in database.replica_urls:
        fetchval(url, "SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        for url in database.replica_urls:
            fetchval(url, "SELECT pg_wal_replay_resume()")
        database.wait_replicas()


@pytest.fixture(scope="module")
def tolerant_client(database: TestDatabase) -> Iterator[TestClient[Litestar]]:
    """Paused replicas look lagged; a huge lag limit keeps them in rotation for the proof."""
    with make_client(database, DB_REPLICA_MAX_LAG_S="86400") as client:
        yield client


@pytest.mark.usefixtures("paused_replicas")
def test_reads_go_to_a_replica_and_tokens_to_the_primary(
    tolerant_client: TestClient[Litestar],
) -> None:
    client = tolerant_client
    response = client.post("/users", json={"username": f"r_{uuid.uuid4().hex[:12]}"})
    assert response.status_code == 201
    user = response.json()
    # Without the token the read goes to a replica, which has not replayed the insert.
    assert client.get(f"/users/{user['id']}").status_code == 404
    # With it, no replica qualifies, so the primary answers.
    token = response.headers["x-consistency-token"]
    found = client.get(f"/users/{user['id']}", headers={"X-Consistency-Token": token})
    assert found.status_code == 200
    assert found.json() == user


def test_replica_serves_reads_once_it_has_replayed(
    tolerant_client: TestClient[Litestar], database: TestDatabase
) -> None:
    response = tolerant_client.post("/users", json={"username": f"r_{uuid.uuid4().hex[:12]}"})
    user = response.json()
    token = response.headers["x-consistency-token"]
    database.wait_replicas()
    # The monitor learns the replicas' replay position within its interval; then the token no
    # longer forces the primary, and a paused-free replica serves the read.
    wait_until(
        lambda: (
            tolerant_client.get(
                f"/users/{user['id']}", headers={"X-Consistency-Token": token}
            ).status_code
            == 200
        ),
        10,
        "token read served",
    )


def test_read_after_write_in_one_request_goes_to_the_primary(
    tolerant_client: TestClient[Litestar], database: TestDatabase
) -> None:
    client = tolerant_client
    a = create_user(client)
    chat = create_chat(client, [a["id"]])
    database.wait_replicas()
    for url in database.replica_urls:
        fetchval(url, "SELECT pg_wal_replay_pause()")
    try:
        key = uuid.uuid4().hex
        body = {"sender_id": a["id"], "body": "hi", "client_msg_id": key}
        first = client.post(f"/chats/{chat['id']}/messages", json=body)
        assert first.status_code == 201
        # The repeat inserts nothing, then looks the stored message up in the same request:
        # only the primary has it, so a 200 with it proves the lookup went there.
        again = client.post(f"/chats/{chat['id']}/messages", json=body)
        assert again.status_code == 200
        assert again.json() == first.json()
    finally:
        for url in database.replica_urls:
            fetchval(url, "SELECT pg_wal_replay_resume()")
        database.wait_replicas()
