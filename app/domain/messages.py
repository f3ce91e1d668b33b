"""Messages: idempotent send with the membership rule, and keyset pages newest first."""

from __future__ import annotations

from app.db.connection import Connection, Query, Scalar
from app.db.session import DbSession
from app.domain.errors import ConflictError, NotFoundError
from app.domain.records import Message, MessagePage
from app.schema.tables import column_list, messages

MAX_ID = 2**63 - 1
_COLUMNS = column_list(messages)

# Membership check and insert in one statement; a repeated client_msg_id inserts nothing.
# $1 chat_id, $2 sender_id, $3 body, $4 client_msg_id.
# The caller wakes the event streams after the commit (`Hub.announce`).
_SEND = Query(
    "INSERT INTO messages (chat_id, sender_id, body, client_msg_id)"  # noqa: S608 - constant column list
    " SELECT $1, $2, $3, $4"
    " WHERE EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2)"
    " ON CONFLICT (sender_id, client_msg_id) DO NOTHING"
    f" RETURNING {_COLUMNS}",
    Message,
)
# Why a send inserted nothing, in one statement: does the chat exist, is the sender a member,
# and the message stored under the sender's key (NULLs when there is none).
# $1 chat_id, $2 sender_id, $3 client_msg_id.
_WHY_NOT_SENT = Query(
    "SELECT EXISTS (SELECT 1 FROM chats WHERE id = $1),"  # noqa: S608 - constant column list
    " EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2), m.*"
    " FROM (SELECT 1) AS one LEFT JOIN ("
    f"  SELECT {_COLUMNS} FROM messages"
    "  WHERE sender_id = $2 AND client_msg_id = $3"
    " ) AS m ON true",
    lambda chat_exists, is_member, *stored: (
        bool(chat_exists),
        bool(is_member),
        None if stored[0] is None else Message(*stored),
    ),
)
# Members only; the membership check runs once per statement. $1 chat, $2 before, $3 limit,
# $4 viewer.
_PAGE = Query(
    f"SELECT {_COLUMNS} FROM messages WHERE chat_id = $1 AND id < $2"  # noqa: S608 - constant column list
    " AND EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $4)"
    " ORDER BY id DESC LIMIT $3",
    Message,
)
_IS_MEMBER = Scalar(
    "SELECT EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2)", bool
)


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

        async def insert(conn: Connection) -> Message | None:
            return await conn.fetch_one(_SEND, chat_id, sender_id, body, client_msg_id)

        message = await self._db.write(insert, idempotent=client_msg_id is not None)
        if message is not None:
            return message, True

        async def explain(conn: Connection) -> Message:
            return await _explain_unsent(conn, chat_id, sender_id, body, client_msg_id)

        return await self._db.read(explain), False

    async def page(self, chat_id: int, viewer: int, before: int | None, limit: int) -> MessagePage:
        """Messages of a chat with id below `before`, newest first, for a member (to anyone
        else the chat does not exist)."""
        below = MAX_ID if before is None else before

        async def fetch(conn: Connection) -> list[Message] | None:
            items = await conn.fetch_all(_PAGE, chat_id, below, limit + 1, viewer)
            if items:
                return items
            return [] if await conn.fetch_scalar(_IS_MEMBER, chat_id, viewer) else None

        items = await self._db.read(fetch)
        if items is None:
            raise NotFoundError(f"chat {chat_id} does not exist")
        if len(items) > limit:
            items = items[:limit]
            return MessagePage(items=items, next=items[-1].id)
        return MessagePage(items=items, next=None)


async def _explain_unsent(
    conn: Connection, chat_id: int, sender_id: int, body: str, client_msg_id: str | None
) -> Message:
    """Nothing was inserted: why (404), or the stored message of this key (or 409).

    The chat and the membership come first: a key is only looked at in a chat its sender may
    write to, so a 409 never tells anyone else that the key was used. A chat the sender is
    not in answers exactly like one that does not exist, so chat ids cannot be probed.
    """
    found = await conn.fetch_one(_WHY_NOT_SENT, chat_id, sender_id, client_msg_id)
    chat_exists, is_member, stored = found if found is not None else (False, False, None)
    if not chat_exists or not is_member:
        raise NotFoundError(f"chat {chat_id} does not exist")
    if stored is None:
        raise ConflictError("the message was not stored; send it again")
    if stored.chat_id != chat_id or stored.body != body:
        raise ConflictError("client_msg_id was already used for a different message")
    return stored
