"""Authentication and authorization, tried as an attacker would: no token, malformed,
expired, tampered, wrong-key and `alg: none` tokens, a deleted user's token, another user's
resources on every route, a refresh token used twice, brute force past the limit, and the
time a login takes for an unknown user against a known one."""

from __future__ import annotations

import base64
import json
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from argon2 import PasswordHasher
from litestar import Litestar
from litestar.testing import TestClient

from app.security.tokens import ALGORITHM, ISSUER, AccessTokens
from tests.support.api import PASSWORD, bearer, create_user, log_in, make_client, register
from tests.support.cluster import TestDatabase, fetchval, wait_until

KEY = b"k" * 32
KEYS = "test-1:" + base64.urlsafe_b64encode(KEY).decode().rstrip("=")
ENV = {"AUTH_JWT_KEYS": KEYS, "AUTH_LOGIN_LIMIT_PER_ADDRESS": "10000"}
# The module's client counts logins generously; the brute-force test sets its own limit.
API_ENV = {**ENV, "AUTH_LOGIN_LIMIT_PER_USERNAME": "1000"}


@pytest.fixture(scope="module")
def api(database: TestDatabase) -> Iterator[TestClient[Litestar]]:
    with make_client(database, **API_ENV) as client:
        yield client


def _login(client: TestClient[Litestar], username: str) -> dict[str, Any]:
    """Another login of `username` (its password is `PASSWORD`): the new token pair."""
    return dict(log_in(client, username, PASSWORD).json())


def _assert_unauthorized(response: httpx.Response, *, invalid_token: bool) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer realm=")
    assert ('error="invalid_token"' in challenge) is invalid_token


