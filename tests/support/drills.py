"""What the fault drills against a real service process share (tests/process/
test_server_faults.py, test_failover.py): the steady `Traffic` of a new user in a chat of
their own, waiting for more of it, the first log line of an event, and the `[timing]` line
each drill prints (`pytest -s`)."""

from __future__ import annotations

import json
from typing import Any

from tests.support.api import Account, user_with_a_chat
from tests.support.cluster import wait_until
from tests.support.faults import log_events
from tests.support.server import ServerProcess
from tests.support.traffic import Traffic


def start_traffic(server: ServerProcess) -> tuple[Account, Traffic]:
    """A new user with a chat of their own on `server`, and their `Traffic` there, started."""
    sender, chat_id = user_with_a_chat(server.url)
    return sender, Traffic(server.url, chat_id, sender.access_token).start()


def more(traffic: Traffic, requests: int, what: str) -> None:
    """Wait until `traffic` has made `requests` more requests (60 s at most)."""
    seen = traffic.count()
    wait_until(lambda: traffic.count() >= seen + requests, 60, what)


def first_log(server: ServerProcess, event: str, after: float, **fields: str) -> float:
    """Unix time of the server's first log line of `event` (with `fields`) from `after` on;
    waits up to 20 s for it."""

    def found() -> float | None:
        times = [t for t in log_events(server.logs(), event, **fields) if t >= after - 0.01]
        return min(times) if times else None

    return float(wait_until(found, 20, f"log {event!r} {fields}"))


def report(title: str, **parts: Any) -> None:
    """The drill's measurements, one `[timing]` line."""
    print(f"\n[timing] {title}: {json.dumps(parts, default=str)}")
