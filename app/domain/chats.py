"""Chats: create with members, fetch, page through a user's chats."""

from __future__ import annotations

from app.db.connection import Connection, Query, Scalar
from app.db.session import DbSession
from app.domain.errors import ConflictError, ForbiddenError, NotFoundError
from app.domain.records import Chat, ChatPage

# A chat record is the chats row with its member ids (ascending) before `created_at`.
_MEMBERS_OF_C = "ARRAY(SELECT user_id FROM chat_members WHERE chat_id = c.id ORDER BY user_id)"
_CHAT_COLUMNS = f"c.id, c.title, {_MEMBERS_OF_C}, c.created_at"

# One statement, atomic on its own: the chat is inserted only when every member exists and
# none of them blocked the creator. $1 title, $2 distinct member ids, $3 their count,
# $4 the creator.
# The caller wakes the event streams after it (`Hub.announce`).
_CREATE = Query(
    "WITH found AS ("
    "  SELECT id FROM users WHERE id = ANY($2::bigint[])"
    "), c AS ("
    "  INSERT INTO chats (title) SELECT $1::text"
    "  WHERE (SELECT count(*) FROM found) = $3"
    "  AND NOT EXISTS (SELECT 1 FROM user_blocks"
    "    WHERE blocked_id = $4 AND blocker_id = ANY($2::bigint[]))"
    "  RETURNING id, title, created_at"
    "), m AS ("
    "  INSERT INTO chat_members (chat_id, user_id) SELECT c.id, found.id FROM c, found"
    "  RETURNING user_id"
    ")"
    " SELECT c.id, c.title, ARRAY(SELECT user_id FROM m ORDER BY user_id), c.created_at FROM c",
    Chat,
)
_BLOCKED_BY = Scalar(
    "SELECT EXISTS (SELECT 1 FROM user_blocks WHERE blocked_id = $1 AND blocker_id = ANY($2))",
    bool,
)
# $1 chat, $2 user: the membership removed and its departure recorded (the event stream's
# `chat_left`, with the membership's position: docs/events.md), or nothing when there was none.
_LEAVE = Scalar(
    "WITH gone AS ("
    "  DELETE FROM chat_members WHERE chat_id = $1 AND user_id = $2"
    "  RETURNING chat_id, user_id, xid"
    "), departed AS ("
    "  INSERT INTO chat_departures (chat_id, user_id, joined_xid)"
    "  SELECT chat_id, user_id, xid FROM gone RETURNING 1"
    ") SELECT EXISTS (SELECT 1 FROM departed)",
    bool,
)
# $1 blocker, $2 blocked: whether the blocked user exists (the block is kept once).
_BLOCK = Scalar(
    "WITH target AS (SELECT id FROM users WHERE id = $2), b AS ("
    "  INSERT INTO user_blocks (blocker_id, blocked_id) SELECT $1, id FROM target"
    "  ON CONFLICT DO NOTHING RETURNING 1"
    ") SELECT EXISTS (SELECT 1 FROM target)",
    bool,
)
_UNBLOCK = Scalar(
    "WITH gone AS (DELETE FROM user_blocks WHERE blocker_id = $1 AND blocked_id = $2"
    " RETURNING 1) SELECT EXISTS (SELECT 1 FROM users WHERE id = $2)",
    bool,
)
_UNKNOWN_USERS = Scalar(
    "SELECT ARRAY(SELECT unnest($1::bigint[]) EXCEPT SELECT id FROM users ORDER BY 1)",
    list[int],
)
# A chat is visible to its members only: to anyone else it does not exist. $1 chat, $2 viewer.
_BY_ID = Query(
    f"SELECT {_CHAT_COLUMNS} FROM chats c WHERE c.id = $1"  # noqa: S608 - constant column list
    " AND EXISTS (SELECT 1 FROM chat_members WHERE chat_id = c.id AND user_id = $2)",
    Chat,
)
# One statement per page, which also tells a missing user (no row) from a user without chats
# on this page (one row of NULLs). Keyset on chat id over the (user_id, chat_id) index: the
# cost is the page's, however many chats the user is in. $1 user_id, $2 after, $3 limit.
_OF_USER = Query(
    f"SELECT {_CHAT_COLUMNS}"  # noqa: S608 - constant column list
    " FROM users u"
    " LEFT JOIN LATERAL ("
    "  SELECT chat_id FROM chat_members"
    "  WHERE user_id = u.id AND chat_id > $2 ORDER BY chat_id LIMIT $3"
    " ) p ON true"
    " LEFT JOIN chats c ON c.id = p.chat_id"
    " WHERE u.id = $1 ORDER BY p.chat_id",
    lambda chat_id, *rest: None if chat_id is None else Chat(chat_id, *rest),
)


