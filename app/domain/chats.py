"""Chats: create with members, fetch, list a user's chats."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.session import DbSession
from app.domain.errors import NotFoundError
from app.domain.records import Chat, ChatList

_MEMBERS_OF_C = "ARRAY(SELECT user_id FROM chat_members WHERE chat_id = c.id ORDER BY user_id)"

# One statement, atomic on its own: the chat is inserted only when every member exists.
_CREATE = text(
    "WITH found AS ("
    "  SELECT id FROM users WHERE id = ANY(CAST(:member_ids AS bigint[]))"
    "), c AS ("
    "  INSERT INTO chats (title) SELECT :title"
    "  WHERE (SELECT count(*) FROM found) = :member_count"
    "  RETURNING id, title, created_at"
    "), m AS ("
    "  INSERT INTO chat_members (chat_id, user_id) SELECT c.id, found.id FROM c, found"
    "  RETURNING user_id"
    ")"
    " SELECT c.id, c.title, ARRAY(SELECT user_id FROM m ORDER BY user_id), c.created_at FROM c"
)
_UNKNOWN_USERS = text(
    "SELECT ARRAY(SELECT unnest(CAST(:member_ids AS bigint[]))"
    " EXCEPT SELECT id FROM users ORDER BY 1)"
)
_BY_ID = text(f"SELECT c.id, c.title, {_MEMBERS_OF_C}, c.created_at FROM chats c WHERE c.id = :id")
_OF_USER = text(
    f"SELECT c.id, c.title, {_MEMBERS_OF_C}, c.created_at"
    " FROM chat_members m JOIN chats c ON c.id = m.chat_id"
    " WHERE m.user_id = :user_id ORDER BY c.id"
)
_USER_EXISTS = text("SELECT EXISTS (SELECT 1 FROM users WHERE id = :id)")


class ChatRepository:
    """Chats and their members."""

    __slots__ = ("_db",)

    def __init__(self, db: DbSession) -> None:
        self._db = db

    async def create(self, title: str | None, member_ids: list[int]) -> Chat:
        """Create a chat; `NotFoundError` naming the member ids that are not users."""
        wanted = sorted(set(member_ids))
        params = {"title": title, "member_ids": wanted, "member_count": len(wanted)}

        async def insert(conn: AsyncConnection) -> Chat | None:
            row = (await conn.execute(_CREATE, params)).one_or_none()
            return Chat(*row) if row is not None else None

        chat = await self._db.write(insert)
        if chat is not None:
            return chat

        async def unknown(conn: AsyncConnection) -> list[int]:
            return list((await conn.execute(_UNKNOWN_USERS, {"member_ids": wanted})).scalar_one())

        missing = await self._db.read(unknown)
        raise NotFoundError(f"unknown member ids: {', '.join(map(str, missing)) or 'none'}")

    async def get(self, chat_id: int) -> Chat:
        """The chat with `chat_id` and its member ids."""

        async def fetch(conn: AsyncConnection) -> Chat | None:
            row = (await conn.execute(_BY_ID, {"id": chat_id})).one_or_none()
            return Chat(*row) if row is not None else None

        chat = await self._db.read(fetch)
        if chat is None:
            raise NotFoundError(f"chat {chat_id} does not exist")
        return chat

    async def of_user(self, user_id: int) -> ChatList:
        """Every chat `user_id` is a member of, ascending by id."""

        async def fetch(conn: AsyncConnection) -> list[Chat] | None:
            chats = [Chat(*row) for row in await conn.execute(_OF_USER, {"user_id": user_id})]
            if chats:
                return chats
            exists = (await conn.execute(_USER_EXISTS, {"id": user_id})).scalar_one()
            return [] if exists else None

        chats = await self._db.read(fetch)
        if chats is None:
            raise NotFoundError(f"user {user_id} does not exist")
        return ChatList(items=chats)
