"""The wake-up every write of an event sends (docs/events.md): `pg_notify` on one channel,
inside the writing statement itself, so a send stays one statement and one round trip.

The payload is the writing transaction's id; PostgreSQL delivers it at commit, and never for
a transaction that rolls back. It is only a wake-up: the listeners read the rows themselves.
"""

from __future__ import annotations

EVENTS_CHANNEL = "messenger_events"
"""The channel `app.events` listens on."""


def notify_from(xid_sql: str) -> str:
    """A `FROM` item that notifies the channel with the transaction id `xid_sql` (SQL)."""
    return f"CROSS JOIN LATERAL pg_notify('{EVENTS_CHANNEL}', ({xid_sql})::text) AS woken"
