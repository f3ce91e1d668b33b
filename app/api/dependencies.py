"""Litestar dependency providers: the request's `DbSession` and the repositories over it."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException

from app.db.database import Database
from app.db.lsn import InvalidLsnError, parse_lsn
from app.db.session import DbSession
from app.domain.chats import ChatRepository
from app.domain.messages import MessageRepository
from app.domain.users import UserRepository

CONSISTENCY_HEADER = "x-consistency-token"
SESSION_STATE_KEY = "db_session"


def provide_db_session(request: Request[object, object, State], state: State) -> DbSession:
    """A `DbSession` honouring the request's `X-Consistency-Token`, if it sent one."""
    database: Database = state.database
    token = request.headers.get(CONSISTENCY_HEADER)
    min_lsn = None
    if token is not None:
        try:
            min_lsn = parse_lsn(token)
        except InvalidLsnError:
            raise ClientException(
                detail="X-Consistency-Token must be a token returned by an earlier write"
            ) from None
    session = DbSession(database, min_lsn)
    request.scope["state"][SESSION_STATE_KEY] = session
    return session


def provide_users(db_session: NamedDependency[DbSession]) -> UserRepository:
    return UserRepository(db_session)


def provide_chats(db_session: NamedDependency[DbSession]) -> ChatRepository:
    return ChatRepository(db_session)


def provide_messages(db_session: NamedDependency[DbSession]) -> MessageRepository:
    return MessageRepository(db_session)


DEPENDENCIES = {
    "db_session": Provide(provide_db_session, sync_to_thread=False),
    "users": Provide(provide_users, sync_to_thread=False),
    "chats": Provide(provide_chats, sync_to_thread=False),
    "messages": Provide(provide_messages, sync_to_thread=False),
}
