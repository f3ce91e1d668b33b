"""`python -m tests.bench.events [SECONDS]` (`just bench-events`): real-time delivery under load.

Every seeded user (1,000, in chats of 10; `BENCH_EVENTS_STREAMS=0`: none, to measure the
sends alone) holds one `GET /events` stream of the service (two
workers, production settings) while 100 messages a second are sent for SECONDS (30), each by
a member of a random chat. For every (message, member) pair it measures the delay from the
send's 201 to the event at the member's stream, and counts the pairs lost and duplicated;
it reports the workers' largest RSS with every stream open, and the service's CPU per
delivered event (the sends' own CPU included). Writes tests/bench/results/events.json and
events.md. One run on a shared 2-core box is noisy: read the numbers as an order of size.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.bench.runner import RESULTS_DIR, Bench, Config, _raised_fd_limit
from tests.bench.servers import cpu_seconds

RATE_PER_S = 100
SETTLE_S = 3.0


@dataclass
class _Streams:
    ready: int = 0
    failed: int = 0
    received: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    """(message id, user id) -> the times it arrived (more than one: a duplicate)."""


async def _stream(url: str, user: int, token: str, streams: _Streams, stop: asyncio.Event) -> None:
    host, port = url.removeprefix("http://").split(":")
    try:
        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
    except OSError:
        streams.failed += 1
        return
    writer.write(
        f"GET /events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    event = ""
    try:
        status = await reader.readline()
        if b" 200 " not in status:
            streams.failed += 1
            return
        while not stop.is_set():
            line = await reader.readline()
            if not line:
                return
            text = line.decode().strip()
            if text.startswith("event: "):
                event = text[7:]
            elif text.startswith("data: ") and event == "ready":
                streams.ready += 1
            elif text.startswith("data: ") and event == "message":
                message = json.loads(text[6:])
                streams.received.setdefault((message["id"], user), []).append(time.time())
    except (OSError, asyncio.IncompleteReadError, ValueError):
        return
    finally:
        writer.close()


async def _send(
    client: httpx.AsyncClient,
    bench: Bench,
    chat: int,
    sent: dict[int, tuple[int, float]],
    took: list[float],
) -> None:
    members = bench.data.members
    sender = ((chat - 1) * members) % bench.data.users + 1
    started = time.time()
    response = await client.post(
        f"/chats/{chat}/messages",
        json={"body": "event bench", "client_msg_id": uuid.uuid4().hex},
        headers=bench.bearer(sender),
    )
    if response.status_code == 201:
        sent[int(response.json()["id"])] = (chat, time.time())
        took.append(time.time() - started)


def _quantiles(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p99": None}
    pick = [ordered[min(len(ordered) - 1, int(len(ordered) * q))] for q in (0.5, 0.99)]
    return {"p50": round(pick[0] * 1000, 1), "p99": round(pick[1] * 1000, 1)}


async def _server_latency(url: str, metrics_token: str) -> dict[str, float | None]:
    """The service's own view (`events_delivery_latency_seconds`, from the row's created_at
    to the write): the bucket bound below which 50% and 99% of live deliveries fell."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        text = (
            await client.get("/metrics", headers={"authorization": f"Bearer {metrics_token}"})
        ).text
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("events_delivery_latency_seconds_bucket{"):
            le = float(line.split('le="')[1].split('"')[0])
            buckets[le] = buckets.get(le, 0.0) + float(line.split()[-1])
    total = buckets.get(float("inf"), 0.0)

    def below(q: float) -> float | None:
        for le in sorted(buckets):
            if total and buckets[le] >= q * total:
                return le * 1000
        return None

    return {"p50": below(0.5), "p99": below(0.99)}


def _members(bench: Bench, chat: int) -> list[int]:
    data = bench.data
    return [
        ((chat - 1) * data.members + k - 1) % data.users + 1 for k in range(1, data.members + 1)
    ]


