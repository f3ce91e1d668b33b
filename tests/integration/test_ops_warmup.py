"""Warm-up: each pool opens exactly its minimum, logs its server, and only then is ready."""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

import pytest
from litestar.testing import TestClient
from structlog.testing import capture_logs

from app.config import Settings
from app.main import create_app
from app.process.lifecycle import StartupAborted
from tests.support.api import make_client
from tests.support.cluster import TestDatabase, fetchval, wait_until
from tests.support.server import free_port

_OPENED_SINCE = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE application_name = $1 AND backend_start >= $2::text::timestamptz"
)


def _dead_url(password: str = "") -> str:
    secret = f":{password}" if password else ""
    return f"postgresql://postgres{secret}@127.0.0.1:{free_port()}/messenger"


def test_each_pool_opens_exactly_its_minimum(database: TestDatabase) -> None:
    since = fetchval(database.primary_url, "SELECT now()::text")
    client = make_client(database, DB_POOL_MIN="3", DB_REPLICA_POOL_MIN="2")
    with capture_logs() as logs, client:
        assert client.get("/health/ready").status_code == 200
        assert fetchval(database.primary_url, _OPENED_SINCE, "messenger-primary", since) == 3
        for index, url in enumerate(database.replica_urls):
            opened = fetchval(url, _OPENED_SINCE, f"messenger-replica-{index}", since)
            assert opened == 2, f"replica-{index}"
        metrics = client.get("/health/metrics").json()["database"]
        assert metrics["primary"]["totalCount"] == 3
        assert metrics["replica-0"]["totalCount"] == 2
    ready = [event for event in logs if event["event"] == "pool ready"]
    assert {event["pool"] for event in ready} == {"primary", "replica-0", "replica-1"}
    for event in ready:
        assert event["server_version"].split(".")[0].isdigit()
        assert event["database"] == "messenger"
    names = [event["event"] for event in logs]
    assert names.index("ready") > max(i for i, name in enumerate(names) if name == "pool ready")
    opened = [event["pool"] for event in logs if event["event"] == "connection opened"]
    assert opened.count("primary") == 3
    assert opened.count("replica-0") == 2


def test_a_replica_down_at_start_does_not_stop_the_service(database: TestDatabase) -> None:
    replicas = f"{database.replica_urls[0]},{_dead_url()}"
    client = make_client(database, DATABASE_REPLICA_URLS=replicas)  # configures logging
    with capture_logs() as logs, client:
        response = client.get("/health/ready")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "warn"
        assert body["checks"]["postgres:replica-1"][0]["status"] == "fail"
        assert body["checks"]["postgres:replica-0"][0]["status"] == "pass"
        assert client.get("/health/metrics").json()["replicas"]["replica-1"]["healthy"] is False
    failures = [event for event in logs if event["event"] == "connection checkout failed"]
    assert failures
    assert failures[0]["pool"] == "replica-1"
    assert failures[0]["error"] == "ConnectionRefusedError"
    assert not [event for event in logs if event["log_level"] == "error"]


def test_the_writer_down_at_start_stops_it_with_one_clear_line(database: TestDatabase) -> None:
    app = create_app(Settings.from_env(database.env(DATABASE_URL=_dead_url("Pw4Secret"))))
    with capture_logs() as logs, pytest.raises(ExceptionGroup) as raised:
        TestClient(app).__enter__()
    assert raised.group_contains(StartupAborted)
    errors = [event for event in logs if event["log_level"] == "error"]
    assert len(errors) == 1, errors
    assert errors[0]["event"] == "the primary is unreachable; not starting"
    assert "Pw4Secret" not in repr(errors)


class _Forwarder:
    """A TCP forwarder to the primary that can be started late: a primary that comes up."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = ("127.0.0.1", target_port)
        self._server: socket.socket | None = None

    def start(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def test_told_to_wait_it_starts_once_the_primary_comes_up(database: TestDatabase) -> None:
    primary_port = urlsplit(database.primary_url).port
    assert primary_port is not None
    forwarder = _Forwarder(primary_port)
    late_url = urlunsplit(
        urlsplit(database.primary_url)._replace(
            netloc=f"{urlsplit(database.primary_url).netloc.rpartition('@')[0]}"
            f"@127.0.0.1:{forwarder.port}"
        )
    )
    client = make_client(database, DATABASE_URL=late_url, DB_WAIT_FOR_PRIMARY_S="30")
    entered = threading.Event()

    def enter() -> None:
        client.__enter__()
        entered.set()

    with capture_logs() as logs:
        starter = threading.Thread(target=enter, daemon=True)
        starter.start()
        try:
            wait_until(
                lambda: any(e["event"] == "waiting for the primary if needed" for e in logs),
                10,
                "the service to wait for the primary",
            )
            assert not entered.is_set()
            forwarder.start()
            assert entered.wait(30), "the service did not start once the primary was up"
            assert client.get("/health/ready").status_code == 200
        finally:
            if entered.is_set():
                client.__exit__(None, None, None)
            forwarder.close()
    assert not [event for event in logs if event["log_level"] == "error"]
