"""Blocks: a user may block another, who then cannot start a chat with them nor add them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "user_blocks",
        sa.Column("blocker_id", sa.BigInteger, nullable=False),
        sa.Column("blocked_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("blocker_id", "blocked_id", name="pk_user_blocks"),
        sa.ForeignKeyConstraint(
            ["blocker_id"], ["users.id"], ondelete="CASCADE", name="fk_user_blocks_blocker_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["blocked_id"], ["users.id"], ondelete="CASCADE", name="fk_user_blocks_blocked_id_users"
        ),
        sa.CheckConstraint("blocker_id <> blocked_id", name="ck_user_blocks_not_self"),
    )
    op.create_index("ix_user_blocks_blocked_id", "user_blocks", ["blocked_id"])


def downgrade() -> None:
    op.drop_table("user_blocks")
