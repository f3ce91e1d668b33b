"""`GET /events` in process: what is answered before a stream begins, and its OpenAPI entry
(the streams themselves run on real granian: tests/process/test_events.py)."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import TestClient

from tests.support.api import Account


def test_a_malformed_last_event_id_is_a_400_problem(
    client: TestClient[Litestar], alice: Account
) -> None:
    response = client.get("/events", headers={**alice.headers, "Last-Event-ID": "12-x"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    response = client.get("/events?last_event_id=1-9-1", headers=alice.headers)
    assert response.status_code == 400


def test_without_a_token_it_is_401(client: TestClient[Litestar]) -> None:
    assert client.get("/events").status_code == 401


def test_the_openapi_document_describes_the_stream(client: TestClient[Litestar]) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    operation = paths["/events"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert {"400", "401", "429", "503"} <= set(operation["responses"])
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"Last-Event-ID", "last_event_id"} <= names
