"""Overload and hang-ups against a real granian process.

- a burst far above the pools' size answers only 2xx or 503 with `Retry-After`;
- clients that hang up while their request waits (on a lock, or for a connection) leak no
  connection: the pool is idle afterwards and serves at full size.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from typing import Any

import httpx

from tests.support.api import Account, user_with_a_chat
from tests.support.cluster import TestDatabase, fetchval, wait_until
from tests.support.faults import (
    ACTIVE_QUERIES,
    TableLock,
    latency_summary,
    wait_lock_waiters,
)
from tests.support.server import ServerProcess

_PRIMARY = "messenger-primary"


async def _burst(
    url: str, chat_id: int, sender: Account, size: int
) -> list[tuple[int, Any, float]]:
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=url, headers=sender.headers, timeout=30, limits=limits
    ) as client:

        async def one(index: int) -> tuple[int, Any, float]:
            started = time.monotonic()
            if index % 2:
                body = {"body": f"burst {index}"}
                response = await client.post(f"/chats/{chat_id}/messages", json=body)
            else:
                response = await client.get(f"/chats/{chat_id}/messages?limit=20")
            return response.status_code, response.headers, time.monotonic() - started

        return await asyncio.gather(*(one(index) for index in range(size)))


def test_a_burst_far_above_the_pool_gets_only_2xx_or_503(database: TestDatabase) -> None:
    env = {
        "DB_POOL_MIN": "1",
        "DB_POOL_MAX": "2",
        "DB_REPLICA_POOL_MIN": "1",
        "DB_REPLICA_POOL_MAX": "2",
        "DB_POOL_TIMEOUT_MS": "100",
    }
    with ServerProcess(database, **env) as server:
        sender, chat_id = user_with_a_chat(server.url)
        results = asyncio.run(_burst(server.url, chat_id, sender, 300))
        statuses = [status for status, _, _ in results]
        assert set(statuses) <= {200, 201, 503}, sorted(set(statuses))
        unavailable = [headers for status, headers, _ in results if status == 503]
        assert unavailable, "the burst did not exhaust the pools"
        assert all(headers.get("retry-after") == "1" for headers in unavailable)
        assert any(status in (200, 201) for status in statuses)
        # The pools are intact afterwards: idle, and every request succeeds again.
        wait_until(
            lambda: fetchval(database.primary_url, ACTIVE_QUERIES, _PRIMARY) == 0,
            10,
            "the writer pool to go idle",
        )
        after = asyncio.run(_burst(server.url, chat_id, sender, 4))
        assert [status for status, _, _ in after].count(503) == 0
    print(
        "\n[timing] burst of 300 on pools of 2: "
        + json.dumps(
            {
                "503": statuses.count(503),
                "2xx": len(statuses) - statuses.count(503),
                "latency": latency_summary([latency for _, _, latency in results]),
            }
        )
    )


def _hang_up_after_sending(url: str, request: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(request)
    return sock


def _abort(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), as a client that crashed or timed out would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _status_request(user: Account, port: int) -> bytes:
    body = b'{"status": "away"}'
    return (
        f"PUT /users/{user.id}/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {user.access_token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_clients_hanging_up_mid_request_leak_no_connection(database: TestDatabase) -> None:
    env = {"DB_POOL_MIN": "2", "DB_POOL_MAX": "2", "DB_POOL_TIMEOUT_MS": "5000"}
    with ServerProcess(database, **env) as server:
        user, _ = user_with_a_chat(server.url)
        request = _status_request(user, server.port)
        with TableLock(database.primary_url, "users"):
            # Two requests hold both connections, blocked on the lock; two more queue for one.
            sockets = [_hang_up_after_sending(server.url, request) for _ in range(4)]
            wait_lock_waiters(database.primary_url, _PRIMARY, 2)
            for sock in sockets:
                _abort(sock)
        # The lock is gone: the blocked statements finish and their connections come back.
        wait_until(
            lambda: fetchval(database.primary_url, ACTIVE_QUERIES, _PRIMARY) == 0,
            10,
            "no statement of the writer pool running",
        )
        metrics = httpx.get(f"{server.url}/health/metrics", timeout=5)
        if metrics.status_code == 200 and "database" in metrics.json():
            wait_until(
                lambda: (
                    httpx.get(f"{server.url}/health/metrics", timeout=5).json()["database"][
                        "primary"
                    ]["usedCount"]
                    == 0
                ),
                10,
                "usedCount 0 in /health/metrics",
            )
        # Both connections serve: two requests blocked on a fresh lock hold them at once
        # (a leaked connection would leave one waiting for the pool instead).
        with TableLock(database.primary_url, "users"):
            blocked = [_hang_up_after_sending(server.url, request) for _ in range(2)]
            wait_lock_waiters(database.primary_url, _PRIMARY, 2)
        for sock in blocked:
            sock.settimeout(10)
            assert sock.recv(64).startswith(b"HTTP/1.1 200")
            sock.close()
        sessions = fetchval(
            database.primary_url,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            _PRIMARY,
        )
        assert sessions == 2
