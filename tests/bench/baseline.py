"""The ceiling of our stack: a bare Litestar + asyncpg app serving the same two endpoints.

Same routes, authentication, validation and JSON as the service, with the minimum SQL: a send
is one statement (membership check and insert, idempotent by `client_msg_id`, the sender being
the caller), a page is one indexed keyset query with the same membership condition, and
nothing else reaches the server (asyncpg's pool would otherwise send `RESET ALL` and friends
on every release; the service's pool sends nothing either).

Every request verifies its bearer access token as the service does, without Litestar's
authentication middleware: PyJWT, HS256, the key chosen by the token's `kid` from
`BASELINE_JWT_KEYS` (the service's `AUTH_JWT_KEYS` format), `exp`, `iat`, `sub` and `iss`
required; no token or a bad one is a 401. A chat the caller is not a member of is a 404.

Reads go to the replica, or to the primary when the request carries `X-Consistency-Token`
(the simplest correct read-your-writes; the token is parsed like the service's, a malformed
one is a 400). `/t/chats/{id}/messages` is the send plus the service's second round trip for
the token (`pg_current_wal_lsn()`), to tell the cost of the stack from the cost of that
contract.

Served as `granian ... tests.bench.baseline:app`; configured by `BASELINE_*` variables.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import jwt
import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
)
from litestar.params import PathParameter, QueryParameter

MAX_ID = 2**63 - 1
NO_NUL = "^[^\\x00]*$"
# The service's message body rule (app/api/schemas.py, BODY_PATTERN): newline and tab are the
# only control characters.
BODY_PATTERN = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
ISSUER = "messenger"
REQUIRED_CLAIMS: Any = {"require": ["exp", "iat", "sub", "iss"]}  # PyJWT's Options
LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
COLUMNS = "id, chat_id, sender_id, body, client_msg_id, created_at"

SEND = (
    "INSERT INTO messages (chat_id, sender_id, body, client_msg_id)"  # noqa: S608 - constant column list
    " SELECT $1, $2, $3, $4"
    " WHERE EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2)"
    f" ON CONFLICT (sender_id, client_msg_id) DO NOTHING RETURNING {COLUMNS}"
)
# Why nothing was inserted, in one statement like the service's: chat, membership, stored key.
WHY_NOT = (
    "SELECT EXISTS (SELECT 1 FROM chats WHERE id = $1),"  # noqa: S608 - constant column list
    " EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2), m.*"
    " FROM (SELECT 1) AS one LEFT JOIN ("
    f"  SELECT {COLUMNS} FROM messages WHERE sender_id = $2 AND client_msg_id = $3"
    " ) AS m ON true"
)
PAGE = (
    f"SELECT {COLUMNS} FROM messages WHERE chat_id = $1 AND id < $2"  # noqa: S608 - constant column list
    " AND EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $4)"
    " ORDER BY id DESC LIMIT $3"
)
IS_MEMBER = "SELECT EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2)"
WAL_POSITION = "SELECT pg_current_wal_lsn()::text"

Body = Annotated[str, msgspec.Meta(min_length=1, max_length=4000, pattern=BODY_PATTERN)]
ClientMsgId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NO_NUL)]
PathId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]
Limit = Annotated[int, QueryParameter(ge=1, le=200)]
Cursor = Annotated[int | None, QueryParameter(ge=0, le=MAX_ID)]


class SendMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
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


def _jwt_keys(raw: str) -> dict[str, bytes]:
    """`kid:secret,...` with URL-safe base64 secrets, as the service's `AUTH_JWT_KEYS`."""
    keys = {}
    for item in raw.split(","):
        kid, _, encoded = item.strip().partition(":")
        keys[kid] = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    return keys


KEYS = _jwt_keys(os.environ.get("BASELINE_JWT_KEYS", ""))


def _unauthorized() -> NotAuthorizedException:
    return NotAuthorizedException(
        detail="a valid bearer access token is required",
        headers={"WWW-Authenticate": 'Bearer realm="messenger", error="invalid_token"'},
    )


def caller(request: Request[Any, Any, Any]) -> int:
    """The user id of the request's bearer access token, verified (else 401)."""
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized()
    encoded = header.partition(" ")[2]
    try:
        key = KEYS.get(str(jwt.get_unverified_header(encoded).get("kid")))
        if key is None:
            raise _unauthorized()
        claims = jwt.decode(
            encoded, key=key, algorithms=["HS256"], issuer=ISSUER, options=REQUIRED_CLAIMS
        )
        return int(claims["sub"])
    except (jwt.InvalidTokenError, ValueError):
        raise _unauthorized() from None


def wants_primary(request: Request[Any, Any, Any]) -> bool:
    """Whether the read carries a consistency token (parsed: a malformed one is a 400)."""
    token = request.headers.get("x-consistency-token")
    if token is None:
        return False
    if LSN.match(token.strip()) is None:
        raise ClientException(detail="X-Consistency-Token must be a token returned by a write")
    return True


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


async def _unsent(
    conn: asyncpg.Connection, chat_id: int, sender: int, data: SendMessage
) -> Response[Message]:
    """Nothing was inserted: 404 (no such chat, or not a member), the stored message of this
    key (200), or 409."""
    row = await conn.fetchrow(WHY_NOT, chat_id, sender, data.client_msg_id)
    if not row[0] or not row[1]:
        raise NotFoundException(detail=f"chat {chat_id} does not exist")
    if row[2] is None:
        raise HTTPException(status_code=409, detail="the message was not stored")
    stored = Message(*row[2:])
    if stored.chat_id != chat_id or stored.body != data.body:
        raise HTTPException(status_code=409, detail="client_msg_id reused")
    return Response(stored, status_code=200)


async def _send(
    request: Request[Any, Any, Any], chat_id: int, data: SendMessage, *, token: bool
) -> Response[Message]:
    sender = caller(request)
    async with POOLS.writer.acquire() as conn:
        row = await conn.fetchrow(SEND, chat_id, sender, data.body, data.client_msg_id)
        if row is None:
            return await _unsent(conn, chat_id, sender, data)
        headers = {"x-consistency-token": await _wal_position(conn)} if token else None
        return Response(Message(*row), status_code=201, headers=headers)


async def _wal_position(conn: asyncpg.Connection) -> str:
    """The consistency token: the primary's WAL position after the commit."""
    return str(await conn.fetchval(WAL_POSITION))


@post("/chats/{chat_id:int}/messages")
async def send(
    request: Request[Any, Any, Any], chat_id: PathId, data: SendMessage
) -> Response[Message]:
    """One statement: membership check and insert."""
    return await _send(request, chat_id, data, token=False)


@post("/t/chats/{chat_id:int}/messages")
async def send_with_token(
    request: Request[Any, Any, Any], chat_id: PathId, data: SendMessage
) -> Response[Message]:
    """The same, plus the WAL position for `X-Consistency-Token` (a second round trip)."""
    return await _send(request, chat_id, data, token=True)


@get("/chats/{chat_id:int}/messages")
async def page(
    request: Request[Any, Any, Any], chat_id: PathId, limit: Limit = 50, before: Cursor = None
) -> MessagePage:
    """One keyset query on (chat_id, id desc) for a member; membership is looked up again only
    for an empty page (an empty chat, or not a member: 404)."""
    viewer = caller(request)
    pool = POOLS.writer if wants_primary(request) else POOLS.reader
    async with pool.acquire() as conn:
        below = MAX_ID if before is None else before
        rows = await conn.fetch(PAGE, chat_id, below, limit + 1, viewer)
        if not rows and not await conn.fetchval(IS_MEMBER, chat_id, viewer):
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
