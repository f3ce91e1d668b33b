"""Departures: a member who leaves a chat, kept with the positions of the joining and the
leaving, so the event stream can say `chat_left` and a resuming client still receives the
messages sent while it was a member (docs/events.md).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")
_XID = sa.text("(pg_current_xact_id()::text)::bigint")


def upgrade() -> None:
    op.create_table(
        "chat_departures",
        sa.Column("chat_id", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("joined_xid", sa.BigInteger, nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("xid", sa.BigInteger, nullable=False, server_default=_XID),
        sa.PrimaryKeyConstraint("chat_id", "user_id", "xid", name="pk_chat_departures"),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], ondelete="CASCADE", name="fk_chat_departures_chat_id_chats"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_chat_departures_user_id_users"
        ),
    )
    op.create_index("ix_chat_departures_xid", "chat_departures", ["xid"])
    op.create_index("ix_chat_departures_user_id_xid", "chat_departures", ["user_id", "xid"])


def downgrade() -> None:
    op.drop_table("chat_departures")
