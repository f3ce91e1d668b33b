"""`/chats/{id}/messages`: membership rule, idempotent sends, keyset pages."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.support.api import Account, as_user, assert_problem, create_chat, register, send
from tests.support.cluster import TestDatabase, fetchval


@pytest.fixture
def chat(client: TestClient[Litestar], alice: Account, bob: Account) -> dict[str, Any]:
    """A new chat of alice and bob."""
    return create_chat(client, alice, [bob])


def test_send_returns_201_with_the_message(
    client: TestClient[Litestar], chat: dict[str, Any], alice: Account
) -> None:
    response = send(client, alice, chat["id"], "hello")
    assert response.status_code == 201
    message = response.json()
    assert message["body"] == "hello"
    assert message["chat_id"] == chat["id"]
    assert message["sender_id"] == alice.id
    assert message["client_msg_id"] is None
    assert response.headers["x-consistency-token"]


def test_repeated_client_msg_id_returns_the_stored_message(
    client: TestClient[Litestar], chat: dict[str, Any], alice: Account
) -> None:
    key = uuid.uuid4().hex
    first = send(client, alice, chat["id"], "once", client_msg_id=key)
    again = send(client, alice, chat["id"], "once", client_msg_id=key)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()


def test_same_key_for_another_message_is_409(
    client: TestClient[Litestar], chat: dict[str, Any], alice: Account
) -> None:
    key = uuid.uuid4().hex
    assert send(client, alice, chat["id"], "one", client_msg_id=key).status_code == 201
    assert_problem(send(client, alice, chat["id"], "two", client_msg_id=key), 409)


def test_concurrent_sends_of_one_key_store_one_message(
    client: TestClient[Litestar], database: TestDatabase, chat: dict[str, Any], alice: Account
) -> None:
    key = uuid.uuid4().hex
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(
                lambda _: send(client, alice, chat["id"], "race", client_msg_id=key), range(16)
            )
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(201) == 1
    assert statuses.count(200) == 15
    assert len({response.json()["id"] for response in responses}) == 1
    stored = fetchval(
        database.primary_url,
        "SELECT count(*) FROM messages WHERE sender_id = $1 AND client_msg_id = $2",
        alice.id,
        key,
    )
    assert stored == 1


def test_sender_outside_the_chat_is_404(client: TestClient[Litestar], chat: dict[str, Any]) -> None:
    """A chat the sender is not in answers as one that does not exist (docs/security.md: chat
    ids cannot be probed), for a user who does not exist either."""
    outsider = register(client)
    assert_problem(send(client, outsider, chat["id"]), 404)
    nobody = client.post(
        f"/chats/{chat['id']}/messages", json={"body": "hi"}, headers=as_user(999999999)
    )
    assert_problem(nobody, 404)


def test_unknown_chat_is_404(client: TestClient[Litestar], alice: Account) -> None:
    assert_problem(send(client, alice, 999999999), 404)
    assert_problem(client.get("/chats/999999999/messages", headers=alice.headers), 404)


def test_pages_are_newest_first_with_a_cursor(
    client: TestClient[Litestar], chat: dict[str, Any], alice: Account, bob: Account
) -> None:
    sent = []
    for index in range(7):
        response = send(client, alice if index % 2 else bob, chat["id"], f"m{index}")
        sent.append(response.json())
    headers = alice.after(response)
    seen: list[dict[str, Any]] = []
    url = f"/chats/{chat['id']}/messages?limit=3"
    while True:
        page = client.get(url, headers=headers).json()
        seen.extend(page["items"])
        if page["next"] is None:
            break
        url = f"/chats/{chat['id']}/messages?limit=3&before={page['next']}"
    assert seen == list(reversed(sent))


def test_empty_chat_has_an_empty_page(client: TestClient[Litestar], alice: Account) -> None:
    response = client.post("/chats", json={"member_ids": [alice.id]}, headers=alice.headers)
    page = client.get(f"/chats/{response.json()['id']}/messages", headers=alice.after(response))
    assert page.json() == {"items": [], "next": None}


def test_a_used_key_does_not_leak_through_a_foreign_or_missing_chat(
    client: TestClient[Litestar], chat: dict[str, Any], alice: Account, bob: Account
) -> None:
    """Membership and the chat's existence are checked before the key: a used key sent to a
    chat the sender is not in is 404, like one to a chat that does not exist, never the 409
    that would tell the caller the key was used."""
    foreign = create_chat(client, bob)
    key = uuid.uuid4().hex

    def send_keyed(chat_id: int, body: str) -> httpx.Response:
        return send(client, alice, chat_id, body, client_msg_id=key)

    assert send_keyed(chat["id"], "x").status_code == 201
    assert_problem(send_keyed(foreign["id"], "x"), 404)
    assert_problem(send_keyed(foreign["id"], "y"), 404)
    assert_problem(send_keyed(999999999, "x"), 404)
    # In its own chat the key still replays the stored message or conflicts.
    assert send_keyed(chat["id"], "x").status_code == 200
    assert_problem(send_keyed(chat["id"], "y"), 409)
