"""`/users` endpoints."""

from __future__ import annotations

from litestar import post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody

from app.api.controller import ApiController
from app.api.methods import read
from app.api.problems import problem_responses
from app.api.schemas import CreateUser, Cursor, Limit, PathId, SetStatus, StatusFilter
from app.domain.chats import ChatRepository
from app.domain.records import ChatPage, User, UserPage
from app.domain.users import UserRepository


class UserController(ApiController):
    """Create, read and list users; change their status; list their chats."""

    path = "/users"
    tags = ["users"]

    @post("/", status_code=201, summary="Create a user", responses=problem_responses(409, 413))
    async def create(
        self, data: JSONBody[CreateUser], users: NamedDependency[UserRepository]
    ) -> User:
        return await users.create(data.username, data.display_name)

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
        summary="Set a user's status",
        responses=problem_responses(404, 413),
    )
    async def set_status(
        self, user_id: PathId, data: JSONBody[SetStatus], users: NamedDependency[UserRepository]
    ) -> User:
        return await users.set_status(user_id, data.status)

    @read(
        "/{user_id:str}/chats",
        summary="List the chats a user is a member of, by ascending id",
        description="A page holds at most `limit` (at most 200) chats of at most 1000 member ids "
        "each: a user may be in any number of chats, the page bounds the answer.",
        responses=problem_responses(404),
    )
    async def chats_of_user(
        self,
        user_id: PathId,
        chats: NamedDependency[ChatRepository],
        limit: Limit = 50,
        after: Cursor = None,
    ) -> ChatPage:
        return await chats.of_user(user_id, after or 0, limit)
