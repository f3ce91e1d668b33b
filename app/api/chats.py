"""`/chats` endpoints, messages included."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody

from app.api.auth import Authentication
from app.api.bearer import Caller
from app.api.controller import ApiController
from app.api.head_options import read
from app.api.problems import problem_responses
from app.api.schemas import CreateChat, Cursor, Limit, PathId, SendMessage
from app.domain.chats import ChatRepository
from app.domain.messages import MessageRepository
from app.domain.records import Chat, Message, MessagePage
from app.events.hub import Hub


class ChatController(ApiController):
    """Create and read chats; send and page through their messages."""

    path = "/chats"
    tags = ["chats"]

    @post(
        "/",
        status_code=201,
        summary="Create a chat of the caller and the given members",
        description="Limited per user (`CHAT_CREATE_LIMIT` per `USER_LIMIT_WINDOW_S`: 429 with "
        "`Retry-After`). 403 when a member has blocked the caller.",
        responses=problem_responses(403, 404, 413, 429),
    )
    async def create(
        self,
        data: JSONBody[CreateChat],
        chats: NamedDependency[ChatRepository],
        request: Request[Caller, Any, Any],
    ) -> Chat:
        auth: Authentication = request.app.state.authentication
        await auth.limit(auth.chat_create, str(request.user.id))
        chat = await chats.create(request.user.id, data.title, data.member_ids)
        _announce(request)
        return chat

    @delete(
        "/{chat_id:str}/members/me",
        summary="Leave a chat",
        status_code=204,
        responses=problem_responses(404),
    )
    async def leave(
        self,
        chat_id: PathId,
        chats: NamedDependency[ChatRepository],
        request: Request[Caller, Any, Any],
    ) -> None:
        await chats.leave(chat_id, request.user.id)
        _announce(request)

    @read(
        "/{chat_id:str}",
        summary="Get a chat you are a member of, and its member ids",
        responses=problem_responses(404),
    )
    async def get_chat(
        self,
        chat_id: PathId,
        chats: NamedDependency[ChatRepository],
        request: Request[Caller, Any, Any],
    ) -> Chat:
        return await chats.get(chat_id, request.user.id)

    @post(
        "/{chat_id:str}/messages",
        summary="Send a message",
        status_code=201,
        responses={
            200: ResponseSpec(
                data_container=Message,
                description="The stored message: `client_msg_id` repeats an earlier send",
            ),
            **problem_responses(404, 409, 413, 429),
        },
        description="201 with the new message; 200 with the stored one when `client_msg_id` "
        "repeats an earlier send of this sender. The sender is the caller. A chat the caller "
        "is not a member of answers 404 like one that does not exist, before the key is "
        "looked at. Limited per user (`SEND_LIMIT` per `USER_LIMIT_WINDOW_S`: 429 with "
        "`Retry-After`).",
    )
    async def send(
        self,
        chat_id: PathId,
        data: JSONBody[SendMessage],
        messages: NamedDependency[MessageRepository],
        request: Request[Caller, Any, Any],
    ) -> Response[Message]:
        auth: Authentication = request.app.state.authentication
        await auth.limit(auth.send, str(request.user.id))
        message, created = await messages.send(
            chat_id, request.user.id, data.body, data.client_msg_id
        )
        if not created:  # a repeated key stored nothing: no event, no wake-up
            return Response(message, status_code=200)
        _announce(request)
        return Response(message, status_code=201)

    @read(
        "/{chat_id:str}/messages",
        summary="Page through the messages of a chat you are a member of, newest first",
        responses=problem_responses(404),
    )
    async def list_messages(
        self,
        chat_id: PathId,
        messages: NamedDependency[MessageRepository],
        request: Request[Caller, Any, Any],
        limit: Limit = 50,
        before: Cursor = None,
    ) -> MessagePage:
        return await messages.page(chat_id, request.user.id, before, limit)


def _announce(request: Request[Caller, Any, Any]) -> None:
    """Wake the event streams after a committed write (one notification for many: a
    `NOTIFY` in the write itself doubled PostgreSQL's cost of a send, docs/events.md)."""
    events: Hub = request.app.state["events"]
    events.announce()
