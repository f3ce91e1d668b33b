"""The announcer (app/events/announcer.py) against a real primary and a real `LISTEN`: many
writes make one notification, its payload covers every transaction committed before it, and
a failed notification is sent again rather than lost."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from app.events.announcer import Announcer
from app.events.source import _ANNOUNCE, EVENTS_CHANNEL
from tests.support.cluster import TestDatabase

DEADLINE_S = 10.0


class _Heard:
    """Notifications one real listening connection received."""

    def __init__(self) -> None:
        self.payloads: list[int] = []
        self.arrived = asyncio.Event()

    def __call__(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.payloads.append(int(payload))
        self.arrived.set()

    async def next(self) -> None:
        async with asyncio.timeout(DEADLINE_S):
            await self.arrived.wait()
        self.arrived.clear()


async def _listening(url: str) -> tuple[Any, _Heard]:
    conn = await asyncpg.connect(url)
    heard = _Heard()
    await conn.add_listener(EVENTS_CHANNEL, heard)
    return conn, heard


async def _settled(listener: Any) -> None:
    """Room for a wrongly extra notification to be sent, then a round trip on the listening
    connection, after which anything sent before it has been delivered."""
    await asyncio.sleep(0.05)
    await listener.execute("SELECT 1")


def test_a_burst_of_writes_makes_one_notification_covering_them(database: TestDatabase) -> None:
    async def run() -> None:
        listener, heard = await _listening(database.primary_url)
        notifier = await asyncpg.connect(database.primary_url)
        sent: list[int] = []

        async def notify() -> None:
            await notifier.execute(_ANNOUNCE.sql)
            sent.append(1)

        announcer = Announcer(notify, idle_check_s=60)
        announcer.start()
        try:
            committed = int(await notifier.fetchval("SELECT pg_current_xact_id()::text"))
            for _ in range(1000):
                announcer.announce()
            await heard.next()
            await _settled(listener)
            assert len(sent) == 1
            assert len(heard.payloads) == 1
            # Every transaction that committed before the announcement is at or below it.
            assert heard.payloads[0] >= committed

            announcer.announce()  # a later write: a notification of its own
            await heard.next()
            assert len(heard.payloads) == 2
            assert heard.payloads[1] >= heard.payloads[0]
        finally:
            await announcer.stop()
            await notifier.close()
            await listener.close()

    asyncio.run(run())


def test_nothing_announced_notifies_nothing(database: TestDatabase) -> None:
    async def run() -> None:
        listener, heard = await _listening(database.primary_url)
        notifier = await asyncpg.connect(database.primary_url)
        announcer = Announcer(lambda: notifier.execute(_ANNOUNCE.sql), idle_check_s=0.01)
        announcer.start()
        try:
            await asyncio.sleep(0.2)  # twenty idle checks
            await announcer.stop()
            await listener.execute("SELECT 1")  # anything sent by now has been delivered
            assert heard.payloads == []
        finally:
            await notifier.close()
            await listener.close()

    asyncio.run(run())


def test_a_failed_notification_is_sent_again(database: TestDatabase) -> None:
    async def run() -> None:
        listener, heard = await _listening(database.primary_url)
        broken = await asyncpg.connect(database.primary_url)
        await broken.close()  # a real failure: the connection is gone
        working = await asyncpg.connect(database.primary_url)
        connection = [broken]
        failures: list[str] = []

        async def notify() -> None:
            try:
                await connection[0].execute(_ANNOUNCE.sql)
            except asyncpg.InterfaceError as error:
                failures.append(type(error).__name__)
                connection[0] = working  # the next attempt finds the server again
                raise

        announcer = Announcer(notify, idle_check_s=0.05)
        announcer.start()
        try:
            announcer.announce()
            await heard.next()  # no second write: the idle check retried it
            assert failures == ["InterfaceError"]
            assert len(heard.payloads) == 1
        finally:
            await announcer.stop()
            await working.close()
            await listener.close()

    asyncio.run(run())


def test_stopping_sends_what_is_still_pending(database: TestDatabase) -> None:
    async def run() -> None:
        listener, heard = await _listening(database.primary_url)
        notifier = await asyncpg.connect(database.primary_url)
        announcer = Announcer(lambda: notifier.execute(_ANNOUNCE.sql), idle_check_s=60)
        try:
            announcer.announce()  # never started: only stop() can send it
            await announcer.stop()
            await heard.next()
            assert len(heard.payloads) == 1
        finally:
            await notifier.close()
            await listener.close()

    asyncio.run(run())
