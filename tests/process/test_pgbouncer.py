"""`DB_PGBOUNCER=true` through a real PgBouncer in transaction pooling mode.

PgBouncer (Debian's package) runs in front of the primary and both replicas, with fewer
server connections than the service has clients, so consecutive transactions of one client
connection really do land on different server connections.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app.dev.cluster import EmbeddedCluster
from tests.support.api import create_chat, register, send
from tests.support.cluster import TestDatabase, fetchval, wait_until
from tests.support.faults import LOCK_WAITERS, TableLock
from tests.support.pgbouncer import PgBouncer, pgbouncer_binary
from tests.support.server import ServerProcess
from tests.support.sse import EventStream


@pytest.fixture(scope="module")
def bouncer(database: TestDatabase) -> Iterator[PgBouncer]:
    if pgbouncer_binary() is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    cluster: EmbeddedCluster | None = database.cluster
    if cluster is None:
        pytest.skip("needs the embedded cluster")
    ports = {"primary": cluster.primary.port}
    ports.update({f"replica{index}": node.port for index, node in enumerate(cluster.replicas)})
    with PgBouncer(ports, pool_size=2, password=cluster.password) as running:
        yield running


def _serve(database: TestDatabase, bouncer: PgBouncer, **env: str) -> ServerProcess:
    replicas = ",".join(bouncer.url(f"replica{index}") for index in range(2))
    settings = {
        "DATABASE_URL": bouncer.url("primary"),
        "DATABASE_REPLICA_URLS": replicas,
        "DB_PGBOUNCER": "true",
        "DB_POOL_MIN": "2",
        "DB_REPLICA_POOL_MIN": "1",
    }
    return ServerProcess(database, **{**settings, **env})


def _conversation(url: str) -> list[str]:
    """Create users and a chat, send, read back with and without the token; problems found."""
    problems = []
    with httpx.Client(base_url=url, timeout=10) as client:
        users = [register(client) for _ in range(2)]
        chat_id = create_chat(client, users[0], users[1:])["id"]
        for index in range(10):
            sender = users[index % 2]
            key = uuid.uuid4().hex
            sent = send(client, sender, chat_id, f"hi {index}", client_msg_id=key)
            if sent.status_code != 201:
                problems.append(f"send: {sent.status_code}")
                continue
            if "x-consistency-token" not in sent.headers:
                problems.append("send without a consistency token")
                continue
            page = client.get(f"/chats/{chat_id}/messages", headers=sender.after(sent))
            if page.status_code != 200 or page.json()["items"][0]["id"] != sent.json()["id"]:
                problems.append(f"token read: {page.status_code}")
            again = send(client, sender, chat_id, f"hi {index}", client_msg_id=key)
            if again.status_code != 200:
                problems.append(f"repeat send: {again.status_code}")
            own_chats = client.get(f"/users/{users[0].id}/chats", headers=users[0].headers)
            if own_chats.status_code != 200:
                problems.append("read without token")
    return problems


def test_the_service_works_through_pgbouncer_under_concurrency(
    database: TestDatabase, bouncer: PgBouncer
) -> None:
    with _serve(database, bouncer) as server, ThreadPoolExecutor(max_workers=8) as threads:
        results = list(threads.map(_conversation, [server.url] * 16))
        problems = [problem for result in results for problem in result]
        assert not problems, problems[:10]
        # Every replica in rotation once the load is over. During it, a monitor probe queued
        # behind the conversations for PgBouncer's two server connections may pass its 1 s
        # timeout and take a replica out until a later round (so before accounts too).
        wait_until(lambda: _readiness(server.url) == "pass", 10, "readiness to pass")


def _readiness(url: str) -> str:
    return str(httpx.get(f"{url}/health/ready", timeout=5).json()["status"])


def test_a_statement_timeout_through_pgbouncer_answers_503_and_cancels_it(
    database: TestDatabase, bouncer: PgBouncer
) -> None:
    with (
        _serve(database, bouncer, DB_STATEMENT_TIMEOUT_MS="300") as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        user = register(client)
        with TableLock(database.primary_url, "users"):
            started = time.monotonic()
            response = client.put(
                f"/users/{user.id}/status", json={"status": "away"}, headers=user.headers
            )
            elapsed = time.monotonic() - started
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.json()["detail"] == "the database did not answer in time"
            # The cancel request went through PgBouncer: nothing waits on the lock any more.
            wait_until(
                lambda: fetchval(database.primary_url, LOCK_WAITERS, "messenger-primary") == 0,
                5,
                "the timed-out statement to be cancelled on the server",
            )
        assert 0.3 <= elapsed < 2.0
        again = client.put(
            f"/users/{user.id}/status", json={"status": "online"}, headers=user.headers
        )
        assert again.status_code == 200


@pytest.mark.parametrize("listen", ["poll", "direct"])
def test_event_streams_through_pgbouncer(
    database: TestDatabase, bouncer: PgBouncer, listen: str
) -> None:
    """PgBouncer cannot LISTEN: the hub polls (no `EVENTS_LISTEN_URL`), or listens on the
    primary directly (`EVENTS_LISTEN_URL`); either way every message reaches the stream."""
    env = {"EVENTS_LISTEN_URL": database.primary_url} if listen == "direct" else {}
    with (
        _serve(database, bouncer, **env) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        alice, bob = register(client), register(client)
        chat_id = create_chat(client, alice, [bob])["id"]
        ready = httpx.get(f"{server.url}/health/ready", timeout=5).json()
        assert ready["checks"]["events:listener"][0]["status"] == "pass"  # polling by design
        metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
        assert f"events_listener_connected {1.0 if listen == 'direct' else 0.0}" in metrics
        with EventStream(server.url, bob.headers) as stream:
            assert stream.next().event == "ready"
            sent = [send(client, alice, chat_id, f"m{n}").json()["id"] for n in range(5)]
            got = [stream.next().json()["id"] for _ in sent]
    assert got == sent
