"""The OpenAPI document says exactly what the service does: integer bounds as integers, every
id and cursor bounded, `OPTIONS` listing the resource's methods, `HEAD` beside every `GET`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.support.api import Account, assert_problem, create_chat
from tests.support.asgi import http_scope

MAX_BIGINT = 2**63 - 1
CURSORS = {"after", "before"}
API = ("/users", "/chats", "/auth")


@pytest.fixture(scope="module")
def document(client: TestClient[Litestar]) -> dict[str, Any]:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert "e+18" not in response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def ids(client: TestClient[Litestar], alice: Account, bob: Account) -> dict[str, int]:
    """The user's own id, a chat of theirs and another user: every path filled in reaches a
    resource."""
    return {"user_id": alice.id, "chat_id": create_chat(client, alice)["id"], "blocked_id": bob.id}


def _walk(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_integer_bounds_are_written_as_integers(document: dict[str, Any]) -> None:
    bounds = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
    for schema in _walk(document):
        for key in bounds:
            if key in schema:
                assert type(schema[key]) is int, schema


def test_every_id_cursor_and_limit_is_bounded(document: dict[str, Any]) -> None:
    seen = set()
    for path, method, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            name, schema = parameter["name"], parameter["schema"]
            if parameter["in"] == "path":
                expected = {"type": "integer", "minimum": 1, "maximum": MAX_BIGINT}
            elif name in CURSORS:
                expected = {"type": "integer", "minimum": 0, "maximum": MAX_BIGINT}
            elif name == "limit":
                expected = {"type": "integer", "minimum": 1, "maximum": 200}
            else:
                continue
            seen.add(name)
            got = {key: schema.get(key) for key in expected}
            assert got == expected, (method, path, name, schema)
    assert seen == {"user_id", "chat_id", "blocked_id", "limit", "after", "before"}


def test_body_ids_are_bounded(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    member_ids = schemas["CreateChat"]["properties"]["member_ids"]
    # May be empty (no minItems, or 0): the creator is a member whatever the list holds.
    assert member_ids.get("minItems", 0) == 0
    assert member_ids["maxItems"] == 1000
    bounds = {"type": "integer", "minimum": 1, "maximum": MAX_BIGINT}
    schema = member_ids["items"]
    assert {key: schema.get(key) for key in bounds} == bounds
    assert "integer literal" in schema["description"]
    assert "sender_id" not in schemas["SendMessage"]["properties"], "the sender is the caller"


def test_the_routes_without_a_token_are_documented_so(document: dict[str, Any]) -> None:
    """Registration, the token routes and the operator endpoints take no access token (an
    empty requirement); every other route has the document's bearer requirement."""
    assert document["security"] == [{"BearerToken": []}]
    for path, method, operation in _operations(document):
        open_route = (method, path) == ("post", "/users") or (
            path.startswith(("/auth/", "/health", "/metrics")) and path != "/auth/logout-all"
        )
        assert (operation.get("security") == [{}]) is open_route, (method, path)


