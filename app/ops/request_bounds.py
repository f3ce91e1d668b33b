"""Bounds on a request's hold on the worker: a deadline on receiving its body, and a number of
request slots the probes (and the metrics) never compete for.

granian (hyper) bounds the headers (`--http1-header-read-timeout`) but not the body: a client
that sends `Content-Length: 65000`, one byte, then nothing, held its connection, its request
slot and its place in the in-flight count for as long as it liked, and a shutdown waited for
it until granian's kill timeout, so the pools were never closed. Here:

- **The body deadline.** Counted from the moment the request reaches the application (its
  headers are in), the whole body must arrive within `REQUEST_BODY_TIMEOUT_S` (answered at
  most a quarter of it, or 250 ms, later: `app.process.deadline_sweeper`). A read that
  would pass it raises `RequestBodyTimeout`, which Litestar answers as a 408 problem document
  (`app.api.problems`) with `Connection: close`; hyper then closes the connection (the rest of
  the body is never read), which frees granian's connection slot. After the body, reads are
  not bounded (waiting for `http.disconnect` is not receiving a request). A body granian
  cannot read (broken chunked framing) is a 400 (`MalformedBody`), not a 500.
- **Request slots.** granian holds at most `WORKER_CONNECTIONS` connections per worker
  (`--backpressure`); a request beyond `WORKER_CONNECTIONS - PROBE_RESERVE` in flight is
  answered 503 at once (`Retry-After: 1`, `Connection: close`) instead of taking one of the
  last connections, except the operator endpoints (`/health`, `/health/ready`,
  `/health/metrics`, `/metrics`). So while slow clients fill the slots, liveness and
  readiness still answer, the metrics show it, and other requests fail fast, not hang.

Both are logged at most once per 5 s (with the count held back), never per request: a flood
of slow clients must not become a flood of log lines.
"""

from __future__ import annotations

import asyncio

import msgspec
import structlog
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send
from litestar.types.asgi_types import HTTPResponseBodyEvent, HTTPResponseStartEvent

from app.api.problems import PROBLEM_JSON, Problem
from app.config import RequestLimits
from app.logging import Throttle
from app.process.deadline_sweeper import Deadlines
from app.process.lifecycle import Lifecycle

log = structlog.get_logger("app.requests")
OPERATOR_PATHS = frozenset({"/health", "/health/ready", "/health/metrics", "/metrics"})
"""Never refused for want of a slot: each answers at once, without reading a body."""
_LOG_EVERY_S = 5.0


class RequestBodyTimeout(HTTPException):
    """The body did not arrive within `REQUEST_BODY_TIMEOUT_S` of the headers."""

    status_code = 408


class MalformedBody(HTTPException):
    """The server could not read the body (a malformed chunked encoding): a 400, not a 500."""

    status_code = 400


class RequestDeadlineMiddleware:
    """ASGI middleware inside `HttpMetricsMiddleware` (so its 408 and 503 are counted, and
    the in-flight count includes this request)."""

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle, limits: RequestLimits) -> None:
        self.app = app
        self.lifecycle = lifecycle
        self.limits = limits
        self._slots = limits.request_slots
        # A stalled body is answered at most a quarter of its timeout (or 250 ms) late.
        self._deadlines = Deadlines(resolution_s=min(0.25, limits.body_timeout_s / 4))
        self._log_timeout = Throttle(_LOG_EVERY_S)
        self._log_full = Throttle(_LOG_EVERY_S)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self.lifecycle.in_flight > self._slots and path not in OPERATOR_PATHS:
            held_back = self._log_full.allow()
            if held_back is not None:
                log.warning(
                    "request slots full; answered 503", held_back=held_back, slots=self._slots
                )
            await _refuse(send, path)
            return
        await self.app(scope, self._bounded(receive, path), send)

    def _bounded(self, receive: Receive, path: str) -> Receive:
        """`receive`, failing once the body is not complete by the deadline.

        The deadline is kept by `app.process.deadline_sweeper` (one housekeeping task for every
        request's body, not a timer per request: that timer alone cost 6 to 8% of a send's
        CPU), so a stalled body is answered within `_resolution_s` after the deadline."""
        timeout_s = self.limits.body_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s
        deadlines = self._deadlines
        body_done = False

        async def bounded_receive() -> ReceiveMessage:
            nonlocal body_done
            if body_done:
                return await receive()
            wait = deadlines.begin(deadline)
            try:
                message = await receive()
            except asyncio.CancelledError:
                if deadlines.ended(wait):  # the deadline's cancellation alone
                    held_back = self._log_timeout.allow()
                    if held_back is not None:
                        log.warning(
                            "request body not received in time; answered 408",
                            held_back=held_back,
                            path=path,
                            timeout_s=timeout_s,
                        )
                    raise RequestBodyTimeout(
                        detail=f"the request body did not arrive within {timeout_s:g} s",
                        headers={"Connection": "close"},
                    ) from None
                raise
            finally:
                deadlines.finish(wait)
            if message["type"] == "http.disconnect":
                # granian ends a body whose framing is broken (a chunk size of `zz`) as a
                # disconnect, which Litestar answers 500: the client's fault, so a 400.
                raise MalformedBody(
                    detail="the request body could not be read (malformed or cut short)",
                    headers={"Connection": "close"},
                )
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        return bounded_receive


async def _refuse(send: Send, path: str) -> None:
    """503 problem document, sent here (the request never reaches a handler)."""
    body = msgspec.json.encode(
        Problem(
            title="Service Unavailable",
            status=503,
            detail="every request slot of this instance is taken; retry after Retry-After",
            instance=path,
        )
    )
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 503,
        "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
            (b"connection", b"close"),
        ],
    }
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)
