"""`/users` endpoints."""

from __future__ import annotations

from typing import Any

from litestar import Request, delete, post, put
from litestar.di import NamedDependency
from litestar.middleware import DefineMiddleware
from litestar.params import JSONBody

from app.api.auth import NO_TOKEN, Authentication, EarlyRefusal
from app.api.bearer import Caller
from app.api.controller import ApiController
from app.api.head_options import read
from app.api.problems import problem_responses
from app.api.schemas import CreateUser, Cursor, Limit, PathId, SetStatus, StatusFilter
from app.domain.chats import ChatRepository
from app.domain.errors import ConflictError, ForbiddenError
from app.domain.records import ChatPage, User, UserPage
from app.domain.users import UserRepository


class UserController(ApiController):
    """Create, read and list users; change their status; list their chats."""

    path = "/users"
    tags = ["users"]

    @post(
        "/",
        status_code=201,
        summary="Register: create a user with a password (no token needed)",
        responses=problem_responses(409, 413, 429, authenticated=False),
        security=NO_TOKEN,
        exclude_from_auth=True,
        middleware=[DefineMiddleware(EarlyRefusal, rate="register_per_address", hash_budget=True)],
        description="Limited per client address and in all (429 with `Retry-After`); a taken "
        "username answers 409 before any password hashing; when too many registrations wait "
        "for a hash, 503 with `Retry-After` at once. A display name that mixes scripts with "
        "look-alike letters, or reads as another existing username, is refused.",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CreateUser],
        users: NamedDependency[UserRepository],
    ) -> User:
        auth: Authentication = request.app.state.authentication
        await auth.limit(auth.register_per_address, auth.client(request))
        await auth.limit(auth.register_global, "all")
        impersonated = data.display_as_username
        taken = await users.taken([data.username, *([impersonated] if impersonated else [])])
        if data.username in taken:
            raise ConflictError(f"username {data.username!r} is taken")
        if impersonated in taken:
            raise ConflictError("display_name reads as another user's username")
        password_hash = await auth.passwords.hash(data.password)
        return await users.create(data.username, data.display_name, password_hash)

    @read(
        "/{user_id:str}",
        summary="Get a user",
        responses=problem_responses(404),
    )
    async def get_user(self, user_id: PathId, users: NamedDependency[UserRepository]) -> User:
        return await users.get(user_id)

    @read(
        "/",
        summary="List users by ascending id, optionally by status",
        responses=problem_responses(),
    )
    async def list_users(
        self,
        users: NamedDependency[UserRepository],
        status: StatusFilter = None,
        limit: Limit = 50,
        after: Cursor = None,
    ) -> UserPage:
        return await users.page(status, after or 0, limit)

    @put(
        "/{user_id:str}/status",
        summary="Set your own status",
        responses=problem_responses(403, 404, 413),
    )
    async def set_status(
        self,
        user_id: PathId,
        data: JSONBody[SetStatus],
        users: NamedDependency[UserRepository],
        request: Request[Caller, Any, Any],
    ) -> User:
        _only_yourself(request.user, user_id, "change the status of")
        return await users.set_status(user_id, data.status)

    @read(
        "/{user_id:str}/chats",
        summary="List the chats a user is a member of, by ascending id",
        description="A page holds at most `limit` (at most 200) chats of at most 1000 member ids "
        "each: a user may be in any number of chats, the page bounds the answer.",
        responses=problem_responses(403, 404),
    )
    async def chats_of_user(
        self,
        user_id: PathId,
        chats: NamedDependency[ChatRepository],
        request: Request[Caller, Any, Any],
        limit: Limit = 50,
        after: Cursor = None,
    ) -> ChatPage:
        _only_yourself(request.user, user_id, "list the chats of")
        return await chats.of_user(user_id, after or 0, limit)

    @put(
        "/{user_id:str}/blocks/{blocked_id:str}",
        summary="Block a user: they cannot start a chat with you nor add you to one",
        status_code=204,
        responses=problem_responses(403, 404, 409),
    )
    async def block(
        self,
        user_id: PathId,
        blocked_id: PathId,
        chats: NamedDependency[ChatRepository],
        request: Request[Caller, Any, Any],
    ) -> None:
        _only_yourself(request.user, user_id, "block users for")
        await chats.block(user_id, blocked_id, on=True)

    @delete(
        "/{user_id:str}/blocks/{blocked_id:str}",
        summary="Unblock a user",
        status_code=204,
        responses=problem_responses(403, 404),
    )
    async def unblock(
        self,
        user_id: PathId,
        blocked_id: PathId,
        chats: NamedDependency[ChatRepository],
        request: Request[Caller, Any, Any],
    ) -> None:
        _only_yourself(request.user, user_id, "unblock users for")
        await chats.block(user_id, blocked_id, on=False)


def _only_yourself(caller: Caller, user_id: int, what: str) -> None:
    if caller.id != user_id:
        raise ForbiddenError(f"a user may only {what} themselves")
