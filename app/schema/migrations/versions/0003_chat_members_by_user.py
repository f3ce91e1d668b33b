"""A user's chats by chat id: the index on chat_members (user_id) becomes (user_id, chat_id).

`GET /users/{id}/chats` pages by chat id (`WHERE user_id = $1 AND chat_id > $2 ORDER BY chat_id
LIMIT n`). With (user_id) alone every page read and sorted all of the user's memberships, so
its cost grew with the number of chats a user is in; with (user_id, chat_id) a page reads its
own rows. The new index also serves everything the old one did (the cascade from users).

Built inside the migration's transaction like the others: writes to chat_members wait for the
build (on a large table, build it beforehand with CREATE INDEX CONCURRENTLY under this name;
the migration then only drops the old index).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_chat_members_user_id_chat_id",
        "chat_members",
        ["user_id", "chat_id"],
        if_not_exists=True,
    )
    op.drop_index("ix_chat_members_user_id", table_name="chat_members")


def downgrade() -> None:
    op.create_index("ix_chat_members_user_id", "chat_members", ["user_id"])
    op.drop_index("ix_chat_members_user_id_chat_id", table_name="chat_members")
