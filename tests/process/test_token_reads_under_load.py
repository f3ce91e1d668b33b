"""Read-your-writes under load, against a real granian process: 10,000 write-then-read pairs
from concurrent clients, each read carrying its write's token. No read may miss its write,
and the reads stay on the replicas (the share is printed as `[timing]` and must be at least
95%, the goal with replicas that replay within milliseconds)."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

import httpx

from tests.support.api import Account, user_with_a_chat
from tests.support.cluster import TestDatabase
from tests.support.server import ServerProcess

PAIRS = 10_000
CLIENTS = 16
_SAMPLE = re.compile(r'^db_consistency_token_reads_total\{served_by="(\w+)"\} ([0-9.e+]+)$', re.M)


def _served(server: ServerProcess) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {by: float(value) for by, value in _SAMPLE.findall(text)}


async def _client(base_url: str, chat_id: int, sender: Account, pairs: int) -> list[str]:
    """`pairs` sends, each followed by a read with its token; the problems found."""
    problems: list[str] = []
    async with httpx.AsyncClient(base_url=base_url, headers=sender.headers, timeout=30) as client:
        for _ in range(pairs):
            body = uuid.uuid4().hex
            sent = await client.post(f"/chats/{chat_id}/messages", json={"body": body})
            if sent.status_code != 201:
                problems.append(f"send answered {sent.status_code}")
                continue
            message_id = sent.json()["id"]
            token = sent.headers["x-consistency-token"]
            read = await client.get(
                f"/chats/{chat_id}/messages?limit=20", headers={"X-Consistency-Token": token}
            )
            if read.status_code != 200:
                problems.append(f"read answered {read.status_code}")
            elif message_id not in [item["id"] for item in read.json()["items"]]:
                problems.append(f"a read missed its write {message_id} ({token})")
    return problems


async def _drive(server: ServerProcess, chats: list[tuple[Account, int]]) -> list[str]:
    per_client = PAIRS // CLIENTS
    found = await asyncio.gather(
        *(_client(server.url, chat, sender, per_client) for sender, chat in chats)
    )
    return [problem for problems in found for problem in problems]


def test_ten_thousand_token_reads_never_miss_and_stay_on_replicas(
    database: TestDatabase,
) -> None:
    with ServerProcess(database, DB_POOL_MIN="4", DB_REPLICA_POOL_MIN="4") as server:
        chats = [user_with_a_chat(server.url) for _ in range(CLIENTS)]
        before = _served(server)
        started = time.monotonic()
        problems = asyncio.run(_drive(server, chats))
        elapsed = time.monotonic() - started
        after = _served(server)
    assert problems == [], problems[:10]
    served = {by: after.get(by, 0.0) - before.get(by, 0.0) for by in after}
    total = sum(served.values())
    assert total == PAIRS // CLIENTS * CLIENTS, served
    on_replicas = served.get("replica", 0.0) + served.get("replica_checked", 0.0)
    share = on_replicas / total
    print(
        "\n[timing] token reads under load: "
        + json.dumps(
            {
                "pairs": int(total),
                "clients": CLIENTS,
                "pairs_per_s": round(total / elapsed),
                "served_by": served,
                "on_replicas": round(share, 4),
            }
        )
    )
    assert share >= 0.95, served