class ChatRepository:
    """Chats and their members."""

    __slots__ = ("_db",)

    def __init__(self, db: DbSession) -> None:
        self._db = db

    async def create(self, creator: int, title: str | None, member_ids: list[int]) -> Chat:
        """Create a chat of `creator` and `member_ids`; `NotFoundError` naming the member ids
        that are not users."""
        wanted = sorted({creator, *member_ids})

        async def insert(conn: Connection) -> Chat | None:
            return await conn.fetch_one(_CREATE, title, wanted, len(wanted), creator)

        chat = await self._db.write(insert)
        if chat is not None:
            return chat

        async def blocked(conn: Connection) -> bool:
            return await conn.fetch_scalar(_BLOCKED_BY, creator, wanted)

        if await self._db.read(blocked, on_primary=True):
            raise ForbiddenError("a member has blocked you")

        async def unknown(conn: Connection) -> list[int]:
            return await conn.fetch_scalar(_UNKNOWN_USERS, wanted)

        missing = await self._db.read(unknown)
        raise NotFoundError(f"unknown member ids: {', '.join(map(str, missing)) or 'none'}")

    async def leave(self, chat_id: int, user_id: int) -> None:
        """Remove `user_id` from the chat; `NotFoundError` when they are not a member."""

        async def delete(conn: Connection) -> bool:
            return await conn.fetch_scalar(_LEAVE, chat_id, user_id)

        if not await self._db.write(delete, idempotent=True):
            raise NotFoundError(f"chat {chat_id} does not exist")

    async def block(self, blocker: int, blocked: int, *, on: bool) -> None:
        """Block (`on`) or unblock `blocked` for `blocker`; `NotFoundError` when `blocked`
        does not exist, `ConflictError` for blocking oneself."""
        if on and blocker == blocked:
            raise ConflictError("a user cannot block themselves")

        async def change(conn: Connection) -> bool:
            return await conn.fetch_scalar(_BLOCK if on else _UNBLOCK, blocker, blocked)

        if not await self._db.write(change, idempotent=True):
            raise NotFoundError(f"user {blocked} does not exist")

    async def get(self, chat_id: int, viewer: int) -> Chat:
        """The chat with `chat_id` and its member ids, if `viewer` is a member (a chat the
        viewer is not in does not exist for them: `NotFoundError` either way)."""

        async def fetch(conn: Connection) -> Chat | None:
            return await conn.fetch_one(_BY_ID, chat_id, viewer)

        chat = await self._db.read(fetch)
        if chat is None:
            raise NotFoundError(f"chat {chat_id} does not exist")
        return chat

    async def of_user(self, user_id: int, after: int, limit: int) -> ChatPage:
        """The chats `user_id` is a member of with id above `after`, ascending, `limit` at most.

        What bounds the answer is the page: at most `limit` chats (the API allows 200) of at
        most 1000 member ids each (the most a chat is created with), whatever the number of
        chats the user is in.
        """

        async def fetch(conn: Connection) -> list[Chat | None]:
            return await conn.fetch_all(_OF_USER, user_id, after, limit + 1)

        rows = await self._db.read(fetch)
        if not rows:
            raise NotFoundError(f"user {user_id} does not exist")
        found = [chat for chat in rows if chat is not None]
        if len(found) > limit:
            found = found[:limit]
            return ChatPage(items=found, next=found[-1].id)
        return ChatPage(items=found, next=None)
