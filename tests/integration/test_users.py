"""`/users`: create, read, list by status with keyset pages, change status."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import TestClient

from tests.support.api import assert_problem, create_user


def test_create_returns_the_user_and_a_consistency_token(client: TestClient[Litestar]) -> None:
    response = client.post("/users", json={"username": "ann_1x", "display_name": "Ann"})
    assert response.status_code == 201
    user = response.json()
    assert user["username"] == "ann_1x"
    assert user["display_name"] == "Ann"
    assert user["status"] == "offline"
    assert isinstance(user["id"], int)
    assert "/" in response.headers["x-consistency-token"]


def test_display_name_defaults_to_username(client: TestClient[Litestar]) -> None:
    user = create_user(client, display_name=None)
    assert user["display_name"] == user["username"]


def test_taken_username_is_409(client: TestClient[Litestar]) -> None:
    user = create_user(client)
    response = client.post("/users", json={"username": user["username"]})
    problem = assert_problem(response, 409)
    assert "taken" in problem["detail"]


def test_get_user_reads_what_was_written(client: TestClient[Litestar]) -> None:
    user = create_user(client)
    token = client.post("/users", json={"username": user["username"] + "x"}).headers[
        "x-consistency-token"
    ]
    response = client.get(f"/users/{user['id']}", headers={"X-Consistency-Token": token})
    assert response.status_code == 200
    assert response.json() == user


def test_unknown_user_is_404(client: TestClient[Litestar]) -> None:
    assert_problem(client.get("/users/999999999"), 404)


def test_set_status_and_list_by_status_in_pages(client: TestClient[Litestar]) -> None:
    users = [create_user(client) for _ in range(5)]
    token = ""
    for user in users:
        response = client.put(f"/users/{user['id']}/status", json={"status": "away"})
        assert response.status_code == 200
        assert response.json()["status"] == "away"
        assert response.json()["updated_at"] >= user["updated_at"]
        token = response.headers["x-consistency-token"]
    headers = {"X-Consistency-Token": token}
    seen: list[int] = []
    after = users[0]["id"] - 1
    while True:
        page = client.get(f"/users?status=away&limit=2&after={after}", headers=headers).json()
        assert len(page["items"]) <= 2
        assert all(item["status"] == "away" for item in page["items"])
        seen.extend(item["id"] for item in page["items"])
        if page["next"] is None:
            break
        after = page["next"]
    assert [user["id"] for user in users] == [i for i in seen if i <= users[-1]["id"]]
    assert seen == sorted(seen)


def test_set_status_of_unknown_user_is_404(client: TestClient[Litestar]) -> None:
    assert_problem(client.put("/users/999999999/status", json={"status": "online"}), 404)


def test_list_without_filter_pages_by_id(client: TestClient[Litestar]) -> None:
    create_user(client)
    page = client.get("/users?limit=1").json()
    assert len(page["items"]) == 1
    assert page["next"] == page["items"][0]["id"]
