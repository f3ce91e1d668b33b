"""The schema as SQLAlchemy Core metadata: what the repositories and migrations follow."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)

XID_DEFAULT = "(pg_current_xact_id()::text)::bigint"
"""The writing transaction's 64-bit id (epoch and xid), as a bigint: the event position."""

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = Table(
    "users",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("username", Text, nullable=False, unique=True),
    Column("display_name", Text, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'offline'")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Argon2id (PHC string); NULL for accounts made before passwords (they cannot log in
    # until an operator sets one: `messenger user set-password`).
    Column("password_hash", Text, nullable=True),
    CheckConstraint("username ~ '^[a-z0-9_]{3,32}$'", name="username_format"),
    CheckConstraint("char_length(display_name) BETWEEN 1 AND 64", name="display_name_length"),
    CheckConstraint("status IN ('online', 'offline', 'away')", name="status_value"),
    Index("ix_users_status_id", "status", "id"),
)

chats = Table(
    "chats",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("title", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("char_length(title) BETWEEN 1 AND 200", name="title_length"),
)

chat_members = Table(
    "chat_members",
    metadata,
    Column("chat_id", BigInteger, ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("joined_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The event position (docs/events.md): the id of the transaction that wrote the row.
    Column("xid", BigInteger, nullable=False, server_default=text(XID_DEFAULT)),
    PrimaryKeyConstraint("chat_id", "user_id"),
    Index("ix_chat_members_user_id_chat_id", "user_id", "chat_id"),
    Index("ix_chat_members_xid", "xid"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("chat_id", BigInteger, ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    Column("sender_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("body", Text, nullable=False),
    Column("client_msg_id", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The event position (docs/events.md): the id of the transaction that wrote the row.
    Column("xid", BigInteger, nullable=False, server_default=text(XID_DEFAULT)),
    CheckConstraint("char_length(body) BETWEEN 1 AND 4000", name="body_length"),
    CheckConstraint("char_length(client_msg_id) BETWEEN 1 AND 64", name="client_msg_id_length"),
    UniqueConstraint("sender_id", "client_msg_id"),
    Index("ix_messages_chat_id_id", "chat_id", text("id DESC")),
    Index("ix_messages_xid_id", "xid", "id"),
    Index("ix_messages_chat_id_xid_id", "chat_id", "xid", "id"),
)


# A member who left a chat (docs/events.md): `joined_xid` is the membership's position, `xid`
# the leaving's, so messages between the two still reach a client resuming from before.
chat_departures = Table(
    "chat_departures",
    metadata,
    Column("chat_id", BigInteger, ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("joined_xid", BigInteger, nullable=False),
    Column("left_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("xid", BigInteger, nullable=False, server_default=text(XID_DEFAULT)),
    PrimaryKeyConstraint("chat_id", "user_id", "xid"),
    Index("ix_chat_departures_xid", "xid"),
    Index("ix_chat_departures_user_id_xid", "user_id", "xid"),
)


refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    # Every token of one login shares its family: reusing a spent one revokes them all.
    Column("family", Uuid, nullable=False),
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", LargeBinary, nullable=False, unique=True),  # SHA-256, never the token
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Index("ix_refresh_tokens_family", "family"),
    Index("ix_refresh_tokens_user_id", "user_id"),
)

# A blocker's block: the blocked user cannot start a chat with the blocker nor add them.
user_blocks = Table(
    "user_blocks",
    metadata,
    Column("blocker_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("blocked_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("blocker_id", "blocked_id"),
    CheckConstraint("blocker_id <> blocked_id", name="not_self"),
    Index("ix_user_blocks_blocked_id", "blocked_id"),
)

# Columns that never leave the database in a record.
SECRET_COLUMNS = frozenset({"password_hash"})
# Columns the event stream reads (app.events) and records do not carry.
POSITION_COLUMNS = frozenset({"xid"})


def column_list(table: Table) -> str:
    """The table's columns in definition order, as a SQL select list (`id, username, ...`),
    without `SECRET_COLUMNS` and `POSITION_COLUMNS`.

    Repositories select with it and build their records positionally, so a record's fields
    follow the table's column order (checked by `tests/unit/test_schema.py`).
    """
    hidden = SECRET_COLUMNS | POSITION_COLUMNS
    return ", ".join(c.name for c in table.columns if c.name not in hidden)
