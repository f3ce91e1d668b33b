"""Which server answers, and `X-Consistency-Token` across requests, with replay paused on the
replicas (of the module's own cluster): reads on a replica, token reads and read-after-write
on the primary.

While replay is paused a replica keeps answering reads from its stale snapshot, so what a
read returns shows who served it: a row written after the pause is on the primary only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from app.db.cluster import Database
from app.db.lsn import parse_lsn
from tests.support.api import Account, create_chat, make_client, register, send
from tests.support.cluster import TestDatabase, fetchval, wait_until
from tests.support.faults import replay_paused


@pytest.fixture
def client(database: TestDatabase) -> Iterator[TestClient[Litestar]]:
    # Paused replicas look lagged; a generous limit keeps them in rotation for the proof.
    env = {"DB_REPLICA_MAX_LAG_S": "3600", "DB_REPLICA_CHECK_INTERVAL_MS": "100"}
    with make_client(database, **env) as test_client:
        yield test_client
    database.wait_replicas()


def _send(client: TestClient[Litestar], sender: Account, chat_id: int, body: str) -> httpx.Response:
    response = send(client, sender, chat_id, body)
    assert response.status_code == 201, response.text
    return response


def _bodies(
    client: TestClient[Litestar], reader: Account, chat_id: int, write: httpx.Response | None
) -> list[str]:
    """The chat's message bodies as `reader` reads them: after `write` (its token), or
    without a token when it is None."""
    headers = reader.headers if write is None else reader.after(write)
    response = client.get(f"/chats/{chat_id}/messages", headers=headers)
    assert response.status_code == 200, response.text
    return [item["body"] for item in response.json()["items"]]


def _monitor_sees(client: TestClient[Litestar], token: str) -> None:
    """Wait until the monitor knows every replica replayed past `token`."""
    db: Database = client.app.state.database
    position = parse_lsn(token)
    wait_until(
        lambda: all(state.replay_lsn >= position for state in db.snapshot.replicas),
        10,
        f"the monitor to see the replicas past {token}",
    )


def test_a_token_read_sees_the_write_that_a_stale_replica_lacks(
    client: TestClient[Litestar],
    database: TestDatabase,
) -> None:
    a = register(client)
    chat = create_chat(client, a)
    first = _send(client, a, chat["id"], "before the pause")
    token1 = first.headers["x-consistency-token"]
    database.wait_replicas()
    _monitor_sees(client, token1)

    with replay_paused(database.replica_urls):
        second = _send(client, a, chat["id"], "after the pause")
        token2 = second.headers["x-consistency-token"]
        assert parse_lsn(token2) > parse_lsn(token1)
        # Without a token: a replica, which has not replayed the second send.
        assert _bodies(client, a, chat["id"], None) == ["before the pause"]
        # With the token of the second send: no replica qualifies, so the primary answers.
        assert _bodies(client, a, chat["id"], second) == ["after the pause", "before the pause"]
        # With the older token a replica qualifies and serves (its view is stale but
        # consistent with what that client wrote).
        assert _bodies(client, a, chat["id"], first) == ["before the pause"]

    # After resume the replicas replay past token2 and serve token2 reads again: pause once
    # more and write a third message, which only the primary has.
    database.wait_replicas()
    _monitor_sees(client, token2)
    with replay_paused(database.replica_urls):
        _send(client, a, chat["id"], "third")
        assert _bodies(client, a, chat["id"], second) == ["after the pause", "before the pause"]


def test_every_write_answers_with_a_token_and_reads_do_not(client: TestClient[Litestar]) -> None:
    user = register(client)
    response = client.put(f"/users/{user.id}/status", json={"status": "away"}, headers=user.headers)
    assert response.status_code == 200
    token = response.headers["x-consistency-token"]
    assert parse_lsn(token) > 0
    assert (
        "x-consistency-token" not in client.get(f"/users/{user.id}", headers=user.headers).headers
    )
    position = fetchval(client.app.state.settings.database.url, "SELECT pg_current_wal_lsn()::text")
    assert parse_lsn(position) >= parse_lsn(token)


# Which server answers a request, told apart by a read the paused replicas cannot serve.


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
    user = register(client)  # the login, on the primary, needs no replica
    # Without the token the read goes to a replica, which has not replayed the insert.
    assert client.get(f"/users/{user.id}", headers=user.headers).status_code == 404
    # With it, no replica qualifies, so the primary answers.
    found = client.get(f"/users/{user.id}", headers=user.after())
    assert found.status_code == 200
    assert found.json() == user.user


def test_replica_serves_reads_once_it_has_replayed(
    tolerant_client: TestClient[Litestar], database: TestDatabase
) -> None:
    user = register(tolerant_client)
    database.wait_replicas()
    # The monitor learns the replicas' replay position within its interval; then the token no
    # longer forces the primary, and a paused-free replica serves the read.
    wait_until(
        lambda: tolerant_client.get(f"/users/{user.id}", headers=user.after()).status_code == 200,
        10,
        "token read served",
    )


def test_read_after_write_in_one_request_goes_to_the_primary(
    tolerant_client: TestClient[Litestar], database: TestDatabase
) -> None:
    client = tolerant_client
    a = register(client)
    chat = create_chat(client, a)
    database.wait_replicas()
    for url in database.replica_urls:
        fetchval(url, "SELECT pg_wal_replay_pause()")
    try:
        key = uuid.uuid4().hex
        first = send(client, a, chat["id"], "hi", client_msg_id=key)
        assert first.status_code == 201
        # The repeat inserts nothing, then looks the stored message up in the same request:
        # only the primary has it, so a 200 with it proves the lookup went there.
        again = send(client, a, chat["id"], "hi", client_msg_id=key)
        assert again.status_code == 200
        assert again.json() == first.json()
    finally:
        for url in database.replica_urls:
            fetchval(url, "SELECT pg_wal_replay_resume()")
        database.wait_replicas()