async def _run(bench: Bench, url: str, seconds: float, service: Any) -> dict[str, Any]:
    streams = _Streams()
    stop = asyncio.Event()
    users = range(1, int(os.environ.get("BENCH_EVENTS_STREAMS", bench.data.users)) + 1)
    tasks = [
        asyncio.create_task(_stream(url, user, bench.tokens[user - 1], streams, stop))
        for user in users
    ]
    for _tick in range(600):  # every stream has begun (or failed), 60 s at most
        if streams.ready + streams.failed >= len(tasks):
            break
        await asyncio.sleep(0.1)
    rss_total, rss_worst = service.rss()
    cpu_before = service.cpu_seconds()
    db_before = cpu_seconds(bench.cluster.processes())
    sent: dict[int, tuple[int, float]] = {}
    took: list[float] = []
    rng = random.Random(21)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        started = time.monotonic()
        sends = []
        for n in range(int(seconds * RATE_PER_S)):
            due = started + n / RATE_PER_S
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            chat = rng.randrange(1, bench.data.chats + 1)
            sends.append(asyncio.create_task(_send(client, bench, chat, sent, took)))
        await asyncio.gather(*sends)
        send_s = time.monotonic() - started
    await asyncio.sleep(SETTLE_S)
    cpu_s = service.cpu_seconds() - cpu_before
    db_cpu_s = cpu_seconds(bench.cluster.processes()) - db_before
    server_side = await _server_latency(url, bench.auth.metrics_token)
    rss_after = service.rss()
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies, lost, duplicated = [], 0, 0
    for message, (chat, acked) in sent.items():
        for member in _members(bench, chat):
            arrived = streams.received.get((message, member))
            if not arrived:
                lost += 1
                continue
            duplicated += len(arrived) - 1
            latencies.append(max(0.0, arrived[0] - acked))
    latencies.sort()
    delivered = len(latencies)

    def pct(q: float) -> float | None:
        return (
            round(latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000, 1)
            if latencies
            else None
        )

    return {
        "streams": len(tasks),
        "streams_ready": streams.ready,
        "streams_failed": streams.failed,
        "seconds": round(send_s, 1),
        "messages_sent": len(sent),
        "send_rate_per_s": round(len(sent) / send_s, 1),
        "deliveries_expected": len(sent) * bench.data.members,
        "delivered": delivered,
        "lost": lost,
        "duplicated": duplicated,
        "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
        "rss_mb_per_worker_max": round(max(rss_worst, rss_after[1]) / 2**20, 1),
        "rss_mb_total": round(max(rss_total, rss_after[0]) / 2**20, 1),
        "server_latency_ms_le": server_side,
        # A message is delivered once every transaction older than it has ended, so slow
        # sends (their own latency) delay the delivery of the messages sent during them.
        "send_latency_ms": _quantiles(took),
        "cpu_s": round(cpu_s, 2),
        "postgres_cpu_s": round(db_cpu_s, 2),
        "cpu_ms_per_delivered_event": round(cpu_s * 1000 / delivered, 3) if delivered else None,
        "cpu_ms_per_send": round(cpu_s * 1000 / len(sent), 3) if sent else None,
    }


def main(argv: list[str]) -> int:
    seconds = float(argv[0]) if argv else 30.0
    config = Config.from_env("quick")
    with _raised_fd_limit():
        bench = Bench(config)
        bench.cluster.start()
        try:
            env = {
                **bench.service_env(config.pool_min, config.pool_max),
                "EVENTS_MAX_STREAMS_PER_WORKER": "5000",
            }
            from tests.bench.servers import Server

            with Server.service(env, config.users_workers, config.users_server_cpus).start(
                "/chats/1/messages?limit=1", bench.bearer(1)
            ) as service:
                result = asyncio.run(_run(bench, service.url, seconds, service))
        finally:
            bench.forget_tokens()
            bench.cluster.destroy()
    RESULTS_DIR.mkdir(exist_ok=True)
    name = "events" if result["streams"] else "events-no-streams"
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Events bench (`python -m tests.bench.events`)",
        "",
        f"{result['streams']} streams (1 per user, chats of {bench.data.members}), "
        f"{result['messages_sent']} messages in {result['seconds']} s "
        f"({result['send_rate_per_s']}/s); one run on a shared 2-core box: noisy.",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in result.items()),
        "",
    ]
    (RESULTS_DIR / f"{name}.md").write_text("\n".join(lines))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
