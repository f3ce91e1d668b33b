"""Bad input gets a clear 4xx problem, never a 500."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from structlog.testing import capture_logs

from tests.support.api import PASSWORD, Account, assert_problem, create_chat, send

BEYOND_BIGINT = 2**63
NUL = "a\u0000b"


@pytest.fixture(scope="module")
def chat(client: TestClient[Litestar], alice: Account) -> dict[str, int]:
    return {"chat": create_chat(client, alice)["id"], "user": alice.id}


def _user(**fields: object) -> dict[str, object]:
    """A `POST /users` body with a valid password, so that `fields` are what is judged."""
    return {"password": PASSWORD, **fields}


@pytest.mark.parametrize(
    "body",
    [
        {},
        _user(),
        _user(username="ab"),
        _user(username="x" * 33),
        _user(username="Upper"),
        _user(username="bad-char"),
        _user(username=42),
        _user(username=None),
        _user(username="valid_name", display_name=""),
        _user(username="valid_name", display_name="x" * 65),
        _user(username="valid_name", display_name=NUL),
        _user(username="nul\u0000name"),
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
def test_bad_paths_and_queries_are_4xx(
    client: TestClient[Litestar], alice: Account, path: str
) -> None:
    response = client.get(path, headers=alice.headers)
    assert response.status_code != 401
    assert 400 <= response.status_code < 500, response.text
    assert_problem(response, response.status_code)


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=201", f"before={BEYOND_BIGINT}", "before=-1", "before=x"],
)
def test_bad_message_page_queries_are_400(
    client: TestClient[Litestar], alice: Account, chat: dict[str, int], query: str
) -> None:
    response = client.get(f"/chats/{chat['chat']}/messages?{query}", headers=alice.headers)
    assert_problem(response, 400)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"client_msg_id": "k"},
        {"sender_id": 1, "body": "hi"},  # the sender is the caller: an unknown field
        {"body": ""},
        {"body": "x" * 4001},
        {"body": NUL},
        {"body": "hi", "client_msg_id": NUL},
        {"body": "hi", "client_msg_id": "k" * 65},
        {"body": "hi", "client_msg_id": ""},
    ],
)
def test_invalid_message_bodies_are_400(
    client: TestClient[Litestar], alice: Account, chat: dict[str, int], body: dict[str, object]
) -> None:
    response = client.post(f"/chats/{chat['chat']}/messages", json=body, headers=alice.headers)
    assert_problem(response, 400)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": "no members"},
        {"member_ids": [0]},
        {"member_ids": [BEYOND_BIGINT]},
        {"member_ids": "1"},
        {"member_ids": [1], "title": ""},
        {"member_ids": [1], "title": NUL},
        {"member_ids": [1], "title": "t" * 201},
        {"member_ids": list(range(1, 1002))},
    ],
)
def test_invalid_chat_bodies_are_400(
    client: TestClient[Litestar], alice: Account, body: dict[str, object]
) -> None:
    assert_problem(client.post("/chats", json=body, headers=alice.headers), 400)


def test_bad_status_body_is_400(client: TestClient[Litestar], alice: Account) -> None:
    response = client.put(
        f"/users/{alice.id}/status", json={"status": "gone"}, headers=alice.headers
    )
    assert_problem(response, 400)


def test_bad_consistency_token_is_400(client: TestClient[Litestar], alice: Account) -> None:
    headers = {**alice.headers, "X-Consistency-Token": "nope"}
    assert_problem(client.get(f"/users/{alice.id}", headers=headers), 400)


def test_unknown_route_is_404_problem(client: TestClient[Litestar]) -> None:
    assert_problem(client.get("/nope"), 404)


def test_wrong_method_is_405_problem(client: TestClient[Litestar]) -> None:
    assert_problem(client.delete("/users"), 405)


def test_openapi_schema_is_served(client: TestClient[Litestar]) -> None:
    schema = client.get("/schema/openapi.json").json()
    assert "/chats/{chat_id}/messages" in schema["paths"]
    assert "/users" in schema["paths"]


# Malformed JSON is bad input: 400, and no error log line (no 500, no 5xx count).

DEEP = 20_000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/users", b'{"username": "abc\xff\xfe"}'),
        ("/users", b'{"username": "abc", "display_name": "\xc3"}'),
        ("/users", b"[" * DEEP + b"]" * DEEP),
        ("/users", b'{"username": "abc", "x": ' + b"[" * DEEP + b"]" * DEEP + b"}"),
        ("/chats", b'{"member_ids": ' + b"[" * DEEP + b"]" * DEEP + b"}"),
        ("/chats", b'{"member_ids": [1], "title": "\xed\xa0\x80"}'),
    ],
    ids=["utf8-username", "utf8-truncated", "deep-array", "deep-unknown-field", "deep-member-ids",
         "utf8-surrogate"],
)  # fmt: skip
def test_undecodable_json_is_400_without_an_error_log(
    client: TestClient[Litestar], alice: Account, path: str, body: bytes
) -> None:
    headers = {**alice.headers, "content-type": "application/json"}
    with capture_logs() as logs:
        response = client.post(path, content=body, headers=headers)
    problem = assert_problem(response, 400)
    assert problem["detail"]
    assert [event for event in logs if event.get("log_level") in ("error", "critical")] == []


def test_undecodable_message_body_is_400(
    client: TestClient[Litestar], alice: Account, chat: dict[str, int]
) -> None:
    body = b'{"body": "\xff"}'
    headers = {**alice.headers, "content-type": "application/json"}
    response = client.post(f"/chats/{chat['chat']}/messages", content=body, headers=headers)
    assert_problem(response, 400)


# Identifiers and integer query parameters are ASCII digits only; bodies are decoded strictly.

LENIENT_INTEGERS = ["\uff11", "\u0661", "1_0", "+1", " 1", "1 ", "01", "1.0", "1e1", "0x1", "-0"]


ROUTES_WITH_IDS = [
    ("GET", "/users/{}"),
    ("GET", "/users/{}/chats"),
    ("PUT", "/users/{}/status"),
    ("GET", "/chats/{}"),
    ("GET", "/chats/{}/messages"),
    ("POST", "/chats/{}/messages"),
]


@pytest.mark.parametrize("spelling", LENIENT_INTEGERS)
@pytest.mark.parametrize("route", ROUTES_WITH_IDS, ids=" ".join)
def test_ids_in_paths_are_ascii_digits_only(
    client: TestClient[Litestar],
    alice: Account,
    chat: dict[str, int],
    route: tuple[str, str],
    spelling: str,
) -> None:
    method, template = route
    ident = str(chat["chat"] if template.startswith("/chats") else chat["user"])
    lenient = spelling.replace("1", ident, 1) if spelling.isascii() else spelling
    bodies = {"PUT": {"status": "away"}, "POST": {"body": "hi"}}
    url = template.format(quote(lenient))
    response = client.request(method, url, json=bodies.get(method), headers=alice.headers)
    problem = assert_problem(response, 400)
    assert problem["errors"][0]["source"] == "path"


@pytest.mark.parametrize("spelling", LENIENT_INTEGERS)
@pytest.mark.parametrize("parameter", ["limit", "after"])
def test_integer_query_parameters_are_ascii_digits_only(
    client: TestClient[Litestar], alice: Account, parameter: str, spelling: str
) -> None:
    for path in ("/users", f"/users/{alice.id}/chats"):
        response = client.get(path, params={parameter: spelling}, headers=alice.headers)
        problem = assert_problem(response, 400)
        assert problem["errors"][0]["key"] == parameter


@pytest.mark.parametrize("spelling", LENIENT_INTEGERS)
@pytest.mark.parametrize("parameter", ["limit", "before"])
def test_message_page_parameters_are_ascii_digits_only(
    client: TestClient[Litestar],
    alice: Account,
    chat: dict[str, int],
    parameter: str,
    spelling: str,
) -> None:
    response = client.get(
        f"/chats/{chat['chat']}/messages", params={parameter: spelling}, headers=alice.headers
    )
    assert_problem(response, 400)


def test_canonical_integers_are_accepted(
    client: TestClient[Litestar], alice: Account, chat: dict[str, int]
) -> None:
    def get(url: str) -> httpx.Response:
        return client.get(url, headers=alice.headers)

    assert get(f"/users/{alice.id}").status_code == 200
    assert get("/users?limit=1&after=0").status_code == 200
    assert get(f"/chats/{chat['chat']}/messages?limit=200&before=0").status_code == 200
    assert_problem(get("/users/9223372036854775807"), 404)


# Each case: method, path (`{chat}`, `{user}` filled in) and body (`U` stands for the user id).
U = object()
STRICT_CASES: dict[str, tuple[str, str, dict[str, object]]] = {
    "body as number": ("POST", "/chats/{chat}/messages", {"body": 5}),
    "key as number": ("POST", "/chats/{chat}/messages", {"body": "hi", "client_msg_id": 7}),
    "member id as float": ("POST", "/chats", {"member_ids": [1.0]}),
    "member id as string": ("POST", "/chats", {"member_ids": ["U"]}),
    "member id as bool": ("POST", "/chats", {"member_ids": [True]}),
    "title as number": ("POST", "/chats", {"member_ids": [U], "title": 5}),
    "display_name as number": ("POST", "/users", _user(username="strict_ok", display_name=5)),
    "password as number": ("POST", "/users", {"username": "strict_ok", "password": 12345678}),
    "status as number": ("PUT", "/users/{user}/status", {"status": 1}),
}  # fmt: skip


@pytest.mark.parametrize("case", STRICT_CASES)
def test_bodies_are_decoded_strictly(
    client: TestClient[Litestar], alice: Account, chat: dict[str, int], case: str
) -> None:
    """No coercion: a string, float or bool where an integer belongs is a 400, even when it
    would convert to an existing id (`"1"`, `1.0`)."""
    method, template, body = STRICT_CASES[case]

    def fill(value: object) -> object:
        if isinstance(value, list):
            return [fill(item) for item in value]
        if value is U:
            return alice.id
        if value == "U":
            return str(alice.id)
        if value == 1.0 and isinstance(value, float):
            return float(alice.id)
        return value

    filled = {key: fill(value) for key, value in body.items()}
    url = template.format(chat=chat["chat"], user=alice.id)
    problem = assert_problem(client.request(method, url, json=filled, headers=alice.headers), 400)
    assert problem["errors"][0]["source"] == "body"


# Names and titles: no control (Cc) or format (Cf) characters, stored in NFC.

SPOOFS = ["\x1b[31mred", "a\rb", "a\nb", "a\tb", "\u202eevil", "a\u200bb", "a\u200db",
          "\u2066x\u2069", "\ufeffbom", "a\u00adb", "a\x85b", "a\x7fb"]  # fmt: skip


@pytest.mark.parametrize("name", SPOOFS)
def test_control_and_format_characters_in_names_are_400(
    client: TestClient[Litestar], name: str
) -> None:
    response = client.post("/users", json=_user(username="spoof_ok", display_name=name))
    problem = assert_problem(response, 400)
    assert problem["errors"][0]["key"] == "display_name"


@pytest.mark.parametrize("title", SPOOFS)
def test_control_and_format_characters_in_titles_are_400(
    client: TestClient[Litestar], alice: Account, title: str
) -> None:
    body = {"member_ids": [alice.id], "title": title}
    response = client.post("/chats", json=body, headers=alice.headers)
    problem = assert_problem(response, 400)
    assert problem["errors"][0]["key"] == "title"


@pytest.mark.parametrize("body", ["a\rb", "\x1b[2J", "a\x7fb", "a\x85b", "a\x0bb", "a\x0cb"])
def test_message_bodies_reject_control_characters(
    client: TestClient[Litestar], alice: Account, chat: dict[str, int], body: str
) -> None:
    response = send(client, alice, chat["chat"], body)
    problem = assert_problem(response, 400)
    assert problem["errors"][0]["key"] == "body"


def test_message_bodies_keep_newlines_tabs_and_format_characters(
    client: TestClient[Litestar], alice: Account, chat: dict[str, int]
) -> None:
    body = "line one\n\tline two \u05e9\u05dc\u05d5\u05dd \U0001f469\u200d\U0001f4bb"
    response = send(client, alice, chat["chat"], body)
    assert response.status_code == 201, response.text
    assert response.json()["body"] == body


def test_names_and_titles_are_stored_in_nfc(client: TestClient[Litestar], alice: Account) -> None:
    decomposed = "Rene\u0301e"
    response = client.post("/users", json=_user(username=_fresh(), display_name=decomposed))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["display_name"] == "Ren\u00e9e"
    stored = client.get(f"/users/{created['id']}", headers=alice.after(response)).json()
    assert stored["display_name"] == "Ren\u00e9e"
    body = {"member_ids": [created["id"]], "title": "Caf\u0065\u0301"}
    chat = client.post("/chats", json=body, headers=alice.headers)
    assert chat.status_code == 201, chat.text
    assert chat.json()["title"] == "Caf\u00e9"


def test_name_lengths_count_after_normalisation(
    client: TestClient[Litestar], alice: Account
) -> None:
    # 64 decomposed letters are 128 code points, 64 characters once composed: accepted.
    composed_fits = "e\u0301" * 64
    response = client.post("/users", json=_user(username=_fresh(), display_name=composed_fits))
    assert response.status_code == 201, response.text
    assert response.json()["display_name"] == "\u00e9" * 64
    # U+0958 is excluded from composition: NFC makes it two code points, 128 for 64.
    grows = "\u0958" * 64
    response = client.post("/users", json=_user(username=_fresh(), display_name=grows))
    problem = assert_problem(response, 400)
    assert problem["errors"][0]["key"] == "display_name"
    body = {"member_ids": [alice.id], "title": "\u0958" * 200}
    response = client.post("/chats", json=body, headers=alice.headers)
    assert assert_problem(response, 400)["errors"][0]["key"] == "title"


def _fresh() -> str:
    return f"n_{uuid.uuid4().hex[:20]}"