def test_registration_is_open_and_every_other_route_needs_a_token(
    api: TestClient[Litestar],
) -> None:
    user = create_user(api)
    for method, path in [
        ("GET", "/users"),
        ("GET", f"/users/{user['id']}"),
        ("PUT", f"/users/{user['id']}/status"),
        ("GET", f"/users/{user['id']}/chats"),
        ("POST", "/chats"),
        ("GET", "/chats/1"),
        ("GET", "/chats/1/messages"),
        ("POST", "/chats/1/messages"),
    ]:
        _assert_unauthorized(api.request(method, path, json={}), invalid_token=False)
    # HEAD too (Litestar's JWT middleware lets HEAD through unless told otherwise).
    for path in ("/users", f"/users/{user['id']}", f"/users/{user['id']}/chats", "/chats/1"):
        _assert_unauthorized(api.head(path), invalid_token=False)


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer not-a-jwt", "Bearer a.b.c", "Basic dXNlcjpwdw==", "Bearer " + "x" * 5000],
)
def test_a_malformed_token_is_refused(api: TestClient[Litestar], header: str) -> None:
    response = api.get("/users", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def _claims(user_id: int, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iss": ISSUER, "iat": now, "exp": now + timedelta(minutes=5)}
    claims.update(changes)
    return claims


def test_expired_tampered_wrong_key_unknown_kid_and_alg_none_are_refused(
    api: TestClient[Litestar],
) -> None:
    user = create_user(api)
    past = datetime.now(UTC) - timedelta(hours=1)
    expired = AccessTokens({"test-1": KEY}, "test-1", ttl_s=60).issue(user["id"], now=past)
    good = AccessTokens({"test-1": KEY}, "test-1", ttl_s=60).issue(user["id"])
    header, payload, signature = good.split(".")
    forged_payload = (
        base64.urlsafe_b64encode(
            json.dumps(_claims(user["id"] + 1, iat=0, exp=4102444800)).encode()
        )
        .decode()
        .rstrip("=")
    )
    tampered = f"{header}.{forged_payload}.{signature}"
    wrong_key = jwt.encode(_claims(user["id"]), b"w" * 32, ALGORITHM, headers={"kid": "test-1"})
    unknown_kid = jwt.encode(_claims(user["id"]), KEY, ALGORITHM, headers={"kid": "other"})
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT","kid":"test-1"}')
    alg_none = f"{none_header.decode().rstrip('=')}.{payload}."
    no_issuer = jwt.encode(
        {k: v for k, v in _claims(user["id"]).items() if k != "iss"},
        KEY,
        ALGORITHM,
        headers={"kid": "test-1"},
    )
    assert api.get("/users", headers=bearer(good)).status_code == 200
    for token in (expired, tampered, wrong_key, unknown_kid, alg_none, no_issuer):
        _assert_unauthorized(api.get("/users", headers=bearer(token)), invalid_token=True)


def test_a_token_checked_once_is_refused_once_it_expires_and_failures_are_not_remembered(
    api: TestClient[Litestar],
) -> None:
    """The bearer check remembers tokens it verified (app.security.verified_tokens): the
    memory must never outlive `exp`, and a refused token must be refused every time."""
    user = create_user(api)
    short = AccessTokens({"test-1": KEY}, "test-1", ttl_s=1).issue(user["id"])
    assert api.get("/users", headers=bearer(short)).status_code == 200
    assert api.get("/users", headers=bearer(short)).status_code == 200  # remembered
    wait_until(
        lambda: api.get("/users", headers=bearer(short)).status_code == 401,
        timeout_s=5,
        what="the remembered token to be refused after its exp",
    )
    _assert_unauthorized(api.get("/users", headers=bearer(short)), invalid_token=True)
    wrong_key = jwt.encode(_claims(user["id"]), b"w" * 32, ALGORITHM, headers={"kid": "test-1"})
    for _ in range(3):
        _assert_unauthorized(api.get("/users", headers=bearer(wrong_key)), invalid_token=True)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"sub": "0"}, id="subject zero"),
        pytest.param({"sub": "-5"}, id="negative subject"),
        pytest.param({"sub": str(2**63)}, id="subject beyond bigint"),
        pytest.param({"sub": "１２"}, id="non-ASCII digits"),
        pytest.param({"sub": "alice"}, id="not an id"),
        pytest.param({"sub": 12}, id="numeric subject"),
        pytest.param({"iat": datetime.now(UTC) + timedelta(minutes=10)}, id="issued in the future"),
        pytest.param({"iss": "someone-else"}, id="another issuer"),
    ],
)
def test_signed_tokens_with_claims_out_of_bounds_are_refused(
    api: TestClient[Litestar], changes: dict[str, Any]
) -> None:
    """Signed with the right key: only the claims are wrong."""
    token = jwt.encode(_claims(1, **changes), KEY, ALGORITHM, headers={"kid": "test-1"})
    _assert_unauthorized(api.get("/users", headers=bearer(token)), invalid_token=True)


def test_the_scheme_is_case_insensitive_and_the_first_header_counts(
    api: TestClient[Litestar],
) -> None:
    user = create_user(api)
    token = AccessTokens({"test-1": KEY}, "test-1", ttl_s=60).issue(user["id"])
    assert api.get("/users", headers={"Authorization": f"bearer {token}"}).status_code == 200
    twice = [("Authorization", "Bearer not-a-jwt"), ("Authorization", f"Bearer {token}")]
    _assert_unauthorized(api.get("/users", headers=twice), invalid_token=True)


def test_a_deleted_users_token_reaches_nothing_and_cannot_be_refreshed(
    api: TestClient[Litestar], database: TestDatabase
) -> None:
    user = register(api)
    fetchval(database.primary_url, "DELETE FROM users WHERE id = $1", user.id)
    database.wait_replicas()
    headers = user.headers
    assert api.get(f"/users/{user.id}/chats", headers=headers).status_code == 404
    assert api.post("/chats", json={"member_ids": []}, headers=headers).status_code == 404
    status = api.put(f"/users/{user.id}/status", json={"status": "away"}, headers=headers)
    assert status.status_code == 404
    refreshed = api.post("/auth/refresh", json={"refresh_token": user.refresh_token})
    _assert_unauthorized(refreshed, invalid_token=True)


