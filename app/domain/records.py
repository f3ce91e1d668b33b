"""Records returned by repositories; msgspec structs, so the API encodes them directly."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

UserStatus = Literal["online", "offline", "away"]


class User(msgspec.Struct, frozen=True):
    """A messenger user."""

    id: int
    username: str
    display_name: str
    status: UserStatus
    created_at: datetime
    updated_at: datetime


class Chat(msgspec.Struct, frozen=True):
    """A chat with the ids of its members, ascending."""

    id: int
    title: str | None
    member_ids: list[int]
    created_at: datetime


class Message(msgspec.Struct, frozen=True):
    """A message in a chat."""

    id: int
    chat_id: int
    sender_id: int
    body: str
    client_msg_id: str | None
    created_at: datetime


class UserPage(msgspec.Struct, frozen=True):
    """A page of users in ascending id order; `next` is the `after` of the next page."""

    items: list[User]
    next: int | None


class ChatPage(msgspec.Struct, frozen=True):
    """A page of the chats a user is a member of, in ascending id order; `next` is the `after`
    of the next page."""

    items: list[Chat]
    next: int | None


class MessagePage(msgspec.Struct, frozen=True):
    """A page of messages, newest first; `next` is the `before` of the next page."""

    items: list[Message]
    next: int | None