def test_bodies_that_refuse_unknown_fields_say_so(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("CreateUser", "SetStatus", "CreateChat", "SendMessage", "Login", "Refresh"):
        assert schemas[name]["additionalProperties"] is False, name


def test_the_chats_of_a_user_are_documented_as_a_page(document: dict[str, Any]) -> None:
    operation = document["paths"]["/users/{user_id}/chats"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    page = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert set(page["required"]) == {"items", "next"}


def test_options_lists_exactly_the_methods_of_the_resource(
    client: TestClient[Litestar], document: dict[str, Any], ids: dict[str, int]
) -> None:
    for path, item in document["paths"].items():
        url = path.format(**ids)
        response = client.options(url)
        assert response.status_code == 204, (url, response.text)
        allowed = {method.strip() for method in response.headers["allow"].split(",")}
        listed = {method.upper() for method in item} | {"OPTIONS"}
        head = {"HEAD"} if "get" in item and path.startswith(API) else set()  # served, unlisted
        assert allowed == listed | head, url


def test_a_get_is_not_listed_a_second_time_as_head(document: dict[str, Any]) -> None:
    """`HEAD` is served beside every API `GET` (tests below) and said once, in the
    description; the `GET` keeps its operationId (clients built from the document keep their
    names)."""
    assert all("head" not in item for item in document["paths"].values())
    assert "HEAD" in document["info"]["description"]
    assert document["paths"]["/users/{user_id}"]["get"]["operationId"] == "UsersUserIdGetUser"


def test_the_consistency_token_is_documented_on_writes_and_reads(document: dict[str, Any]) -> None:
    writes = reads = 0
    for path, method, operation in _operations(document):
        if not path.startswith(API):
            assert "X-Consistency-Token" not in str(operation), (method, path)
        elif method == "get":
            (parameter,) = [p for p in operation["parameters"] if p["in"] == "header"]
            assert parameter["name"] == "X-Consistency-Token", (method, path)
            assert parameter["required"] is False
            reads += 1
        else:
            for code, response in operation["responses"].items():
                if code.startswith("2"):
                    header = response["headers"]["X-Consistency-Token"]
                    assert header["schema"]["type"] == "string", (method, path)
                    writes += 1
    assert reads >= 5
    assert writes >= 5


def test_the_description_explains_signing_in(document: dict[str, Any]) -> None:
    description = document["info"]["description"]
    for step in ("POST /users", "POST /auth/token", "Authorize", "access_token"):
        assert step in description


def test_the_ui_is_served_from_the_package(client: TestClient[Litestar]) -> None:
    """No outside address in the page: its script and styles come from /schema/static/."""
    page = client.get("/schema/swagger")
    assert page.status_code == 200
    assert "https://" not in page.text, page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        assert f"/schema/static/{asset}" in page.text
        response = client.get(f"/schema/static/{asset}")
        assert response.status_code == 200, asset
        assert len(response.content) > 1000


def test_head_answers_like_get_without_a_body(
    client: TestClient[Litestar], alice: Account, ids: dict[str, int]
) -> None:
    for url in (
        f"/users/{ids['user_id']}",
        f"/users/{ids['user_id']}/chats?limit=1",
        f"/chats/{ids['chat_id']}",
        f"/chats/{ids['chat_id']}/messages",
        "/users?limit=2",
    ):
        later = client.put(
            f"/users/{alice.id}/status", json={"status": "away"}, headers=alice.headers
        )
        headers = alice.after(later)
        got = client.get(url, headers=headers)
        assert got.status_code == 200
        start, body = _raw(client, "HEAD", url, headers)
        assert start["status"] == 200, url
        sent = {key.decode(): value.decode() for key, value in start["headers"]}
        assert sent["content-type"] == got.headers["content-type"]
        assert int(sent["content-length"]) == len(got.content)
        assert body == b"", url


def test_head_of_a_missing_record_is_404_without_a_body(
    client: TestClient[Litestar], alice: Account
) -> None:
    assert_problem(client.get("/users/999999999", headers=alice.headers), 404)
    start, body = _raw(client, "HEAD", "/users/999999999", alice.headers)
    assert start["status"] == 404
    assert body == b""
    start, body = _raw(client, "HEAD", "/users/x1", alice.headers)
    assert start["status"] == 400
    assert body == b""


def test_head_needs_a_token_like_get(client: TestClient[Litestar], ids: dict[str, int]) -> None:
    """No `HEAD` answers what its `GET` would refuse: 401 without a token, and no body."""
    for url in (f"/users/{ids['user_id']}", "/users", f"/chats/{ids['chat_id']}/messages"):
        start, body = _raw(client, "HEAD", url, {})
        assert start["status"] == 401, url
        sent = {key.decode(): value.decode() for key, value in start["headers"]}
        assert sent["www-authenticate"].startswith("Bearer realm="), url
        assert body == b"", url


def _raw(
    client: TestClient[Litestar], method: str, url: str, headers: dict[str, str]
) -> tuple[dict[str, Any], bytes]:
    """Call the application at the ASGI level (the test transport drops a HEAD body, so it
    could not show one being sent): the response start message and the body bytes sent."""
    path, _, query = url.partition("?")
    scope = http_scope(
        method,
        path,
        query=query,
        headers=[(key.lower().encode(), value.encode()) for key, value in headers.items()],
    )
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    async def run() -> None:
        await client.app(scope, receive, send)

    client.blocking_portal.call(run)
    start = next(message for message in messages if message["type"] == "http.response.start")
    body = b"".join(
        message.get("body", b"") for message in messages if message["type"] == "http.response.body"
    )
    return start, body
