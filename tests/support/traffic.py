"""A steady stream of sends and reads against a running service, every response recorded.

One background thread alternates: a send (always with a fresh `client_msg_id`), a read of
the chat's newest messages, and a read carrying the last send's `X-Consistency-Token`, which
must contain that message. Every request carries the access token of a member of the chat
(who is the sender). It paces itself (`gap_s`) and stops by itself after `max_s` or
`max_requests`, or when `stop()` is called; `resend` sends again what got no answer.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.api import bearer
from tests.support.faults import latency_summary


@dataclass(frozen=True)
class Outcome:
    """One request: what it was, when, how long, and how it ended."""

    kind: str  # "send" | "read" | "token-read"
    at: float  # unix time it was sent
    latency_s: float
    status: int | None  # None: no HTTP answer (timeout, connection error)
    retry_after: str | None = None
    key: str | None = None  # the send's client_msg_id
    error: str | None = None  # why the answer is wrong, if it is


@dataclass
class Traffic:
    base_url: str
    chat_id: int
    access_token: str  # of the sender, a member of the chat
    gap_s: float = 0.01
    timeout_s: float = 10.0
    max_s: float = 180.0
    max_requests: int = 30_000
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 5)
        return list(self.outcomes)

    def count(self) -> int:
        return len(self.outcomes)

    def resend(self, keys: list[str]) -> dict[str, int]:
        """Send again, with the same key and body, the messages of `keys` (as a client does
        with a send that got no answer): the status of each."""
        with self._client() as client:
            return {
                key: client.post(self._messages, json=self._message(key)).status_code
                for key in keys
            }

    @property
    def _messages(self) -> str:
        return f"/chats/{self.chat_id}/messages"

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers=bearer(self.access_token), timeout=self.timeout_s
        )

    @staticmethod
    def _message(key: str) -> dict[str, str]:
        return {"body": f"m {key}", "client_msg_id": key}

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_s
        token: tuple[str, int] | None = None  # (token, message id) of the last send
        with self._client() as client:
            for index in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                step = index % 3
                if step == 0:
                    sent = self._send(client)
                    if sent is not None:
                        token = sent
                elif step == 1 or token is None:
                    self._read(client, None)
                else:
                    self._read(client, token)
                time.sleep(self.gap_s)  # pacing, not synchronisation

    def _request(self, client: httpx.Client, method: str, url: str, **kwargs: Any) -> Any:
        started, at = time.monotonic(), time.time()
        try:
            response = client.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            return None, at, time.monotonic() - started, type(error).__name__
        return response, at, time.monotonic() - started, None

    def _send(self, client: httpx.Client) -> tuple[str, int] | None:
        key = uuid.uuid4().hex
        response, at, latency, error = self._request(
            client, "POST", self._messages, json=self._message(key)
        )
        if response is None:
            self.outcomes.append(Outcome("send", at, latency, None, key=key, error=error))
            return None
        self.outcomes.append(
            Outcome(
                "send",
                at,
                latency,
                response.status_code,
                response.headers.get("retry-after"),
                key=key,
            )
        )
        token = response.headers.get("x-consistency-token")
        if response.status_code in (200, 201) and token is not None:
            return token, int(response.json()["id"])
        # A send can be acknowledged without a token: reading the WAL position after the
        # commit is best effort (it fails when the server goes right after the commit).
        return None

    def _read(self, client: httpx.Client, token: tuple[str, int] | None) -> None:
        headers = {"X-Consistency-Token": token[0]} if token else {}
        response, at, latency, error = self._request(
            client, "GET", f"{self._messages}?limit=5", headers=headers
        )
        kind = "token-read" if token else "read"
        if response is None:
            self.outcomes.append(Outcome(kind, at, latency, None, error=error))
            return
        problem = None
        if token and response.status_code == 200:
            ids = [item["id"] for item in response.json()["items"]]
            if token[1] not in ids:
                problem = f"token read misses message {token[1]}"
        self.outcomes.append(
            Outcome(
                kind, at, latency, response.status_code, response.headers.get("retry-after"),
                error=problem,
            )
        )  # fmt: skip


def between(outcomes: list[Outcome], start: float, end: float) -> list[Outcome]:
    """The outcomes sent in [start, end) (unix times)."""
    return [outcome for outcome in outcomes if start <= outcome.at < end]


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    """Status counts and latency percentiles, for the measurements printed by the tests."""
    statuses: dict[str, int] = {}
    for outcome in outcomes:
        key = str(outcome.status)
        statuses[key] = statuses.get(key, 0) + 1
    return {"statuses": statuses, **latency_summary([o.latency_s for o in outcomes])}
