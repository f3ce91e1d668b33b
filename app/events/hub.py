"""The per-worker hub: one reader of new events for every stream of the worker.

Each pass asks the primary for its horizon (`EventSource.horizon`), reads every event of the
transactions between the previous horizon and this one for the worker's users (one query on a
replica that has replayed the horizon's WAL position), and hands each event to the streams of
its recipients. A pass runs when a notification arrives (`Listener`), when a stream opens, a
few milliseconds later again while a notified transaction is still above the horizon, and
every `EVENTS_POLL_INTERVAL_MS` anyway (`EVENTS_FALLBACK_POLL_MS` without a listener).

A stream joins at the start of a pass: from then on it receives every event at or above the
hub's horizon, and it reads what it missed below that horizon itself (`EventSource.catch_up`),
so the seam between catch-up and live has neither a gap nor an overlap.

Bounded: a stream holds at most `EVENTS_BUFFER` events; a stream that falls further behind is
ended (`slow_consumer`) and its client resumes from its last event id. Streams per user and
per worker are limited; draining ends every stream with a `retry:` hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from app.config import Settings
from app.db.cluster import Database
from app.events import metrics
from app.events.announcer import Announcer
from app.events.source import EventRow, EventSource, Horizon, Listener

log = structlog.get_logger("app.events")

REPOLL_FIRST_S = 0.002  # a notified transaction not yet below the horizon: look again soon
REPOLL_MAX_S = 0.05  # ... doubling while the horizon does not move, up to this
PASS_MIN_INTERVAL_S = 0.01  # notifications within it share one pass (two queries)
DRAIN_CHECK_S = 0.1
LISTENER_START_WAIT_S = 2.0


class StreamLimitError(Exception):
    """A stream is refused: `status` 429 (the user's limit) or 503 (the worker's, draining)."""

    def __init__(self, status: int, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass(eq=False, slots=True)
class Stream:
    """One client's subscription: what the hub queued for it and why it must end."""

    user_id: int
    buffer: int
    queue: deque[EventRow] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    start: Horizon | None = None
    """The hub's horizon when the stream joined: live events are at or above it."""
    ending: str | None = None
    """Why the stream must end (`slow_consumer`, `shutdown`, `resync`), or None."""

    def push(self, row: EventRow) -> None:
        if self.ending is not None:
            return
        if len(self.queue) >= self.buffer:
            self.queue.clear()  # the client resumes from its last event id
            self.end("slow_consumer")
            return
        self.queue.append(row)
        self.wake.set()

    def end(self, reason: str) -> None:
        if self.ending is None:
            self.ending = reason
        self.wake.set()
        self.joined.set()


