"""The event stream's one contact with the data layer (docs/events.md).

- `EventSource.horizon()`: on the primary, the horizon of transactions still running
  (`pg_snapshot_xmin(pg_current_snapshot())`) and the WAL insert position after it. Every
  transaction below the horizon has finished, so no row can ever appear below it later.
- `EventSource.live(...)` and `EventSource.catch_up(...)`: the rows between two positions,
  bounded above by a horizon the primary gave, read on a replica that has replayed the WAL
  position taken with that horizon (the consistency token of `DbSession`), so a lagging
  replica can delay a read but never make it miss a row.
- `Listener`: one dedicated connection per worker that `LISTEN`s on the primary, found anew
  on every reconnect (a failover moves it), used as a wake-up only.
- `EventSource.announce(...)`: the wake-up itself, `pg_notify` on `EVENTS_CHANNEL`, sent by
  `app.events.announcer` after writes commit.

Only `DbSession.read` and the settings are used here, so the data layer may change beneath.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
import structlog

from app.config import Settings
from app.db.cluster import Database
from app.db.connection import Connection, Query, Scalar
from app.db.session import DbSession
from app.dsn import parse_host_list
from app.events.position import CHAT_JOINED, CHAT_LEFT, MESSAGE, Position
from app.schema.find_primary import find_primary
from app.schema.migrate import ssl_context

log = structlog.get_logger("app.events")

EVENTS_CHANNEL = "messenger_events"
"""The channel every hub listens on and every announcer notifies."""


class Horizon(NamedTuple):
    """What the primary said at one moment."""

    xmin: int
    """Every transaction below this id has finished (committed or rolled back)."""
    xmax: int
    """No transaction at or above this id had finished (nor, mostly, begun)."""
    lsn: int
    """The WAL insert position right after: a replica that replayed it has every row below
    `xmin` that will ever exist."""


class EventRow(NamedTuple):
    """One event as read: a membership (`kind` 1), a message (`kind` 2) or a departure
    (`kind` 3)."""

    kind: int
    xid: int
    id: int
    """The message id; the chat id for a membership or a departure."""
    chat_id: int
    user_id: int
    """The sender of a message; the member who joined or left."""
    body: str | None
    """The message's body; the chat's title for a membership or a departure."""
    client_msg_id: str | None
    created_at: datetime
    """When the message was stored, or the member joined or left."""
    recipients: list[int]
    """Of the users asked about, who receives it (live reads; catch-up: the one user)."""

    @property
    def position(self) -> Position:
        return Position(self.xid, self.kind, self.id)


_HORIZON = Query(
    "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint,"
    " pg_current_wal_insert_lsn() FROM pg_current_snapshot() AS s",
    Horizon,
)

# The wake-up: the newest transaction id that can have committed before it, as text.
_ANNOUNCE: Scalar[None] = Scalar(
    f"SELECT pg_notify('{EVENTS_CHANNEL}',"
    " (pg_snapshot_xmax(pg_current_snapshot())::text::bigint - 1)::text)",
    lambda _void: None,
)

# Every event of [$1, $2) (transaction ids) for the users $3: a member receives the messages
# of transactions after the one that made them a member and, once they left, before the one
# that ended it (a rule that does not depend on when the query runs). Ordered by position.
_LIVE = Query(
    f"SELECT {CHAT_JOINED}"  # noqa: S608 - constants only
    f", cm.xid, cm.chat_id, cm.chat_id, cm.user_id, c.title, NULL::text,"
    "  cm.joined_at, ARRAY[cm.user_id]"
    " FROM chat_members cm JOIN chats c ON c.id = cm.chat_id"
    " WHERE cm.xid >= $1 AND cm.xid < $2 AND cm.user_id = ANY($3::bigint[])"
    " UNION ALL"
    f" SELECT {MESSAGE}, m.xid, m.id, m.chat_id, m.sender_id, m.body, m.client_msg_id,"
    "  m.created_at, ARRAY(SELECT cm.user_id FROM chat_members cm WHERE cm.chat_id = m.chat_id"
    "   AND cm.user_id = ANY($3::bigint[]) AND cm.xid < m.xid"
    "   UNION SELECT d.user_id FROM chat_departures d WHERE d.chat_id = m.chat_id"
    "   AND d.user_id = ANY($3::bigint[]) AND d.joined_xid < m.xid AND d.xid > m.xid)"
    " FROM messages m WHERE m.xid >= $1 AND m.xid < $2"
    " UNION ALL"
    f" SELECT {CHAT_LEFT}, d.xid, d.chat_id, d.chat_id, d.user_id, c.title, NULL::text,"
    "  d.left_at, ARRAY[d.user_id]"
    " FROM chat_departures d JOIN chats c ON c.id = d.chat_id"
    " WHERE d.xid >= $1 AND d.xid < $2 AND d.user_id = ANY($3::bigint[])"
    " ORDER BY 2, 1, 3",
    EventRow,
)

# The events of user $1 after position ($2, $3, $4) and below transaction $5, $6 at most.
_CATCH_UP = Query(
    "SELECT * FROM ("  # noqa: S608 - constants only
    f" SELECT {CHAT_JOINED} AS kind, cm.xid, cm.chat_id AS id, cm.chat_id, cm.user_id,"
    "  c.title AS body, NULL::text AS client_msg_id, cm.joined_at AS created_at,"
    "  ARRAY[cm.user_id] AS recipients"
    " FROM chat_members cm JOIN chats c ON c.id = cm.chat_id"
    " WHERE cm.user_id = $1 AND cm.xid >= $2 AND cm.xid < $5"
    f"  AND (cm.xid, {CHAT_JOINED}, cm.chat_id) > ($2, $3, $4)"
    " UNION ALL"
    f" SELECT {MESSAGE}, m.xid, m.id, m.chat_id, m.sender_id, m.body, m.client_msg_id,"
    "  m.created_at, ARRAY[cm.user_id]"
    " FROM chat_members cm JOIN messages m ON m.chat_id = cm.chat_id AND m.xid > cm.xid"
    " WHERE cm.user_id = $1 AND m.xid >= $2 AND m.xid < $5"
    f"  AND (m.xid, {MESSAGE}, m.id) > ($2, $3, $4)"
    " UNION ALL"
    f" SELECT {MESSAGE}, m.xid, m.id, m.chat_id, m.sender_id, m.body, m.client_msg_id,"
    "  m.created_at, ARRAY[d.user_id]"
    " FROM chat_departures d JOIN messages m ON m.chat_id = d.chat_id"
    "  AND m.xid > d.joined_xid AND m.xid < d.xid"
    " WHERE d.user_id = $1 AND m.xid >= $2 AND m.xid < $5"
    f"  AND (m.xid, {MESSAGE}, m.id) > ($2, $3, $4)"
    " UNION ALL"
    f" SELECT {CHAT_LEFT}, d.xid, d.chat_id, d.chat_id, d.user_id, c.title, NULL::text,"
    "  d.left_at, ARRAY[d.user_id]"
    " FROM chat_departures d JOIN chats c ON c.id = d.chat_id"
    " WHERE d.user_id = $1 AND d.xid >= $2 AND d.xid < $5"
    f"  AND (d.xid, {CHAT_LEFT}, d.chat_id) > ($2, $3, $4)"
    ") AS e ORDER BY xid, kind, id LIMIT $6",
    EventRow,
)


class EventSource:
    """Reads events through the data layer's sessions."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def horizon(self, listener: Listener | None = None) -> Horizon:
        """The primary's horizon now (one short statement on the primary): on the listener's
        own connection while it is up (no pool connection taken), else through the pool."""
        if listener is not None and listener.state.connected:
            try:
                return await listener.horizon()
            except Exception as error:  # the listener reconnects; the pool answers this time
                log.info("events: horizon on the listener failed", error=type(error).__name__)

        async def read(conn: Connection) -> Horizon:
            found = await conn.fetch_one(_HORIZON)
            assert found is not None
            return found

        return await DbSession(self._db).read(read, on_primary=True)

    async def announce(self, listener: Listener | None = None) -> None:
        """Notify every listener of the cluster: on the listener's own connection while it
        is up, else through the writer pool (PgBouncer passes a `NOTIFY` on, at commit)."""
        if listener is not None and listener.state.connected:
            try:
                await listener.execute(_ANNOUNCE.sql)
                return
            except Exception as error:  # the listener reconnects; the pool sends this one
                log.info("events: notifying on the listener failed", error=type(error).__name__)

        async def notify(conn: Connection) -> None:
            await conn.fetch_scalar(_ANNOUNCE)

        await DbSession(self._db).write(notify, idempotent=True)

    async def live(self, start: int, below: Horizon, users: list[int]) -> list[EventRow]:
        """Every event of transactions in [`start`, `below.xmin`) for any of `users`."""

        async def read(conn: Connection) -> list[EventRow]:
            return await conn.fetch_all(_LIVE, start, below.xmin, users)

        return await DbSession(self._db, below.lsn).read(read)

    async def catch_up(
        self, user: int, after: Position, below: Horizon, limit: int
    ) -> list[EventRow]:
        """The events of `user` after `after`, below `below.xmin`, `limit` at most."""

        async def read(conn: Connection) -> list[EventRow]:
            return await conn.fetch_all(
                _CATCH_UP, user, after.xid, after.kind, after.id, below.xmin, limit
            )

        return await DbSession(self._db, below.lsn).read(read)


