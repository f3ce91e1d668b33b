"""The request deadline and slots in the ASGI stack, with a client that stalls (no server:
the application is called directly, its `receive` never delivers the rest of the body)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from litestar import Litestar, get, post
from litestar.middleware import DefineMiddleware
from litestar.params import JSONBody

from app.api.problems import EXCEPTION_HANDLERS
from app.config import RequestLimits
from app.ops.request_bounds import RequestDeadlineMiddleware
from app.process.lifecycle import Lifecycle
from tests.support.asgi import http_scope


@post("/echo")
async def echo(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    return data


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "pass"}


def _app(lifecycle: Lifecycle, limits: RequestLimits) -> Litestar:
    return Litestar(
        route_handlers=[echo, health],
        middleware=[
            DefineMiddleware(RequestDeadlineMiddleware, lifecycle=lifecycle, limits=limits)
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        logging_config=None,
    )


def _scope(method: str, path: str, length: int = 0) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if length:
        headers.append((b"content-length", str(length).encode()))
    return http_scope(method, path, headers=headers)


async def _call(
    app: Litestar, scope: dict[str, Any], chunks: list[bytes], *, stall: bool = False
) -> dict[str, Any]:
    """Deliver `chunks` (the last with more_body=False unless the client stalls), then
    nothing; return the status, headers and body the application sent."""
    sent: list[dict[str, Any]] = []
    queue = list(chunks)

    async def receive() -> dict[str, Any]:
        if queue:
            chunk = queue.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": stall or bool(queue)}
        await asyncio.Event().wait()  # a stalled client: nothing more, ever
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return {"status": start["status"], "headers": headers, "body": body}


def test_a_stalled_body_is_answered_408_at_the_deadline() -> None:
    app = _app(Lifecycle(), RequestLimits(body_timeout_s=0.3))

    async def main() -> tuple[dict[str, Any], float]:
        started = time.monotonic()
        answer = await _call(app, _scope("POST", "/echo", 65000), [b"{"], stall=True)
        return answer, time.monotonic() - started

    answer, elapsed = asyncio.run(main())
    assert answer["status"] == 408
    assert answer["headers"]["content-type"].startswith("application/problem+json")
    assert answer["headers"]["connection"] == "close"
    problem = json.loads(answer["body"])
    assert problem["title"] == "Request Timeout"
    assert problem["detail"] == "the request body did not arrive within 0.3 s"
    assert 0.3 <= elapsed < 1.0


def test_a_body_within_the_deadline_is_served() -> None:
    app = _app(Lifecycle(), RequestLimits(body_timeout_s=5))
    answer = asyncio.run(_call(app, _scope("POST", "/echo", 8), [b'{"a":', b" 1}"]))
    assert answer["status"] == 201
    assert json.loads(answer["body"]) == {"a": 1}


def test_with_every_slot_taken_requests_are_refused_but_probes_answer() -> None:
    lifecycle = Lifecycle()
    limits = RequestLimits(worker_connections=32)
    app = _app(lifecycle, limits)
    lifecycle.in_flight = limits.request_slots + 1  # the slots, and this request
    refused = asyncio.run(_call(app, _scope("POST", "/echo", 2), [b"{}"]))
    assert refused["status"] == 503
    assert refused["headers"]["retry-after"] == "1"
    assert refused["headers"]["connection"] == "close"
    assert json.loads(refused["body"])["instance"] == "/echo"
    probe = asyncio.run(_call(app, _scope("GET", "/health"), [b""]))
    assert probe["status"] == 200
    lifecycle.in_flight = limits.request_slots  # the last slot is this request's
    assert asyncio.run(_call(app, _scope("POST", "/echo", 2), [b"{}"]))["status"] == 201


def test_a_cancellation_from_elsewhere_during_the_body_stays_a_cancellation() -> None:
    """A shutdown (or a disconnect) cancels the request while its body is awaited: that is
    not the client being slow, so it must not become a 408, nor be swallowed."""
    app = _app(Lifecycle(), RequestLimits(body_timeout_s=5))
    sent: list[dict[str, Any]] = []

    async def main() -> bool:
        stalled = asyncio.Event()

        async def receive() -> dict[str, Any]:
            stalled.set()
            await asyncio.Event().wait()  # a client that never sends its body
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = _scope("POST", "/echo", 65000)
        request = asyncio.create_task(app(scope, receive, send))  # type: ignore[arg-type]
        await stalled.wait()
        request.cancel()
        try:
            await request
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main())
    assert sent == []  # no 408, no response at all


def test_the_deadline_leaves_no_cancellation_behind_for_a_body_in_time() -> None:
    """The deadline's timer is cancelled once the body is in: a handler that runs past the
    deadline afterwards is not cancelled by it."""

    @post("/slow-echo")
    async def slow_echo(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
        await asyncio.sleep(0.4)  # past the 0.2 s body deadline, after the body arrived
        return data

    app = Litestar(
        route_handlers=[slow_echo],
        middleware=[
            DefineMiddleware(
                RequestDeadlineMiddleware,
                lifecycle=Lifecycle(),
                limits=RequestLimits(body_timeout_s=0.2),
            )
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        logging_config=None,
    )
    answer = asyncio.run(_call(app, _scope("POST", "/slow-echo", 8), [b'{"a": 1}']))
    assert answer["status"] == 201
    assert json.loads(answer["body"]) == {"a": 1}
