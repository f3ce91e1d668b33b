"""Event positions: the writing transaction's id on messages and chat memberships.

`GET /events` (docs/events.md) delivers rows in the order of this column, and only rows whose
transaction is below the horizon of transactions still running
(`pg_snapshot_xmin(pg_current_snapshot())`), so a row can never commit below a position a
client has already passed. The column is `pg_current_xact_id()` (64 bits: epoch and xid, so
it never wraps) as a bigint; the send already has a transaction id, so the default costs no
new one.

Adding a column with a volatile default rewrites the table under an exclusive lock: existing
rows all get this migration's transaction id (they sort by id within it). On a large table,
add the column without a default, backfill in batches, then set the default.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_XID = sa.text("(pg_current_xact_id()::text)::bigint")


def upgrade() -> None:
    for table in ("messages", "chat_members"):
        op.add_column(table, sa.Column("xid", sa.BigInteger, nullable=False, server_default=_XID))
    op.create_index("ix_messages_xid_id", "messages", ["xid", "id"])
    op.create_index("ix_messages_chat_id_xid_id", "messages", ["chat_id", "xid", "id"])
    op.create_index("ix_chat_members_xid", "chat_members", ["xid"])


def downgrade() -> None:
    op.drop_index("ix_chat_members_xid", table_name="chat_members")
    op.drop_index("ix_messages_chat_id_xid_id", table_name="messages")
    op.drop_index("ix_messages_xid_id", table_name="messages")
    for table in ("messages", "chat_members"):
        op.drop_column(table, "xid")
