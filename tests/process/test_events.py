"""`GET /events` on real granian processes: delivery, resume, limits and the stream's end."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app.security.tokens import AccessTokens
from tests.support.api import Account, bearer, create_chat, register, send
from tests.support.cluster import TestDatabase
from tests.support.server import ServerProcess
from tests.support.signing import KEY_ID, SECRET
from tests.support.sse import Event, EventStream


@pytest.fixture(scope="module")
def server(database: TestDatabase) -> Iterator[ServerProcess]:
    """Two workers: a stream and the send that feeds it are often on different workers."""
    with ServerProcess(
        database,
        WORKERS="2",
        EVENTS_HEARTBEAT_S="0.3",
        EVENTS_MAX_STREAMS_PER_USER="2",
        EVENTS_RETRY_MS="1500",
    ) as process:
        yield process


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def _position(event_id: str | None) -> tuple[int, ...]:
    assert event_id is not None
    return tuple(int(part) for part in event_id.split("-"))


@contextlib.contextmanager
def _resumed(server: ServerProcess, account: Account, last: str | None) -> Iterator[EventStream]:
    """A stream resumed from `last`, as a client does: after a 429 (the stream it just closed
    may not have ended on the server yet, and the limit per user is 2 here) it waits and
    tries again."""
    for _attempt in range(50):
        with EventStream(server.url, account.headers, last_event_id=last) as stream:
            if stream.status == 429:
                time.sleep(0.1)
                continue
            assert stream.status == 200, stream.body
            yield stream
            return
    raise AssertionError("no stream within 50 attempts")


def test_a_stream_starts_ready_and_delivers_new_messages(
    server: ServerProcess, http: httpx.Client
) -> None:
    alice, bob = register(http), register(http)
    with EventStream(server.url, bob.headers) as stream:
        assert stream.status == 200
        ready = stream.next()
        assert ready.event == "ready"
        assert ready.id is not None
        assert stream.retry == 1500
        chat = create_chat(http, alice, [bob])
        joined = stream.next()
        assert joined.event == "chat_joined"
        assert joined.json()["chat_id"] == chat["id"]
        sent = send(http, alice, chat["id"], "hello")
        assert sent.status_code == 201
        event = stream.next()
        assert event.event == "message"
        assert event.json() == {**sent.json(), "created_at": event.json()["created_at"]}


def _events_but_joins(stream: EventStream, count: int) -> list[Event]:
    """The next `count` events other than `chat_joined` (the chats were made just before the
    stream began; a transaction still running then may put their joins after its start)."""
    events: list[Event] = []
    while len(events) < count:
        event = stream.next()
        if event.event != "chat_joined":
            events.append(event)
    return events


def test_leaving_a_chat_ends_its_messages_with_chat_left_live_and_on_resume(
    server: ServerProcess, http: httpx.Client
) -> None:
    """`chat_left` after the last message sent while a member, and none of the chat's messages
    after it: on the live stream, and for a client resuming from before the leaving."""
    alice, bob = register(http), register(http)
    left_chat = create_chat(http, alice, [bob])
    other_chat = create_chat(http, alice, [bob])
    with _resumed(server, bob, None) as stream:
        start = stream.next()
        assert start.event == "ready"
        before = send(http, alice, left_chat["id"], "while a member").json()
        assert (
            http.delete(f"/chats/{left_chat['id']}/members/me", headers=bob.headers).status_code
            == 204
        )
        after = send(http, alice, left_chat["id"], "after leaving").json()
        marker = send(http, alice, other_chat["id"], "elsewhere").json()
        live = _events_but_joins(stream, 3)
    expected = [
        ("message", before["id"]),
        ("chat_left", left_chat["id"]),
        ("message", marker["id"]),
    ]

    def seen(events: list[Event]) -> list[tuple[str | None, int]]:
        return [
            (event.event, event.json()["id" if event.event == "message" else "chat_id"])
            for event in events
        ]

    assert seen(live) == expected, f"{after['id']} must not be delivered"
    assert live[1].json()["user_id"] == bob.id
    with _resumed(server, bob, start.id) as stream:
        resumed = _events_but_joins(stream, 3)
    assert seen(resumed) == expected, f"{after['id']} must not be delivered"
    assert [event.id for event in resumed] == [event.id for event in live]


def test_resuming_with_last_event_id_delivers_every_missed_message_exactly_once(
    server: ServerProcess, http: httpx.Client
) -> None:
    alice, bob, carol = register(http), register(http), register(http)
    chat = create_chat(http, alice, [bob, carol])
    sent: list[int] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        sender = (alice, carol)[n % 2]
        response = send(http, sender, chat["id"], f"m{n}", client_msg_id=uuid.uuid4().hex)
        assert response.status_code == 201, response.text
        with lock:
            sent.append(response.json()["id"])

    received: list[int] = []
    positions: list[tuple[int, ...]] = []
    with _resumed(server, bob, None) as stream:
        last = stream.next().id  # `ready`: where the stream begins, before any send
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(one, n) for n in range(60)]
        # Reconnect with the last id, read a few, drop, while the sends go on.
        for _round in range(4):
            with _resumed(server, bob, last) as stream:
                for event in _events_but_joins(stream, 5):
                    assert event.event == "message", event.data
                    received.append(event.json()["id"])
                    last = event.id
                    positions.append(_position(last))
        for future in futures:
            future.result()
    with _resumed(server, bob, last) as stream:
        while len(received) < len(sent):
            (event,) = _events_but_joins(stream, 1)
            assert event.event == "message", event.data
            received.append(event.json()["id"])
            positions.append(_position(event.id))
    assert sorted(received) == sorted(sent)
    assert positions == sorted(positions)  # in stream order across every reconnection
    assert len(received) == len(set(received))


def test_a_malformed_last_event_id_is_400_and_an_unknown_one_resynchronises(
    server: ServerProcess, http: httpx.Client
) -> None:
    bob = register(http)
    with EventStream(server.url, bob.headers, last_event_id="not-an-id") as bad:
        assert bad.status == 400
    far = f"{2**62}-2-1"
    with EventStream(server.url, bob.headers, last_event_id=far) as stream:
        event = stream.next()
        assert event.event == "resync"
        assert event.id is not None
        assert event.id != far


def test_heartbeats_keep_an_idle_stream_alive(server: ServerProcess, http: httpx.Client) -> None:
    bob = register(http)
    with EventStream(server.url, bob.headers) as stream:
        stream.next()
        time.sleep(1.2)
        assert stream.comments >= 2
        assert not stream.ended.is_set()


def test_streams_per_user_beyond_the_limit_are_429_with_retry_after(
    server: ServerProcess, http: httpx.Client
) -> None:
    bob = register(http)
    # The limit is per worker: open enough that one worker holds more than two.
    streams = [EventStream(server.url, bob.headers) for _ in range(5)]
    try:
        for stream in streams:
            stream.__enter__()
        statuses = sorted(stream.status or 0 for stream in streams)
        assert 429 in statuses
        refused = next(stream for stream in streams if stream.status == 429)
        assert "too many streams" in refused.body
    finally:
        for stream in streams:
            stream.close()
    response = http.get("/events", headers={**bob.headers, "Last-Event-ID": "x"})
    assert response.status_code == 400


def test_an_expired_access_token_ends_its_stream(server: ServerProcess, http: httpx.Client) -> None:
    bob = register(http)
    short = AccessTokens({KEY_ID: SECRET}, KEY_ID, 1.5).issue(bob.id)
    with EventStream(server.url, bearer(short)) as stream:
        assert stream.next().event == "ready"
        end = stream.next(timeout_s=5)
        assert end.event == "end"
        assert end.json() == {"reason": "token_expired"}
        assert stream.ended.wait(5)


def test_without_a_token_the_stream_is_401(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/events", timeout=5).status_code == 401


def test_shutdown_ends_streams_with_a_retry_hint(database: TestDatabase) -> None:
    with ServerProcess(database, EVENTS_RETRY_MS="1234") as server:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            bob: Account = register(http)
        with EventStream(server.url, bob.headers) as stream:
            assert stream.next().event == "ready"
            started = time.monotonic()
            server.signal(signal.SIGTERM)
            end = stream.next(timeout_s=5)
            assert end.event == "end"
            assert end.json() == {"reason": "shutdown"}
            assert end.retry == 1234
            assert stream.ended.wait(5)
            assert time.monotonic() - started < 3
            assert server.wait(15) == 0


def test_a_send_on_one_instance_reaches_a_stream_on_another(database: TestDatabase) -> None:
    """The wake-up crosses instances (LISTEN/NOTIFY on the primary); the table is the truth."""
    with ServerProcess(database) as first, ServerProcess(database) as second:
        with httpx.Client(base_url=first.url, timeout=10) as http:
            alice, bob = register(http), register(http)
            chat = create_chat(http, alice, [bob])
        with (
            EventStream(second.url, bob.headers) as stream,
            httpx.Client(base_url=first.url, timeout=10) as http,
        ):
            assert stream.next().event == "ready"
            started = time.monotonic()
            sent = send(http, alice, chat["id"], "across")
            event = stream.next()
            took_s = time.monotonic() - started
            assert event.event == "message"
            assert event.json()["id"] == sent.json()["id"]
            assert took_s < 0.9  # well within the 1 s poll: the notification woke it
