"""Bad input gets a clear 4xx problem, never a 500."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.support.api import assert_problem, create_chat, create_user

BEYOND_BIGINT = 2**63
NUL = "a\u0000b"


@pytest.fixture(scope="module")
def chat(client: TestClient[Litestar]) -> dict[str, int]:
    user = create_user(client)
    return {"chat": create_chat(client, [user["id"]])["id"], "user": user["id"]}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"username": "ab"},
        {"username": "x" * 33},
        {"username": "Upper"},
        {"username": "bad-char"},
        {"username": 42},
        {"username": None},
        {"username": "valid_name", "display_name": ""},
        {"username": "valid_name", "display_name": "x" * 65},
        {"username": "valid_name", "display_name": NUL},
        {"username": "nul\u0000name"},
        [],
        "string",
    ],
)
def test_invalid_user_bodies_are_400(client: TestClient[Litestar], body: object) -> None:
    problem = assert_problem(client.post("/users", json=body), 400)
    assert problem["detail"]


def test_malformed_json_is_400(client: TestClient[Litestar]) -> None:
    response = client.post(
        "/users", content=b'{"username": "abc"', headers={"content-type": "application/json"}
    )
    assert_problem(response, 400)


def test_oversized_body_is_413(client: TestClient[Litestar]) -> None:
    body = b'{"username": "' + b"a" * 70_000 + b'"}'
    response = client.post("/users", content=body, headers={"content-type": "application/json"})
    assert_problem(response, 413)


@pytest.mark.parametrize(
    "path",
    [
        "/users/0",
        "/users/-1",
        f"/users/{BEYOND_BIGINT}",
        "/users/abc",
        f"/chats/{BEYOND_BIGINT}",
        f"/users/{BEYOND_BIGINT}/chats",
        "/users?limit=0",
        "/users?limit=-5",
        "/users?limit=201",
        "/users?limit=99999999999999999999999",
        "/users?after=-1",
        f"/users?after={BEYOND_BIGINT}",
        "/users?status=sleeping",
        "/users?limit=abc",
    ],
)
def test_bad_paths_and_queries_are_4xx(client: TestClient[Litestar], path: str) -> None:
    response = client.get(path)
    assert 400 <= response.status_code < 500, response.text
    assert_problem(response, response.status_code)


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=201", f"before={BEYOND_BIGINT}", "before=-1", "before=x"],
)
def test_bad_message_page_queries_are_400(
    client: TestClient[Litestar], chat: dict[str, int], query: str
) -> None:
    assert_problem(client.get(f"/chats/{chat['chat']}/messages?{query}"), 400)


@pytest.mark.parametrize(
    "body",
    [
        {"body": "hi"},
        {"sender_id": "one", "body": "hi"},
        {"sender_id": BEYOND_BIGINT, "body": "hi"},
        {"sender_id": -1, "body": "hi"},
        {"sender_id": 1, "body": ""},
        {"sender_id": 1, "body": "x" * 4001},
        {"sender_id": 1, "body": NUL},
        {"sender_id": 1, "body": "hi", "client_msg_id": NUL},
        {"sender_id": 1, "body": "hi", "client_msg_id": "k" * 65},
        {"sender_id": 1, "body": "hi", "client_msg_id": ""},
    ],
)
def test_invalid_message_bodies_are_400(
    client: TestClient[Litestar], chat: dict[str, int], body: dict[str, object]
) -> None:
    assert_problem(client.post(f"/chats/{chat['chat']}/messages", json=body), 400)


@pytest.mark.parametrize(
    "body",
    [
        {"member_ids": []},
        {"member_ids": [0]},
        {"member_ids": [BEYOND_BIGINT]},
        {"member_ids": "1"},
        {"member_ids": [1], "title": ""},
        {"member_ids": [1], "title": NUL},
        {"member_ids": [1], "title": "t" * 201},
        {"member_ids": list(range(1, 1002))},
    ],
)
def test_invalid_chat_bodies_are_400(client: TestClient[Litestar], body: dict[str, object]) -> None:
    assert_problem(client.post("/chats", json=body), 400)


def test_bad_status_body_is_400(client: TestClient[Litestar], chat: dict[str, int]) -> None:
    assert_problem(client.put(f"/users/{chat['user']}/status", json={"status": "gone"}), 400)


def test_bad_consistency_token_is_400(client: TestClient[Litestar], chat: dict[str, int]) -> None:
    response = client.get(f"/users/{chat['user']}", headers={"X-Consistency-Token": "nope"})
    assert_problem(response, 400)


def test_unknown_route_is_404_problem(client: TestClient[Litestar]) -> None:
    assert_problem(client.get("/nope"), 404)


def test_wrong_method_is_405_problem(client: TestClient[Litestar]) -> None:
    assert_problem(client.delete("/users"), 405)


def test_openapi_schema_is_served(client: TestClient[Litestar]) -> None:
    schema = client.get("/schema/openapi.json").json()
    assert "/chats/{chat_id}/messages" in schema["paths"]
    assert "/users" in schema["paths"]
