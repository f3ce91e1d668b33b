"""Adds `X-Consistency-Token` to the response of every request that wrote."""

from __future__ import annotations

from litestar.types import Message, Scope

from app.api.dependencies import SESSION_STATE_KEY
from app.db.session import DbSession

_HEADER = b"x-consistency-token"


async def add_consistency_token(message: Message, scope: Scope) -> None:
    """`before_send` hook: after a write, tell the client the primary's WAL position."""
    if message["type"] != "http.response.start":
        return
    session = scope.get("state", {}).get(SESSION_STATE_KEY)
    if isinstance(session, DbSession):
        token = session.consistency_token
        if token is not None:
            headers = list(message.get("headers", []))
            headers.append((_HEADER, token.encode("ascii")))
            message["headers"] = headers
