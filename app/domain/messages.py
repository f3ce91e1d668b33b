"""Messages: idempotent send with the membership rule, and keyset pages newest first."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.session import DbSession
from app.domain.errors import ConflictError, ForbiddenError, NotFoundError
from app.domain.records import Message, MessagePage

MAX_ID = 2**63 - 1
_COLUMNS = "id, chat_id, sender_id, body, client_msg_id, created_at"

# Membership check and insert in one statement; a repeated client_msg_id inserts nothing.
_SEND = text(
    "INSERT INTO messages (chat_id, sender_id, body, client_msg_id)"
    " SELECT :chat_id, :sender_id, :body, :client_msg_id"
    " WHERE EXISTS (SELECT 1 FROM chat_members WHERE chat_id = :chat_id AND user_id = :sender_id)"
    " ON CONFLICT (sender_id, client_msg_id) DO NOTHING"
    f" RETURNING {_COLUMNS}"
)
_STORED = text(
    f"SELECT {_COLUMNS} FROM messages"
    " WHERE sender_id = :sender_id AND client_msg_id = :client_msg_id"
)
_WHY_NOT_SENT = text(
    "SELECT EXISTS (SELECT 1 FROM chats WHERE id = :chat_id),"
    " EXISTS (SELECT 1 FROM chat_members WHERE chat_id = :chat_id AND user_id = :sender_id)"
)
_PAGE = text(
    f"SELECT {_COLUMNS} FROM messages WHERE chat_id = :chat_id AND id < :before"
    " ORDER BY id DESC LIMIT :limit"
)
_CHAT_EXISTS = text("SELECT EXISTS (SELECT 1 FROM chats WHERE id = :chat_id)")


class MessageRepository:
    """Messages of chats."""

    __slots__ = ("_db",)

    def __init__(self, db: DbSession) -> None:
        self._db = db

    async def send(
        self, chat_id: int, sender_id: int, body: str, client_msg_id: str | None
    ) -> tuple[Message, bool]:
        """Store a message; returns it and whether it is new.

        With `client_msg_id`, a repeated send returns the stored message (`False`) instead
        of a duplicate, also when the same key is sent concurrently; such a send is
        idempotent and so may be retried after a connection failure.
        """
        params = {
            "chat_id": chat_id,
            "sender_id": sender_id,
            "body": body,
            "client_msg_id": client_msg_id,
        }

        async def insert(conn: AsyncConnection) -> Message | None:
            row = (await conn.execute(_SEND, params)).one_or_none()
            return Message(*row) if row is not None else None

        message = await self._db.write(insert, idempotent=client_msg_id is not None)
        if message is not None:
            return message, True
        return await self._db.read(lambda conn: self._explain_unsent(conn, params)), False

    @staticmethod
    async def _explain_unsent(conn: AsyncConnection, params: dict[str, object]) -> Message:
        """Nothing was inserted: the stored message of this key, or why not (403/404/409)."""
        if params["client_msg_id"] is not None:
            row = (await conn.execute(_STORED, params)).one_or_none()
            if row is not None:
                stored = Message(*row)
                if stored.chat_id != params["chat_id"] or stored.body != params["body"]:
                    raise ConflictError("client_msg_id was already used for a different message")
                return stored
        chat_exists, is_member = (await conn.execute(_WHY_NOT_SENT, params)).one()
        if not chat_exists:
            raise NotFoundError(f"chat {params['chat_id']} does not exist")
        if not is_member:
            raise ForbiddenError(f"user {params['sender_id']} is not a member of this chat")
        raise ConflictError("the message was not stored; send it again")

    async def page(self, chat_id: int, before: int | None, limit: int) -> MessagePage:
        """Messages of a chat with id below `before`, newest first."""
        params = {
            "chat_id": chat_id,
            "before": MAX_ID if before is None else before,
            "limit": limit + 1,
        }

        async def fetch(conn: AsyncConnection) -> list[Message] | None:
            items = [Message(*row) for row in await conn.execute(_PAGE, params)]
            if items:
                return items
            exists = (await conn.execute(_CHAT_EXISTS, params)).scalar_one()
            return [] if exists else None

        items = await self._db.read(fetch)
        if items is None:
            raise NotFoundError(f"chat {chat_id} does not exist")
        if len(items) > limit:
            items = items[:limit]
            return MessagePage(items=items, next=items[-1].id)
        return MessagePage(items=items, next=None)
