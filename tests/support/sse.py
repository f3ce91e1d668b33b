"""A Server-Sent Events client for tests: reads `GET /events` of a real service in a thread.

`with EventStream(url, headers) as stream:` then `stream.next()` for each event (`Event`),
`stream.comments` counts the comment lines (heartbeats), `stream.status` is the response's
status, `stream.ended` is set when the server closed the stream.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Self

import httpx


@dataclass(frozen=True)
class Event:
    event: str
    id: str | None
    data: str
    retry: int | None

    def json(self) -> Any:
        return json.loads(self.data)


class EventStream:
    """One stream; `last_event_id` resumes."""

    def __init__(self, url: str, headers: dict[str, str], last_event_id: str | None = None) -> None:
        self._url = f"{url}/events"
        self._headers = dict(headers)
        if last_event_id is not None:
            self._headers["Last-Event-ID"] = last_event_id
        self.events: queue.Queue[Event] = queue.Queue()
        self.comments = 0
        self.status: int | None = None
        self.body = ""
        self.retry: int | None = None
        """The last `retry:` the server sent (milliseconds)."""
        self.started = threading.Event()
        self.ended = threading.Event()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        assert self.started.wait(10), "no answer to GET /events"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._response is not None:
            with contextlib.suppress(Exception):  # the reader thread may be mid-read
                self._response.close()
        self._thread.join(5)

    def next(self, timeout_s: float = 5.0) -> Event:
        try:
            return self.events.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout_s} s") from None

    def take(self, count: int, timeout_s: float = 10.0) -> list[Event]:
        return [self.next(timeout_s) for _ in range(count)]

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=60)) as client,
                client.stream("GET", self._url, headers=self._headers) as response,
            ):
                self._response = response
                self.status = response.status_code
                if response.status_code != 200:
                    self.body = response.read().decode()
                    self.started.set()
                    return
                self.started.set()
                for line in response.iter_lines():
                    if not line:
                        if "retry" in fields:
                            self.retry = int(fields["retry"])
                        if "data" in fields:  # as a browser: no data, no event
                            self.events.put(_event(fields))
                        fields = {}
                        continue
                    if line.startswith(":"):
                        self.comments += 1
                        continue
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "data" and name in fields:
                        value = f"{fields[name]}\n{value}"
                    fields[name] = value
        except Exception:  # noqa: S110 - closed by the test or the server
            pass
        finally:
            self.started.set()
            self.ended.set()


def _event(fields: dict[str, str]) -> Event:
    retry = fields.get("retry")
    return Event(
        event=fields.get("event", "message"),
        id=fields.get("id"),
        data=fields.get("data", ""),
        retry=int(retry) if retry is not None else None,
    )


class Follower:
    """A client that keeps one user's stream open as a browser's `EventSource` would:
    reconnecting with the last event id whenever the stream ends or fails, in a thread.

    `received` holds the message ids in the order they arrived, `positions` their event ids,
    `ends` the reasons the server gave for ending streams, `resyncs` the resync events."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self._url = url
        self._headers = headers
        self.received: list[int] = []
        self.positions: list[tuple[int, ...]] = []
        self.arrived: list[float] = []
        self.ends: list[str] = []
        self.resyncs = 0
        self.connects = 0
        self.last: str | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, timeout_s: float = 10.0) -> Self:
        self._thread.start()
        assert self._ready.wait(timeout_s), "the stream did not begin"
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def wait_for(self, ids: set[int], timeout_s: float) -> set[int]:
        """Wait until every id of `ids` arrived; the ones still missing."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            missing = ids - set(self.received)
            if not missing:
                return missing
            time.sleep(0.05)
        return ids - set(self.received)

    def _run(self) -> None:
        while not self._stop.is_set():
            stream = EventStream(self._url, self._headers, last_event_id=self.last)
            try:
                stream.__enter__()
            except AssertionError:
                continue
            self.connects += 1
            try:
                if stream.status != 200:
                    time.sleep(0.2)
                    continue
                self._follow(stream)
            finally:
                stream.close()
            time.sleep(0.05)

    def _follow(self, stream: EventStream) -> None:
        while not self._stop.is_set():
            try:
                event = stream.events.get(timeout=0.2)
            except queue.Empty:
                if stream.ended.is_set() and stream.events.empty():
                    return
                continue
            if event.event == "message":
                self.received.append(int(event.json()["id"]))
                self.arrived.append(time.time())
                assert event.id is not None
                self.positions.append(tuple(int(part) for part in event.id.split("-")))
            elif event.event == "end":
                self.ends.append(str(event.json()["reason"]))
            elif event.event == "resync":
                self.resyncs += 1
            if event.id is not None:
                self.last = event.id
                self._ready.set()
