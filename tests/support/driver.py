"""Tests that break the data layer on purpose reach past its typed interface to the driver."""

from __future__ import annotations

from typing import Any

from app.db.connection import Connection, DriverConnection, Scalar

SELECT_ONE = Scalar("SELECT 1", int)


def driver(conn: Connection | DriverConnection) -> Any:
    """The asyncpg connection behind a connection the data layer lent out."""
    assert isinstance(conn, DriverConnection)
    return conn.driver
