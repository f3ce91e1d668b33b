"""Small helpers that drive the API the way a client would."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
from litestar import Litestar
from litestar.testing import TestClient

from app.config import Settings
from app.main import create_app
from tests.support.cluster import TestDatabase
from tests.support.factories import CreateUserFactory


def make_client(database: TestDatabase, **env: str) -> TestClient[Litestar]:
    """A client for an app with extra settings; use it as a context manager."""
    return TestClient(create_app(Settings.from_env(database.env(**env))))


def create_user(client: TestClient[Litestar], **fields: Any) -> dict[str, Any]:
    body = msgspec.to_builtins(CreateUserFactory.build(**fields))
    response = client.post("/users", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def create_chat(
    client: TestClient[Litestar], member_ids: list[int], title: str | None = "chat"
) -> dict[str, Any]:
    response = client.post("/chats", json={"title": title, "member_ids": member_ids})
    assert response.status_code == 201, response.text
    return dict(response.json())


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
