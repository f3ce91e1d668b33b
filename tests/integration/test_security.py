"""Issue 19's findings that an app in this process can show (the denial-of-service and proxy
ones run against real processes: tests/process/test_security_process.py).

Registration limits and the cheap refusals before any hash; the trailing-newline username;
confusable display names; `application/json` only; refresh-token revocation (log out
everywhere, a password change) and the absolute cap; chats one can leave, per-user limits on
chat creation and sends, blocks; readiness details for the operator only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from app.api.auth import Authentication
from tests.integration.test_set_password import _set_password
from tests.support.api import (
    PASSWORD,
    Account,
    assert_problem,
    create_chat,
    make_client,
    register,
    send,
)
from tests.support.cluster import TestDatabase, fetchval


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def hashes(client: TestClient[Litestar]) -> Iterator[list[str]]:
    """The passwords the app hashes (registrations) while the test runs."""
    auth: Authentication = client.app.state.authentication
    original = auth.passwords.hash
    seen: list[str] = []

    async def counting(password: str) -> str:
        seen.append(password)
        return await original(password)

    auth.passwords.hash = counting  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        auth.passwords.hash = original  # type: ignore[method-assign]


def test_a_taken_username_is_refused_before_any_hash(
    client: TestClient[Litestar], alice: Account, hashes: list[str]
) -> None:
    response = client.post("/users", json={"username": alice.username, "password": PASSWORD})
    assert_problem(response, 409)
    assert hashes == []


def test_a_username_with_a_trailing_newline_is_a_400_before_any_hash(
    client: TestClient[Litestar], hashes: list[str]
) -> None:
    for path in ("/users", "/auth/token"):
        body = {"username": "alice\n", "password": PASSWORD}
        response = client.post(path, json=body)
        problem = assert_problem(response, 400)
        assert problem["errors"][0]["key"] == "username"
    assert hashes == []


@pytest.mark.parametrize(
    "display_name", ["\u0430lice", "p\u0430ypal", "Ivan \u041f\u0435\u0442\u0440\u043e\u0432"]
)
def test_display_names_mixing_scripts_with_look_alikes_are_refused(
    client: TestClient[Litestar], display_name: str
) -> None:
    body = {"username": _name("mixed"), "password": PASSWORD, "display_name": display_name}
    problem = assert_problem(client.post("/users", json=body), 400)
    assert problem["errors"][0]["key"] == "display_name"


@pytest.mark.parametrize("display_name", ["Алиса", "José Müller", "李小龍", "Zoë 🙂"])
def test_single_script_display_names_are_fine(
    client: TestClient[Litestar], display_name: str
) -> None:
    body = {"username": _name("single"), "password": PASSWORD, "display_name": display_name}
    assert client.post("/users", json=body).status_code == 201


def test_a_display_name_that_reads_as_another_username_is_refused(
    client: TestClient[Litestar], alice: Account, hashes: list[str]
) -> None:
    body = {"username": _name("imp"), "password": PASSWORD, "display_name": alice.username}
    assert_problem(client.post("/users", json=body), 409)
    upper = {**body, "display_name": alice.username.upper()}
    assert_problem(client.post("/users", json=upper), 409)
    assert hashes == []
    own = _name("own")
    assert client.post("/users", json={**body, "username": own, "display_name": own}).is_success


def test_registrations_are_limited_per_address_and_in_all(database: TestDatabase) -> None:
    with make_client(database, REGISTER_LIMIT_PER_ADDRESS="2") as client:
        answers = [
            client.post("/users", json={"username": _name("r"), "password": PASSWORD})
            for _ in range(3)
        ]
        assert [a.status_code for a in answers] == [201, 201, 429]
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    with make_client(database, REGISTER_LIMIT_GLOBAL="1") as client:
        first = client.post("/users", json={"username": _name("g"), "password": PASSWORD})
        assert first.status_code == 201
        assert_problem(
            client.post("/users", json={"username": _name("g"), "password": PASSWORD}), 429
        )


def test_json_bodies_need_the_json_media_type(client: TestClient[Litestar]) -> None:
    body = f'{{"username": "{_name("ct")}", "password": "{PASSWORD}"}}'
    for media in ("text/plain", "application/x-www-form-urlencoded", ""):
        response = client.post("/users", content=body, headers={"content-type": media})
        assert_problem(response, 415)
    charset = client.post(
        "/users", content=body, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert charset.status_code == 201


def _refresh(client: TestClient[Litestar], token: str) -> Any:
    return client.post("/auth/refresh", json={"refresh_token": token})


def test_logout_all_revokes_every_family_of_the_caller_only(client: TestClient[Litestar]) -> None:
    alice = register(client)
    bob = register(client)
    second = client.post(
        "/auth/token", json={"username": alice.username, "password": alice.password}
    ).json()
    assert_problem(client.post("/auth/logout-all"), 401)  # needs the access token
    assert client.post("/auth/logout-all", headers=alice.headers).status_code == 204
    assert_problem(_refresh(client, alice.refresh_token), 401)
    assert_problem(_refresh(client, second["refresh_token"]), 401)
    assert _refresh(client, bob.refresh_token).status_code == 200


def test_a_password_change_revokes_every_refresh_token(
    client: TestClient[Litestar], database: TestDatabase
) -> None:
    alice = register(client)
    result = _set_password(database, alice.username, "an entirely new secret")
    assert result.returncode == 0, result.stderr
    assert_problem(_refresh(client, alice.refresh_token), 401)


def test_a_family_ends_at_its_absolute_cap_however_often_it_is_rotated(
    client: TestClient[Litestar], database: TestDatabase
) -> None:
    alice = register(client)
    fresh = _refresh(client, alice.refresh_token).json()["refresh_token"]
    # The login was 91 days ago (the cap is 90 days by default): the family is over.
    fetchval(
        database.primary_url,
        "UPDATE refresh_tokens SET created_at = now() - interval '91 days'"
        " WHERE user_id = $1 AND used_at IS NOT NULL",
        alice.id,
    )
    assert_problem(_refresh(client, fresh), 401)


def test_a_rotated_token_never_outlives_the_cap(
    client: TestClient[Litestar], database: TestDatabase
) -> None:
    alice = register(client)
    fetchval(
        database.primary_url,
        "UPDATE refresh_tokens SET created_at = now() - interval '89 days' WHERE user_id = $1",
        alice.id,
    )
    assert _refresh(client, alice.refresh_token).status_code == 200
    left = fetchval(
        database.primary_url,
        "SELECT extract(epoch FROM max(expires_at) - now()) FROM refresh_tokens"
        " WHERE user_id = $1 AND used_at IS NULL",
        alice.id,
    )
    assert 0 < float(left) <= 86400 + 5


def test_a_member_leaves_a_chat(client: TestClient[Litestar]) -> None:
    alice = register(client)
    bob = register(client)
    chat = create_chat(client, alice, [bob])
    left = client.delete(f"/chats/{chat['id']}/members/me", headers=bob.headers)
    assert left.status_code == 204
    assert_problem(client.get(f"/chats/{chat['id']}", headers=bob.after(left)), 404)
    assert_problem(send(client, bob, chat["id"], "still here?"), 404)
    assert_problem(client.delete(f"/chats/{chat['id']}/members/me", headers=bob.headers), 404)
    members = client.get(f"/chats/{chat['id']}", headers=alice.after(left)).json()["member_ids"]
    assert members == [alice.id]


def test_a_blocked_user_cannot_start_a_chat_with_the_blocker(client: TestClient[Litestar]) -> None:
    alice = register(client)
    bob = register(client)
    blocked = client.put(f"/users/{bob.id}/blocks/{alice.id}", headers=bob.headers)
    assert blocked.status_code == 204
    assert client.put(f"/users/{bob.id}/blocks/{alice.id}", headers=bob.headers).is_success
    response = client.post("/chats", json={"member_ids": [bob.id]}, headers=alice.headers)
    assert_problem(response, 403)
    assert create_chat(client, bob, [alice])["member_ids"] == sorted([alice.id, bob.id])
    assert_problem(client.put(f"/users/{alice.id}/blocks/{bob.id}", headers=bob.headers), 403)
    assert_problem(client.put(f"/users/{bob.id}/blocks/{bob.id}", headers=bob.headers), 409)
    assert client.delete(f"/users/{bob.id}/blocks/{bob.id}", headers=bob.headers).is_success
    assert_problem(client.put(f"/users/{bob.id}/blocks/999999999", headers=bob.headers), 404)
    assert client.delete(f"/users/{bob.id}/blocks/{alice.id}", headers=bob.headers).is_success
    assert create_chat(client, alice, [bob])["member_ids"] == sorted([alice.id, bob.id])


def test_chat_creation_and_sends_are_limited_per_user(database: TestDatabase) -> None:
    with make_client(database, CHAT_CREATE_LIMIT="2", SEND_LIMIT="3") as client:
        alice, bob = register(client), register(client)
        chats = [
            client.post("/chats", json={"member_ids": [bob.id]}, headers=alice.headers)
            for _ in range(3)
        ]
        assert [c.status_code for c in chats] == [201, 201, 429]
        assert int(chats[-1].headers["Retry-After"]) >= 1
        assert create_chat(client, bob, [alice])  # bob's own budget
        chat_id = chats[0].json()["id"]
        sends = [send(client, alice, chat_id, f"m{n}").status_code for n in range(4)]
        assert sends == [201, 201, 201, 429]
        assert send(client, bob, chat_id, "mine").status_code == 201


def test_readiness_details_need_the_metrics_token(database: TestDatabase) -> None:
    token = "an-operator-token-for-the-test"
    with make_client(database, METRICS_TOKEN=token) as client:
        anonymous = client.get("/health/ready?verbose=true")
        assert anonymous.status_code == 200
        assert anonymous.json() == {"status": "pass"}
        operator = client.get(
            "/health/ready?verbose=true", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert "pid" in operator
        assert "componentId" in operator["checks"]["postgres:primary"][0]
