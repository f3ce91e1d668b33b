"""`/chats/{id}/messages`: membership rule, idempotent sends, keyset pages."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
from litestar import Litestar
from litestar.testing import TestClient

from tests.support.api import assert_problem, create_chat, create_user
from tests.support.cluster import TestDatabase, fetchval
from tests.support.factories import SendMessageFactory


def _chat_with_two(
    client: TestClient[Litestar],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    a, b = create_user(client), create_user(client)
    return create_chat(client, [a["id"], b["id"]]), a, b


def _send(client: TestClient[Litestar], chat_id: int, **fields: Any) -> Any:
    body = msgspec.to_builtins(SendMessageFactory.build(**fields))
    return client.post(f"/chats/{chat_id}/messages", json=body)


def test_send_returns_201_with_the_message(client: TestClient[Litestar]) -> None:
    chat, a, _ = _chat_with_two(client)
    response = client.post(
        f"/chats/{chat['id']}/messages", json={"sender_id": a["id"], "body": "hello"}
    )
    assert response.status_code == 201
    message = response.json()
    assert message["body"] == "hello"
    assert message["chat_id"] == chat["id"]
    assert message["sender_id"] == a["id"]
    assert message["client_msg_id"] is None
    assert response.headers["x-consistency-token"]


def test_repeated_client_msg_id_returns_the_stored_message(client: TestClient[Litestar]) -> None:
    chat, a, _ = _chat_with_two(client)
    key = uuid.uuid4().hex
    first = _send(client, chat["id"], sender_id=a["id"], body="once", client_msg_id=key)
    again = _send(client, chat["id"], sender_id=a["id"], body="once", client_msg_id=key)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()


def test_same_key_for_another_message_is_409(client: TestClient[Litestar]) -> None:
    chat, a, _ = _chat_with_two(client)
    key = uuid.uuid4().hex
    assert (
        _send(client, chat["id"], sender_id=a["id"], body="one", client_msg_id=key).status_code
        == 201
    )
    assert_problem(_send(client, chat["id"], sender_id=a["id"], body="two", client_msg_id=key), 409)


def test_concurrent_sends_of_one_key_store_one_message(
    client: TestClient[Litestar], database: TestDatabase
) -> None:
    chat, a, _ = _chat_with_two(client)
    key = uuid.uuid4().hex
    body = {"sender_id": a["id"], "body": "race", "client_msg_id": key}
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(lambda _: client.post(f"/chats/{chat['id']}/messages", json=body), range(16))
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(201) == 1
    assert statuses.count(200) == 15
    assert len({response.json()["id"] for response in responses}) == 1
    stored = fetchval(
        database.primary_url,
        "SELECT count(*) FROM messages WHERE sender_id = $1 AND client_msg_id = $2",
        a["id"],
        key,
    )
    assert stored == 1


def test_sender_outside_the_chat_is_403(client: TestClient[Litestar]) -> None:
    chat, _, _ = _chat_with_two(client)
    outsider = create_user(client)
    assert_problem(_send(client, chat["id"], sender_id=outsider["id"]), 403)
    assert_problem(_send(client, chat["id"], sender_id=999999999), 403)


def test_unknown_chat_is_404(client: TestClient[Litestar]) -> None:
    a = create_user(client)
    assert_problem(_send(client, 999999999, sender_id=a["id"]), 404)
    assert_problem(client.get("/chats/999999999/messages"), 404)


def test_pages_are_newest_first_with_a_cursor(client: TestClient[Litestar]) -> None:
    chat, a, b = _chat_with_two(client)
    sent = []
    for index in range(7):
        sender = a if index % 2 else b
        response = client.post(
            f"/chats/{chat['id']}/messages", json={"sender_id": sender["id"], "body": f"m{index}"}
        )
        sent.append(response.json())
    headers = {"X-Consistency-Token": response.headers["x-consistency-token"]}
    seen: list[dict[str, Any]] = []
    url = f"/chats/{chat['id']}/messages?limit=3"
    while True:
        page = client.get(url, headers=headers).json()
        seen.extend(page["items"])
        if page["next"] is None:
            break
        url = f"/chats/{chat['id']}/messages?limit=3&before={page['next']}"
    assert seen == list(reversed(sent))


def test_empty_chat_has_an_empty_page(client: TestClient[Litestar]) -> None:
    a = create_user(client)
    response = client.post("/chats", json={"member_ids": [a["id"]]})
    headers = {"X-Consistency-Token": response.headers["x-consistency-token"]}
    page = client.get(f"/chats/{response.json()['id']}/messages", headers=headers).json()
    assert page == {"items": [], "next": None}


def test_a_used_key_does_not_leak_through_a_foreign_or_missing_chat(
    client: TestClient[Litestar],
) -> None:
    """Membership and the chat's existence are checked before the key: a used key sent to a
    chat the sender is not in is 403, to a chat that does not exist 404, never the 409 that
    would tell the caller the key was used."""
    own, a, _ = _chat_with_two(client)
    foreign, _, _ = _chat_with_two(client)
    key = uuid.uuid4().hex

    def send(chat_id: int, body: str) -> Any:
        return _send(client, chat_id, sender_id=a["id"], body=body, client_msg_id=key)

    assert send(own["id"], "x").status_code == 201
    assert_problem(send(foreign["id"], "x"), 403)
    assert_problem(send(foreign["id"], "y"), 403)
    assert_problem(send(999999999, "x"), 404)
    # In its own chat the key still replays the stored message or conflicts.
    assert send(own["id"], "x").status_code == 200
    assert_problem(send(own["id"], "y"), 409)
