"""The `X-Consistency-Token` header: its name, how a request's token is read, and how a
response that wrote gets one. Nothing else knows the header or where the session is kept.

A write answers with the primary's WAL position after its commit; a client that sends it
back on a later read is served only by a server that has replayed that position
(docs/architecture.md, read-your-writes).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import ClientException
from litestar.types import Message, Scope

from app.db.lsn import InvalidLsnError, format_lsn, parse_lsn
from app.db.session import DbSession

HEADER = "x-consistency-token"
_HEADER_BYTES = HEADER.encode("ascii")
_SESSION_KEY = "db_session"  # where the request's DbSession is kept in the ASGI scope state


def db_session(request: Request[Any, Any, Any]) -> DbSession:
    """The request's `DbSession` (made on first use), honouring the token it sent."""
    state = request.scope["state"]
    session: DbSession | None = state.get(_SESSION_KEY)
    if session is None:
        session = DbSession(request.app.state.database, _min_lsn(request))
        state[_SESSION_KEY] = session
    return session


def _min_lsn(request: Request[Any, Any, Any]) -> int | None:
    token = request.headers.get(HEADER)
    if token is None:
        return None
    try:
        return parse_lsn(token)
    except InvalidLsnError:
        raise ClientException(
            detail="X-Consistency-Token must be a token returned by an earlier write"
        ) from None


async def add_consistency_token(message: Message, scope: Scope) -> None:
    """`before_send` hook: after a write, tell the client the primary's WAL position."""
    if message["type"] != "http.response.start":
        return
    session = scope.get("state", {}).get(_SESSION_KEY)
    if isinstance(session, DbSession) and session.commit_lsn is not None:
        headers = list(message.get("headers", []))
        headers.append((_HEADER_BYTES, format_lsn(session.commit_lsn).encode("ascii")))
        message["headers"] = headers
