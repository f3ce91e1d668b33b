"""Event drills with real processes: every acknowledged message reaches its members exactly
once and in order while the primary is killed and a standby promoted, while two instances
behind HAProxy restart one after the other, and while one member reads nothing for a while.

The timings are printed (`pytest -s`) as `[timing]` lines."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.api import Account, create_chat, register
from tests.support.cluster import TestDatabase, embedded, fresh_cluster
from tests.support.drills import report
from tests.support.fleet import Fleet
from tests.support.server import ServerProcess
from tests.support.sse import Follower

_SERVE = {"DB_POOL_MIN": "2", "DB_REPLICA_POOL_MIN": "1", "DB_POOL_TIMEOUT_MS": "1000"}


@pytest.fixture
def cluster() -> Iterator[TestDatabase]:
    with fresh_cluster() as database:
        yield database


class _Sender:
    """Sends with a `client_msg_id` every few milliseconds; resends a key until it is
    answered 201 or 200 (a 503 or a lost connection during a failover), as clients should."""

    def __init__(
        self, url: str, account: Account, chat_id: int, every_s: float = 0.01, size: int = 5
    ) -> None:
        self._body = "x" * size
        self._url = url
        self._account = account
        self._chat_id = chat_id
        self._every_s = every_s
        self.acked: dict[int, float] = {}
        self.retries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> _Sender:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        with httpx.Client(base_url=self._url, timeout=5) as client:
            while not self._stop.is_set():
                key = uuid.uuid4().hex
                while True:
                    try:
                        response = client.post(
                            f"/chats/{self._chat_id}/messages",
                            json={"body": self._body, "client_msg_id": key},
                            headers=self._account.headers,
                        )
                        if response.status_code in (200, 201):
                            self.acked[int(response.json()["id"])] = time.time()
                            break
                    except httpx.HTTPError:
                        pass
                    self.retries += 1
                    time.sleep(0.05)
                time.sleep(self._every_s)


def _check(follower: Follower, sender: _Sender, timeout_s: float = 30) -> dict[str, int]:
    acked = set(sender.acked)
    missing = follower.wait_for(acked, timeout_s)
    assert not missing, f"acknowledged but not delivered: {sorted(missing)[:20]}"
    assert len(follower.received) == len(set(follower.received)), "delivered twice"
    assert follower.positions == sorted(follower.positions), "out of stream order"
    assert follower.resyncs == 0
    return {"acknowledged": len(acked), "delivered": len(follower.received)}


def test_primary_killed_and_a_standby_promoted_while_streaming(cluster: TestDatabase) -> None:
    nodes = embedded(cluster)
    promoted = nodes.replicas[0]
    host_list = nodes.host_list_url
    with ServerProcess(
        cluster, DATABASE_URL=host_list, DATABASE_REPLICA_URLS="", WORKERS="2", **_SERVE
    ) as server:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            alice, bob = register(http), register(http)
            chat = create_chat(http, alice, [bob])
        follower = Follower(server.url, bob.headers).start()
        sender = _Sender(server.url, alice, chat["id"]).start()
        time.sleep(1.5)
        killed_at = time.time()
        nodes.failover("immediate", to=promoted)
        promoted_at = time.time()
        time.sleep(4)
        sender.stop()
        try:
            counts = _check(follower, sender)
        finally:
            follower.stop()
        delivered_after = [at - promoted_at for at in follower.arrived if at > promoted_at]
    report(
        "events: primary killed (immediate), standby promoted, while streaming",
        promote_took_ms=round((promoted_at - killed_at) * 1000),
        first_event_after_promotion_ms=round(min(delivered_after) * 1000)
        if delivered_after
        else None,
        send_retries=sender.retries,
        reconnects=follower.connects - 1,
        ends=follower.ends,
        **counts,
    )


def _stalled_stream(url: str, account: Account) -> socket.socket:
    """`GET /events` on a socket with a small receive buffer that is then never read: a
    client that stopped reading."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    authorization = account.headers["Authorization"]
    sock.sendall(
        f"GET /events HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    return sock


def _read_until(sock: socket.socket, marker: bytes, timeout_s: float) -> bytes:
    """Everything the socket holds until `marker` arrived, or `timeout_s` passed."""
    sock.settimeout(0.5)
    text = b""
    deadline = time.monotonic() + timeout_s
    while marker not in text and time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            continue
        if not chunk:
            break
        text += chunk
    return text


def test_a_slow_consumer_is_dropped_with_a_resume_point_while_others_stay_on_time(
    database: TestDatabase,
) -> None:
    with ServerProcess(database, EVENTS_BUFFER="16", **_SERVE) as server:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            alice, bob, carol = register(http), register(http), register(http)
            chat = create_chat(http, alice, [bob, carol])
        follower = Follower(server.url, bob.headers).start()
        stalled = _stalled_stream(server.url, carol)
        # Large messages, so the socket buffers between the server and carol fill quickly.
        sender = _Sender(server.url, alice, chat["id"], every_s=0.001, size=4000).start()
        try:
            time.sleep(15)
        finally:
            sender.stop()
        try:
            counts = _check(follower, sender, timeout_s=15)
        finally:
            follower.stop()
        lags = sorted(
            arrived - sender.acked[message]
            for message, arrived in zip(follower.received, follower.arrived, strict=True)
        )
        # The stalled client fell behind by more than its buffer: the server ended its stream
        # with the `end` event (after what the socket buffers held), then closed it.
        text = _read_until(stalled, b"slow_consumer", 20)
        stalled.close()
        assert b"slow_consumer" in text, (len(text), len(sender.acked))
        metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
        assert 'events_streams_ended_total{reason="slow_consumer"}' in metrics
    report(
        "events: a slow consumer dropped, the others on time",
        p50_ms=round(lags[len(lags) // 2] * 1000, 1),
        p99_ms=round(lags[int(len(lags) * 0.99)] * 1000, 1),
        stalled_read_bytes=len(text),
        **counts,
    )


def test_a_rolling_restart_behind_haproxy_while_streaming(database: TestDatabase) -> None:
    """Two instances behind HAProxy restarted one after the other: each stream is ended with
    `shutdown` and `retry:` when its instance drains, its client reconnects through HAProxy
    with its last id, and every acknowledged message arrives once, in order."""
    env = {
        **os.environ,
        **database.env(),
        "WORKERS": "2",
        "DB_POOL_MIN": "2",
        "DB_POOL_MAX": "8",
        "DB_REPLICA_POOL_MIN": "1",
        "DB_REPLICA_POOL_MAX": "4",
        "DRAIN_DELAY_S": "1",
        "SHUTDOWN_TIMEOUT_S": "3",
        "EVENTS_HEARTBEAT_S": "2",  # below HAProxy's `timeout server`
        "PROMETHEUS_MULTIPROC_DIR": "",
    }
    with Fleet(env, instances=2) as fleet:
        with httpx.Client(base_url=fleet.url, timeout=10) as http:
            alice, bob = register(http), register(http)
            chat = create_chat(http, alice, [bob])
        follower = Follower(fleet.url, bob.headers).start()
        sender = _Sender(fleet.url, alice, chat["id"], every_s=0.02).start()
        try:
            time.sleep(1)
            restarts = [fleet.restart(instance) for instance in fleet.instances]
            time.sleep(1)
        finally:
            sender.stop()
        try:
            counts = _check(follower, sender)
        finally:
            follower.stop()
    assert "shutdown" in follower.ends
    report(
        "events: rolling restart of two instances behind HAProxy while streaming",
        restarts=[restart.timeline() for restart in restarts],
        reconnects=follower.connects - 1,
        ends=follower.ends,
        send_retries=sender.retries,
        **counts,
    )