def test_users_reach_only_their_own_chats_status_and_chat_list(
    api: TestClient[Litestar],
) -> None:
    alice, bob = register(api), register(api)
    as_alice, as_bob = alice.headers, bob.headers
    chat = api.post("/chats", json={"member_ids": [], "title": "alice's"}, headers=as_alice)
    assert chat.status_code == 201, chat.text
    chat_id = chat.json()["id"]
    assert chat.json()["member_ids"] == [alice.id], "a new chat includes its creator"
    sent = api.post(f"/chats/{chat_id}/messages", json={"body": "hi"}, headers=as_alice)
    assert sent.status_code == 201, sent.text
    assert sent.json()["sender_id"] == alice.id, "the sender is the caller"
    # A non-member cannot tell the chat exists.
    for method, path, body in [
        ("GET", f"/chats/{chat_id}", None),
        ("GET", f"/chats/{chat_id}/messages", None),
        ("POST", f"/chats/{chat_id}/messages", {"body": "let me in"}),
    ]:
        response = api.request(method, path, json=body, headers=as_bob)
        assert response.status_code == 404, (method, path, response.text)
        elsewhere = path.replace(f"/chats/{chat_id}", "/chats/999999999")
        missing = api.request(method, elsewhere, json=body, headers=as_bob)
        assert missing.status_code == 404
        same = missing.json()["detail"].replace("999999999", str(chat_id))
        assert same == response.json()["detail"], "no probing chat ids"
    forbidden = [
        api.put(f"/users/{alice.id}/status", json={"status": "away"}, headers=as_bob),
        api.get(f"/users/{alice.id}/chats", headers=as_bob),
    ]
    for response in forbidden:
        assert response.status_code == 403, response.text
        assert "insufficient_scope" in response.headers["www-authenticate"]
    own = api.put(f"/users/{bob.id}/status", json={"status": "away"}, headers=as_bob)
    assert own.status_code == 200
    # A sender id in the body is not accepted: the sender is the caller.
    spoof = api.post(
        f"/chats/{chat_id}/messages", json={"body": "x", "sender_id": bob.id}, headers=as_alice
    )
    assert spoof.status_code == 400


def test_a_refresh_token_is_single_use_and_reuse_revokes_the_family(
    api: TestClient[Litestar],
) -> None:
    user = register(api)
    first = user.refresh_token  # of the login that registering ended with
    second = api.post("/auth/refresh", json={"refresh_token": first})
    assert second.status_code == 200, second.text
    assert second.json()["refresh_token"] != first
    reused = api.post("/auth/refresh", json={"refresh_token": first})
    _assert_unauthorized(reused, invalid_token=True)
    # The thief's reuse revoked the owner's newer token too.
    newer = api.post("/auth/refresh", json={"refresh_token": second.json()["refresh_token"]})
    _assert_unauthorized(newer, invalid_token=True)
    # Another login starts a new family.
    assert (
        api.post(
            "/auth/refresh", json={"refresh_token": _login(api, user.username)["refresh_token"]}
        ).status_code
        == 200
    )


def test_logout_revokes_the_family(api: TestClient[Litestar]) -> None:
    refresh_token = register(api).refresh_token
    assert api.post("/auth/logout", json={"refresh_token": refresh_token}).status_code == 204
    after = api.post("/auth/refresh", json={"refresh_token": refresh_token})
    _assert_unauthorized(after, invalid_token=True)
    unknown = api.post("/auth/logout", json={"refresh_token": "never-issued"})
    assert unknown.status_code == 204, "logout reveals nothing"


