"""The service's phase (starting, ready, draining) and its start and stop sequence.

Start: open the pools and warm each to its minimum (concurrently; server version and database
logged per pool), start the replica monitor, then report ready. Stop: readiness fails the
moment SIGTERM arrives (`app.ops.signals`), granian lets in-flight requests finish, then the
lifespan stops the monitor and disposes the pools concurrently within `SHUTDOWN_TIMEOUT_S`.
Each step is logged with its timing.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from urllib.parse import urlsplit

import structlog
from litestar import Litestar

from app.config import Settings
from app.db.database import Database
from app.ops.gauges import GaugePublisher
from app.ops.multiproc import MULTIPROC_ENV
from app.ops.prometheus import mark_worker_stopped, multiprocess_enabled
from app.ops.readiness import Readiness
from app.ops.signals import install_drain_handlers

log = structlog.get_logger("app.lifecycle")


class Phase(enum.Enum):
    """Where the process is in its life; readiness passes only in `READY`."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


class StartupAborted(RuntimeError):
    """The service cannot start (the primary is unreachable); already logged in one line.

    `app.logging` drops granian's traceback of it by this name (`QUIET_STARTUP_ERROR`).
    """


class Lifecycle:
    """Shared by the lifespan, the signal handlers and the probes."""

    def __init__(self) -> None:
        self.phase = Phase.STARTING
        self.started_at = time.monotonic()
        self.draining_since: float | None = None
        self.in_flight = 0  # HTTP requests being served (`HttpMetricsMiddleware`)

    @property
    def uptime_s(self) -> float:
        return round(time.monotonic() - self.started_at, 3)

    def begin_draining(self, why: str) -> bool:
        """Readiness fails from now on; True if this call started the draining.

        Safe in a signal handler: it only sets attributes.
        """
        if self.phase is Phase.DRAINING:
            return False
        self.phase = Phase.DRAINING
        self.draining_since = time.monotonic()
        return True

    def draining_ms(self) -> float:
        """Milliseconds since draining began (0 if it has not)."""
        if self.draining_since is None:
            return 0.0
        return round((time.monotonic() - self.draining_since) * 1000, 1)


def make_lifespan(
    settings: Settings, lifecycle: Lifecycle
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The app's lifespan: warm up the pools, serve, then drain and dispose."""

    def on_signal(name: str) -> None:
        lifecycle.begin_draining(name)

    def announce(name: str) -> None:
        log.info(
            "shutdown signal received; readiness now fails",
            signal=name,
            in_flight=lifecycle.in_flight,
        )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        started = time.monotonic()
        database = Database(settings)
        app.state.database = database
        await _warm_up(database, settings)
        readiness = Readiness(database)
        app.state.readiness = readiness
        publisher = GaugePublisher(database, settings.replica_check_interval_ms / 1000)
        publisher.start()
        restore_signals = install_drain_handlers(on_signal, announce)
        _warn_if_metrics_per_worker(settings)
        lifecycle.phase = Phase.READY
        log.info("ready", warm_up_ms=_ms_since(started), workers=settings.workers)
        try:
            yield
        finally:
            if lifecycle.begin_draining("lifespan shutdown"):
                log.info("draining: readiness now fails", why="lifespan shutdown")
            log.info("in-flight requests finished", drain_ms=lifecycle.draining_ms())
            stopping = time.monotonic()
            restore_signals()
            await readiness.aclose()
            await _close_database(database, settings.shutdown_timeout_s)
            await publisher.stop()
            mark_worker_stopped()
            log.info(
                "stopped",
                dispose_ms=_ms_since(stopping),
                shutdown_ms=lifecycle.draining_ms(),
            )

    return lifespan


async def _warm_up(database: Database, settings: Settings) -> None:
    """Warm the pools, or log one clear line and abort the start when the primary is down."""
    if settings.wait_for_database_s:
        log.info("waiting for the primary if needed", up_to_s=settings.wait_for_database_s)
    started = time.monotonic()
    try:
        await database.warm_up()
    except Exception as error:
        waited_s = round(time.monotonic() - started, 1)
        await _close_database(database, settings.shutdown_timeout_s)
        log.error(
            "the primary is unreachable; not starting",
            target=_where(settings.database_url),
            error=type(error).__name__,
            waited_s=waited_s,
            hint="check DATABASE_URL, or set DB_WAIT_FOR_PRIMARY_S to wait for it",
        )
        raise StartupAborted("the primary is unreachable") from None


async def _close_database(database: Database, limit_s: float) -> None:
    """Stop the monitor and dispose the pools; whatever is left at the limit is abandoned
    (the process is exiting: the kernel closes the sockets, the servers end the sessions)."""
    try:
        async with asyncio.timeout(limit_s):
            await database.dispose(limit_s)
    except TimeoutError:
        log.warning("database not closed within the shutdown limit; abandoning", limit_s=limit_s)


def _where(url: str | None) -> str:
    """`host:port/database` of a URL: no user, no password."""
    if not url:
        return "?"
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port or 5432}{parts.path}"
    except ValueError:
        return "?"


def _warn_if_metrics_per_worker(settings: Settings) -> None:
    if settings.workers > 1 and not multiprocess_enabled():
        log.warning(
            "several workers but no shared metrics directory: /metrics describes only the"
            " worker that answers",
            workers=settings.workers,
            set=MULTIPROC_ENV,
        )


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
