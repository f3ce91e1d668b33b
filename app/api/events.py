"""`GET /events`: the caller's events as Server-Sent Events (docs/events.md).

Every event has an `id:`; a client that reconnects with `Last-Event-ID` (or
`?last_event_id=`, for `EventSource` polyfills that cannot set headers) receives every event
it missed exactly once, in order, then the live stream. The first event of a stream without
one is `ready`, whose id is where the stream began: resuming from it loses nothing either.

Events: `ready`, `message` (a message of a chat the caller is a member of), `chat_joined`
(the caller became a member of a chat), `chat_left` (the caller left one: no message of it
follows), `resync` (the id sent is not one this service can
resume from: reload from the REST API, then go on from this event's id), `end` (the service
ends the stream: `token_expired`, `slow_consumer`, `shutdown`, `unavailable`; reconnect after
`retry:`, with a fresh token for `token_expired`). Comments (`: keep-alive`) every
`EVENTS_HEARTBEAT_S` keep proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.api.bearer import Caller
from app.api.controller import ApiController
from app.api.problems import problem_response, problem_responses
from app.events import metrics
from app.events.hub import Hub, Stream, StreamLimitError
from app.events.position import CHAT_JOINED, CHAT_LEFT, InvalidPositionError, Position
from app.events.source import EventRow, Horizon

CATCH_UP_BATCH = 500
_KIND_NAMES = {CHAT_JOINED: "chat_joined", CHAT_LEFT: "chat_left"}
_MEMBERSHIP_AT = {CHAT_JOINED: "joined_at", CHAT_LEFT: "left_at"}
_encode = msgspec.json.Encoder().encode

log = structlog.get_logger("app.api.events")


class EventController(ApiController):
    """The event stream."""

    path = "/events"
    tags = ["events"]

    @get(
        "/",
        summary="Stream your events (Server-Sent Events), resumable with Last-Event-ID",
        media_type="text/event-stream",
        responses={
            200: ResponseSpec(
                data_container=str,
                media_type="text/event-stream",
                description="`text/event-stream`: events `ready`, `message`, `chat_joined`, "
                "`chat_left`, `resync`, `end`, each with an `id:` to resume from "
                "(docs/events.md)",
            ),
            **problem_responses(429, 503),
        },
        description="The caller's events: messages of the chats they are in, and chats they "
        "join. Send the last `id:` received as `Last-Event-ID` on reconnect: every missed "
        "event arrives exactly once, in commit order, then the live ones. A malformed id is a "
        "400; an id this service cannot resume from gets a `resync` event. 429 beyond "
        "`EVENTS_MAX_STREAMS_PER_USER` streams of one user, 503 beyond the worker's limit or "
        "while the service restarts; both with `Retry-After`.",
    )
    async def stream(
        self,
        request: Request[Caller, Any, Any],
        last_event_id_header: Annotated[
            str | None, HeaderParameter(name="Last-Event-ID", required=False, max_length=80)
        ] = None,
        last_event_id: Annotated[
            str | None, QueryParameter(name="last_event_id", required=False, max_length=80)
        ] = None,
    ) -> Response[Any]:
        hub: Hub = request.app.state["events"]
        raw = last_event_id_header or last_event_id
        try:
            after = Position.parse(raw) if raw else None
        except InvalidPositionError as error:
            return problem_response(request, 400, str(error))
        try:
            stream = hub.open(request.user.id)
        except StreamLimitError as refused:
            return problem_response(
                request,
                refused.status,
                refused.reason,
                headers={"Retry-After": str(refused.retry_after_s)},
            )
        expires = float(request.auth.get("exp", 0)) if isinstance(request.auth, dict) else 0.0
        return ServerSentEvent(
            _events(hub, stream, after, expires),
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def _message(row: EventRow) -> ServerSentEventMessage:
    if row.kind in _MEMBERSHIP_AT:  # joined or left: the same fields, their own time's name
        data = {
            "chat_id": row.chat_id,
            "user_id": row.user_id,
            "title": row.body,
            _MEMBERSHIP_AT[row.kind]: row.created_at,
        }
    else:
        data = {
            "id": row.id,
            "chat_id": row.chat_id,
            "sender_id": row.user_id,
            "body": row.body,
            "client_msg_id": row.client_msg_id,
            "created_at": row.created_at,
        }
    return ServerSentEventMessage(
        data=_encode(data).decode(),
        event=_KIND_NAMES.get(row.kind, "message"),
        id=row.position.text(),
    )


def _end(reason: str, retry_ms: int) -> ServerSentEventMessage:
    return ServerSentEventMessage(
        data=_encode({"reason": reason}).decode(), event="end", retry=retry_ms
    )


class _Cursor:
    """Where the stream stands: the position of the last event written."""

    __slots__ = ("position",)

    def __init__(self, position: Position) -> None:
        self.position = position


async def _events(
    hub: Hub, stream: Stream, after: Position | None, expires: float
) -> AsyncIterator[ServerSentEventMessage]:
    retry_ms = round(hub.settings.retry_s * 1000)
    try:
        await stream.joined.wait()
        start = stream.start
        if stream.ending is not None or start is None:
            yield _end(stream.ending or "shutdown", retry_ms)
            return
        cursor = _Cursor(Position.floor(start.xmin))
        async for message in _begin(hub, stream, after, start, cursor=cursor, retry_ms=retry_ms):
            yield message
        async for message in _live(hub, stream, cursor, expires, retry_ms):
            yield message
    except Exception as error:  # the database failed mid-stream: the client resumes
        log.warning("event stream failed", error=type(error).__name__)
        stream.end("unavailable")
        yield _end("unavailable", retry_ms)
    finally:
        hub.close(stream)


async def _begin(
    hub: Hub,
    stream: Stream,
    after: Position | None,
    start: Horizon,
    *,
    cursor: _Cursor,
    retry_ms: int,
) -> AsyncIterator[ServerSentEventMessage]:
    """The first event, and (resuming) every event missed below the stream's start."""
    floor = cursor.position.text()
    if after is None:
        yield ServerSentEventMessage(
            data=_encode({"position": floor}).decode(), event="ready", id=floor, retry=retry_ms
        )
        return
    if after.xid > start.xmax and after.xid > (await hub.source.horizon(hub.listener)).xmax:
        # Beyond any transaction the primary has run: not an id of this cluster's history.
        metrics.STREAMS_ENDED.labels("resync").inc()
        yield ServerSentEventMessage(
            data=_encode({"reason": "unknown event id: reload from the REST API"}).decode(),
            event="resync",
            id=floor,
            retry=retry_ms,
        )
        return
    cursor.position = after
    yield ServerSentEventMessage(data=None, comment="resuming", retry=retry_ms)
    while cursor.position.xid < start.xmin and stream.ending is None:
        rows = await hub.source.catch_up(stream.user_id, cursor.position, start, CATCH_UP_BATCH)
        for row in rows:
            yield _message(row)
            cursor.position = row.position
            metrics.EVENTS_DELIVERED.labels(_kind(row), "catch_up").inc()
        if len(rows) < CATCH_UP_BATCH:
            return


async def _live(
    hub: Hub, stream: Stream, cursor: _Cursor, expires: float, retry_ms: int
) -> AsyncIterator[ServerSentEventMessage]:
    """What the hub hands the stream, heartbeats while there is nothing, then the end."""
    heartbeat_s = hub.settings.heartbeat_s
    queue = stream.queue
    while True:
        while queue and stream.ending is None:
            row = queue.popleft()
            if row.position <= cursor.position:
                continue  # delivered by the catch-up, or before the id the client sent
            yield _message(row)
            cursor.position = row.position
            metrics.EVENTS_DELIVERED.labels(_kind(row), "live").inc()
            metrics.DELIVERY_LATENCY.observe(time.time() - row.created_at.timestamp())
        if stream.ending is not None:
            yield _end(stream.ending, retry_ms)
            return
        stream.wake.clear()
        left_s = expires - time.time() if expires else heartbeat_s
        if left_s <= 0:
            stream.end("token_expired")
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(heartbeat_s, left_s)):
                await stream.wake.wait()
        if not queue and not stream.wake.is_set() and stream.ending is None:
            yield ServerSentEventMessage(data=None, comment="keep-alive")


def _kind(row: EventRow) -> str:
    return _KIND_NAMES.get(row.kind, "message")