def test_wrong_username_and_wrong_password_answer_the_same(api: TestClient[Litestar]) -> None:
    user = create_user(api)
    wrong_password = api.post(
        "/auth/token", json={"username": user["username"], "password": "not the password"}
    )
    unknown_user = api.post(
        "/auth/token", json={"username": "nobody_" + uuid.uuid4().hex[:8], "password": PASSWORD}
    )
    for response in (wrong_password, unknown_user):
        assert response.status_code == 401
    assert wrong_password.json()["detail"] == unknown_user.json()["detail"]


def test_login_timing_does_not_reveal_which_usernames_exist(api: TestClient[Litestar]) -> None:
    """Medians of 25 logins each, interleaved: an unknown username costs the same hash check
    as a wrong password for a known one (within 25%, far below the 25 ms a check takes)."""
    user = create_user(api)
    unknown = "ghost_" + uuid.uuid4().hex[:8]
    known_s: list[float] = []
    unknown_s: list[float] = []
    for _ in range(25):
        for name, sink in ((user["username"], known_s), (unknown, unknown_s)):
            started = time.perf_counter()
            response = api.post("/auth/token", json={"username": name, "password": "wrong-pass"})
            sink.append(time.perf_counter() - started)
            assert response.status_code == 401
    known, absent = statistics.median(known_s), statistics.median(unknown_s)
    assert abs(known - absent) / max(known, absent) < 0.25, (known, absent)


def test_brute_force_is_limited_per_username(database: TestDatabase) -> None:
    with make_client(database, **ENV, AUTH_LOGIN_LIMIT_PER_USERNAME="3") as client:
        user = create_user(client)
        statuses = [
            client.post(
                "/auth/token", json={"username": user["username"], "password": f"guess-{i}xx"}
            )
            for i in range(5)
        ]
        assert [r.status_code for r in statuses] == [401, 401, 401, 429, 429]
        limited = statuses[-1]
        assert int(limited.headers["retry-after"]) > 0
        assert limited.headers["content-type"].startswith("application/problem+json")
        # The right password does not get through the limit either.
        blocked = client.post(
            "/auth/token", json={"username": user["username"], "password": PASSWORD}
        )
        assert blocked.status_code == 429


def test_a_hash_with_old_parameters_is_replaced_at_login(
    api: TestClient[Litestar], database: TestDatabase
) -> None:
    user = create_user(api)
    old = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    fetchval(
        database.primary_url, "UPDATE users SET password_hash = $2 WHERE id = $1", user["id"], old
    )
    _login(api, user["username"])
    stored = fetchval(
        database.primary_url, "SELECT password_hash FROM users WHERE id = $1", user["id"]
    )
    assert stored != old
    assert "m=19456,t=2,p=1" in stored
    assert PASSWORD not in stored


@pytest.mark.parametrize("password", ["short", "x" * 129, "has\x00nul-inside"])
def test_passwords_out_of_bounds_are_refused(api: TestClient[Litestar], password: str) -> None:
    response = api.post(
        "/users", json={"username": f"p_{uuid.uuid4().hex[:8]}", "password": password}
    )
    assert response.status_code == 400
    assert password not in response.text


def test_the_operator_endpoints_need_the_metrics_token_when_set(database: TestDatabase) -> None:
    with make_client(database, **ENV, METRICS_TOKEN="scrape-secret-1") as client:
        for path in ("/metrics", "/health/metrics"):
            _assert_unauthorized(client.get(path), invalid_token=False)
            wrong = client.get(path, headers=bearer("guess"))
            _assert_unauthorized(wrong, invalid_token=True)
            assert client.get(path, headers=bearer("scrape-secret-1")).status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/health/ready").status_code == 200


def test_the_schema_declares_the_bearer_scheme_and_can_be_turned_off(
    api: TestClient[Litestar], database: TestDatabase
) -> None:
    document = api.get("/schema/openapi.json").json()
    assert document["components"]["securitySchemes"]["BearerToken"]["scheme"] == "Bearer"
    with make_client(database, **ENV, OPENAPI_ENABLED="false") as client:
        assert client.get("/schema/openapi.json").status_code == 404