@dataclass(slots=True)
class ListenerState:
    connected: bool = False
    member: str | None = None
    reconnects: int = 0
    last_error: str | None = None


class Listener:
    """`LISTEN` on a dedicated connection to the primary; reconnects (and finds the primary
    again) when the connection fails or its server stops being the primary.

    `on_wake(xid)` runs for every notification; `on_connect()` after every (re)connection, so
    the hub reads whatever committed while nobody listened."""

    def __init__(
        self,
        settings: Settings,
        url: str,
        *,
        on_wake: Callable[[int], None],
        on_connect: Callable[[], None],
        check_interval_s: float,
    ) -> None:
        self._url = url
        self._ssl: ssl.SSLContext | None = ssl_context(settings.database.sslmode)
        self._connect_timeout_s = settings.writer_pool.connect_timeout_s
        self._on_wake = on_wake
        self._on_connect = on_connect
        self._check_interval_s = check_interval_s
        self.state = ListenerState()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._connected = asyncio.Event()
        self._conn: Any = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="events-listener")

    async def horizon(self) -> Horizon:
        """The horizon, asked on the listening connection (a primary, checked each second)."""
        return Horizon(*await self._on_connection("fetchrow", _HORIZON.sql))

    async def execute(self, sql: str) -> None:
        """Run `sql` on the listening connection (a primary, checked each second)."""
        await self._on_connection("execute", sql)

    async def _on_connection(self, method: str, sql: str) -> Any:
        """`sql` through the listening connection's asyncpg `method`, one at a time (the
        listener's own role check shares the connection), bounded by the check interval."""
        conn = self._conn
        if conn is None:
            raise ConnectionError("the listener is not connected")
        async with self._lock, asyncio.timeout(self._check_interval_s):
            return await getattr(conn, method)(sql)

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the first connection; whether it is up."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
        return self.state.connected

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff_s = 0.1
        while not self._stopping.is_set():
            try:
                await self._listen_once()
                backoff_s = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.state.last_error = type(error).__name__
                if self.state.connected:
                    log.warning("events listener lost", error=type(error).__name__)
                self.state.connected = False
                self.state.reconnects += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff_s)
            backoff_s = min(backoff_s * 2, 2.0)

    async def _listen_once(self) -> None:
        url = await find_primary(self._url, self._connect_timeout_s, ssl_context=self._ssl)
        conn: Any = await asyncpg.connect(
            url,
            timeout=self._connect_timeout_s,
            ssl=self._ssl,
            server_settings={"application_name": "messenger-events-listener"},
        )
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(EVENTS_CHANNEL, self._notified)
            if await conn.fetchval("SELECT pg_is_in_recovery()"):
                raise RuntimeError("the listener's server is a standby")
            self._conn = conn
            self.state.connected = True
            self.state.last_error = None
            self.state.member = _member(url)
            self._connected.set()
            log.info("events listener connected", member=self.state.member)
            self._on_connect()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._check_interval_s)
                if lost.is_set():
                    break
                # A dead peer sends no notification and no error: ask, and check the role.
                async with self._lock:
                    standby = await asyncio.wait_for(
                        conn.fetchval("SELECT pg_is_in_recovery()"), self._check_interval_s
                    )
                if standby:
                    raise RuntimeError("the listener's server became a standby")
            raise ConnectionError("the listener's connection closed")
        finally:
            self.state.connected = False
            self._conn = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 1.0)
            if not conn.is_closed():
                conn.terminate()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            xid = int(payload)
        except ValueError:
            xid = 0
        self._on_wake(xid)


def _member(url: str) -> str:
    """`host:port` of a one-host URL, for the log (never the credentials)."""
    try:
        return parse_host_list(url).members[0].name
    except ValueError:
        return "unknown"
