"""The schema in one place: records are built positionally from select lists derived from the
tables, so each record's fields must follow its table's columns."""

from __future__ import annotations

import msgspec
import pytest
from sqlalchemy import Table

from app.domain.records import Chat, Message, User
from app.schema.tables import POSITION_COLUMNS, SECRET_COLUMNS, chats, column_list, messages, users


def _fields(record: type[msgspec.Struct]) -> list[str]:
    return list(record.__struct_fields__)


@pytest.mark.parametrize(("record", "table"), [(User, users), (Message, messages)])
def test_records_follow_their_table_column_for_column(
    record: type[msgspec.Struct], table: Table
) -> None:
    public = [
        column.name
        for column in table.columns
        if column.name not in SECRET_COLUMNS | POSITION_COLUMNS
    ]
    assert _fields(record) == public
    assert column_list(table) == ", ".join(_fields(record))


def test_a_password_hash_never_reaches_a_record() -> None:
    assert "password_hash" in users.columns
    assert "password_hash" not in column_list(users)
    assert "password_hash" not in _fields(User)


def test_a_chat_is_its_row_with_the_member_ids_before_created_at() -> None:
    columns = [column.name for column in chats.columns]
    assert "xid" not in columns  # chat_members and messages carry event positions
    assert _fields(Chat) == [*columns[:-1], "member_ids", columns[-1]]
    assert columns[-1] == "created_at"
