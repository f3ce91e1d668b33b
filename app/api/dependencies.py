"""Litestar dependency providers: the repositories, over the request's `DbSession`.

Handlers take the caller from `request.user` (set by the JWT middleware), not from a provider:
Litestar resolves two or more dependencies of a handler in an anyio task group, which the
benchmark's profile put at 60-100 us per request; one provider per handler avoids it.

Each provider takes only the request (a reserved, free argument) and builds the repository
over the request's `DbSession`, made on first use by `app.api.consistency`, so every
repository of one request shares it. One provider level instead of two saved a DI
resolution per request on the benchmarks.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide

from app.api.consistency import db_session
from app.domain.accounts import AccountRepository
from app.domain.chats import ChatRepository
from app.domain.messages import MessageRepository
from app.domain.users import UserRepository


def provide_users(request: Request[Any, Any, Any]) -> UserRepository:
    return UserRepository(db_session(request))


def provide_chats(request: Request[Any, Any, Any]) -> ChatRepository:
    return ChatRepository(db_session(request))


def provide_messages(request: Request[Any, Any, Any]) -> MessageRepository:
    return MessageRepository(db_session(request))


def provide_accounts(request: Request[Any, Any, Any]) -> AccountRepository:
    return AccountRepository(db_session(request))


DEPENDENCIES = {
    "accounts": Provide(provide_accounts, sync_to_thread=False),
    "users": Provide(provide_users, sync_to_thread=False),
    "chats": Provide(provide_chats, sync_to_thread=False),
    "messages": Provide(provide_messages, sync_to_thread=False),
}
