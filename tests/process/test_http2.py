"""Cleartext HTTP/2 (prior knowledge) against a real granian: refused at once unless
`HTTP2_ENABLED`, and when enabled, a connection that sends the preface and SETTINGS and then
nothing is closed within the header timeout, as an HTTP/1 connection sending no headers is
(issue 19: such connections used to stay open > 75 s and starve `/health`)."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import httpx

from tests.support.cluster import TestDatabase
from tests.support.server import ROOT, SERVE, ServerProcess

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # length 0, type SETTINGS, stream 0
HEADER_TIMEOUT_S = 2.0


def _h2_client(port: int) -> tuple[bytes, float]:
    """Send the preface and SETTINGS, then nothing: what came back, and after how long the
    server closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(PREFACE + EMPTY_SETTINGS)
        started = time.monotonic()
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data, time.monotonic() - started


def _is_h2_settings(data: bytes) -> bool:
    return len(data) >= 9 and data[3] == 0x04  # the server's first frame: its SETTINGS


def test_http2_is_refused_by_default(database: TestDatabase) -> None:
    with ServerProcess(database, REQUEST_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S)) as server:
        data, elapsed_s = _h2_client(server.port)
        assert not _is_h2_settings(data)
        assert elapsed_s < 1.0
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200


def test_http2_when_enabled_drops_a_silent_connection_within_the_header_timeout(
    database: TestDatabase,
) -> None:
    env = {"HTTP2_ENABLED": "true", "REQUEST_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S)}
    with ServerProcess(database, **env) as server:
        data, elapsed_s = _h2_client(server.port)
        assert _is_h2_settings(data)  # HTTP/2 was served
        assert elapsed_s < HEADER_TIMEOUT_S + 1.5  # interval + ping timeout, ping rounding
        # HTTP/1 is unchanged beside it: a connection sending no headers is closed too.
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\n")
            started = time.monotonic()
            while sock.recv(65536):
                pass
            assert time.monotonic() - started < HEADER_TIMEOUT_S + 1.5
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200


def test_a_second_server_on_a_port_already_served_refuses_in_one_line(
    database: TestDatabase,
) -> None:
    """granian binds with SO_REUSEPORT: without the check, both would serve, alternately."""
    with ServerProcess(database) as first:
        env = {**os.environ, **database.env(), "HOST": "127.0.0.1", "PORT": str(first.port)}
        second = subprocess.run(
            SERVE, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert second.returncode == 2
        assert second.stderr.splitlines() == [
            f"error: 127.0.0.1:{first.port} is already in use (another `messenger serve`?):"
            " stop it, or set PORT"
        ]
        assert httpx.get(f"{first.url}/health", timeout=5).status_code == 200