class Hub:
    """A lifecycle component: started after the data layer, stopped before it."""

    name = "events"

    def __init__(
        self, settings: Settings, database: Database, draining: Callable[[], bool]
    ) -> None:
        self.settings = settings.events
        self.source = EventSource(database)
        self._draining = draining
        self._listen_url = _listen_url(settings)
        self.listener = (
            Listener(
                settings,
                self._listen_url,
                on_wake=self._notified,
                on_connect=self.wake,
                check_interval_s=self.settings.poll_interval_s,
            )
            if self._listen_url is not None
            else None
        )
        self.announcer = Announcer(
            lambda: self.source.announce(self.listener),
            idle_check_s=self.settings.poll_interval_s,
        )
        self.horizon: Horizon | None = None
        self._by_user: dict[int, set[Stream]] = {}
        self._joining: list[Stream] = []
        self._count = 0
        self._idle = False  # no stream at the last pass: the horizon is read again on a join
        self._wake = asyncio.Event()
        self._notified_xid = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.last_pass_ok = 0.0

    # -- the component --------------------------------------------------------------------

    async def start(self) -> None:
        if not self.settings.enabled:
            return
        if self.listener is None:
            log.warning(
                "events: no LISTEN connection (DB_PGBOUNCER without EVENTS_LISTEN_URL);"
                " polling instead",
                every_ms=round(self.settings.fallback_poll_interval_s * 1000),
            )
        else:
            self.listener.start()
        self.horizon = await self.source.horizon(self.listener)
        if self.listener is not None:  # ready means listening, unless the primary is slow
            await self.listener.wait_connected(LISTENER_START_WAIT_S)
        self.last_pass_ok = time.monotonic()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name="events-hub"),
            loop.create_task(self._watch_drain(), name="events-drain"),
        ]
        self.announcer.start()

    async def stop(self) -> None:
        self._stopping = True
        self.end_all("shutdown")
        await self.announcer.stop()  # what is pending still goes out, before the listener
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.listener is not None:
            await self.listener.stop()

    @property
    def listening(self) -> bool:
        return self.listener is not None and self.listener.state.connected

    # -- streams ----------------------------------------------------------------------------

    def open(self, user_id: int) -> Stream:
        """A new stream of `user_id`; it joins at the next pass (started now)."""
        settings = self.settings
        if self._stopping or self._draining() or self.horizon is None:
            metrics.STREAMS_REFUSED.labels("draining").inc()
            raise StreamLimitError(503, "the service is restarting; reconnect", 1)
        if self._count >= settings.max_streams_per_worker:
            metrics.STREAMS_REFUSED.labels("per_worker").inc()
            raise StreamLimitError(503, "this worker holds as many streams as it may", 5)
        if len(self._by_user.get(user_id, ())) >= settings.max_streams_per_user:
            metrics.STREAMS_REFUSED.labels("per_user").inc()
            raise StreamLimitError(429, "too many streams of this user at once", 10)
        stream = Stream(user_id, settings.buffer)
        self._by_user.setdefault(user_id, set()).add(stream)
        self._joining.append(stream)
        self._count += 1
        metrics.OPEN_STREAMS.inc()
        self.wake()
        return stream

    def close(self, stream: Stream) -> None:
        streams = self._by_user.get(stream.user_id)
        if streams is None or stream not in streams:
            return
        streams.discard(stream)
        if not streams:
            del self._by_user[stream.user_id]
        if stream in self._joining:
            self._joining.remove(stream)
        self._count -= 1
        metrics.OPEN_STREAMS.dec()
        metrics.STREAMS_ENDED.labels(stream.ending or "client").inc()

    def end_all(self, reason: str) -> None:
        for streams in self._by_user.values():
            for stream in streams:
                stream.end(reason)

    @property
    def open_streams(self) -> int:
        return self._count

    # -- passes -----------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def announce(self) -> None:
        """A write committed events (a message, new members): wake every hub of the
        cluster, this one included, with one notification for many writes (`Announcer`)."""
        self.announcer.announce()

    def _notified(self, xid: int) -> None:
        self._notified_xid = max(self._notified_xid, xid)
        if self._count:  # with no stream open a send wakes nothing (one per send otherwise)
            self._wake.set()

    async def _run(self) -> None:
        repoll_s = REPOLL_FIRST_S
        passed = self.horizon
        last_pass = 0.0
        while True:
            interval = (
                self.settings.poll_interval_s
                if self.listening
                else self.settings.fallback_poll_interval_s
            )
            wait_s = interval
            assert self.horizon is not None
            if self.horizon != passed:
                repoll_s = REPOLL_FIRST_S  # the horizon moved: look again soon, not later
                passed = self.horizon
            if self._notified_xid >= self.horizon.xmin:
                wait_s = min(repoll_s, interval)  # a notified transaction is not yet below
                repoll_s = min(repoll_s * 2, REPOLL_MAX_S, interval)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()
            # Coalesce: at most one pass per PASS_MIN_INTERVAL_S, however many notifications.
            await asyncio.sleep(max(0.0, last_pass + PASS_MIN_INTERVAL_S - time.monotonic()))
            last_pass = time.monotonic()
            self._wake.clear()
            metrics.LISTENER_CONNECTED.set(1 if self.listening else 0)
            try:
                await self.pass_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                metrics.PASSES.labels("error").inc()
                log.warning("events pass failed", error=type(error).__name__)
                await asyncio.sleep(min(interval, 0.5))

    async def pass_once(self) -> None:
        """Join the waiting streams, then read and hand out what is new.

        With no stream open there is nothing to hand out: the pass reads nothing (a worker
        without streams paid a horizon query up to 100 times a second, +15% CPU per send in
        the A/B, docs/performance.md) and the horizon is read afresh when a stream joins, so
        a new stream starts at the present, as it would have."""
        if not self._count:
            self._idle = True
            self.last_pass_ok = time.monotonic()
            metrics.PASSES.labels("idle").inc()
            return
        if self._idle:
            self.horizon = await self.source.horizon(self.listener)
            self._idle = False
        previous = self.horizon
        assert previous is not None
        joining, self._joining = self._joining, []
        for stream in joining:
            stream.start = previous
            stream.joined.set()
        users = list(self._by_user)
        now = await self.source.horizon(self.listener)
        metrics.HORIZON_AGE.set(max(0, now.xmax - now.xmin))
        if now.xmax < previous.xmin:
            # The primary's transaction ids went back (a failover lost WAL): ids below what
            # streams passed may be used again. Every stream resynchronises.
            log.error(
                "events: the primary's transaction ids went back; streams resynchronise",
                passed=previous.xmin,
                next_xid=now.xmax,
            )
            self.end_all("resync")
            self.horizon = now
            return
        if now.xmin <= previous.xmin:
            metrics.PASSES.labels("empty").inc()
            self.last_pass_ok = time.monotonic()
            return
        rows = await self.source.live(previous.xmin, now, users) if users else []
        for row in rows:
            for user in row.recipients:
                for stream in self._by_user.get(user, ()):
                    if stream.start is not None:  # joined before this pass read
                        stream.push(row)
        self.horizon = now
        self.last_pass_ok = time.monotonic()
        metrics.PASSES.labels("events" if rows else "empty").inc()

    async def _watch_drain(self) -> None:
        while True:
            await asyncio.sleep(DRAIN_CHECK_S)
            if self._draining() and self._count:
                log.info("draining: ending event streams", streams=self._count)
                self.end_all("shutdown")


def _listen_url(settings: Settings) -> str | None:
    """Where to LISTEN: `EVENTS_LISTEN_URL`, else `DATABASE_URL` unless it is PgBouncer."""
    if settings.events.listen_url is not None:
        return settings.events.listen_url
    if settings.database.pgbouncer:
        return None
    return settings.database.url
