"""The ceiling of our stack: a bare Litestar + asyncpg app serving the same two endpoints.

Same routes, validation and JSON as the service, with the minimum SQL: a send is one
statement (membership check and insert, idempotent by `client_msg_id`), a page is one
indexed keyset query, and nothing else reaches the server (asyncpg's pool would otherwise
send `RESET ALL` and friends on every release; the service's pool sends nothing either).
Reads go to the replica, or to the primary when the request carries `X-Consistency-Token`
(the simplest correct read-your-writes). `/t/chats/{id}/messages` is the send plus the
service's second round trip for the token (`pg_current_wal_lsn()`), to tell the cost of the
stack from the cost of that contract.

Served as `granian ... tests.bench.baseline:app`; configured by `BASELINE_*` variables.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.params import PathParameter, QueryParameter

MAX_ID = 2**63 - 1
NO_NUL = "^[^\\x00]*$"
COLUMNS = "id, chat_id, sender_id, body, client_msg_id, created_at"

SEND = (
    "INSERT INTO messages (chat_id, sender_id, body, client_msg_id)"  # noqa: S608 - constant column list
    " SELECT $1, $2, $3, $4"
    " WHERE EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2)"
    f" ON CONFLICT (sender_id, client_msg_id) DO NOTHING RETURNING {COLUMNS}"
)
STORED = f"SELECT {COLUMNS} FROM messages WHERE sender_id = $1 AND client_msg_id = $2"  # noqa: S608 - constant column list
WHY_NOT = (
    "SELECT EXISTS (SELECT 1 FROM chats WHERE id = $1),"
    " EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2)"
)
PAGE = f"SELECT {COLUMNS} FROM messages WHERE chat_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"  # noqa: S608 - constant column list
CHAT_EXISTS = "SELECT EXISTS (SELECT 1 FROM chats WHERE id = $1)"
WAL_POSITION = "SELECT pg_current_wal_lsn()::text"

Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
Body = Annotated[str, msgspec.Meta(min_length=1, max_length=4000, pattern=NO_NUL)]
ClientMsgId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NO_NUL)]
PathId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]
Limit = Annotated[int, QueryParameter(ge=1, le=200)]
Cursor = Annotated[int | None, QueryParameter(ge=0, le=MAX_ID)]


class SendMessage(msgspec.Struct, frozen=True):
    sender_id: Id
    body: Body
    client_msg_id: ClientMsgId | None = None


class Message(msgspec.Struct, frozen=True):
    id: int
    chat_id: int
    sender_id: int
    body: str
    client_msg_id: str | None
    created_at: datetime


class MessagePage(msgspec.Struct, frozen=True):
    items: list[Message]
    next: int | None


class Pools:
    """The writer pool and the replica pool (the writer when no replica is configured)."""

    writer: asyncpg.Pool
    reader: asyncpg.Pool


POOLS = Pools()


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No reset round trip on release: requests leave no session state behind."""


async def _pool(url: str, min_size: int, max_size: int, name: str) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        server_settings={"application_name": name, "statement_timeout": "5000"},
        reset=_keep_session,
    )


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    """Open both pools at their minimum; close them at shutdown."""
    writer_url = os.environ["BASELINE_DATABASE_URL"]
    reader_url = os.environ.get("BASELINE_REPLICA_URL") or ""
    POOLS.writer = await _pool(
        writer_url,
        _env_int("BASELINE_POOL_MIN", 4),
        _env_int("BASELINE_POOL_MAX", 10),
        "bench-baseline-primary",
    )
    POOLS.reader = (
        await _pool(
            reader_url,
            _env_int("BASELINE_REPLICA_POOL_MIN", 4),
            _env_int("BASELINE_REPLICA_POOL_MAX", 10),
            "bench-baseline-replica",
        )
        if reader_url
        else POOLS.writer
    )
    try:
        yield
    finally:
        await POOLS.writer.close()
        if POOLS.reader is not POOLS.writer:
            await POOLS.reader.close()


async def _unsent(conn: asyncpg.Connection, chat_id: int, data: SendMessage) -> Response[Message]:
    """Nothing was inserted: the stored message of this key (200), else 404, 403 or 409."""
    if data.client_msg_id is not None:
        row = await conn.fetchrow(STORED, data.sender_id, data.client_msg_id)
        if row is not None:
            stored = Message(*row)
            if stored.chat_id != chat_id or stored.body != data.body:
                raise HTTPException(status_code=409, detail="client_msg_id reused")
            return Response(stored, status_code=200)
    chat_exists, is_member = await conn.fetchrow(WHY_NOT, chat_id, data.sender_id)
    if not chat_exists:
        raise NotFoundException(detail=f"chat {chat_id} does not exist")
    if not is_member:
        raise PermissionDeniedException(detail="not a member of this chat")
    raise HTTPException(status_code=409, detail="the message was not stored")


async def _send(chat_id: int, data: SendMessage, *, token: bool) -> Response[Message]:
    async with POOLS.writer.acquire() as conn:
        row = await conn.fetchrow(SEND, chat_id, data.sender_id, data.body, data.client_msg_id)
        if row is None:
            return await _unsent(conn, chat_id, data)
        headers = {"x-consistency-token": await conn.fetchval(WAL_POSITION)} if token else None
        return Response(Message(*row), status_code=201, headers=headers)


@post("/chats/{chat_id:int}/messages")
async def send(chat_id: PathId, data: SendMessage) -> Response[Message]:
    """One statement: membership check and insert."""
    return await _send(chat_id, data, token=False)


@post("/t/chats/{chat_id:int}/messages")
async def send_with_token(chat_id: PathId, data: SendMessage) -> Response[Message]:
    """The same, plus the WAL position for `X-Consistency-Token` (a second round trip)."""
    return await _send(chat_id, data, token=True)


@get("/chats/{chat_id:int}/messages")
async def page(
    request: Request[Any, Any, Any], chat_id: PathId, limit: Limit = 50, before: Cursor = None
) -> MessagePage:
    """One keyset query on (chat_id, id desc); the chat is looked up only for an empty page."""
    pool = POOLS.writer if "x-consistency-token" in request.headers else POOLS.reader
    async with pool.acquire() as conn:
        rows = await conn.fetch(PAGE, chat_id, MAX_ID if before is None else before, limit + 1)
        if not rows and not await conn.fetchval(CHAT_EXISTS, chat_id):
            raise NotFoundException(detail=f"chat {chat_id} does not exist")
    items = [Message(*row) for row in rows[:limit]]
    return MessagePage(items=items, next=items[-1].id if len(rows) > limit else None)


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "pass"}


app = Litestar(
    route_handlers=[send, send_with_token, page, health],
    lifespan=[lifespan],
    openapi_config=None,
    debug=False,
)
