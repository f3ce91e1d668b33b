"""Slow clients against a real granian process (raw sockets): full headers, a
`Content-Length` of 65,000, one byte of body, then silence.

- each such request is answered 408 (problem+json) once `REQUEST_BODY_TIMEOUT_S` has passed
  since its headers, and its connection is closed: nothing is held longer;
- while they hold every request slot of the worker (`WORKER_CONNECTIONS` less the probes'
  reserve), `/health` and `/health/ready` still answer at once, and other requests are refused
  at once (503 with `Retry-After`) instead of waiting behind them;
- SIGTERM with stalled bodies in flight drains, closes the pools and exits 0 long before
  granian's kill timeout.

Every wait has a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import time
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import TestDatabase, wait_until
from tests.support.server import ServerProcess

BODY_TIMEOUT_S = 2.0
CONNECTIONS = 32  # per worker; 16 of them are kept for the probes
SLOTS = CONNECTIONS - 16
PROBLEM = "application/problem+json"


@dataclass
class SlowClient:
    """One connection that sent its headers and one byte of a 65,000-byte body."""

    sock: socket.socket
    sent_at: float
    data: bytes = b""
    closed_at: float | None = None
    first_byte_at: float | None = None
    _head: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, port: int, path: str = "/users") -> SlowClient:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 65000\r\n\r\n{"
        )
        sock.sendall(head.encode())
        sock.setblocking(False)
        return cls(sock, time.monotonic())

    def pump(self) -> None:
        """Read what has arrived; note when the server closed the connection."""
        while self.closed_at is None:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                return
            except ConnectionResetError:
                chunk = b""
            now = time.monotonic()
            if chunk and self.first_byte_at is None:
                self.first_byte_at = now
            if not chunk:
                self.closed_at = now
                self.sock.close()
                return
            self.data += chunk

    @property
    def status(self) -> int | None:
        if not self.data.startswith(b"HTTP/1.1 "):
            return None
        return int(self.data[9:12])

    @property
    def headers(self) -> dict[str, str]:
        head = self.data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
        return {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in head)}

    @property
    def body(self) -> bytes:
        return self.data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.data else b""


def pump_until(clients: list[SlowClient], condition: object, timeout_s: float, what: str) -> None:
    """Read from every client until `condition()` holds; fail after `timeout_s`."""
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        open_socks = [client.sock for client in clients if client.closed_at is None]
        if open_socks:
            select.select(open_socks, [], [], min(remaining, 0.05))
        for client in clients:
            client.pump()


def in_progress(server: ServerProcess, path: str = "/users") -> float:
    """`http_server_requests_in_progress` for `path`, from the worker's /metrics."""
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_server_requests_in_progress" and sample.labels["path"] == path:
                total += sample.value
    return total


