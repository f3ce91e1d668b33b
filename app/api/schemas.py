"""Request bodies and the validated scalar types shared by controllers."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar.params import PathParameter, QueryParameter

from app.domain.records import UserStatus

MAX_BIGINT = 2**63 - 1
NO_NUL = "^[^\\x00]*$"  # PostgreSQL text cannot hold NUL; reject it as a 400, not a 500

Username = Annotated[
    str,
    msgspec.Meta(
        pattern="^[a-z0-9_]{3,32}$",
        description="3 to 32 of a-z, 0-9 and _",
        examples=["alice_01"],
    ),
]
DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NO_NUL)]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
Body = Annotated[str, msgspec.Meta(min_length=1, max_length=4000, pattern=NO_NUL)]
ClientMsgId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=NO_NUL,
        description="Idempotency key, unique per sender; a repeat returns the stored message",
    ),
]
Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_BIGINT)]

# Path and query parameters.
PathId = Annotated[int, PathParameter(ge=1, le=MAX_BIGINT)]
Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Page size, 1 to 200")]
Cursor = Annotated[
    int | None,
    QueryParameter(ge=0, le=MAX_BIGINT, description="Cursor: `next` of the previous page"),
]
StatusFilter = Annotated[
    UserStatus | None, QueryParameter(description="Only users with this status")
]


class CreateUser(msgspec.Struct, frozen=True):
    """`POST /users` body."""

    username: Username
    display_name: DisplayName | None = None


class SetStatus(msgspec.Struct, frozen=True):
    """`PUT /users/{id}/status` body."""

    status: UserStatus


class CreateChat(msgspec.Struct, frozen=True):
    """`POST /chats` body: 1 to 1000 member ids."""

    member_ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=1000)]
    title: Title | None = None


class SendMessage(msgspec.Struct, frozen=True):
    """`POST /chats/{id}/messages` body."""

    sender_id: Id
    body: Body
    client_msg_id: ClientMsgId | None = None
