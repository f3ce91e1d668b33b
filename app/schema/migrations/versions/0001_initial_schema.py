"""Initial schema: users, chats, chat_members, messages.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'offline'")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
        sa.CheckConstraint("username ~ '^[a-z0-9_]{3,32}$'", name="ck_users_username_format"),
        sa.CheckConstraint(
            "char_length(display_name) BETWEEN 1 AND 64", name="ck_users_display_name_length"
        ),
        sa.CheckConstraint("status IN ('online', 'offline', 'away')", name="ck_users_status_value"),
    )
    op.create_index("ix_users_status_id", "users", ["status", "id"])
    op.create_table(
        "chats",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("id", name="pk_chats"),
        sa.CheckConstraint("char_length(title) BETWEEN 1 AND 200", name="ck_chats_title_length"),
    )
    op.create_table(
        "chat_members",
        sa.Column("chat_id", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("chat_id", "user_id", name="pk_chat_members"),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], ondelete="CASCADE", name="fk_chat_members_chat_id_chats"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_chat_members_user_id_users"
        ),
    )
    op.create_index("ix_chat_members_user_id", "chat_members", ["user_id"])
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("chat_id", sa.BigInteger, nullable=False),
        sa.Column("sender_id", sa.BigInteger, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("client_msg_id", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], ondelete="CASCADE", name="fk_messages_chat_id_chats"
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"], ["users.id"], ondelete="CASCADE", name="fk_messages_sender_id_users"
        ),
        sa.UniqueConstraint(
            "sender_id", "client_msg_id", name="uq_messages_sender_id_client_msg_id"
        ),
        sa.CheckConstraint("char_length(body) BETWEEN 1 AND 4000", name="ck_messages_body_length"),
        sa.CheckConstraint(
            "char_length(client_msg_id) BETWEEN 1 AND 64", name="ck_messages_client_msg_id_length"
        ),
    )
    op.create_index("ix_messages_chat_id_id", "messages", ["chat_id", sa.text("id DESC")])


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("chat_members")
    op.drop_table("chats")
    op.drop_table("users")