def timed(method: str, url: str, **kwargs: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.request(method, url, timeout=5, **kwargs)  # type: ignore[arg-type]
    return response, time.monotonic() - started


def timed_get(url: str) -> tuple[httpx.Response, float]:
    return timed("GET", url)


# A complete request to a route that needs no token (registration): it needs a slot.
_COMPLETE = {"json": {"username": "slow_clients_probe", "password": "correct horse battery"}}


def check_408(client: SlowClient) -> float:
    """The client got a 408 problem document and then its connection was closed; returns
    how long the server held it."""
    assert client.status == 408, client.data[:300]
    assert client.headers["content-type"].startswith(PROBLEM)
    problem = json.loads(client.body)
    assert problem["status"] == 408
    assert problem["title"] == "Request Timeout"
    assert client.closed_at is not None
    return client.closed_at - client.sent_at


def test_stalled_bodies_get_408_while_liveness_answers_and_other_requests_are_refused_at_once(
    database: TestDatabase,
) -> None:
    env = {
        "REQUEST_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "WORKER_CONNECTIONS": str(CONNECTIONS),
    }
    with ServerProcess(database, **env) as server:
        clients = [SlowClient.open(server.port) for _ in range(SLOTS + 8)]
        # The slots fill; the 8 beyond them are answered 503 at once and let go.
        pump_until(
            clients,
            lambda: sum(client.closed_at is not None for client in clients) == 8,
            BODY_TIMEOUT_S / 2,
            "the requests beyond the slots to be refused",
        )
        refused = [client for client in clients if client.closed_at is not None]
        stalled = [client for client in clients if client.closed_at is None]
        for client in refused:
            assert client.status == 503, client.data[:300]
            assert client.headers["content-type"].startswith(PROBLEM)
            assert client.headers.get("retry-after") == "1"
        assert len(stalled) == SLOTS
        assert in_progress(server) == SLOTS

        # Every slot is taken: the probes answer at once, other requests are refused at once.
        health, health_s = timed_get(f"{server.url}/health")
        ready, ready_s = timed_get(f"{server.url}/health/ready")
        other, other_s = timed("POST", f"{server.url}/users", **_COMPLETE)
        assert health.status_code == 200
        assert ready.status_code == 200
        assert other.status_code == 503, other.text
        assert other.headers["retry-after"] == "1"
        assert other.headers["content-type"].startswith(PROBLEM)
        assert max(health_s, ready_s, other_s) < 1.0, (health_s, ready_s, other_s)

        pump_until(
            stalled,
            lambda: all(client.closed_at is not None for client in stalled),
            BODY_TIMEOUT_S + 3,
            "every stalled request to be answered and closed",
        )
        held = sorted(check_408(client) for client in stalled)
        print(
            f"stalled bodies held {held[0]:.2f} to {held[-1]:.2f} s"
            f" (REQUEST_BODY_TIMEOUT_S={BODY_TIMEOUT_S}); probes answered in"
            f" {health_s * 1000:.0f} / {ready_s * 1000:.0f} ms; refused in {other_s * 1000:.0f} ms"
        )
        assert held[0] >= BODY_TIMEOUT_S - 0.05
        assert held[-1] < BODY_TIMEOUT_S + 1.5

        # The slots are free again.
        wait_until(lambda: in_progress(server) == 0, 5, "no request in progress")
        after, _ = timed("POST", f"{server.url}/users", **_COMPLETE)
        assert after.status_code != 503, after.text
        assert after.status_code < 500, after.text


def test_a_hundred_stalled_bodies_are_all_let_go_within_the_timeout(
    database: TestDatabase,
) -> None:
    """The default connection limit: 100 stalled bodies all fit, all are answered 408."""
    with ServerProcess(database, REQUEST_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S)) as server:
        clients = [SlowClient.open(server.port) for _ in range(100)]
        wait_until(lambda: in_progress(server) == 100, 5, "100 requests in progress")
        health, health_s = timed_get(f"{server.url}/health")
        assert health.status_code == 200
        assert health_s < 1.0
        pump_until(
            clients,
            lambda: all(client.closed_at is not None for client in clients),
            BODY_TIMEOUT_S + 5,
            "every stalled request to be answered and closed",
        )
        held = sorted(check_408(client) for client in clients)
        print(f"100 stalled bodies held {held[0]:.2f} to {held[-1]:.2f} s")
        assert held[-1] < BODY_TIMEOUT_S + 3
        wait_until(lambda: in_progress(server) == 0, 5, "no request in progress")


def test_sigterm_with_stalled_bodies_closes_the_pools_and_exits_well_before_the_kill(
    database: TestDatabase,
) -> None:
    body_timeout_s = 3.0
    env = {
        "REQUEST_BODY_TIMEOUT_S": str(body_timeout_s),
        "REQUEST_HEADER_TIMEOUT_S": str(body_timeout_s),
        "SHUTDOWN_TIMEOUT_S": "3",
    }
    with ServerProcess(database, **env) as server:
        clients = [SlowClient.open(server.port) for _ in range(5)]
        wait_until(lambda: in_progress(server) == 5, 5, "the 5 stalled requests in progress")
        # And one that never finishes its headers: granian (hyper) waits for it at shutdown
        # until REQUEST_HEADER_TIMEOUT_S, then lets it go.
        slow_headers = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        slow_headers.sendall(b"POST /users HTTP/1.1\r\nHost: x\r\n")
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait(timeout_s=body_timeout_s + 10)
        exited = time.monotonic()
        pump_until(
            clients,
            lambda: all(client.closed_at is not None for client in clients),
            2,
            "the stalled connections closed",
        )
        assert slow_headers.recv(100) == b""  # closed
        slow_headers.close()
        logs = server.logs()
    print(
        "shutdown with 5 stalled bodies and 1 stalled header:"
        f" signal->exit {exited - signalled:.2f} s"
    )
    assert code == 0, logs
    assert all(client.status == 408 for client in clients), [c.data[:60] for c in clients]
    for step in ("in-flight requests finished", "cluster monitor stopped", "pools disposed"):
        assert step in logs, logs
    assert "stopped" in logs
    # Bounded by the body timeout (the stalled requests' remaining time), not by granian's
    # kill timeout (REQUEST_BODY_TIMEOUT_S + DB_POOL_TIMEOUT_MS + DB_STATEMENT_TIMEOUT_MS
    # + SHUTDOWN_TIMEOUT_S + 1 = 14 s here).
    assert exited - signalled < body_timeout_s + 3
