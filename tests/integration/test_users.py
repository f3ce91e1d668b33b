"""`/users`: create, read, list by status with keyset pages, change status."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import TestClient

from tests.support.api import PASSWORD, Account, as_user, assert_problem, register


def test_create_returns_the_user_and_a_consistency_token(client: TestClient[Litestar]) -> None:
    response = client.post(
        "/users", json={"username": "ann_1x", "password": PASSWORD, "display_name": "Ann"}
    )
    assert response.status_code == 201
    user = response.json()
    assert user["username"] == "ann_1x"
    assert user["display_name"] == "Ann"
    assert user["status"] == "offline"
    assert isinstance(user["id"], int)
    assert "/" in response.headers["x-consistency-token"]


def test_display_name_defaults_to_username(client: TestClient[Litestar]) -> None:
    user = register(client, display_name=None).user
    assert user["display_name"] == user["username"]


def test_taken_username_is_409(client: TestClient[Litestar], alice: Account) -> None:
    response = client.post("/users", json={"username": alice.username, "password": PASSWORD})
    problem = assert_problem(response, 409)
    assert "taken" in problem["detail"]


def test_get_user_reads_what_was_written(client: TestClient[Litestar]) -> None:
    user = register(client)
    response = client.get(f"/users/{user.id}", headers=user.after())
    assert response.status_code == 200
    assert response.json() == user.user


def test_unknown_user_is_404(client: TestClient[Litestar], alice: Account) -> None:
    assert_problem(client.get("/users/999999999", headers=alice.headers), 404)


def test_set_status_and_list_by_status_in_pages(
    client: TestClient[Litestar], alice: Account
) -> None:
    users = [register(client) for _ in range(5)]
    for user in users:
        response = client.put(
            f"/users/{user.id}/status", json={"status": "away"}, headers=user.headers
        )
        assert response.status_code == 200
        assert response.json()["status"] == "away"
        assert response.json()["updated_at"] >= user.user["updated_at"]
    headers = alice.after(response)  # the last status change
    seen: list[int] = []
    after = users[0].id - 1
    while True:
        page = client.get(f"/users?status=away&limit=2&after={after}", headers=headers).json()
        assert len(page["items"]) <= 2
        assert all(item["status"] == "away" for item in page["items"])
        seen.extend(item["id"] for item in page["items"])
        if page["next"] is None:
            break
        after = page["next"]
    assert [user.id for user in users] == [i for i in seen if i <= users[-1].id]
    assert seen == sorted(seen)


def test_set_status_of_unknown_user_is_404(client: TestClient[Litestar]) -> None:
    """Only a user's own status may be set: an unknown user is one whose token outlived
    them (a deleted user)."""
    headers = as_user(999999999)
    response = client.put("/users/999999999/status", json={"status": "online"}, headers=headers)
    assert_problem(response, 404)


def test_list_without_filter_pages_by_id(client: TestClient[Litestar], alice: Account) -> None:
    page = client.get("/users?limit=1", headers=alice.headers).json()
    assert len(page["items"]) == 1
    assert page["next"] == page["items"][0]["id"]
