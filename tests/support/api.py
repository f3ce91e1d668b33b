"""Drive the API the way a client would: register and log in, create chats, send.

Every helper takes an `httpx.Client`: a `TestClient` of an app in this process, or a client
of a real service process (`httpx.Client(base_url=server.url)`).

- `register(client)`: a new user who has logged in, as an `Account` (its `headers` carry the
  access token); `create_user` and `log_in` are its two steps;
- `create_chat(client, owner, members)`: a chat `owner` creates (they are always a member);
- `send(client, sender, chat_id, body)`: a message `sender` sends;
- `user_with_a_chat(url)`: a new account and a chat of theirs, made through a service's URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
from litestar import Litestar
from litestar.testing import TestClient

from app.api.consistency import HEADER as CONSISTENCY_TOKEN
from app.config import Settings
from app.main import create_app
from tests.support.cluster import TestDatabase
from tests.support.factories import CreateUserFactory
from tests.support.signing import token_for

PASSWORD = "correct horse battery staple"
"""Every account's password, unless a test gives its own."""


def make_client(database: TestDatabase, **env: str) -> TestClient[Litestar]:
    """A client for an app with extra settings; use it as a context manager."""
    return TestClient(create_app(Settings.from_env(database.env(**env))))


def bearer(access_token: str) -> dict[str, str]:
    """The `Authorization` header that carries `access_token`."""
    return {"Authorization": f"Bearer {access_token}"}


def as_user(user_id: int) -> dict[str, str]:
    """Headers of a request by `user_id` (signed with the suite's key; no login): for a user
    id that does not exist, which no login can give."""
    return bearer(token_for(user_id))


@dataclass(frozen=True)
class Account:
    """A registered user who has logged in."""

    id: int
    username: str
    password: str
    access_token: str
    refresh_token: str
    user: dict[str, Any]
    """The user as registration answered it."""
    written: str
    """The consistency token of the login, the account's last write (after its registration)."""

    @property
    def headers(self) -> dict[str, str]:
        """What every request of this account carries: its access token."""
        return bearer(self.access_token)

    def after(self, write: httpx.Response | None = None) -> dict[str, str]:
        """Headers for a read by this account that must see `write` (by its consistency
        token), or this account's own registration when `write` is None."""
        token = self.written if write is None else write.headers[CONSISTENCY_TOKEN]
        return {**self.headers, CONSISTENCY_TOKEN: token}


def register(client: httpx.Client, password: str = PASSWORD, **fields: Any) -> Account:
    """A new user (`fields` of `POST /users` as given, the rest made up), logged in."""
    user = create_user(client, password, **fields)
    login = log_in(client, user["username"], password)
    pair = login.json()
    return Account(
        id=int(user["id"]),
        username=user["username"],
        password=password,
        access_token=pair["access_token"],
        refresh_token=pair["refresh_token"],
        user=user,
        written=login.headers[CONSISTENCY_TOKEN],
    )


def create_user(client: httpx.Client, password: str = PASSWORD, **fields: Any) -> dict[str, Any]:
    """`POST /users` (`fields` as given, the rest made up): the new user, not logged in."""
    body = msgspec.to_builtins(CreateUserFactory.build(password=password, **fields))
    response = client.post("/users", json=body)
    assert response.status_code == 201, response.text
    assert password not in response.text
    return dict(response.json())


def log_in(client: httpx.Client, username: str, password: str) -> httpx.Response:
    """`POST /auth/token`, which must answer a bearer token pair."""
    response = client.post("/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] > 0
    return response


def create_chat(
    client: httpx.Client,
    owner: Account,
    members: Sequence[Account] = (),
    title: str | None = "chat",
) -> dict[str, Any]:
    """The chat `owner` creates with `members` (the owner is a member whatever they list)."""
    member_ids = [member.id for member in members]
    response = client.post(
        "/chats", json={"title": title, "member_ids": member_ids}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def send(
    client: httpx.Client,
    sender: Account,
    chat_id: int,
    body: str = "hi",
    client_msg_id: str | None = None,
) -> httpx.Response:
    """`sender` sends `body` to the chat (with `client_msg_id`, if given); the answer as it
    is, for the test to judge."""
    message: dict[str, str] = {"body": body}
    if client_msg_id is not None:
        message["client_msg_id"] = client_msg_id
    return client.post(f"/chats/{chat_id}/messages", json=message, headers=sender.headers)


def user_with_a_chat(url: str) -> tuple[Account, int]:
    """A new account and a chat of their own, made through the service at `url`."""
    with httpx.Client(base_url=url, timeout=10) as client:
        account = register(client)
        return account, int(create_chat(client, account)["id"])


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with `status` and no internals in it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = dict(response.json())
    assert problem["status"] == status
    assert problem["title"]
    text = response.text.lower()
    for leak in ("select ", "insert ", "traceback", "asyncpg", "sqlalchemy", "postgresql://"):
        assert leak not in text, f"{leak!r} leaked into {response.text}"
    return problem
