"""`/chats` and `/users/{id}/chats`."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import TestClient

from tests.support.api import Account, as_user, assert_problem, create_chat, register


def test_create_chat_with_members(
    client: TestClient[Litestar], alice: Account, bob: Account
) -> None:
    chat = create_chat(client, alice, [bob, alice, bob], title="team")
    assert chat["title"] == "team"
    assert chat["member_ids"] == sorted([alice.id, bob.id])


def test_chat_without_title(client: TestClient[Litestar], alice: Account) -> None:
    chat = create_chat(client, alice, title=None)
    assert chat["title"] is None


def test_unknown_member_is_404_and_creates_nothing(
    client: TestClient[Litestar], alice: Account
) -> None:
    before = client.get(f"/users/{alice.id}/chats", headers=alice.headers).json()["items"]
    response = client.post(
        "/chats", json={"member_ids": [alice.id, 999999998, 999999999]}, headers=alice.headers
    )
    problem = assert_problem(response, 404)
    assert "999999998" in problem["detail"]
    assert "999999999" in problem["detail"]
    later = client.put(
        f"/users/{alice.id}/status", json={"status": "online"}, headers=alice.headers
    )
    headers = alice.after(later)  # a later write: the failed one is behind it
    assert client.get(f"/users/{alice.id}/chats", headers=headers).json()["items"] == before


def test_get_chat_and_chats_of_user(client: TestClient[Litestar]) -> None:
    a, b = register(client), register(client)
    first = create_chat(client, a, [b])
    response = client.post(
        "/chats", json={"title": "second", "member_ids": [a.id]}, headers=a.headers
    )
    second = response.json()
    assert client.get(f"/chats/{first['id']}", headers=a.after(response)).json() == first
    chats = client.get(f"/users/{a.id}/chats", headers=a.after(response)).json()["items"]
    assert [chat["id"] for chat in chats] == [first["id"], second["id"]]
    assert client.get(f"/users/{b.id}/chats", headers=b.after(response)).json()["items"] == [first]


def test_unknown_chat_and_unknown_user_chats_are_404(
    client: TestClient[Litestar], alice: Account
) -> None:
    assert_problem(client.get("/chats/999999999", headers=alice.headers), 404)
    assert_problem(client.get("/users/999999999/chats", headers=as_user(999999999)), 404)


def test_user_without_chats_has_empty_list(client: TestClient[Litestar]) -> None:
    user = register(client)
    page = client.get(f"/users/{user.id}/chats", headers=user.after()).json()
    assert page == {"items": [], "next": None}


def test_chats_of_a_user_come_in_pages(client: TestClient[Litestar]) -> None:
    """Keyset pages by ascending chat id, like `/users`: `limit` (default 50, at most 200) and
    `after`, the `next` of the previous page."""
    a, b = register(client), register(client)
    made = [create_chat(client, a, [b], title=f"c{index}") for index in range(5)]
    response = client.post("/chats", json={"member_ids": [a.id]}, headers=a.headers)
    made.append(response.json())
    headers = a.after(response)
    seen: list[dict[str, Any]] = []
    url = f"/users/{a.id}/chats?limit=2"
    pages = 0
    while True:
        page = client.get(url, headers=headers).json()
        pages += 1
        assert len(page["items"]) <= 2
        seen.extend(page["items"])
        if page["next"] is None:
            break
        assert page["next"] == page["items"][-1]["id"]
        url = f"/users/{a.id}/chats?limit=2&after={page['next']}"
    assert seen == made
    assert pages == 3
    full = client.get(f"/users/{a.id}/chats", headers=headers).json()
    assert full == {"items": made, "next": None}
    last = client.get(f"/users/{a.id}/chats?after={made[-1]['id']}", headers=headers).json()
    assert last == {"items": [], "next": None}


def test_chats_of_a_user_page_size_is_bounded(client: TestClient[Litestar], alice: Account) -> None:
    for query in ("limit=0", "limit=201", "after=-1", f"after={2**63}", "limit=x"):
        assert_problem(client.get(f"/users/{alice.id}/chats?{query}", headers=alice.headers), 400)
    assert_problem(client.get("/users/999999999/chats?limit=1", headers=as_user(999999999)), 404)
