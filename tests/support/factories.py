"""polyfactory factories for request bodies."""

from __future__ import annotations

import uuid

from polyfactory.factories.msgspec_factory import MsgspecFactory

from app.api.schemas import CreateUser, SendMessage


class CreateUserFactory(MsgspecFactory[CreateUser]):
    """Valid `POST /users` bodies with unique usernames."""

    __check_model__ = False

    @classmethod
    def username(cls) -> str:
        return f"u_{uuid.uuid4().hex[:20]}"

    @classmethod
    def display_name(cls) -> str:
        # Within the rules of `app.api.schemas.DisplayName` (the struct checks them when built).
        return f"{cls.__faker__.first_name()} {uuid.uuid4().hex[:8]}"


class SendMessageFactory(MsgspecFactory[SendMessage]):
    """Valid `POST /chats/{id}/messages` bodies (set `sender_id`)."""

    __check_model__ = False

    @classmethod
    def client_msg_id(cls) -> str:
        return uuid.uuid4().hex
