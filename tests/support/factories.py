"""polyfactory factories for request bodies."""

from __future__ import annotations

import uuid

from polyfactory.factories.msgspec_factory import MsgspecFactory

from app.api.schemas import CreateUser


class CreateUserFactory(MsgspecFactory[CreateUser]):
    """Valid `POST /users` bodies with unique usernames (give the `password`)."""

    __check_model__ = False

    @classmethod
    def username(cls) -> str:
        return f"u_{uuid.uuid4().hex[:20]}"

    @classmethod
    def display_name(cls) -> str:
        # Within the rules of `app.api.schemas.DisplayName` (the struct checks them when built).
        return f"{cls.__faker__.first_name()} {uuid.uuid4().hex[:8]}"
